"""Peak memory (resident set size) of the distillation phase and of an evaluation run, each case in a fresh process.

    .venv/bin/python benchmarks/bench_memory.py                # every case; writes reports/benchmarks/bench_memory.txt
    .venv/bin/python benchmarks/bench_memory.py --cases micro  # one case (micro, reference_distill, run)
    git archive <rev> | tar -x -C /tmp/old                     # then the same cases on that tree, side by side:
    .venv/bin/python benchmarks/bench_memory.py --before /tmp/old --before-label "<rev>"

Cases
(a) micro: training/recipes/micro_pipeline.yaml as `soaes-bench pipeline` runs it (2 x 64 models, the real data),
    its micro init model built first (training/recipes/micro.yaml, not measured), one process per phase (`--only`):
    cpt, sft, then distill (the teacher cache over all 27k blocks of training/data/domain.jsonl, 6 steps for each
    draft). The whole pipeline in one process peaks where its distillation does (805 MiB after the fix, 2026-12-04).
    Then the distillation phase again (its directory deleted) with glibc's mmap threshold pinned at 32 MiB
    (MALLOC_MMAP_THRESHOLD_). glibc raises the threshold by itself, up to 32 MiB, to the size of a big buffer it
    frees, and from then on serves such buffers from its heap; whether and when that happens, and whether the heap
    then fragments, varies from run to run (address layout, hash seed). The code before the teacher-cache fix
    fragmented it in some runs only: 3 of 6 plain runs of this phase passed 6 GB (one 13 GB) and were killed there,
    the other 3 peaked at 674-688 MiB. Pinned, it passed 6 GB within 30 s every time; this row shows what a run in
    that state costs.
(b) reference_distill: the distill block of training/recipes/reference.yaml alone (a recipe with only that phase),
    the shipped target as teacher: the whole teacher cache (every block of its data), then --ref-steps optimiser
    steps for each draft (default 4, instead of 100: every step has the same shapes, so later steps do not raise the
    peak, and 100 steps of two drafts take minutes on 2 cores).
(c) run: `soaes-bench run --limit N` (default 5) on the embedded target, the whole suite.
Measure: the peak resident set size the kernel kept for the case's process (ru_maxrss from os.wait4 on that one
child, the same number as its VmHWM), in MiB. A watchdog samples the child's VmRSS every 0.1 s and kills it above
--cap-mb (default 8000): such a case is reported as "> cap" with the time it took to get there (the code before the
teacher-cache fix grew without bound on the micro recipe).
--before TREE runs every case a second time with the soaes_bench package of another source tree first on sys.path
(same venv, same data and recipes under the repository), and prints both columns and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CASES = ("micro", "reference_distill", "run")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def soaes(tree: Path | None, *args: str) -> list[str]:
    """The `soaes-bench` command line, with `tree`'s soaes_bench package first on sys.path when given."""
    prefix = f"import sys; sys.path.insert(0, {str(tree)!r}); " if tree else "import sys; "
    return [sys.executable, "-c", prefix + "from soaes_bench.cli import main; sys.argv[0] = 'soaes-bench'; "
            "sys.exit(main())", *args]


def measure(cmd: list[str], cap_mb: float, log: Path, env: dict | None = None) -> dict:
    """Run `cmd` in its own process group (cwd: the repository, `env` added to this one's environment);
    -> {peak_mb, seconds, rc, killed}."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    t0 = time.perf_counter()
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    killed = threading.Event()

    def watch():
        while not killed.is_set():
            try:
                rss = next(int(line.split()[1]) for line in open(f"/proc/{p.pid}/status") if line.startswith("VmRSS"))
            except (OSError, StopIteration, ValueError):
                return  # exited (or a zombie: no VmRSS)
            if rss / 1024 > cap_mb:
                killed.set()
                os.killpg(p.pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    was_killed = killed.is_set()
    killed.set()
    watcher.join()
    return {"peak_mb": usage.ru_maxrss / 1024, "seconds": time.perf_counter() - t0, "rc": p.returncode,
            "killed": was_killed}


def _dump(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


PINNED = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}  # glibc: the mmap threshold fixed where it can rise to


def case_commands(case: str, tree: Path | None, work: Path) -> tuple[list, list]:
    """(setup commands, measured commands) of a case: lists of (label, argv, extra environment, directory to
    delete first)."""
    recipes = ROOT / "training" / "recipes"
    if case == "micro":
        base = yaml.safe_load((recipes / "micro.yaml").read_text(encoding="utf-8"))
        base.update(output=str(work / "init"), work_dir=str(work / "init_work"))
        pipe = yaml.safe_load((recipes / "micro_pipeline.yaml").read_text(encoding="utf-8"))
        pipe["init"] = str(work / "init")
        pipe.pop("output", None)  # given on the command line (and unknown to trees before the key existed)
        r, out = _dump(work / "micro_pipeline.yaml", pipe), str(work / "micro_run")
        setup = [("micro init model", soaes(tree, "train", "base", "--recipe", str(_dump(work / "micro.yaml", base))),
                  None, None)]
        phases = [(f"micro pipeline: {phase} phase",
                   soaes(tree, "pipeline", "--recipe", str(r), "--output", out, "--only", phase), None, None)
                  for phase in ("cpt", "sft", "distill")]
        again = ("micro pipeline: distill phase, glibc mmap threshold pinned at 32 MiB", phases[-1][1], PINNED,
                 work / "micro_run" / "distill")
        return setup, phases + [again]
    if case == "reference_distill":
        ref = yaml.safe_load((recipes / "reference.yaml").read_text(encoding="utf-8"))
        distill = ref["distill"]
        distill["train"].update(max_steps=ARGS.ref_steps, checkpoint_every=10**6)
        recipe = {"name": "bench_reference_distill", "init": "soaes_bench/assets/models/target", "evaluation": None,
                  "distill": distill}
        r = _dump(work / "reference_distill.yaml", recipe)
        return [], [(f"reference distill phase (shipped target as teacher, {ARGS.ref_steps} steps per draft)",
                     soaes(tree, "pipeline", "--recipe", str(r), "--output", str(work / "ref_run")), None, None)]
    if case == "run":
        return [], [(f"soaes-bench run --limit {ARGS.limit} (embedded target, whole suite)",
                     soaes(tree, "run", "--limit", str(ARGS.limit), "--output", str(work / "run_out")), None, None)]
    raise ValueError(case)


def run_case(case: str, tree: Path | None, cap_mb: float) -> list[tuple[str, dict]]:
    work = Path(tempfile.mkdtemp(prefix=f"bench_memory_{case}_"))
    try:
        setup, measured = case_commands(case, tree, work)
        for label, cmd, env, _ in setup:
            res = measure(cmd, 1e9, work / "setup.log", env)
            if res["rc"] != 0:
                raise SystemExit(f"{case}: setup {label!r} failed (rc {res['rc']}):\n"
                                 f"{(work / 'setup.log').read_text()[-3000:]}")
        rows = []
        for i, (label, cmd, env, fresh) in enumerate(measured):
            if fresh is not None:
                shutil.rmtree(fresh, ignore_errors=True)
            res = measure(cmd, cap_mb, work / f"case{i}.log", env)
            if res["rc"] != 0 and not res["killed"]:
                raise SystemExit(f"{case}: {label!r} failed (rc {res['rc']}):\n"
                                 f"{(work / f'case{i}.log').read_text()[-3000:]}")
            print(f"  {label}: {fmt(res)} MiB, {res['seconds']:.0f} s", flush=True)
            rows.append((label, res))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fmt(res: dict | None) -> str:
    if res is None:
        return "-"
    return f"> {ARGS.cap_mb:,.0f}" if res["killed"] else f"{res['peak_mb']:,.0f}"


def main(argv=None) -> int:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--ref-steps", type=int, default=4, help="optimiser steps per draft in reference_distill")
    ap.add_argument("--limit", type=int, default=5, help="items per task in the run case")
    ap.add_argument("--cap-mb", type=float, default=8000, help="kill a case whose RSS passes this (MiB)")
    ap.add_argument("--before", type=Path, help="another source tree: run every case with its soaes_bench too")
    ap.add_argument("--before-label", help="what --before is, for the report (default: its path)")
    ap.add_argument("--output", type=Path, default=ROOT / "reports" / "benchmarks" / "bench_memory.txt")
    ARGS = ap.parse_args(argv)
    cases = [c.strip() for c in ARGS.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if ARGS.before is not None and not (ARGS.before / "soaes_bench" / "__init__.py").is_file():
        ap.error(f"--before {ARGS.before}: no soaes_bench package there")
    import torch

    results: list[tuple[str, dict, dict | None]] = []
    for case in cases:
        print(f"{case}: this tree", flush=True)
        now = run_case(case, None, ARGS.cap_mb)
        before = None
        if ARGS.before is not None:
            print(f"{case}: before ({ARGS.before})", flush=True)
            before = dict(run_case(case, ARGS.before, ARGS.cap_mb))
        results += [(label, res, before and before.get(label)) for label, res in now]

    lines = [f"peak resident set size per case, one fresh process each (ru_maxrss of the child): {cpu_name()}, "
             f"{os.cpu_count()} cores, {platform.libc_ver()[0]} {platform.libc_ver()[1]}, torch {torch.__version__}, "
             f"python {platform.python_version()}"]
    if ARGS.before is not None:
        lines.append(f"before: the soaes_bench package of {ARGS.before_label or ARGS.before} (same venv, data, "
                     f"recipes); > N: killed when its RSS passed N MiB (--cap-mb)")
    width = max(len(label) for label, _, _ in results)
    head = f"  {'case':<{width}}  {'peak MiB':>9}  {'seconds':>7}"
    if ARGS.before is not None:
        head += f"  {'before MiB':>10}  {'seconds':>7}  {'before/now':>10}"
    lines.append(head)
    for label, res, old in results:
        line = f"  {label:<{width}}  {fmt(res):>9}  {res['seconds']:>7.0f}"
        if ARGS.before is not None:
            ratio = "-" if old is None else (">" if old["killed"] else "") + f"{old['peak_mb'] / res['peak_mb']:.1f}x"
            line += f"  {fmt(old):>10}  {'-' if old is None else format(old['seconds'], '7.0f'):>7}  {ratio:>10}"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    ARGS.output.parent.mkdir(parents=True, exist_ok=True)
    ARGS.output.write_text(text, encoding="utf-8")
    print(f"wrote {ARGS.output}")
    return 0


ARGS: argparse.Namespace

if __name__ == "__main__":
    sys.exit(main())
