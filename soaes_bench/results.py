"""The one reader of measured records: results.json, gate reports and profile.json -> one tidy DataFrame.

Everything that judges or draws (compare, check, plot, report) goes through `load`, so a schema change is handled
here once. Schemas are in docs/DESIGN.md; files are read defensively because several modules write them.

    from soaes_bench import results
    df = results.load(["reports/latest", "runs/soaes/cpt/gate.json"])   # one row per (file, task, metric, ...)
    s = results.load_samples("reports/latest/results.json", "soaes_domain_qa")   # id, metric columns, bleu_pair
    # circular multiple choice: one row per original item (circular_acc = min over its 4 rotations)

Profile reports (schema "soaes-bench/profile", fields in soaes_bench/speculative/profile.py) are walked generically:
any object holding a speculative-decoding measurement (alpha, tau, speedup, predicted_speedup, c, *_tokens_per_s,
*_ms, ...) becomes rows, with the dimensions found on it or above it (gamma, context, category) as columns and a
`<metric>_ci` pair as ci_lo/ci_hi; a list under a key naming positions (acceptance_by_position) becomes one row per
position (1-based). The `summary` block becomes rows of level "summary".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from soaes_bench.errors import UserError
from soaes_bench.io import iter_jsonl, read_json

RESULTS_SCHEMA = "soaes-bench/results"
GATE_SCHEMA = "soaes-bench/gate"
PROFILE_SCHEMA = "soaes-bench/profile"
SCHEMA_VERSIONS = {RESULTS_SCHEMA: 1, GATE_SCHEMA: 1, PROFILE_SCHEMA: 1}  # newest version this code reads
KINDS = {RESULTS_SCHEMA: "eval", GATE_SCHEMA: "gate", PROFILE_SCHEMA: "profile"}
FILE_NAMES = ("results.json", "gate.json", "profile.json")  # what a run directory is searched for

COLUMNS = [
    "kind", "model", "run", "suite", "group", "task", "metric", "value", "stderr", "n", "higher_is_better",
    "source", "weights_sha256", "tokenizer_sha256", "config_sha256", "version", "date", "seed", "device",
    # eval: "task" or "group" rows; samples file (absolute) when the task has one
    "level", "samples",
    # gate checks
    "phase", "check", "op", "threshold", "passed", "ci_lo", "ci_hi",
    # profile dimensions
    "draft", "gamma", "context", "category", "position",
]

# Metrics whose smaller values are better when a file does not say (lm-eval's own higher_is_better wins).
LOWER_IS_BETTER = {"bits_per_byte", "byte_perplexity", "word_perplexity", "perplexity", "loss", "latency_ms", "c", "c_isolated",
                   "verify_cost", "looping"}
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
# read by gates, forgetting reports and plots as "<task>@plain" (training/pipeline.py says why).
PLAIN, PLAIN_DIR = "@plain", "eval_plain"

PROFILE_DIMS = {"gamma": "gamma", "context": "context", "context_len": "context", "context_length": "context",
                "category": "category", "position": "position"}
_PROFILE_KEYWORDS = ("alpha", "tau", "speedup", "accept", "tokens_per_s")
_PROFILE_EXTRA = {"c", "c_isolated", "verify_cost", "lossless", "hf_lossless", "measured_over_predicted", "ours_over_hf"}
_POSITION_KEYS = ("by_position", "acceptance_by_position", "per_position", "position_acceptance")


def metric_higher_is_better(metric: str) -> bool:
    m = metric.lower()
    timed = m.endswith("_ms") or (m.endswith("_s") and "per_s" not in m)
    return not (m in LOWER_IS_BETTER or timed or "perplexity" in m or "latency" in m)


# validation ---------------------------------------------------------------------------------------------------
def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _need(obj: dict, key: str, types, source, where: str = "", nullable: bool = False):
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise UserError(f"{source}: {name}: required field is missing")
    v = obj[key]
    if v is None and nullable:
        return v
    if types is float:
        ok = _num(v)
    else:
        ok = isinstance(v, types) and not (types is int and isinstance(v, bool))
    if not ok:
        raise UserError(f"{source}: {name}: expected {getattr(types, '__name__', types)}, got {v!r:.60}")
    return v


def validate(obj: Any, source: str | Path) -> str:
    """Check the fields every reader relies on; return the kind ("eval", "gate", "profile") or raise UserError."""
    if not isinstance(obj, dict):
        raise UserError(f"{source}: expected a JSON object at top level, got {type(obj).__name__}")
    schema = obj.get("schema")
    if schema not in KINDS:
        raise UserError(f"{source}: schema: expected one of {', '.join(KINDS)}, got {schema!r}")
    version = _need(obj, "schema_version", int, source)
    if version > SCHEMA_VERSIONS[schema]:
        raise UserError(f"{source}: schema_version: {version} is newer than this soaes-bench reads "
                        f"({SCHEMA_VERSIONS[schema]}); upgrade soaes-bench")
    if schema == RESULTS_SCHEMA:
        model = _need(obj, "model", dict, source)
        _need(model, "name", str, source, "model")
        tasks = _need(obj, "tasks", dict, source)
        for name, t in tasks.items():
            where = f"tasks.{name}"
            if not isinstance(t, dict):
                raise UserError(f"{source}: {where}: expected an object")
            metrics = _need(t, "metrics", dict, source, where)
            for m, mv in metrics.items():
                if not isinstance(mv, dict):
                    raise UserError(f"{source}: {where}.metrics.{m}: expected {{value, stderr}}, got {mv!r:.60}")
                _need(mv, "value", float, source, f"{where}.metrics.{m}", nullable=True)
                if mv.get("stderr") is not None and not _num(mv["stderr"]):
                    raise UserError(f"{source}: {where}.metrics.{m}.stderr: expected a number or null")
            hib = t.get("higher_is_better", {})
            if not isinstance(hib, dict):
                raise UserError(f"{source}: {where}.higher_is_better: expected an object")
        if not isinstance(obj.get("groups", {}), dict):
            raise UserError(f"{source}: groups: expected an object")
    elif schema == GATE_SCHEMA:
        _need(obj, "phase", str, source)
        checks = _need(obj, "checks", list, source)
        for i, c in enumerate(checks):
            where = f"checks[{i}]"
            if not isinstance(c, dict):
                raise UserError(f"{source}: {where}: expected an object")
            _need(c, "metric", str, source, where)
            _need(c, "value", float, source, where, nullable=True)
            _need(c, "threshold", float, source, where, nullable=True)
            _need(c, "passed", bool, source, where)
            ci = c.get("ci")
            if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(_num(x) for x in ci)):
                raise UserError(f"{source}: {where}.ci: expected [low, high] or null, got {ci!r:.60}")
    elif schema == PROFILE_SCHEMA:
        for key, tp in (("settings", list), ("model", dict), ("draft", dict), ("summary", dict)):
            if key in obj and obj[key] is not None and not isinstance(obj[key], tp):
                raise UserError(f"{source}: {key}: expected {'a list' if tp is list else 'an object'}")
        for i, row in enumerate(obj.get("settings") or []):
            if not isinstance(row, dict):
                raise UserError(f"{source}: settings[{i}]: expected an object")
    return KINDS[schema]


# file discovery -----------------------------------------------------------------------------------------------
def _rglob(root: Path, name: str) -> list[Path]:
    """Files called `name` below root, skipping hidden folders (.git, .venv, editor backups)."""
    return [f for f in root.rglob(name) if f.is_file() and not any(x.startswith(".") for x in f.relative_to(root).parts)]


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into the results/gate/profile files they hold (recursively, sorted); keep files as given."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(f for name in FILE_NAMES for f in _rglob(p, name))
            if not found:
                raise UserError(f"{p}: no {', '.join(FILE_NAMES)} found in this directory")
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


def read(path: str | Path) -> tuple[str, dict]:
    """(kind, object) of one validated file."""
    obj = read_json(path)
    return validate(obj, path), obj


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
            if isinstance(mv, dict):
                rows.append({**base, "level": "group", "group": group, "task": group, "metric": metric,
                             "value": mv.get("value"), "stderr": mv.get("stderr"), "n": g.get("n"),
                             "higher_is_better": metric_higher_is_better(metric)})
    return rows


def _gate_rows(obj: dict, path: Path) -> list[dict]:
    model, linked = None, obj.get("results")
    if isinstance(linked, str):
        for cand in (Path(linked), path.parent / linked):
            try:
                model = (read_json(cand).get("model") or {}).get("name")
                break
            except (UserError, AttributeError):
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


def _is_profile_metric(key: str) -> bool:
    k = key.lower()
    return k in _PROFILE_EXTRA or not k.startswith(("n_", "num_")) and (
        any(w in k for w in _PROFILE_KEYWORDS) or k.endswith("_ms"))


def _model_name(x) -> str | None:
    if isinstance(x, dict):
        x = x.get("name") or x.get("path")
    return Path(x).name if isinstance(x, str) and x else None


def _walk_profile(node, dims: dict, key: str, emit) -> None:
    """Emit a row for every profile measurement below `node`, carrying the dimensions found on the way down."""
    if isinstance(node, list):
        if node and all(_num(x) or x is None for x in node) and any(k in key.lower() for k in _POSITION_KEYS):
            metric = "acceptance" if key.lower() in _POSITION_KEYS else key.lower().replace("_by_position", "")
            for i, x in enumerate(node, 1):
                if x is not None:
                    emit({**dims, "position": i}, metric, x)
            return
        for item in node:
            _walk_profile(item, dims, key, emit)
        return
    if not isinstance(node, dict):
        return
    here = dict(dims)
    for k, v in node.items():
        if k in PROFILE_DIMS and isinstance(v, (str, int, float)) and not isinstance(v, bool):
            here[PROFILE_DIMS[k]] = v
    dim = {"by_category": "category", "categories": "category", "by_context": "context", "by_gamma": "gamma"}
    if key.lower() in dim and node and all(isinstance(v, dict) for v in node.values()):
        for k, v in node.items():
            _walk_profile(v, {**here, dim[key.lower()]: _maybe_int(k)}, "", emit)
        return
    for k, v in node.items():
        if k in PROFILE_DIMS or k.endswith(("_stderr", "_std", "_ci")):
            continue
        if _num(v) and _is_profile_metric(k):
            se, ci = node.get(f"{k}_stderr", node.get(f"{k}_std")), node.get(f"{k}_ci")
            emit(here, k, v, se if _num(se) else None, ci)
        elif isinstance(v, dict) and _is_profile_metric(k) and _num(v.get("value", v.get("mean"))):
            se = v.get("stderr", v.get("std"))
            emit(here, k, v.get("value", v.get("mean")), se if _num(se) else None, v.get("ci"))
        elif isinstance(v, (dict, list)):
            _walk_profile(v, here, k, emit)


def _maybe_int(k):
    try:
        return int(k)
    except (TypeError, ValueError):
        return k


_PROFILE_META = ("schema", "schema_version", "seed", "date", "env", "config", "model", "target", "draft", "best",
                 "summary", "outputs")


def _profile_rows(obj: dict, path: Path) -> list[dict]:
    """Rows of a profile.json (schema in soaes_bench/speculative/profile.py): level "profile" for every setting and
    cost measurement, level "summary" for the `summary` block (gamma = its best_gamma)."""
    env = obj.get("env") if isinstance(obj.get("env"), dict) else {}
    target, draft = obj.get("model") or obj.get("target"), obj.get("draft")
    base = {"kind": "profile", "model": _model_name(target), "draft": _model_name(draft), "run": obj.get("run"),
            "source": str(path), "level": "profile", "task": "speculative", "date": obj.get("date"),
            "seed": obj.get("seed"), "device": env.get("device"),
            "weights_sha256": target.get("weights_sha256") if isinstance(target, dict) else None,
            "tokenizer_sha256": target.get("tokenizer_sha256") if isinstance(target, dict) else None}
    rows: list[dict] = []

    def emit(dims, metric, value, stderr=None, ci=None, level="profile"):
        ok = isinstance(ci, list) and len(ci) == 2 and all(_num(x) for x in ci)
        rows.append({**base, **dims, "metric": metric, "value": float(value), "stderr": stderr, "level": level,
                     "ci_lo": ci[0] if ok else None, "ci_hi": ci[1] if ok else None,
                     "higher_is_better": metric_higher_is_better(metric)})

    _walk_profile({k: v for k, v in obj.items() if k not in _PROFILE_META}, {}, "", emit)
    summary = obj.get("summary")
    if isinstance(summary, dict):
        dims = {"gamma": summary.get("best_gamma"), "category": summary.get("category")}
        dims = {k: v for k, v in dims.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        _walk_profile({k: v for k, v in summary.items() if k not in ("best_gamma", "category")}, dims, "",
                      lambda d, m, v, se=None, ci=None: emit(d, m, v, se, ci, level="summary"))
    return rows


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("value", "stderr", "threshold", "ci_lo", "ci_hi"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def load(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Tidy DataFrame (COLUMNS) of every results/gate/profile file in `paths` (files or directories)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    rows: list[dict] = []
    for path in find_files(paths):
        kind, obj = read(path)
        rows += {"eval": _results_rows, "gate": _gate_rows, "profile": _profile_rows}[kind](obj, path)
    return _frame(rows)


def samples_path(results_path: str | Path, task: str) -> Path | None:
    """Where a task's samples live (field `samples`, else samples/<task>.jsonl next to results.json), or None."""
    results_path = Path(results_path)
    obj = read_json(results_path)
    t = (obj.get("tasks") or {}).get(task) if isinstance(obj, dict) else None
    if t is None:
        raise UserError(f"{results_path}: tasks.{task}: no such task")
    rel = t.get("samples") if isinstance(t, dict) else None
    for cand in ([results_path.parent / rel] if isinstance(rel, str) else []) + [
            results_path.parent / "samples" / f"{task}.jsonl"]:
        if cand.is_file():
            return cand
    return None


def load_samples(results_path: str | Path, task: str) -> pd.DataFrame:
    """Per-item rows of one task: id, doc_id, one column per metric, bleu_pair (and loglikelihood, n_bytes, n_words
    for bits-per-byte tasks). Empty frame without samples.

    Ids must be unique: items are matched across runs by id. Circular multiple choice (rows carrying `item`, one
    per rotation, ids `<id>@r<k>`) is collapsed to one row per original item (`collapse_rotations`), so paired
    statistics resample and match items, not rotations.
    """
    path = samples_path(results_path, task)
    if path is None:
        return pd.DataFrame(columns=["id"])
    rows, seen = [], set()
    for lineno, obj in iter_jsonl(path):
        if "id" not in obj:
            raise UserError(f"{path}:{lineno}: id: required field is missing")
        key = str(obj["id"])
        if key in seen:
            raise UserError(f"{path}:{lineno}: id: duplicate id {key!r}; items are matched across runs by id")
        seen.add(key)
        row = {"id": key, "doc_id": obj.get("doc_id")}
        metrics = obj.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise UserError(f"{path}:{lineno}: metrics: expected an object")
        for m, v in metrics.items():
            row[m] = v
        pair = obj.get("bleu_pair")
        if pair is not None and not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise UserError(f"{path}:{lineno}: bleu_pair: expected [prediction, reference] strings")
        row["bleu_pair"] = pair
        for key in CORPUS_COUNTS:  # bits-per-byte rows: corpus value = -sum ll / sum bytes / ln 2
            if is_number(obj.get(key)):
                row[key] = float(obj[key])
        if obj.get("item") is not None:
            row["item"] = str(obj["item"])
        rows.append(row)
    if any("item" in r for r in rows):
        rows = collapse_rotations(rows)
    return pd.DataFrame(rows)


def collapse_rotations(rows: list[dict]) -> list[dict]:
    """Rotation rows of circular multiple choice -> one row per original item (in first-seen order): id = item,
    doc_id = the first rotation's, `rotations` = rows merged; ITEM_MIN_METRICS (circular_acc) = min over the
    rotations (right only when every rotation is right), other numeric metrics (rotation_acc) = their mean."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get("item", r["id"])), []).append(r)
    skip = {"id", "doc_id", "item", "bleu_pair", *CORPUS_COUNTS}
    out = []
    for item, rs in groups.items():
        row = {"id": item, "doc_id": rs[0].get("doc_id"), "bleu_pair": None, "rotations": len(rs)}
        for m in dict.fromkeys(k for r in rs for k in r if k not in skip):
            vals = [r.get(m) for r in rs]
            if all(is_number(v) for v in vals):
                row[m] = float(min(vals)) if m in ITEM_MIN_METRICS else float(sum(vals)) / len(vals)
            else:
                row[m] = None
        out.append(row)
    return out


def is_number(x) -> bool:
    """True for a finite int/float (not bool, not NaN)."""
    return _num(x) and math.isfinite(x)
