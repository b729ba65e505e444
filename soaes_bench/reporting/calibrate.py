"""`soaes-bench calibrate`: the tolerances of `soaes-bench check` from measured run-to-run noise.

    soaes-bench calibrate --model soaes_bench/assets/models/target --suite all --output reports/policy.yaml \\
        --with reports/baseline/results.json

One model is evaluated several times under settings that should not change a score, and each task and metric's
spread over those runs (max - min) becomes its tolerance by one rule (`derive`). The policy file keeps the format
`check` reads (reporting/check.py `Policy`), one `tasks.<task>.metrics.<metric>` entry per calibrated pair, with a
header saying how and when it was made (command, model and weights hash, settings, CPU, date).

Settings varied (`DEFAULT_SETTINGS`; `--setting` replaces them, `--repeats` runs each more than once):
- batch sizes: `batch=8,gen=32` is what `make check` runs, `batch=1,gen=1` pads nothing. The batch shape changes
  the order of float32 reductions (scores move by rounding) and, through padding, can flip a greedy argmax at a tie.
- threads: 1 and 2 torch intra-op threads (this machine has 2 cores): another split of the same reductions.
- finished runs of the same model (`--with`, weights sha256 checked), e.g. the committed baseline, made on another
  day and possibly another machine: the noise `check` sees in CI is between such runs.
Not varied: the seed, because every generation task decodes greedily (`do_sample: false`) and the suites are
zero-shot, so lm-eval's seeds draw nothing that reaches a score; the backend, because only hf (lm-eval's HFLM) runs
on a CPU (vllm needs a GPU; a `backend=vllm` setting is accepted where it is installed).

The rule (`derive`), for a metric whose values over the R runs spread by s = max - min:

    tolerance = max(K * s, floor)       K = 3
    floor     = U / n                   metric in [0, U] (accuracies and shares U = 1, ROUGE/BLEU U = 100), n items
              = 0.1% of the baseline    unbounded metric (bits per byte, perplexities, length ratio): `relative`

K = 3 because the range of a few runs underestimates the noise: for normal noise the expected range of 3 draws is
1.7 sigma, so 3 ranges are about 5 sigma. The floor is for metrics that never moved (s = 0 says only that these
runs did not show the noise): for a mean of n items in [0, U] it is one item's full swing, the smallest change a
real behaviour change can make on that test set (for corpus BLEU and shares it is that size, not an exact bound);
for a corpus ratio such as bits per byte there is no item unit: 0.1% (0.002 bits at 2 bits per byte) is far above
the float rounding these settings show (about 1e-8 bits) and far below what a training phase moves (CPT moved
domain bits per byte by 0.2).
"""

from __future__ import annotations

import contextlib
import io
import math
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from soaes_bench import records, results, validate
from soaes_bench.defaults import BATCH_SIZE, GEN_BATCH_SIZE, SEED
from soaes_bench.errors import UserError
from soaes_bench.io import atomic_write_text
from soaes_bench.reporting.check import Policy, load_policy
from soaes_bench.reporting.tables import render
from soaes_bench.reporting.figure_data import metric_bounds
from soaes_bench.records.provenance import cpu_name, weights_sha256

K = 3.0  # tolerance = K x observed spread (module docstring says why 3)
RELATIVE_FLOOR = 0.001  # unbounded metrics: 0.1% of the baseline
DEFAULT_SETTINGS = (f"batch={BATCH_SIZE},gen={GEN_BATCH_SIZE},threads=1", "batch=1,gen=1,threads=1",
                    f"batch={BATCH_SIZE},gen={GEN_BATCH_SIZE},threads=2")
SETTING_KEYS = {"batch": int, "gen": int, "threads": int, "backend": str}


# the rule ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Derived:
    """One metric's tolerance: `absolute` (and `relative` for unbounded metrics) as check's Tolerance takes them."""

    spread: float
    floor: float | None  # absolute floor U / n (None for unbounded metrics, whose floor is `relative`)
    absolute: float
    relative: float | None
    rule: str  # which side of the max won, in words


def ceil_sig(x: float, digits: int = 3) -> float:
    """x rounded up to `digits` significant digits (a tolerance is never rounded below what the rule gives)."""
    if x <= 0 or not math.isfinite(x):
        return x
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.ceil(x * scale * (1 - 1e-9)) / scale  # a rounding error in x does not add a digit


def derive(metric: str, values: Sequence[float], n: int | None, k: float = K) -> Derived:
    """The tolerance of `metric` from its `values` over runs that should agree, on a test set of `n` items.

    tolerance = max(k * (max - min), floor); floor = U / n for a metric in [0, U], else a `relative` tolerance of
    RELATIVE_FLOOR (check allows the larger of absolute and relative * |baseline|).
    """
    vals = [float(v) for v in values if results.is_number(v)]
    if not vals:
        raise ValueError(f"{metric}: no values to calibrate on")
    spread = max(vals) - min(vals)
    noise = ceil_sig(k * spread)
    lo, hi = metric_bounds(metric)
    if math.isfinite(lo) and math.isfinite(hi) and n:
        floor = ceil_sig((hi - lo) / n)
        if noise > floor:
            return Derived(spread, floor, noise, None, f"{k:g} x spread")
        return Derived(spread, floor, floor, None, f"floor {hi - lo:g}/{n}")
    rule = f"{k:g} x spread or {RELATIVE_FLOOR:.1%} of baseline"
    return Derived(spread, None, noise, RELATIVE_FLOOR, rule)


# settings ---------------------------------------------------------------------------------------------------------
def parse_setting(text: str) -> dict:
    """"batch=8,gen=32,threads=1" -> {"batch": 8, "gen": 32, "threads": 1, "backend": "hf"} (missing keys: defaults)."""
    out: dict = {"batch": BATCH_SIZE, "gen": GEN_BATCH_SIZE, "threads": None, "backend": "hf"}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in SETTING_KEYS:
            raise UserError(f"--setting {text!r}: expected key=value pairs with keys {', '.join(SETTING_KEYS)}")
        try:
            out[key] = SETTING_KEYS[key](value.strip())
        except ValueError:
            raise UserError(f"--setting {text!r}: {key} must be an integer, got {value.strip()!r}") from None
        if SETTING_KEYS[key] is int and out[key] < 1:
            raise UserError(f"--setting {text!r}: {key} must be >= 1, got {out[key]}")
    return out


def setting_name(s: dict) -> str:
    parts = [f"batch={s['batch']}", f"gen={s['gen']}", f"threads={s['threads'] or 'default'}"]
    return ",".join(parts + ([f"backend={s['backend']}"] if s["backend"] != "hf" else []))


@contextlib.contextmanager
def _threads(n: int | None):
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _evaluate(model, setting: dict, out: Path, suite, tasks, limit, include_path, seed, chat_template) -> Path:
    """One run of the suite under `setting` into `out`; its tables go to a buffer, not the terminal."""
    from soaes_bench.evaluation import run as run_mod

    kw = {} if setting["backend"] == "hf" else {"backend": setting["backend"]}
    with _threads(setting["threads"]), contextlib.redirect_stdout(io.StringIO()):
        run_mod.run(model, suite=suite, tasks=tasks, include_path=include_path, limit=limit,
                    batch_size=setting["batch"], gen_batch_size=setting["gen"], output=str(out), seed=seed,
                    chat_template=chat_template, **kw)
    return out / "results.json"


# spreads ----------------------------------------------------------------------------------------------------------
def _items(path: Path, task: str, t: dict) -> int | None:
    """Independent items of a task: its samples' rows (circular rotations collapsed), else its n."""
    try:
        s = results.load_samples(path, task)
    except UserError:
        s = None
    if s is not None and len(s):
        return len(s)
    return t.get("n") if isinstance(t.get("n"), int) else None


def spreads(paths: Sequence[Path], k: float = K) -> pd.DataFrame:
    """One row per task and metric of the first run: its values over `paths`, spread, n and derived tolerance."""
    objs = [records.results.read(p) for p in paths]
    rows = []
    for task, t in objs[0]["tasks"].items():
        n = _items(paths[0], task, t)
        for metric, mv in t["metrics"].items():
            vals = [((o["tasks"].get(task) or {}).get("metrics") or {}).get(metric, {}).get("value") for o in objs]
            vals = [float(v) for v in vals if results.is_number(v)]
            if not vals or not results.is_number(mv.get("value")):
                continue
            d = derive(metric, vals, n, k)
            rows.append({"task": task, "metric": metric, "runs": len(vals), "min": min(vals), "max": max(vals),
                         "spread": d.spread, "n": n, "floor": d.floor, "absolute": d.absolute,
                         "relative": d.relative, "rule": d.rule})
    return pd.DataFrame(rows)


def _check_with(obj: dict, where, weights: str | None, limit) -> None:
    """A --with run must be of the calibrated model (weights sha256) on the same items (limit), before any work."""
    other = (obj.get("model") or {}).get("weights_sha256")
    if weights is not None and other != weights:
        raise UserError(f"--with {where}: another model (weights sha256 {str(other)[:12]}, calibrating "
                        f"{weights[:12]}); calibrate on runs of one model")
    if obj.get("limit") != limit:
        raise UserError(f"--with {where}: limit {obj.get('limit')} differs from {limit}")


def _check_tasks(first: dict, other: dict, where) -> None:
    for task, t in first["tasks"].items():
        o = other["tasks"].get(task)
        if o is not None and (o.get("config_sha256"), str(o.get("version"))) != (t.get("config_sha256"),
                                                                                 str(t.get("version"))):
            raise UserError(f"--with {where}: task {task} has another config or version; rerun it on these tasks")


# the policy file --------------------------------------------------------------------------------------------------
def _num(x: float) -> str:
    """A float YAML reads back as a float (PyYAML takes "3e-07" for a string: it needs "3.0e-07")."""
    s = repr(float(x))
    if "e" in s and "." not in s.split("e")[0]:
        s = s.replace("e", ".0e", 1)
    return s


def _tol(row) -> str:
    parts = [f"absolute: {_num(row['absolute'])}"]
    if results.is_number(row.get("relative")):
        parts.append(f"relative: {_num(row['relative'])}")
    return "{" + ", ".join(parts) + "}"


def policy_text(table: pd.DataFrame, header: list[str], k: float = K) -> str:
    """The policy YAML: header comment, fallback, per-metric maxima, per-task tolerances with their spreads."""
    pol = Policy()
    width = max((len(m) for m in table.metric), default=0)
    lines = [f"# {h}" if h else "#" for h in header] + [
        "",
        "# Fallback for a task or metric not calibrated here: 1% of the baseline value.",
        "tolerance:",
        f"  relative: {_num(pol.tolerance.relative)}",
        "",
        "# Per metric, for tasks not listed below (a new task): the largest calibrated tolerance of that metric.",
        "# Recalibrate after adding a task.",
        "metrics:",
    ]
    for metric, sub in table.groupby("metric", sort=False):
        top = sub.sort_values("absolute", ascending=False).iloc[0]
        lines.append(f"  {metric}: {_tol(top)}")
    lines += ["", f"# Per task: tolerance = max({k:g} x spread, floor); spread = max - min over the runs, n items.",
              "tasks:"]
    for task, sub in table.groupby("task", sort=False):
        lines += [f"  {task}:", "    metrics:"]
        for r in sub.to_dict("records"):
            floor = f", floor {_num(r['floor'])}" if results.is_number(r.get("floor")) else ""
            lines.append(f"      {r['metric']}: {_tol(r)}".ljust(width + 48)
                         + f"  # spread {r['spread']:.3g} over {r['runs']} runs, n {r['n']}{floor}: {r['rule']}")
    lines += [
        "",
        "# Metric names, task names or task:metric pairs to leave unjudged (still shown by `compare`).",
        f"ignore: {list(pol.ignore)}",
        "",
        "# A baseline task/metric absent from the results: regression (exit 1), error (exit 2) or ignore.",
        f"missing: {pol.missing}",
        "",
        f"confidence: {pol.confidence}   # two-sided CI level of the paired bootstrap",
        f"resamples: {pol.resamples}    # --resamples overrides",
        f"seed: {pol.seed}            # --seed overrides",
    ]
    return "\n".join(lines) + "\n"


def _header(command: str, model_desc: str, labels: list[str], k: float, date: str) -> list[str]:
    import torch

    return [
        "Regression policy for `soaes-bench check` (what `make check` uses), calibrated on measured noise by",
        f"  {command}",
        f"generated {date} on {cpu_name()} ({torch.get_num_threads()} torch threads by default), python "
        f"{platform.python_version()}, torch {torch.__version__}",
        f"model: {model_desc}",
        "runs compared (settings that should not change a score):",
        *[f"  {i}. {lab}" for i, lab in enumerate(labels, 1)],
        "not varied: the seed (generation is greedy and the suites are zero-shot: lm-eval's seeds reach no score);",
        "  the backend (only hf runs on a CPU).",
        f"rule: tolerance = max(K x spread, floor), K = {k:g}; spread = max - min of the metric over the runs; floor",
        "  = one item's full swing U/n for a metric in [0, U] (accuracies and shares U = 1, ROUGE/BLEU U = 100),",
        f"  {RELATIVE_FLOOR:.1%} of the baseline (`relative`) for unbounded ones (bits per byte, perplexities, length "
        "ratio).",
        "  Why: soaes_bench/reporting/calibrate.py, docs/statistics.md#calibrated-tolerances.",
        "",
        "A metric regresses when it moves in its bad direction by MORE than its tolerance AND the paired bootstrap CI",
        "of (results - baseline) excludes 0 on the bad side. Exit 0: none regressed, 1: regression, 2: bad input.",
        "  soaes-bench check --baseline reports/baseline/results.json --results reports/latest/results.json \\",
        "      --policy reports/policy.yaml",
        "Tolerances: `absolute` in the metric's own units, `relative` as a fraction of |baseline|; with both, the",
        "larger allowance applies. The most specific entry wins: tasks.<task>.metrics.<metric>,",
        "tasks.<task>.tolerance, metrics.<metric>, then tolerance.",
    ]


def calibrate(model=None, suite: str = "all", output="reports/policy.yaml", settings: Sequence[str] | None = None,
              repeats: int = 1, k: float = K, tasks=None, limit=None, include_path=None,
              with_runs: Sequence = (), runs_dir=None, seed: int = SEED, chat_template: str = "auto",
              date: str | None = None, log=sys.stderr) -> tuple[Path, pd.DataFrame]:
    """Evaluate `model` under each setting (`repeats` times), add the `with_runs`, derive every task and metric's
    tolerance and write the policy to `output`. Returns (policy path, table of spreads)."""
    from soaes_bench.paths import embedded_model

    validate.finite("--k", k, lo=0)
    if not k > 0:
        raise UserError(f"--k: must be > 0, got {k}")
    validate.positive_int("--repeats", repeats, "must be >= 1")
    out = validate.output_file(output)
    parsed = [parse_setting(s) for s in (settings or DEFAULT_SETTINGS)]
    if model is None:
        model = str(embedded_model("default"))
    weights = None if str(model).startswith("constant:") else weights_sha256(model)
    extra = [results.find_results(p) for p in with_runs]
    for p in extra:
        _check_with(records.results.read(p), p, weights, limit)
    keep = runs_dir is not None
    root = validate.output_dir(runs_dir) if keep else Path(tempfile.mkdtemp(prefix="soaes-calibrate-"))
    paths, labels = [], []
    try:
        for r in range(repeats):
            for i, s in enumerate(parsed):
                name = f"{i + 1}-{setting_name(s).replace(',', '_').replace('=', '')}"
                name += f"-r{r + 1}" if repeats > 1 else ""
                start = time.perf_counter()
                paths.append(_evaluate(model, s, root / name, suite, tasks, limit, include_path, seed, chat_template))
                labels.append(setting_name(s) + (f" (repeat {r + 1})" if repeats > 1 else ""))
                print(f"soaes-bench calibrate: {labels[-1]}: {time.perf_counter() - start:.0f} s", file=log)
                if len(paths) == 1:  # the --with runs must have run the same task configs: known after one run
                    first = records.results.read(paths[0])
                    for p in extra:
                        _check_tasks(first, records.results.read(p), p)
        for p in extra:
            paths.append(p)
            labels.append(f"{p} (finished run of {records.results.read(p).get('date')})")
        table = spreads(paths, k)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    if table.empty:
        raise UserError("calibrate: the runs gave no metric to calibrate")
    mb = first.get("model") or {}
    desc = f"{mb.get('path') or mb.get('name') or model}" + (
        f" (weights sha256 {mb['weights_sha256'][:16]})" if mb.get("weights_sha256") else "")
    command = " ".join(["soaes-bench calibrate", f"--model {model}", f"--suite {suite}" if not tasks else
                        f"--tasks {tasks if isinstance(tasks, str) else ','.join(tasks)}"]
                       + ([f"--limit {limit}"] if limit else [])
                       + [f"--setting {setting_name(s)}" for s in parsed]
                       + ([f"--repeats {repeats}"] if repeats > 1 else []) + ([f"--k {k:g}"] if k != K else [])
                       + [f"--with {p}" for p in with_runs] + [f"--output {output}"])
    date = date or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = policy_text(table, _header(command, desc, labels, k, date), k)
    written = atomic_write_text(out, text)
    load_policy(written)  # what check will read: a file it refuses is a bug here, not in CI
    return written, table


def format_spreads(table: pd.DataFrame) -> str:
    def f(x):
        return f"{x:.4g}" if results.is_number(x) else "–"

    head = ["task", "metric", "runs", "min", "max", "spread", "n", "tolerance", "rule"]
    rows = [[r.task, r.metric, str(r.runs), f(r.min), f(r.max), f(r.spread), str(r.n),
             f(r.absolute) + (f" or {r.relative:.1%}" if results.is_number(r.relative) else ""), r.rule]
            for r in table.itertuples()]
    return render(head, rows, "table", right_from=2)


def cli_calibrate(args) -> int:
    path, table = calibrate(args.model, args.suite, args.output, args.settings, args.repeats, args.k, args.tasks,
                            args.limit, args.include_path, args.with_runs or (), args.runs_dir, args.seed)
    print(format_spreads(table), end="")
    print(f"wrote {path}")
    return 0
