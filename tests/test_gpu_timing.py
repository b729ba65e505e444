"""The profiler's clock: perf_counter on a CPU (never a torch.cuda call), CUDA events on a GPU. No GPU here, so the
CUDA branch runs against a fake torch.cuda whose events read the host clock; benchmarks/gpu_check.sh runs it for real.
"""

import time

import pytest
import torch

from soaes_bench.errors import UserError
from soaes_bench.speculative import timing
from soaes_bench.speculative.model_pair import resolve_dtype
from soaes_bench.speculative.profile import profile

CUDA_CALLS = ("synchronize", "Event", "current_stream", "get_device_name", "device_count", "is_bf16_supported",
              "current_device", "set_device", "get_device_properties", "mem_get_info", "max_memory_allocated")



class FakeEvent:
    """A CUDA event whose timestamp is the host clock when it is recorded (the GPU is idle in this fake)."""

    log: list = []

    def __init__(self, enable_timing=False):
        assert enable_timing, "timing events need enable_timing=True"
        self.t, self.done = None, False

    def record(self, stream=None):
        assert stream == "stream", "events go on the device's current stream"
        self.t = time.perf_counter()
        FakeEvent.log.append("record")

    def synchronize(self):
        self.done = True
        FakeEvent.log.append("event.synchronize")

    def elapsed_time(self, end):
        assert end.done, "read only after the end event completed"
        return 1000.0 * (end.t - self.t)  # milliseconds, as torch reports them


class FakeCuda:
    Event = FakeEvent

    def __init__(self):
        self.syncs = []

    def synchronize(self, device=None):
        self.syncs.append(device)
        FakeEvent.log.append("synchronize")

    def current_stream(self, device=None):
        return "stream"


def _forbid_cuda(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the CPU path called torch.cuda")

    for name in CUDA_CALLS:
        monkeypatch.setattr(torch.cuda, name, boom)


def test_timer_is_chosen_by_device():
    assert isinstance(timing.timer_for("cpu"), timing.HostTimer)
    assert isinstance(timing.timer_for(torch.device("cpu")), timing.HostTimer)
    cuda = timing.timer_for("cuda:1")
    assert isinstance(cuda, timing.CudaTimer) and cuda.device == torch.device("cuda:1")
    assert (timing.HostTimer.kind, timing.CudaTimer.kind) == ("perf_counter", "cuda_events")


def test_cuda_timer_synchronizes_records_and_reads_events_in_order():
    FakeEvent.log = []
    cuda = FakeCuda()
    timer = timing.CudaTimer("cuda:0", cuda=cuda)

    def work():
        FakeEvent.log.append("work")
        time.sleep(0.02)
        return "out"

    out, seconds = timer(work)
    assert out == "out" and 0.02 <= seconds < 0.5
    assert FakeEvent.log == ["synchronize", "record", "work", "record", "event.synchronize"]
    assert cuda.syncs == [torch.device("cuda:0")]


def test_cpu_path_never_calls_torch_cuda(pair, tok, monkeypatch):
    """Timing, forward costs, the HF baselines and the env block on a CPU: no torch.cuda function is touched."""
    from soaes_bench.records.provenance import env_block

    _forbid_cuda(monkeypatch)
    target, draft = pair
    assert timing.timed(lambda: 3, "cpu")[0] == 3
    timing.measure_costs(target, draft, list(range(5, 20)), [1, 2], steps=2)
    rep = profile(target, draft, tok, prompts={"domain": ["国有资产监督", "企业改革"]}, gammas=[1, 2], contexts=[],
                  max_new_tokens=4, repeats=1, num_prompts=2, warmup=1, cost_steps=2, hf_baseline=True)
    env = rep["env"]
    assert env["timer"] == "perf_counter" and env["device"] == "cpu" and env["attn_implementation"]
    assert "cuda" not in env and "gpu_count" not in env
    assert rep["settings"][0]["hf_assisted_tokens_per_s"] > 0
    assert env_block("cpu")["device"] == "cpu"
    assert resolve_dtype("float32", "cpu") == "float32"


def test_profile_times_every_call_with_the_cuda_clock(pair, tok, monkeypatch):
    """The CUDA branch end to end on CPU models: every timed call goes through CudaTimer (fake events), the numbers
    stay consistent and greedy stays lossless."""
    FakeEvent.log = []
    cuda = FakeCuda()
    made = []

    def fake_timer_for(device):
        made.append(device)
        return timing.CudaTimer(device, cuda=cuda)

    monkeypatch.setattr(timing, "timer_for", fake_timer_for)
    target, draft = pair
    rep = profile(target, draft, tok, prompts={"domain": ["国有资产监督", "企业改革"]}, gammas=[2], contexts=[],
                  max_new_tokens=5, repeats=2, num_prompts=2, warmup=0, cost_steps=2, hf_baseline=True)
    # per prompt and repeat: target, spec at 1 gamma, HF target, HF assisted = 4 calls; costs: 2 x (2+3) forwards
    # alone + (2+3) rounds x (verify + draft)
    calls = 2 * 2 * 4 + 2 * 5 + 5 * 2
    assert len(made) == calls and len(cuda.syncs) == calls
    assert FakeEvent.log.count("record") == 2 * calls and FakeEvent.log.count("event.synchronize") == calls
    s = rep["settings"][0]
    assert s["lossless"] == 1.0 and s["hf_lossless"] == 1.0 and s["speedup"] > 0 and s["c"] > 0


def test_warm_up_runs_every_shape_and_keeps_nothing(pair):
    target, draft = pair
    calls = []
    hooks = [m.register_forward_hook(lambda mod, args, kwargs, out: calls.append(kwargs["input_ids"].shape[1]),
                                     with_kwargs=True) for m in (target, draft)]
    try:
        timing.warm_up([target, draft], list(range(5, 15)), [1, 3], steps=1)
    finally:
        for h in hooks:
            h.remove()
    # per model: prefill (10 tokens), then 1, 2 and 4 new tokens
    assert calls == [10, 1, 2, 4] * 2


def test_gpu_env_block_and_dtype(monkeypatch):
    from soaes_bench.records.provenance import env_block

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    env = env_block("cuda", dtype="bfloat16", attn_implementation="eager", timer="cuda_events")
    assert env["device"] == "cuda" and env["device_name"] == "NVIDIA H200"
    assert env["cuda"] == "13.0" and env["gpu_count"] == 2 and env["timer"] == "cuda_events"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", "cuda") == "float32"
    assert resolve_dtype("float16", "cuda") == "float16"
    with pytest.raises(UserError, match="float16: GPU only"):
        resolve_dtype("float16", "cpu")


def test_profile_md_names_the_gpu_clock():
    from soaes_bench.reporting.profile_tables import _env_extra

    assert _env_extra({"cuda": "13.0", "attn_implementation": "sdpa", "timer": "cuda_events"}) == \
        ", CUDA 13.0, sdpa attention, timed by cuda_events"
    assert _env_extra({}) == ""


# ---------------------------------------------------------------- benchmarks/gpu_check.sh (plumbing only; no GPU here)
def _gpu_check():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_script_is_bash_never_runs_in_ci_and_uses_the_given_python(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    script = repo / "benchmarks" / "gpu_check.sh"
    text = script.read_text(encoding="utf-8")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert 'PYTHON=${PYTHON:-python3}' in text and '"$PYTHON" -m soaes_bench run' in text
    assert '"$PYTHON" -m soaes_bench profile' in text and "--hf-baseline" in text and "--dtype bfloat16" in text
    assert (repo / "soaes_bench" / "__main__.py").is_file()
    ci = "\n".join(p.read_text(encoding="utf-8") for p in [repo / "Makefile", *(repo / ".github").rglob("*.y*ml")]
                   if p.is_file())
    assert "gpu_check" not in ci
    p = subprocess.run(["bash", str(script), str(tmp_path / "out")], env={**os.environ, "CI": "true"},
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "not run in CI" in p.stdout and not (tmp_path / "out").exists()


def test_gpu_check_summary_names_the_gpu_and_diffs_runs(tmp_path):
    import json
    import shutil
    from pathlib import Path

    gc = _gpu_check()
    repo = Path(__file__).resolve().parents[1]
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "hf").mkdir(parents=True)
    (work / "vllm").mkdir()
    (work / "profile").mkdir()
    run = {"limit": None, "tasks": {"t": {"metrics": {"acc": {"value": 0.5}, "bleu4": {"value": 10.0}}},
                                    "u": {"metrics": {"acc": {"value": None}}}}}
    (work / "hf" / "results.json").write_text(json.dumps(run))
    run["tasks"]["t"]["metrics"]["acc"]["value"] = 0.55
    (work / "vllm" / "results.json").write_text(json.dumps(run))
    shutil.copyfile(repo / "reports/profile_steady/profile.json", work / "profile" / "profile.json")
    (work / "env.json").write_text(json.dumps({"python": "3.12", "torch": "2.11.0+cu130", "cuda": "13.0",
                                               "gpus": [{"name": "NVIDIA H200", "memory_gib": 139.8}]}))
    (work / "steps.tsv").write_text("env\t0\t1.0\t\nvllm_eval\t1\t9.5\tValueError: x | y\n")
    table, worst = gc.diff(work / "hf/results.json", work / "vllm/results.json", ("hf", "vllm"))
    assert worst == pytest.approx(0.1) and any("| t | acc | 0.5 | 0.55 | +0.05 | 10.00% |" in r for r in table)
    path = gc.summary(work, out, "cuda")
    text = path.read_text()
    assert "**GPU: NVIDIA H200 (139.8 GiB)**" in text and "| vllm_eval | 1 | 9.5 | ValueError: x / y |" in text
    assert "## hf vs vllm backend" in text and "best γ = " in text
    files = sorted(p.name for p in out.iterdir())
    assert files == ["hf_results.json", "profile.json", "summary.md", "vllm_results.json"]
    assert len(gc.COPIES) + 2 <= 8  # summary.md and gpu_check.log besides the copies
