"""The one reader of records as tables: results.json, gate, profile, ablation, forgetting, summary and timings files
-> one tidy DataFrame, and samples files -> per-item frames.

Everything that judges or draws (compare, check, plot, report) goes through `load`. The files' layouts, validators
and readers are in soaes_bench/records (one module per kind); this module only turns validated records into rows.

    from soaes_bench import results
    df = results.load(["reports/latest", "runs/soaes/cpt/gate.json"])   # one row per (file, task, metric, ...)
    s = results.load_samples("reports/latest/results.json", "soaes_domain_qa")   # id, metric columns, bleu_pair
    # circular multiple choice: one row per original item (circular_acc = min over its 4 rotations)

Rows per kind (column `kind`; `level` says what a row is):
- eval: level "task" per task and metric (with its samples file), "group" per group aggregate.
- gate: level "check" per check (value, op, threshold, passed, CI).
- profile: level "profile" per setting metric (gamma, context, category; acceptance per draft `position`) and
  per forward-cost measurement (context, gamma of the verification), level "summary" for the summary block; the
  metric fields are listed in records/profile.py.
- ablation: level "arm" per row and arm (`arm` single/progressive or undistilled/distilled) and level "diff"
  (second arm - first, with its CI); `phase` is the ablation (sft, distill).
- forgetting: level "arm" per task (`arm` base/new: accuracy over the shared items) and level "count" (forgotten,
  learned, net, forgotten_rate, retention, p_mcnemar); `phase` is the phase folder.
- summary: level "train" (steps, tokens, last_train_loss of the phase, `arm` null, and of its parts: SFT stage1,
  stage2, ..., single_stage; the draft's distilled and baseline), level "arm" for phase-internal measurements (CPT
  val_before/val_after as arms before/after; the draft's held-out metrics as arms distilled/baseline).
- timings: level "timing", one row per wall-clock figure (metric train_s, eval_gate_s, base_eval_s; seconds).

A folder is searched for results.json, gate.json and profile.json only (SEARCHED: what compare, plot and report
draw); ablation, forgetting, summary and timings files give rows when named as files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from soaes_bench import records
from soaes_bench.errors import UserError
from soaes_bench.records import ablation as ablation_record
from soaes_bench.records import profile as profile_record
from soaes_bench.records import samples as samples_record
from soaes_bench.records.fields import is_number

SEARCHED = ("results.json", "gate.json", "profile.json")  # what a folder argument is searched for

COLUMNS = [
    "kind", "model", "run", "suite", "group", "task", "metric", "value", "stderr", "n", "higher_is_better",
    "source", "weights_sha256", "tokenizer_sha256", "config_sha256", "version", "date", "seed", "device",
    # eval: "task" or "group" rows; samples file (absolute) when the task has one
    "level", "samples",
    # gate checks (phase also for ablation, forgetting, summary and timings rows)
    "phase", "check", "op", "threshold", "passed", "ci_lo", "ci_hi",
    # profile dimensions
    "draft", "gamma", "context", "category", "position",
    # ablation / forgetting / summary: which of the compared things a row measures
    "arm",
]

# Metrics whose smaller values are better when a file does not say (lm-eval's own higher_is_better wins).
LOWER_IS_BETTER = {"bits_per_byte", "byte_perplexity", "word_perplexity", "perplexity", "loss", "latency_ms", "c", "c_isolated",
                   "verify_cost", "looping", "forgotten", "forgotten_rate", "p_mcnemar"}
# Metrics with no better direction (generation health's length_ratio: longer or shorter than the references is not
# better in itself). metric_higher_is_better still answers True for them (a bool column); compare marks them and
# check never counts their move as a regression (soaes_bench/metrics/health.py says why).
DIRECTION_NEUTRAL = {"length_ratio"}
# Metrics of an answer's form, not its content (soaes_bench.metrics.health): a content-free answer can be perfect on
# them (the empty answer never loops), so they have no meaningful floor; gates on them are guards beside ability gates.
FORM_METRICS = {"distinct", "looping", "length_ratio"}
# per-item 0/1: McNemar applies. Multiple choice in three forms (tasks/README.md): letter acc/acc_norm, cloze
# cloze_acc/cloze_acc_norm, circular circular_acc (per original item). Not rotation_acc: load_samples collapses the
# circular form to one row per item, where rotation_acc is the share of its rotations right (0, .25, ..., 1).
ACCURACY_METRICS = {"acc", "acc_norm", "exact_match", "cloze_acc", "cloze_acc_norm", "circular_acc"}
# Per-item metrics of the circular multiple-choice form: an item is right only if every rotation is (min over rows).
ITEM_MIN_METRICS = {"circular_acc"}
CORPUS_METRICS = {"bleu4", "bleu"}  # corpus statistics: resampled from samples' bleu_pair
# per-document (loglikelihood, count) columns of samples rows, from which these corpus metrics are recomputed
CORPUS_COUNTS = ("loglikelihood", "n_bytes", "n_words")
RATIO_METRICS = {"bits_per_byte": "n_bytes", "byte_perplexity": "n_bytes", "word_perplexity": "n_words"}

# Plain-text (no chat template) scores of a pipeline phase: stored in <phase>/eval_plain/ next to <phase>/eval/ and
# read by gates, forgetting reports and plots as "<task>@plain" (pipeline.py says why).
PLAIN, PLAIN_DIR = "@plain", "eval_plain"


def metric_higher_is_better(metric: str) -> bool:
    m = metric.lower()
    timed = m.endswith("_ms") or (m.endswith("_s") and "per_s" not in m)
    return not (m in LOWER_IS_BETTER or timed or "perplexity" in m or "latency" in m)


def validate(obj, source: str | Path) -> str:
    """Check a record of any kind (records.validate); returns its kind or raises UserError."""
    return records.validate(obj, source)


def read(path: str | Path) -> tuple[str, dict]:
    """(kind, object) of one validated record file."""
    return records.read(path)


# file discovery -----------------------------------------------------------------------------------------------
def _rglob(root: Path, name: str) -> list[Path]:
    """Files called `name` below root, skipping hidden folders (.git, .venv, editor backups)."""
    return [f for f in root.rglob(name) if f.is_file() and not any(x.startswith(".") for x in f.relative_to(root).parts)]


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into the SEARCHED files they hold (recursively, sorted); keep files as given."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(f for name in SEARCHED for f in _rglob(p, name))
            if not found:
                raise UserError(f"{p}: no {', '.join(SEARCHED)} found in this directory")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: file not found")
    return list(dict.fromkeys(out))


def find_results(path: str | Path) -> Path:
    """One results.json for a run argument: the file itself, DIR/results.json, or the only one below DIR."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise UserError(f"{p}: file not found")
    if (p / "results.json").is_file():
        return p / "results.json"
    found = sorted(_rglob(p, "results.json"))
    if len(found) != 1:
        what = "no results.json" if not found else f"{len(found)} results.json files"
        raise UserError(f"{p}: {what} found; name one results.json")
    return found[0]


# tidy rows -----------------------------------------------------------------------------------------------------
def _results_rows(obj: dict, path: Path) -> list[dict]:
    model, env = obj.get("model") or {}, obj.get("env") or {}
    base = {"kind": "eval", "model": model.get("name"), "run": obj.get("run"), "suite": obj.get("suite"),
            "source": str(path), "weights_sha256": model.get("weights_sha256"),
            "tokenizer_sha256": model.get("tokenizer_sha256"), "date": obj.get("date"), "seed": obj.get("seed"),
            "device": env.get("device")}
    rows = []
    for task, t in obj["tasks"].items():
        hib = t.get("higher_is_better") or {}
        samples = t.get("samples")
        samples = str((path.parent / samples).resolve()) if isinstance(samples, str) else None
        for metric, mv in t["metrics"].items():
            rows.append({**base, "level": "task", "group": t.get("group"), "task": task, "metric": metric,
                         "value": mv.get("value"), "stderr": mv.get("stderr"), "n": t.get("n"),
                         "higher_is_better": hib[metric] if isinstance(hib.get(metric), bool)
                         else metric_higher_is_better(metric),
                         "config_sha256": t.get("config_sha256"), "version": t.get("version"), "samples": samples})
    for group, g in (obj.get("groups") or {}).items():
        for metric, mv in ((g or {}).get("metrics") or {}).items():
            rows.append({**base, "level": "group", "group": group, "task": group, "metric": metric,
                         "value": mv.get("value"), "stderr": mv.get("stderr"), "n": g.get("n"),
                         "higher_is_better": metric_higher_is_better(metric)})
    return rows


def _gate_rows(obj: dict, path: Path) -> list[dict]:
    model, linked = None, obj.get("results")
    if isinstance(linked, str):
        for cand in (Path(linked), path.parent / linked):
            if cand.is_file():
                try:
                    model = (records.read(cand)[1].get("model") or {}).get("name")
                    break
                except UserError:  # phase_metrics.json: a gate judged phase-internal metrics, no model block
                    continue
    rows = []
    for c in obj["checks"]:
        ci = c.get("ci") or [None, None]
        op = c.get("op")
        hib = not (isinstance(op, str) and op.strip().startswith("<"))
        rows.append({"kind": "gate", "model": model or obj["phase"], "run": path.parent.parent.name or None,
                     "phase": obj["phase"], "task": c.get("task"), "metric": c["metric"], "value": c.get("value"),
                     "op": op, "threshold": c.get("threshold"), "passed": c["passed"], "ci_lo": ci[0],
                     "ci_hi": ci[1], "higher_is_better": hib, "source": str(path), "level": "check",
                     "check": c.get("name")})
    return rows


def _model_name(x) -> str | None:
    if isinstance(x, dict):
        x = x.get("name") or x.get("path")
    return Path(x).name if isinstance(x, str) and x else None


def _profile_rows(obj: dict, path: Path) -> list[dict]:
    """Rows of a profile.json: the metric fields named in records/profile.py, with their dimensions."""
    env = obj.get("env") or {}
    target, draft = obj.get("model") or {}, obj.get("draft")
    base = {"kind": "profile", "model": _model_name(target), "draft": _model_name(draft), "run": obj.get("run"),
            "source": str(path), "task": "speculative", "date": obj.get("date"), "seed": obj.get("seed"),
            "device": env.get("device"), "weights_sha256": target.get("weights_sha256"),
            "tokenizer_sha256": target.get("tokenizer_sha256")}
    rows: list[dict] = []

    def emit(block: dict, names, dims: dict, level: str = "profile") -> None:
        for metric in names:
            value = block.get(metric)
            if not is_number(value):
                continue
            ci = block.get(f"{metric}_ci")
            ok = isinstance(ci, list) and len(ci) == 2 and all(is_number(x) for x in ci)
            rows.append({**base, **dims, "metric": metric, "value": float(value), "level": level,
                         "ci_lo": ci[0] if ok else None, "ci_hi": ci[1] if ok else None,
                         "higher_is_better": metric_higher_is_better(metric)})

    for c in obj.get("costs") or []:
        emit(c, profile_record.COST_METRICS, {"context": c.get("context")})
        for v in c.get("verify") or []:
            emit(v, profile_record.VERIFY_METRICS, {"context": c.get("context"), "gamma": v.get("gamma")})
    for s in obj.get("settings") or []:
        dims = {k: s.get(k) for k in ("category", "context", "gamma")}
        emit(s, profile_record.SETTING_METRICS, dims)
        for key, metric in profile_record.POSITION_METRICS.items():
            for i, x in enumerate(s.get(key) or [], 1):
                emit({metric: x}, [metric], {**dims, "position": i})
    summary = obj.get("summary") or {}
    dims = {"gamma": summary.get("best_gamma"), "category": summary.get("category")}
    emit(summary, profile_record.SUMMARY_METRICS, {k: v for k, v in dims.items() if v is not None}, "summary")
    return rows


def _ablation_rows(obj: dict, path: Path) -> list[dict]:
    name = obj["ablation"]
    first, second = ablation_record.ARMS[name]
    base = {"kind": "ablation", "phase": name, "run": path.parent.parent.name or None, "source": str(path)}
    rows = []
    for r in obj["rows"]:
        hib = r["higher_is_better"] if isinstance(r.get("higher_is_better"), bool) else metric_higher_is_better(r["metric"])
        one = {**base, "task": r.get("task"), "metric": r["metric"], "higher_is_better": hib, "n": r.get("n_shared")}
        rows += [{**one, "level": "arm", "arm": arm, "model": arm, "value": r[arm]} for arm in (first, second)]
        rows.append({**one, "level": "diff", "arm": f"{second} - {first}", "value": r["diff"],
                     "ci_lo": r.get("ci_low"), "ci_hi": r.get("ci_high")})
    return rows


def _forgetting_rows(obj: dict, path: Path) -> list[dict]:
    base = {"kind": "forgetting", "phase": path.parent.name or None, "run": path.parent.parent.name or None,
            "source": str(path)}
    rows = []
    for r in obj["rows"]:
        one = {**base, "group": r.get("suite"), "task": r["task"], "n": r["n_shared"]}
        rows += [{**one, "level": "arm", "arm": arm, "metric": r["metric"], "value": r[f"{arm}_acc"],
                  "higher_is_better": True} for arm in ("base", "new")]
        rows += [{**one, "level": "count", "metric": m, "value": r.get(m), "higher_is_better": metric_higher_is_better(m)}
                 for m in ("forgotten", "learned", "net", "forgotten_rate", "retention", "p_mcnemar")
                 if is_number(r.get(m))]
    return rows


def _summary_rows(obj: dict, path: Path) -> list[dict]:
    base = {"kind": "summary", "phase": obj.get("phase") or path.parent.name, "run": path.parent.parent.name or None,
            "source": str(path)}
    rows = [{**base, "level": "train", "arm": arm, "metric": m, "value": part[m],
             "higher_is_better": metric_higher_is_better(m)}
            for arm, _, part in records.summary.training_parts(obj) for m in records.summary.TRAINING
            if is_number(part.get(m))]
    for key, arm in (("val_before", "before"), ("val_after", "after")):
        rows += [{**base, "level": "arm", "arm": arm, "metric": m, "value": v, "higher_is_better": False}
                 for m, v in (obj.get(key) or {}).items() if is_number(v)]
    for arm in records.summary.ARMS:
        tasks = ((obj.get(arm) or {}).get("results") or {}).get("tasks") or {}
        for task, t in tasks.items():
            hib = t.get("higher_is_better") or {}
            rows += [{**base, "level": "arm", "arm": arm, "model": arm, "task": task, "metric": m,
                      "value": mv.get("value"), "stderr": mv.get("stderr"), "n": t.get("n"),
                      "higher_is_better": hib[m] if isinstance(hib.get(m), bool) else metric_higher_is_better(m)}
                     for m, mv in (t.get("metrics") or {}).items()]
    return rows


def _timings_rows(obj: dict, path: Path) -> list[dict]:
    return [{"kind": "timings", "level": "timing", "run": path.parent.name or None, "source": str(path),
             "phase": phase, "metric": what, "value": s, "higher_is_better": False}
            for phase, what, s in records.timings.seconds(obj)]


ROWS = {"eval": _results_rows, "gate": _gate_rows, "profile": _profile_rows, "ablation": _ablation_rows,
        "forgetting": _forgetting_rows, "summary": _summary_rows, "timings": _timings_rows}


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("value", "stderr", "threshold", "ci_lo", "ci_hi"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def load(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Tidy DataFrame (COLUMNS) of every record in `paths` (files of any kind; folders: their SEARCHED files)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    rows: list[dict] = []
    for path in find_files(paths):
        kind, obj = records.read(path)
        rows += ROWS[kind](obj, path)
    return _frame(rows)


# samples -------------------------------------------------------------------------------------------------------
def samples_path(results_path: str | Path, task: str) -> Path | None:
    """Where a task's samples live (field `samples`, else samples/<task>.jsonl next to results.json), or None.
    The results file is validated, and the samples file must lie inside its folder."""
    obj = records.results.read(results_path)
    if task not in obj["tasks"]:
        raise UserError(f"{results_path}: tasks.{task}: no such task")
    return samples_record.path_of(results_path, task, obj["tasks"][task])


def load_samples(results_path: str | Path, task: str) -> pd.DataFrame:
    """Per-item rows of one task: id, doc_id, one column per metric, bleu_pair (and loglikelihood, n_bytes, n_words
    for bits-per-byte tasks), and `cluster` (the item's source document) when the samples carry it: samples written
    before cluster keys existed have no such column, and compare then resamples items. Empty frame without samples.

    Ids must be unique: items are matched across runs by id. Circular multiple choice (rows carrying `item`, one
    per rotation, ids `<id>@r<k>`) is collapsed to one row per original item (`collapse_rotations`), so paired
    statistics resample and match items, not rotations.
    """
    path = samples_path(results_path, task)
    if path is None:
        return pd.DataFrame(columns=["id"])
    rows = []
    for obj in samples_record.read(path):
        row = {"id": str(obj["id"]), "doc_id": obj.get("doc_id"), **(obj.get("metrics") or {}),
               "bleu_pair": obj.get("bleu_pair")}
        for key in CORPUS_COUNTS:  # bits-per-byte rows: corpus value = -sum ll / sum bytes / ln 2
            if is_number(obj.get(key)):
                row[key] = float(obj[key])
        if obj.get("item") is not None:
            row["item"] = str(obj["item"])
        if obj.get("cluster") is not None:
            row["cluster"] = str(obj["cluster"])
        rows.append(row)
    if any("item" in r for r in rows):
        rows = collapse_rotations(rows)
    return pd.DataFrame(rows)


def collapse_rotations(rows: list[dict]) -> list[dict]:
    """Rotation rows of circular multiple choice -> one row per original item (in first-seen order): id = item,
    doc_id and cluster = the first rotation's, `rotations` = rows merged; ITEM_MIN_METRICS (circular_acc) = min over the
    rotations (right only when every rotation is right), other numeric metrics (rotation_acc) = their mean."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get("item", r["id"])), []).append(r)
    skip = {"id", "doc_id", "item", "cluster", "bleu_pair", *CORPUS_COUNTS}
    out = []
    for item, rs in groups.items():
        row = {"id": item, "doc_id": rs[0].get("doc_id"), "bleu_pair": None, "rotations": len(rs)}
        if rs[0].get("cluster") is not None:
            row["cluster"] = rs[0]["cluster"]
        for m in dict.fromkeys(k for r in rs for k in r if k not in skip):
            vals = [r.get(m) for r in rs]
            if all(is_number(v) for v in vals):
                row[m] = float(min(vals)) if m in ITEM_MIN_METRICS else float(sum(vals)) / len(vals)
            else:
                row[m] = None
        out.append(row)
    return out

