"""`soaes-bench power`: how many items (and clusters) a comparison needs to detect a difference.

    soaes-bench power --baseline reports/baseline --effect 0.05 --task soaes_domain_mc_cloze --metric cloze_acc

Per task and metric with per-item samples in the baseline: the per-item SD, the intra-cluster correlation (ICC) of
the items' source documents (samples field `cluster`), the design effect deff = 1 + (m_w - 1) ICC, the minimum
detectable effect (MDE) of the current set, and the items and clusters a two-sided paired test at --alpha needs to
detect --effect with probability --power (stats.items_needed):

    items = deff * ((q_{1-alpha/2} + q_power) * SD / effect)^2,   clusters = items / mean cluster size

with t quantiles on clusters - 1 degrees of freedom when items cluster. Every metric is treated as a mean of its
jackknife pseudo-values (stats.pseudo_values): the items for a mean, the linearised per-document contributions for
bits per byte and corpus BLEU. One run does not show how two runs' per-item scores pair up: by default the paired
differences are taken to have the baseline's per-item SD (two runs whose per-item scores correlate 0.5 have exactly
that; more similar runs need fewer items). `--results RUN` uses the observed paired differences of two runs instead.
Samples without cluster keys (written before they existed), or `--unit item`, plan for independent items.

Training noise: the above is the noise of the test items only. Two trainings of the same recipe that differ
only in the seed (or in float rounding on another CPU) give a different difference on the same items.
`--training-sd S` (metric units: the SD of the compared difference between such trainings, e.g. from repeated
seeds) adds it: the MDE of one training per arm, (q + q) * sqrt(S^2 + SE_items^2), and the paired trainings per
arm the test needs with the current items (stats.trainings_needed). More items never bring that below
((q + q) * S / effect)^2.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from soaes_bench import results, stats
from soaes_bench.errors import UserError
from soaes_bench.reporting.compare import cluster_keys, eval_results, metric_items
from soaes_bench.reporting.tables import render

COLUMNS = ["task", "metric", "basis", "n", "n_clusters", "sd", "icc", "deff", "mde", "effect", "power", "alpha",
           "items_needed", "clusters_needed", "training_sd", "mde_one_training", "trainings_needed", "note"]


def _check(effect: float, power: float, alpha: float, training_sd: float | None = None) -> None:
    if training_sd is not None and not (math.isfinite(training_sd) and training_sd >= 0):
        raise UserError(f"--training-sd: must be a finite number >= 0, got {training_sd}")
    if not (math.isfinite(effect) and effect > 0):
        raise UserError(f"--effect: must be a finite number > 0, got {effect}")
    if not 0 < power < 1:
        raise UserError(f"--power: must be in (0, 1), got {power}")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha: must be in (0, 1), got {alpha}")


def _plan(psi: np.ndarray, keys: list[str] | None, effect: float, power: float, alpha: float,
          training_sd: float | None = None) -> dict:
    """Planning numbers from per-item (pseudo-)values `psi` of the quantity compared, clustered by `keys`; with
    `training_sd`, also those of a design with several trainings per arm."""
    n = len(psi)
    sd = float(np.std(psi, ddof=1))
    u = stats.units(psi, keys)
    g = len(u.sums)
    clustered = u.clustered
    rho = stats.icc(psi, keys) if clustered else 0.0
    note = ""
    if clustered and not math.isfinite(rho):
        rho, note = 0.0, "ICC not estimable"
    deff = stats.design_effect(u.sizes, rho) if clustered else 1.0
    mean_size = n / g
    df = g - 1 if clustered else None
    se_items = sd * math.sqrt(deff / n)
    mde = stats.mde(se=se_items, alpha=alpha, power=power, df=df) if df != 0 else math.nan
    training = {"training_sd": math.nan, "mde_one_training": math.nan, "trainings_needed": None}
    if training_sd is not None:
        training = {"training_sd": training_sd,
                    "mde_one_training": stats.mde(se=math.hypot(se_items, training_sd), alpha=alpha, power=power),
                    "trainings_needed": stats.trainings_needed(se_items, training_sd, effect, alpha, power)}
    if sd == 0:
        items = groups = None
        note = "every item scores the same here (SD 0): the items needed cannot be estimated from this run"
    else:
        items, groups = stats.items_needed(sd, effect, alpha, power, deff, mean_size if clustered else 1.0)
    if clustered and g < stats.min_units(1 - alpha):
        note = (note + "; " if note else "") + f"{g} clusters: too few for a resampling interval"
    return {"n": n, "n_clusters": g if clustered else None, "sd": sd, "icc": rho if clustered else math.nan,
            "deff": deff, "mde": mde, "items_needed": items, "clusters_needed": groups if clustered else None,
            **training, "note": note}


def power_table(baseline, effect: float = 0.02, task: str | None = None, metric: str | None = None,
                power: float = 0.8, alpha: float = 0.05, results_path=None, unit: str = "cluster",
                training_sd: float | None = None) -> pd.DataFrame:
    """One row per (task, metric) of the baseline with per-item samples (COLUMNS)."""
    _check(effect, power, alpha, training_sd)
    base = eval_results(baseline, "--baseline")
    other = eval_results(results_path, "--results") if results_path is not None else None
    obj = results.read(base)[1]
    tasks = list(obj["tasks"])
    if task is not None:
        if task not in tasks:
            raise UserError(f"--task: {task} is not in {base} (tasks: {', '.join(sorted(tasks))})")
        tasks = [task]
    if other is not None:  # paired differences exist only for the tasks both runs have
        shared = set(results.read(other)[1]["tasks"])
        if task is not None and task not in shared:
            raise UserError(f"--task: {task} is not in {other} (tasks: {', '.join(sorted(shared))})")
        tasks = [t for t in tasks if t in shared]
    rows = []
    for t in tasks:
        sa = results.load_samples(base, t)
        if sa.empty:
            continue
        sb = results.load_samples(other, t) if other is not None else None
        if other is not None and (sb is None or sb.empty):
            continue
        m = sa.merge(sb, on="id", suffixes=("_a", "_b")) if sb is not None else sa
        metrics = [metric] if metric is not None else list(obj["tasks"][t]["metrics"])
        for name in metrics:
            if sb is None:
                found = metric_items(m, name)
                if found is None:
                    continue
                psi = stats.pseudo_values(found[0], found[1])
                basis = "one run (paired SD = per-item SD)"
            else:
                a, b = metric_items(m, name, "_a"), metric_items(m, name, "_b")
                if a is None or b is None or a[2] != b[2] or a[0].shape != b[0].shape:
                    continue
                psi = stats.pseudo_values(b[0], b[1]) - stats.pseudo_values(a[0], a[1])
                basis = "paired differences"
            if len(psi) < 2 or not np.all(np.isfinite(psi)):
                continue
            keys = cluster_keys(m) if unit == "cluster" else None
            row = {"task": t, "metric": name, "basis": basis, "effect": effect, "power": power, "alpha": alpha,
                   **_plan(psi, keys, effect, power, alpha, training_sd)}
            row["keys"] = keys is not None
            rows.append(row)
    if metric is not None and not rows:
        raise UserError(f"--metric: no per-item values of {metric} in {base}"
                        + (f" for {task}" if task else "") + "; see the task's metrics in results.json")
    return pd.DataFrame(rows, columns=COLUMNS + ["keys"])


def format_power(df: pd.DataFrame) -> str:
    if df.empty:
        return "no task with per-item samples\n"

    def f(x, d=3):
        return f"{x:.{d}f}" if results.is_number(x) else "–"

    def i(x):
        return str(int(x)) if x is not None and not pd.isna(x) else "–"

    trained = "training_sd" in df and bool(df["training_sd"].notna().any())
    head = ["task", "metric", "n", "clusters", "SD", "ICC", "deff", "MDE now", "items needed", "clusters needed"]
    head += ["MDE, 1 training", "trainings needed"] if trained else []
    rows = [[r.task, r.metric, str(r.n), i(r.n_clusters), f(r.sd), f(r.icc, 2), f(r.deff, 2), f(r.mde),
             i(r.items_needed), i(r.clusters_needed)]
            + ([f(r.mde_one_training), i(r.trainings_needed)] if trained else []) for r in df.itertuples()]
    first = df.iloc[0]
    note = (f"To detect a true difference of {first.effect:g} (metric units) with {first.power:.0%} power, two-sided "
            f"alpha {first.alpha:g}: items = deff * ((q_(1-alpha/2) + q_power) * SD / effect)^2, clusters = items / "
            f"mean cluster size (t quantiles with clusters). Basis: {first.basis}. MDE now: the difference the "
            f"current set detects with that power, counting the test items' noise only.")
    if trained:
        note += (f" With a training-to-training SD of {first.training_sd:g}: MDE, 1 training = (q + q) * "
                 f"sqrt(SD_train^2 + SE_items^2); trainings needed = paired trainings (seeds) per arm with the "
                 f"current items, (q + q)^2 * (SD_train^2 + SE_items^2) / effect^2 (t quantiles on trainings - 1).")
    notes = [f"{r.task} {r.metric}: {r.note}" for r in df.itertuples() if r.note]
    keyless = list(dict.fromkeys(df.task[~df["keys"].astype(bool)])) if "keys" in df else []
    if keyless:
        notes.append("no cluster keys in the samples (written before they existed, or --unit item): items planned as "
                     "independent for " + ", ".join(keyless))
    return render(head, rows, "table", note=note + ("\n" + "\n".join(notes) if notes else ""), right_from=2)


def cli_power(args) -> int:
    df = power_table(args.baseline, effect=args.effect, task=args.task, metric=args.metric, power=args.power,
                     alpha=args.alpha, results_path=args.results, unit=args.unit,
                     training_sd=getattr(args, "training_sd", None))
    print(format_power(df), end="")
    return 0
