"""Helper of benchmarks/gpu_check.sh: the machine block, per-task metric differences between two runs, and the
summary (summary.md plus the few files copied into the output folder). Standard library only, so it works in any
interpreter that runs the CLI; it reads results.json and profile.json as plain JSON.

    python benchmarks/gpu_check.py env --out WORK/env.json
    python benchmarks/gpu_check.py diff A/results.json B/results.json --names hf,vllm
    python benchmarks/gpu_check.py summary --work WORK --out reports/gpu --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 16 * 1024 * 1024  # every file copied into the output folder stays under this
# (work-dir file, output name): what gets copied; with summary.md and gpu_check.log, 8 files at most
COPIES = (("hf/results.json", "hf_results.json"), ("vllm/results.json", "vllm_results.json"),
          ("dp2/results.json", "dp2_results.json"), ("profile/profile.json", "profile.json"),
          ("profile/profile.md", "profile.md"))
PACKAGES = ("torch", "transformers", "accelerate", "lm_eval", "vllm", "datasets", "numpy", "safetensors")


def machine() -> dict:
    """Versions and GPUs (torch imported here: the summary works without it)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda"] = torch.version.cuda
        out["cuda_available"] = torch.cuda.is_available()
        out["gpus"] = [{"name": torch.cuda.get_device_name(i),
                        "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2 ** 30, 1),
                        "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
                       for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        out["bf16"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception as e:  # noqa: BLE001 - the summary reports whatever went wrong
        out["torch_error"] = f"{type(e).__name__}: {e}"
    return out


def _metrics(path: Path) -> dict[tuple[str, str], float]:
    tasks = json.loads(path.read_text(encoding="utf-8")).get("tasks", {})
    return {(t, m): v["value"] for t, info in tasks.items() for m, v in (info.get("metrics") or {}).items()
            if isinstance(v, dict) and isinstance(v.get("value"), (int, float))}


def diff(a: Path, b: Path, names=("A", "B")) -> tuple[list[str], float | None]:
    """A Markdown table of every metric both runs have: value in each, B − A, and |B − A| / |A|; plus the largest
    relative difference (None when they share no metric)."""
    ma, mb = _metrics(a), _metrics(b)
    keys = sorted(set(ma) & set(mb))
    lines = [f"| task | metric | {names[0]} | {names[1]} | {names[1]} − {names[0]} | relative |", "|---|---|---:|---:|---:|---:|"]
    worst = None
    for t, m in keys:
        x, y = ma[(t, m)], mb[(t, m)]
        rel = abs(y - x) / abs(x) if x else (0.0 if y == x else float("inf"))
        worst = rel if worst is None else max(worst, rel)
        lines.append(f"| {t} | {m} | {x:.6g} | {y:.6g} | {y - x:+.3g} | {rel:.2%} |")
    only = sorted({t for t, _ in set(ma) ^ set(mb)})
    if only:
        lines.append(f"\nTasks in one run only: {', '.join(only)}")
    return lines, worst


def _steps(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            name, rc, secs, note = (line.split("\t") + ["", "", ""])[:4]
            rows.append({"name": name, "rc": rc, "seconds": secs, "note": note})
    return rows


def _profile_lines(path: Path) -> list[str]:
    rep = json.loads(path.read_text(encoding="utf-8"))
    s, env, cfg = rep["summary"], rep["env"], rep["config"]

    def f(x, spec=".2f"):
        return "n/a" if x is None else format(x, spec)

    def ci(key):
        v, c = s.get(key), s.get(f"{key}_ci")
        return f"{f(v)}" + (f" [{f(c[0])}, {f(c[1])}]" if c else "")

    top = next((r for r in rep["settings"] if r["category"] == s["category"] and r["gamma"] == s["best_gamma"]), {})
    return [f"- {env.get('device_name')} ({env.get('device')}), {env.get('dtype')}, {env.get('attn_implementation')} "
            f"attention, timed by {env.get('timer')}; CUDA {env.get('cuda')}, torch {env.get('torch')}, "
            f"transformers {env.get('transformers')}",
            f"- γ {cfg['gammas']}, {cfg['max_new_tokens']} new tokens{' (EOS ignored)' if cfg.get('ignore_eos') else ''},"
            f" {cfg['repeats']} repeats, prompts {cfg['prompts']}, long contexts {cfg['contexts']}",
            f"- best γ = {s['best_gamma']} ({s['category']}): speedup {ci('speedup')}×, predicted "
            f"{f(s.get('predicted_speedup'))}×, α per token {f(s.get('alpha_token'), '.3f')}, τ {f(s.get('tau'))}, "
            f"c {f(s.get('c'), '.3f')}, lossless {f(s.get('lossless'), '.3f')}",
            f"- tokens/s at that γ: target {f(top.get('target_tokens_per_s'), '.1f')}, speculative "
            f"{f(top.get('spec_tokens_per_s'), '.1f')}, HF assisted {f(top.get('hf_assisted_tokens_per_s'), '.1f')}, "
            f"HF target {f(top.get('hf_target_tokens_per_s'), '.1f')}; ours / HF assisted {ci('ours_over_hf')}; "
            f"HF assisted lossless {f(top.get('hf_lossless'), '.3f')}"]


def summary(work: Path, out: Path, device: str) -> Path:
    env = json.loads((work / "env.json").read_text()) if (work / "env.json").is_file() else {}
    gpus = env.get("gpus") or []
    gpu = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in gpus) or f"no GPU seen (device {device})"
    lines = ["# GPU check", "", f"**GPU: {gpu}**", "",
             "- " + ", ".join(f"{k} {env.get(k)}" for k in ("python", "torch", "cuda", "transformers", "accelerate",
                                                          "lm_eval", "vllm") if k in env),
             f"- written by benchmarks/gpu_check.sh (device {device}); step logs: gpu_check.log", "",
             "## Steps", "", "| step | exit | seconds | note |", "|---|---|---:|---|"]
    lines += [f"| {r['name']} | {r['rc']} | {r['seconds']} | {r['note'].replace('|', '/')} |" for r in _steps(work / "steps.tsv")]
    pairs = ((f"hf on {device} vs the committed CPU baseline (reports/baseline, float32 on a CPU)",
              REPO / "reports/baseline/results.json", work / "hf/results.json", ("cpu baseline", f"hf {device}")),
             ("hf vs vllm backend", work / "hf/results.json", work / "vllm/results.json", ("hf", "vllm")),
             ("hf on 1 GPU vs data parallel on 2", work / "hf/results.json", work / "dp2/results.json",
              ("1 process", "2 processes")))
    for title, a, b, names in pairs:
        if a.is_file() and b.is_file() and json.loads(a.read_text())["limit"] == json.loads(b.read_text())["limit"]:
            table, worst = diff(a, b, names)
            lines += ["", f"## {title}", "", f"Largest relative difference: {'n/a' if worst is None else f'{worst:.2%}'}",
                      "", *table]
    if (work / "profile/profile.json").is_file():
        lines += ["", "## Speculative decoding, steady state (embedded target + draft)", "",
                  *_profile_lines(work / "profile/profile.json")]
    out.mkdir(parents=True, exist_ok=True)
    for src, name in COPIES:
        p = work / src
        if p.is_file() and p.stat().st_size < MAX_BYTES:
            shutil.copyfile(p, out / name)
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env")
    e.add_argument("--out", required=True)
    d = sub.add_parser("diff")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--names", default="A,B")
    s = sub.add_parser("summary")
    s.add_argument("--work", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--device", default="cuda")
    sub.add_parser("gpus", help="print the number of visible CUDA GPUs")
    args = p.parse_args(argv)
    if args.cmd == "env":
        info = machine()
        Path(args.out).write_text(json.dumps(info, indent=1), encoding="utf-8")
        print(json.dumps(info, indent=1))
    elif args.cmd == "diff":
        table, worst = diff(Path(args.a), Path(args.b), tuple(args.names.split(",", 1)))
        print("\n".join(table))
        print(f"largest relative difference: {worst}")
    elif args.cmd == "gpus":
        import torch

        print(torch.cuda.device_count() if torch.cuda.is_available() else 0)
    else:
        print(f"wrote {summary(Path(args.work), Path(args.out), args.device)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
