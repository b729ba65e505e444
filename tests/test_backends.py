"""`soaes-bench run --backend hf|vllm`: the vLLM flags and their mapping onto lm-eval's VLLM model (vLLM itself cannot
run here: no GPU, and it is installed in a separate environment), the one-line error without it, the `backend`
block of results.json, and `compare` refusing runs of different backends unless --force."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from fixtures.reporting_runs import make_results

from soaes_bench import cli
from soaes_bench.errors import UserError
from soaes_bench.evaluation import backends, suites
from soaes_bench.evaluation import run as run_mod
from soaes_bench.io import write_json
from soaes_bench.records import results as results_record
from soaes_bench.reporting.compare import compare

NO_VLLM = not backends.vllm_installed()


def _vllm_init_params() -> tuple[set[str], bool]:
    """Named parameters of lm-eval's VLLM.__init__ and whether it takes **kwargs, read from the source (importing the
    module imports vllm)."""
    import lm_eval

    src = Path(lm_eval.__file__).parent / "models" / "vllm_causallms.py"
    tree = ast.parse(src.read_text(encoding="utf-8"))
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "VLLM")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    names = {a.arg for a in init.args.args + init.args.kwonlyargs} - {"self"}
    return names, init.args.kwarg is not None


def test_vllm_model_args_map_onto_lm_evals_vllm_model():
    args = backends.vllm_model_args("/models/x", seed=7, tensor_parallel_size=2, data_parallel_size=3,
                                    gpu_memory_utilization=0.8, max_model_len=4096)
    assert args == {"pretrained": "/models/x", "dtype": "auto", "tensor_parallel_size": 2, "data_parallel_size": 3,
                    "gpu_memory_utilization": 0.8, "batch_size": "auto", "seed": 7, "trust_remote_code": False,
                    "max_model_len": 4096}
    assert "max_model_len" not in backends.vllm_model_args("/m", seed=1)  # None: the model's own length
    named, has_kwargs = _vllm_init_params()
    # every key is a VLLM parameter, except gpu_memory_utilization, which VLLM passes on to vllm.LLM(**kwargs)
    assert set(args) - named == {"gpu_memory_utilization"} and has_kwargs
    assert "device" not in args  # VLLM ignores it (CUDA_VISIBLE_DEVICES decides)


def test_vllm_settings_defaults_and_bad_values():
    assert backends.vllm_settings() == {"tensor_parallel_size": 1, "data_parallel_size": 1,
                                        "gpu_memory_utilization": 0.9, "max_model_len": None}
    for kw, needle in ((dict(tensor_parallel_size=0), "--tensor-parallel-size: must be a positive integer"),
                       (dict(max_model_len=-5), "--max-model-len"),
                       (dict(gpu_memory_utilization=1.5), "--gpu-memory-utilization: must be a fraction in (0, 1]"),
                       (dict(gpu_memory_utilization=float("nan")), "--gpu-memory-utilization")):
        with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            backends.vllm_settings(**kw)


def _explode(*a, **k):
    raise AssertionError("work started before the backend was checked")


@pytest.mark.skipif(not NO_VLLM, reason="vLLM is installed here")
def test_backend_vllm_without_vllm_is_one_line_exit_2_before_any_work(tmp_path, capsys, monkeypatch):
    for name in ("load_for_eval", "evaluate", "evaluate_vllm", "task_manager"):
        monkeypatch.setattr(run_mod, name, _explode)
    out = tmp_path / "out"
    code = cli.main(["run", "--backend", "vllm", "--model", str(tmp_path / "no-such-model"), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--backend vllm: vLLM is not installed" in err and "docs/backends.md" in err
    assert not out.exists()


@pytest.mark.parametrize("flag", [["--tensor-parallel-size", "2"], ["--data-parallel-size", "2"],
                                  ["--gpu-memory-utilization", "0.5"], ["--max-model-len", "512"]])
def test_vllm_flags_are_refused_with_hf(flag, tmp_path, capsys):
    assert cli.main(["run", *flag, "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{flag[0]}: applies to --backend vllm only" in err and err.count("\n") == 1


def test_vllm_refuses_constant_model_and_accelerate_launch(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "require_vllm", lambda: None)
    with pytest.raises(UserError, match="constant: is no model to load"):
        run_mod.run(model_dir="constant:", backend="vllm", output=tmp_path / "a")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="without accelerate launch"):
        run_mod.run(model_dir=str(tmp_path), backend="vllm", output=tmp_path / "b")
    with pytest.raises(UserError, match="without accelerate launch"):
        run_mod.run(model_dir="constant:", output=tmp_path / "c")


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory):
    from soaes_bench.models import load_tokenizer, new_model, save_model

    tok = load_tokenizer()
    return save_model(new_model("micro", tok, seed=1, max_position=512), tok, tmp_path_factory.mktemp("m") / "micro")


def test_vllm_path_records_its_backend(micro_dir, fixture_tasks, tmp_path, monkeypatch):
    """The vLLM code path end to end, with lm-eval's VLLM replaced by a content-free lm-eval model: what reaches
    vllm_lm, and the backend and model blocks written."""
    from soaes_bench.evaluation.constant import ConstantLM
    from soaes_bench.models import n_params

    from soaes_bench.models import load_tokenizer

    tok = load_tokenizer(micro_dir)

    class FakeVLLM(ConstantLM):  # chat-capable, as lm-eval's VLLM is
        tokenizer_name = "fake"

        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            return tok.apply_chat_template(chat_history, tokenize=False, add_generation_prompt=add_generation_prompt)

    seen = {}

    def fake_vllm_lm(model_dir, *, seed, **settings):
        seen.update(model_dir=model_dir, seed=seed, **settings)
        return FakeVLLM("")

    monkeypatch.setattr(suites, "tasks_dir", lambda: fixture_tasks)
    monkeypatch.setattr(backends, "require_vllm", lambda: None)
    monkeypatch.setattr(backends, "vllm_lm", fake_vllm_lm)
    monkeypatch.setattr(backends, "vllm_block", lambda settings, dtype="auto": {
        "name": "vllm", "version": "test", "dtype": dtype, "batch_size": "auto", **settings})
    res = run_mod.run(model_dir=micro_dir, backend="vllm", tasks="soaes_general_mc", limit=2, output=tmp_path / "v",
                      tensor_parallel_size=2, gpu_memory_utilization=0.5, seed=7)
    assert seen == {"model_dir": micro_dir, "seed": 7, "tensor_parallel_size": 2, "data_parallel_size": 1,
                    "gpu_memory_utilization": 0.5, "max_model_len": None}
    written = json.loads((tmp_path / "v" / "results.json").read_text(encoding="utf-8"))
    assert written == {k: v for k, v in res.items()}
    assert written["backend"] == {"name": "vllm", "version": "test", "dtype": "auto", "batch_size": "auto",
                                  "tensor_parallel_size": 2, "data_parallel_size": 1, "gpu_memory_utilization": 0.5,
                                  "max_model_len": None}
    from soaes_bench.models import load_model

    m = written["model"]
    assert (m["layers"], m["hidden"]) == (2, 64) and m["weights_sha256"] and m["tokenizer_sha256"]
    assert m["n_params"] == n_params(load_model(micro_dir))  # from the safetensors headers, tied weights once
    assert written["env"]["chat_template"] is True


def test_hf_run_records_its_backend(micro_dir, fixture_tasks, tmp_path, monkeypatch):
    monkeypatch.setattr(suites, "tasks_dir", lambda: fixture_tasks)
    res = run_mod.run(model_dir=micro_dir, tasks="soaes_general_mc", limit=2, output=tmp_path / "h", batch_size=4)
    assert res["backend"] == {"name": "hf", "dtype": "float32", "batch_size": 4, "gen_batch_size": 32,
                              "data_parallel_size": 1}
    assert list(res)[list(res).index("env") + 1] == "backend"  # written after env, before tasks


# --- records and compare ------------------------------------------------------------------------------------
def _with_backend(results_json: Path, backend: dict | None) -> Path:
    obj = json.loads(results_json.read_text(encoding="utf-8"))
    obj.pop("backend", None)
    if backend is not None:
        obj = {**{k: v for k, v in obj.items() if k not in ("tasks", "groups")}, "backend": backend,
               "tasks": obj["tasks"], "groups": obj["groups"]}
    write_json(results_json, obj)
    return results_json


def _pair(tmp_path, a_backend, b_backend):
    acc = [1.0, 0.0, 1.0, 1.0] * 10
    a = _with_backend(make_results(tmp_path / "a", "m", {"soaes_general_mc": {"acc": acc}}), a_backend)
    b = _with_backend(make_results(tmp_path / "b", "m", {"soaes_general_mc": {"acc": acc}}), b_backend)
    return a, b


def test_results_without_backend_read_as_hf_and_a_nameless_block_is_refused(tmp_path):
    a, b = _pair(tmp_path, None, {"name": "vllm", "tensor_parallel_size": 2})
    assert results_record.backend_name(results_record.read(a)) == "hf"
    assert results_record.backend_name(results_record.read(b)) == "vllm"
    _with_backend(b, {"tensor_parallel_size": 2})
    with pytest.raises(UserError, match="backend.name: required field is missing"):
        results_record.read(b)


def test_compare_refuses_different_backends_unless_forced(tmp_path, capsys):
    a, b = _pair(tmp_path, None, {"name": "vllm"})  # no block = hf
    with pytest.raises(UserError, match=r"backend vllm differs from the reference's \(hf"):
        compare([a, b], resamples=20)
    assert cli.main(["compare", str(a), str(b), "--resamples", "20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert len(compare([a, b], resamples=20, force=True)) > 0


@pytest.mark.parametrize("a_backend,b_backend", [(None, {"name": "hf", "data_parallel_size": 2}),
                                                 ({"name": "vllm", "tensor_parallel_size": 1},
                                                  {"name": "vllm", "tensor_parallel_size": 4}),
                                                 ({"name": "constant"}, {"name": "vllm"})])
def test_compare_pairs_the_same_backend_and_content_free_runs(tmp_path, a_backend, b_backend):
    a, b = _pair(tmp_path, a_backend, b_backend)
    assert len(compare([a, b], resamples=20)) > 0
