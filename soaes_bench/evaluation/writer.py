"""lm-eval output -> the soaes-bench results schema (results.json, samples/<task>.jsonl, results.md).

Turns lm-eval's output into the task entries and sample rows of records/results.py and records/samples.py (which
own the layout, docs/DESIGN.md "Results schema"); soaes_bench/results.py reads them back.

Per-sample rows (samples/<task>.jsonl) carry per-item numbers so that runs can be compared item by item:
- multiple choice: metrics acc/acc_norm (letter form), cloze_acc/cloze_acc_norm (cloze), rotation_acc and
  circular_acc (circular: per rotation, plus `item`, the original id; an item's circular_acc is the min over its
  rows), all 0/1; target and prediction are the answer letters (cloze: option texts); `pred_index`/`target_index`
  (0 = A) feed the task's `positions` block, `pred_index_norm` the per-byte argmax when options differ in length;
- generation: metrics rouge1/2/L (0-100) and `bleu_pair` [prediction, reference] (corpus BLEU is recomputed from
  pairs, it is not a mean of per-item scores), metric `looping` (0/1) and `pred_len`/`ref_len` (characters, from
  which the corpus `length_ratio` is recomputed; `distinct` is the share of distinct `prediction`s);
- bits per byte: metrics bits_per_byte, byte_perplexity, word_perplexity of that document, plus `loglikelihood`
  (nats), `n_bytes` and `n_words` so the corpus value (-sum ll / sum bytes / ln 2) can be recomputed exactly.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from pathlib import Path

from soaes_bench.evaluation.task_hooks import byte_normalised, mc_argmax
from soaes_bench.io import atomic_write_text
from soaes_bench.records import results as results_record
from soaes_bench.records import samples as samples_record

_NOT_METRICS = {"alias", "name", "sample_len", "sample_count", " "}


def _number(v):
    """JSON-safe float: NaN/inf (e.g. an overflowing perplexity) and lm-eval's "N/A" become None."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    return None


def metric_table(lm_metrics: dict) -> dict:
    """lm-eval's {"acc,none": x, "acc_stderr,none": s, ...} -> {"acc": {"value": x, "stderr": s}}."""
    out: dict[str, dict] = {}
    for key, value in lm_metrics.items():
        if key in _NOT_METRICS or "," not in key:
            continue
        name, _filter = key.split(",", 1)
        if name.endswith("_stderr"):
            continue
        stderr = lm_metrics.get(f"{name}_stderr,{_filter}")
        out[name] = {"value": _number(value), "stderr": _number(stderr)}
    return out


def config_sha256(config: dict) -> str:
    """sha256 of a task's resolved config as lm-eval reports it, minus what varies between machines and callers
    (metadata other than `version`: the YAML's absolute path, --model_args copied in by the lm_eval CLI).

    lm-eval serialises top-level hooks as their source, but a `process_docs` hook is also copied into the nested
    `fewshot_config` as the function object, whose str() holds a memory address that changes every run: callables
    are hashed by their source here too (by their qualified name when it cannot be read)."""
    cfg = dict(config)
    meta = cfg.get("metadata")
    if isinstance(meta, dict):
        cfg["metadata"] = {k: v for k, v in meta.items() if k == "version"}
    text = json.dumps(cfg, sort_keys=True, ensure_ascii=False, default=_stable_json)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stable_json(value) -> str:
    if callable(value):
        try:
            return inspect.getsource(value)
        except (TypeError, OSError):
            return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return str(value)


def _safe_exp(x: float):
    try:
        return _number(math.exp(x))
    except OverflowError:
        return None


def sample_row(sample: dict) -> dict:
    """One lm-eval logged sample -> one samples/<task>.jsonl row."""
    doc = sample.get("doc") or {}
    row = {"id": doc.get("id", sample["doc_id"]), "doc_id": sample["doc_id"], "metrics": {}, "target": None,
           "prediction": None}
    if isinstance(doc.get("cluster"), str) and doc["cluster"]:
        row["cluster"] = doc["cluster"]  # the item's source document: compare and check resample these clusters
    metrics = row["metrics"]
    for name in sample.get("metrics", []):
        value = sample.get(name)
        if name == "bleu4" and isinstance(value, (list, tuple)) and len(value) == 2:
            row["bleu_pair"] = [str(value[0]), str(value[1])]
        elif name == "length_ratio" and isinstance(value, (list, tuple)) and len(value) == 2:
            row["pred_len"], row["ref_len"] = int(value[0]), int(value[1])  # characters; the ratio is a corpus one
        elif name == "circular_acc" and isinstance(value, (list, tuple)) and len(value) == 2:
            # circular MC: (original item id, this rotation right); the item's value is the min over its rotations
            row["item"] = str(value[0])
            metrics[name] = _number(value[1])
        elif name == "distinct" and isinstance(value, str):
            continue  # the cleaned prediction (`prediction`); the distinct share is a corpus statistic of them
        elif name in ("bits_per_byte", "byte_perplexity", "word_perplexity") and isinstance(value, (list, tuple)):
            ll, count = float(value[0]), int(value[1])
            row["loglikelihood"] = ll
            row["n_words" if name == "word_perplexity" else "n_bytes"] = count
            per_unit = -ll / count if count else float("nan")
            metrics[name] = _number(per_unit / math.log(2)) if name == "bits_per_byte" else _safe_exp(per_unit)
        else:
            metrics[name] = _number(value)

    args = sample.get("arguments") or []
    resps = sample.get("filtered_resps") or []
    target = sample.get("target")
    if args and isinstance(args[0], (list, tuple)) and len(args[0]) == 2 and isinstance(args[0][0], str):
        row["prompt"] = args[0][0]  # multiple choice, generation: the context as the model read it (chat template)
    if args and len(args[0]) == 2 and isinstance(args[0][1], str) and resps and isinstance(resps[0], (list, tuple)):
        # multiple choice: one (context, continuation) request per choice, responses (loglikelihood, is_greedy)
        letters = [a[1].strip() for a in args]
        lls = [float(r[0]) for r in resps]
        pred = mc_argmax(lls)
        row["prediction"] = letters[pred]
        row["target"] = letters[target] if isinstance(target, int) and 0 <= target < len(letters) else target
        row["pred_index"] = pred  # position of the highest-loglikelihood option (0 = A), what `positions` counts
        row["target_index"] = target if isinstance(target, int) and not isinstance(target, bool) else None
        n_bytes = [len(c.encode("utf-8")) for c in letters]
        if len(set(n_bytes)) > 1:  # options of different lengths (cloze form): acc_norm's per-byte argmax too
            row["pred_index_norm"] = mc_argmax(byte_normalised(lls, letters))
    elif "bleu_pair" in row:
        row["prediction"], row["target"] = row["bleu_pair"]
    elif resps and isinstance(resps[0], str):
        row["prediction"], row["target"] = resps[0], None if target is None else str(target)
    return row


def _shares(indices: list[int], letters: list[str]) -> dict:
    n = len(indices)
    return {letter: sum(1 for i in indices if i == k) / n for k, letter in enumerate(letters)}


def positions(rows: list[dict], n_options: int = 0) -> dict | None:
    """Distribution of the predicted option positions of a multiple-choice task, from its samples rows' `pred_index`
    (argmax of the options' loglikelihoods, the prediction behind acc; cloze: the option's index in the data;
    circular: the position in the rotated order). None for a task without such rows.

    {"shares": {"A": .., "B": .., ...}, "top": "A", "top_share": 0.97, "n": 240, "target_shares": {...}} and, when
    rows have `pred_index_norm` (cloze), "norm": {"shares", "top", "top_share"} for the per-byte argmax of acc_norm.
    A top share far above the gold (`target_shares`) share of that letter means the score measures position
    preference, not knowledge. `top` is the first letter on ties.
    """
    pred = [r["pred_index"] for r in rows if isinstance(r.get("pred_index"), int)]
    if not pred:
        return None
    gold = [r["target_index"] for r in rows if isinstance(r.get("target_index"), int)]
    k = max([n_options, *(i + 1 for i in pred + gold)])
    letters = [chr(ord("A") + i) if i < 26 else str(i) for i in range(k)]

    def block(indices):
        shares = _shares(indices, letters)
        top = max(letters, key=shares.__getitem__)
        return {"shares": shares, "top": top, "top_share": shares[top]}

    out = {**block(pred), "n": len(pred)}
    out["target_shares"] = _shares(gold, letters) if gold else None
    if any(isinstance(r.get("pred_index_norm"), int) for r in rows):  # options of equal length: the same argmax
        out["norm"] = block([r.get("pred_index_norm", r["pred_index"]) for r in rows
                             if isinstance(r.get("pred_index"), int)])
    return out


def positions_markdown(results: dict) -> str:
    """The "Predicted positions" section of results.md: one row per multiple-choice task ("" when there is none)."""
    tasks = {name: t["positions"] for name, t in results.get("tasks", {}).items() if t.get("positions")}
    if not tasks:
        return ""
    letters = list(dict.fromkeys(letter for p in tasks.values() for letter in p["shares"]))
    lines = ["### Predicted positions", "",
             "Share of items whose highest-loglikelihood option sits at each position (cloze: the option's place in "
             "the data; circular: in the rotated order); gold = share of answers at the top position.", "",
             "| task | n | " + " | ".join(letters) + " | top | top share | gold |",
             "|---|---:|" + "---:|" * len(letters) + "---|---:|---:|"]
    for name, p in tasks.items():
        cells = [f"{p['shares'].get(letter, 0.0):.3f}" for letter in letters]
        gold = (p.get("target_shares") or {}).get(p["top"])
        lines.append(f"| {name} | {p['n']} | " + " | ".join(cells)
                     + f" | {p['top']} | {p['top_share']:.3f} | {'–' if gold is None else f'{gold:.3f}'} |")
    return "\n".join(lines) + "\n"


def build_results(lm_out: dict, *, task_groups: dict[str, str], model: dict, env: dict, suite: str,
                  seed: int, limit, run: str | None = None, backend: dict | None = None) -> dict:
    """Assemble the results dict from `lm_eval.simple_evaluate` output.

    `task_groups` maps task -> suite group (known even when a single task is run). The returned dict also holds
    `sample_rows` ({task: [row, ...]}), kept in memory only: `write_run` moves them to samples/<task>.jsonl.
    """
    groups_out = lm_out.get("groups") or {}
    subtasks = lm_out.get("group_subtasks") or {}
    n_samples = lm_out.get("n-samples") or {}
    tasks, rows = {}, {}
    for name, lm_metrics in lm_out["results"].items():
        if name in groups_out or name in subtasks:
            continue
        config = (lm_out.get("configs") or {}).get(name, {})
        tasks[name] = {
            "group": task_groups.get(name),
            "version": lm_out.get("versions", {}).get(name),
            "config_sha256": config_sha256(config),
            "n": int(n_samples.get(name, {}).get("effective", lm_metrics.get("sample_len", 0))),
            "output_type": config.get("output_type"),
            "higher_is_better": dict(lm_out.get("higher_is_better", {}).get(name, {})),
            "metrics": metric_table(lm_metrics),
            "samples": f"samples/{name}.jsonl",
        }
        logged = sorted(lm_out.get("samples", {}).get(name, []), key=lambda s: s["doc_id"])
        rows[name] = [sample_row(s) for s in logged]
        pos = positions(rows[name], max((len(s.get("arguments") or []) for s in logged), default=0))
        if pos is not None:  # multiple choice: which option position the model picks (letter bias)
            tasks[name]["positions"] = pos
    groups = {}
    for name, lm_metrics in groups_out.items():
        members = [t for t in _leaf_tasks(name, subtasks) if t in tasks]
        groups[name] = {"metrics": metric_table(lm_metrics), "n": sum(tasks[t]["n"] for t in members)}
    return {**results_record.new(model=model, env=env, tasks=tasks, groups=groups, suite=suite, seed=seed,
                                 limit=limit, run=run, backend=backend),
            "sample_rows": rows}


def _leaf_tasks(group: str, subtasks: dict) -> list[str]:
    out = []
    for child in subtasks.get(group, []):
        out += _leaf_tasks(child, subtasks) if child in subtasks else [child]
    return out


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if abs(v) >= 1000 else f"{v:.4f}"


def markdown_table(results: dict) -> str:
    """Groups first, then tasks: one row per metric, ↑/↓ = higher/lower is better. When tasks carry a `floors`
    block (soaes_bench.evaluation.task_floors: the best content-free floor per metric), a `floor` column shows it as
    `value (floor name)`; groups have none."""
    with_floors = any(isinstance(t.get("floors"), dict) for t in results["tasks"].values())
    if with_floors:
        lines = ["| task | n | metric | value | stderr | floor |", "|---|---:|---|---:|---:|---:|"]
    else:
        lines = ["| task | n | metric | value | stderr |", "|---|---:|---|---:|---:|"]
    hib: dict[str, bool] = {}
    for t in results["tasks"].values():
        hib.update({k: v for k, v in t["higher_is_better"].items() if v is not None})

    def floor_cell(block, metric) -> str:
        f = (block or {}).get(metric) if isinstance(block, dict) else None
        if not isinstance(f, dict) or f.get("value") is None:
            return "–"
        return f"{_fmt(f['value'])} ({f.get('name')})"

    def add(name, n, metrics, floors=None):
        for metric, mv in metrics.items():
            arrow = {True: " ↑", False: " ↓"}.get(hib.get(metric), "")
            row = f"| {name} | {n} | {metric}{arrow} | {_fmt(mv['value'])} | {_fmt(mv['stderr'])} |"
            lines.append(row + (f" {floor_cell(floors, metric)} |" if with_floors else ""))

    for name, g in results.get("groups", {}).items():
        add(f"**{name}**", g["n"], g["metrics"])
    for name, t in results["tasks"].items():
        add(name, t["n"], t["metrics"], t.get("floors"))
    if with_floors:
        lines.append("\nfloor: the best content-free floor of the task and metric, what a predictor that reads no "
                     "question scores (always A, most common answer, uniform bytes, ...; `soaes-bench floors`).")
    m = results.get("model") or {}
    head = f"Model `{m.get('name')}` ({m.get('n_params')} params), suite `{results.get('suite')}`"
    head += f", limit {results['limit']}" if results.get("limit") else ""
    head += ", chat template" if (results.get("env") or {}).get("chat_template") else ", plain text"
    return head + "\n\n" + "\n".join(lines) + "\n"


def write_run(results: dict, output_dir: str | Path) -> dict:
    """Write samples/<task>.jsonl, results.md, then results.json (last, so it only ever points at complete files).

    Each file is validated (records/) and written atomically. Returns the results dict as written (without
    `sample_rows`).
    """
    output_dir = Path(output_dir)
    rows = results.get("sample_rows") or {}
    written = {k: v for k, v in results.items() if k != "sample_rows"}
    results_record.validate(written, output_dir / results_record.FILE_NAME)  # before any file is written
    for task, info in written["tasks"].items():
        samples_record.write(output_dir / info["samples"], rows.get(task, []))
    positions_md = positions_markdown(written)  # the "Predicted positions" section under the table, if any
    md = markdown_table(written) + ("\n" + positions_md if positions_md else "")
    atomic_write_text(output_dir / "results.md", md)
    results_record.write(output_dir / results_record.FILE_NAME, written)
    return written
