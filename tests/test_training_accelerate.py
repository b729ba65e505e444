"""`accelerate launch`: the shipped configs parse as the launcher parses them, and the micro pipeline runs unchanged
on 2 CPU processes (gloo) with the same results as on one."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from soaes_bench.training.dist import broadcast_json, make_accelerator
from soaes_bench.training.fixtures import micro_pipeline
from soaes_bench.pipeline import run_pipeline

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "training" / "accelerate").glob("*.yaml"))
REQUIRED = {"compute_environment", "distributed_type", "num_machines", "num_processes", "machine_rank",
            "mixed_precision"}


# ---------------------------------------------------------------- configs
def test_the_promised_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"cpu1.yaml", "cpu2.yaml", "ddp_2gpu.yaml", "fsdp_2gpu.yaml", "deepspeed_zero2.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid_for_the_launcher(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    text = path.read_text(encoding="utf-8")
    cfg = yaml.safe_load(text)
    assert isinstance(cfg, dict) and REQUIRED <= set(cfg), REQUIRED - set(cfg or {})
    assert isinstance(cfg["num_processes"], int) and cfg["num_processes"] >= 1
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(f"accelerate launch --config_file training/accelerate/{path.name}" in line for line in header)
    parsed = load_config_from_file(str(path))  # what `accelerate launch` does: unknown top-level keys raise
    assert isinstance(parsed, ClusterConfig)
    assert parsed.distributed_type.value == cfg["distributed_type"]
    # nested blocks are copied onto launcher arguments without a check: every key must be a real argument
    dests = {a.dest for a in launch_command_parser()._actions}
    for block, prefix in (("fsdp_config", "fsdp_"), ("deepspeed_config", "")):
        for key in cfg.get(block) or {}:
            name = key if key.startswith(prefix) else prefix + key
            assert name in dests, f"{path.name}: {block}.{key} is not an accelerate launch argument"


def test_gpu_configs_say_whether_they_ran_here_and_name_the_qwen2_layer():
    for name in ("ddp_2gpu.yaml", "fsdp_2gpu.yaml", "deepspeed_zero2.yaml"):
        text = (REPO / "training/accelerate" / name).read_text(encoding="utf-8")
        assert "NOT run here" in text, name
    fsdp = yaml.safe_load((REPO / "training/accelerate/fsdp_2gpu.yaml").read_text())
    assert fsdp["distributed_type"] == "FSDP"
    assert fsdp["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "Qwen2DecoderLayer"
    import transformers.models.qwen2.modeling_qwen2 as q

    assert hasattr(q, fsdp["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"])
    ds = yaml.safe_load((REPO / "training/accelerate/deepspeed_zero2.yaml").read_text())
    assert ds["distributed_type"] == "DEEPSPEED" and ds["deepspeed_config"]["zero_stage"] == 2


def test_fsdp_config_builds_accelerates_fsdp_plugin(monkeypatch):
    """The environment `accelerate launch` would hand each FSDP worker yields the intended plugin (checkable on CPU;
    running FSDP itself needs GPUs)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    config = str(REPO / "training/accelerate/fsdp_2gpu.yaml")
    args = launch_command_parser().parse_args(["--config_file", config, "x.py"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and args.num_processes == 2
    for k, v in env.items():
        if k.startswith(("FSDP_", "ACCELERATE_USE_FSDP")):
            monkeypatch.setenv(k, v)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.transformer_cls_names_to_wrap == ["Qwen2DecoderLayer"]
    assert plugin.state_dict_type.name == "FULL_STATE_DICT" and type(plugin.cpu_offload).__name__ == "OffloadPolicy"


def test_broadcast_json_round_trips_on_one_process():
    acc = make_accelerator()
    assert broadcast_json({"a": (1, 2), 3: None}, acc) == {"a": [1, 2], "3": None}


# ---------------------------------------------------------------- the micro pipeline on 2 processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    r = micro_pipeline(root)
    path = root / "r.yaml"
    path.write_text(yaml.safe_dump(r, allow_unicode=True))
    return path


def _metrics(out: Path) -> dict:
    vals = {}
    for phase in ("cpt", "distill"):
        for task, info in json.loads((out / phase / "phase_metrics.json").read_text())["tasks"].items():
            vals.update({f"{phase}/{task}/{k}": m["value"] for k, m in info["metrics"].items()})
    sft = json.loads((out / "sft" / "summary.json").read_text())
    vals.update({f"sft/stage{i}/loss": s["last_train_loss"] for i, s in enumerate(sft["stages"], 1)})
    vals["sft/single_stage/loss"] = sft["single_stage"]["last_train_loss"]
    dist = json.loads((out / "distill" / "summary.json").read_text())
    vals.update({f"distill/{k}/loss": dist[k]["last_train_loss"] for k in ("distilled", "baseline")})
    return vals


def test_micro_pipeline_on_two_processes_matches_one(recipe, tmp_path):
    assert run_pipeline(recipe, tmp_path / "one") == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "training/accelerate/cpu2.yaml"), "--main_process_port", str(_free_port()),
           "-m", "soaes_bench", "pipeline", "--recipe", str(recipe), "--output", str(tmp_path / "two")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("pipeline: cpt gate passed") == 1  # printed by the main process only
    two = tmp_path / "two"
    assert json.loads((two / "timings.json").read_text())["processes"] == 2
    for phase in ("cpt", "sft", "distill"):
        gate = json.loads((two / phase / "gate.json").read_text())
        assert gate["schema"] == "soaes-bench/gate" and gate["passed"], gate
        assert (two / phase / "gate.md").is_file() and (two / phase / "model" / "model.safetensors").is_file()
    assert (two / "distill" / "teacher_topk.safetensors").is_file()
    a, b = _metrics(tmp_path / "one"), _metrics(two)
    assert a.keys() == b.keys() and len(a) >= 9
    # same optimizer steps up to float summation order (then bf16 rounding of each phase's saved model)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-2, abs=1e-3), k
