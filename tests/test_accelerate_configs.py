"""What each shipped accelerate config contains, read with accelerate's own loader (the one `accelerate launch`
uses), and the loop's refusal of FSDP and DeepSpeed (docs/pipeline.md, "FSDP and DeepSpeed").

tests/test_training_accelerate.py checks that every key is one the launcher knows and runs cpu2.yaml; this file
checks the values the docs promise. None of the GPU configs can run here (no GPU)."""

from pathlib import Path

import pytest
import yaml

from soaes_bench.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "training" / "accelerate"


def _load(name: str):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    path = CONFIG_DIR / name
    cfg = load_config_from_file(str(path))
    assert isinstance(cfg, ClusterConfig)
    # to_dict turns the enums into strings in place: compare two other copies
    assert ClusterConfig.from_yaml_file(str(path)).to_dict() == load_config_from_file(str(path)).to_dict()
    return cfg


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_every_config_loads_and_trains_in_fp32(name):
    cfg = _load(name)
    assert cfg.num_machines == 1 and cfg.machine_rank == 0
    assert str(cfg.mixed_precision) in ("no", "MixedPrecisionType.NO")  # the loop trains in fp32 (dist.py)


def test_ddp():
    cfg = _load("ddp_2gpu.yaml")
    assert cfg.distributed_type.value == "MULTI_GPU" and cfg.num_processes == 2 and not cfg.use_cpu


def test_fsdp_config():
    import transformers.models.qwen2.modeling_qwen2 as qwen2

    cfg = _load("fsdp_2gpu.yaml")
    assert cfg.distributed_type.value == "FSDP" and cfg.num_processes == 2 and not cfg.use_cpu
    f = cfg.fsdp_config
    # sharding strategy: FSDP2 has no sharding_strategy key; reshard_after_forward=True is FULL_SHARD
    assert f["fsdp_version"] == 2 and f["fsdp_reshard_after_forward"] is True
    assert f["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # the one the loop's full-model checkpoints could use
    assert f["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert hasattr(qwen2, f["fsdp_transformer_layer_cls_to_wrap"])
    assert f["fsdp_offload_params"] is False and f["fsdp_activation_checkpointing"] is False


def test_deepspeed_zero2_config():
    cfg = _load("deepspeed_zero2.yaml")
    assert cfg.distributed_type.value == "DEEPSPEED" and cfg.num_processes == 2 and not cfg.use_cpu
    ds = cfg.deepspeed_config
    assert ds["zero_stage"] == 2 and ds["gradient_accumulation_steps"] == 1
    assert ds["offload_optimizer_device"] == "none" and ds["offload_param_device"] == "none"
    recipe = yaml.safe_load((REPO / "training/recipes/base.yaml").read_text(encoding="utf-8"))
    assert ds["gradient_clipping"] == recipe["train"]["grad_clip"]  # as its header asks


def test_deepspeed_is_an_optional_extra():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert any(d.startswith("deepspeed") for d in project["optional-dependencies"]["deepspeed"])
    assert not any(d.startswith("deepspeed") for d in project["dependencies"])


@pytest.mark.parametrize("env", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_loop_refuses_fsdp_and_deepspeed_even_where_accelerate_would_drop_them(env, monkeypatch):
    """On a CPU machine accelerate ignores ACCELERATE_USE_FSDP (it would train as plain DDP without a word); the
    loop refuses it, like FSDP on GPUs, with one line."""
    from soaes_bench.training.dist import make_accelerator

    monkeypatch.setenv(env, "true")
    with pytest.raises(UserError) as e:
        make_accelerator()
    kind = "FSDP" if "FSDP" in env else "DEEPSPEED"
    assert f"distributed_type {kind} is not supported" in str(e.value) and "\n" not in str(e.value)
