"""lm-eval output -> the soaes-bench results schema (results.json, samples/<task>.jsonl, results.md).

The one place that knows the `soaes-bench/results` layout written by `run` (docs/DESIGN.md, "Results schema");
soaes_bench/results.py reads it back. Field names here must stay exactly those of DESIGN.md.

Per-sample rows (samples/<task>.jsonl) carry per-item numbers so that runs can be compared item by item:
- multiple choice: metrics acc/acc_norm (0/1); target and prediction are the answer letters;
- generation: metrics rouge1/2/L (0-100) and `bleu_pair` [prediction, reference] (corpus BLEU is recomputed from
  pairs, it is not a mean of per-item scores), metric `looping` (0/1) and `pred_len`/`ref_len` (characters, from
  which the corpus `length_ratio` is recomputed; `distinct` is the share of distinct `prediction`s);
- bits per byte: metrics bits_per_byte, byte_perplexity, word_perplexity of that document, plus `loglikelihood`
  (nats), `n_bytes` and `n_words` so the corpus value (-sum ll / sum bytes / ln 2) can be recomputed exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from datetime import datetime, timezone
from pathlib import Path

from soaes_bench.io import atomic_write_text, write_json, write_jsonl

SCHEMA = "soaes-bench/results"
SCHEMA_VERSION = 1
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
    (metadata other than `version`: the YAML's absolute path, --model_args copied in by the lm_eval CLI)."""
    cfg = dict(config)
    meta = cfg.get("metadata")
    if isinstance(meta, dict):
        cfg["metadata"] = {k: v for k, v in meta.items() if k == "version"}
    text = json.dumps(cfg, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    metrics = row["metrics"]
    for name in sample.get("metrics", []):
        value = sample.get(name)
        if name == "bleu4" and isinstance(value, (list, tuple)) and len(value) == 2:
            row["bleu_pair"] = [str(value[0]), str(value[1])]
        elif name == "length_ratio" and isinstance(value, (list, tuple)) and len(value) == 2:
            row["pred_len"], row["ref_len"] = int(value[0]), int(value[1])  # characters; the ratio is a corpus one
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
    if args and len(args[0]) == 2 and isinstance(args[0][1], str) and resps and isinstance(resps[0], (list, tuple)):
        # multiple choice: one (context, continuation) request per choice, responses (loglikelihood, is_greedy)
        letters = [a[1].strip() for a in args]
        lls = [float(r[0]) for r in resps]
        row["prediction"] = letters[max(range(len(lls)), key=lls.__getitem__)]
        row["target"] = letters[target] if isinstance(target, int) and 0 <= target < len(letters) else target
    elif "bleu_pair" in row:
        row["prediction"], row["target"] = row["bleu_pair"]
    elif resps and isinstance(resps[0], str):
        row["prediction"], row["target"] = resps[0], None if target is None else str(target)
    return row


def build_results(lm_out: dict, *, task_groups: dict[str, str], model: dict, env: dict, suite: str,
                  seed: int, limit, run: str | None = None) -> dict:
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
        rows[name] = [sample_row(s) for s in sorted(lm_out.get("samples", {}).get(name, []), key=lambda s: s["doc_id"])]
    groups = {}
    for name, lm_metrics in groups_out.items():
        members = [t for t in _leaf_tasks(name, subtasks) if t in tasks]
        groups[name] = {"metrics": metric_table(lm_metrics), "n": sum(tasks[t]["n"] for t in members)}
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "kind": "eval",
        "run": run,
        "suite": suite,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": seed,
        "limit": limit,
        "model": model,
        "env": env,
        "tasks": tasks,
        "groups": groups,
        "sample_rows": rows,
    }


def _leaf_tasks(group: str, subtasks: dict) -> list[str]:
    out = []
    for child in subtasks.get(group, []):
        out += _leaf_tasks(child, subtasks) if child in subtasks else [child]
    return out


def env_info(device: str, chat_template: bool) -> dict:
    import lm_eval  # noqa: F401
    import torch
    import transformers
    from importlib.metadata import version

    from soaes_bench import __version__

    return {
        "soaes_bench": __version__,
        "lm_eval": version("lm_eval"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": device,
        "threads": torch.get_num_threads(),
        "chat_template": bool(chat_template),
    }


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if abs(v) >= 1000 else f"{v:.4f}"


def markdown_table(results: dict) -> str:
    """Groups first, then tasks: one row per metric, ↑/↓ = higher/lower is better."""
    lines = ["| task | n | metric | value | stderr |", "|---|---:|---|---:|---:|"]
    hib: dict[str, bool] = {}
    for t in results["tasks"].values():
        hib.update({k: v for k, v in t["higher_is_better"].items() if v is not None})

    def add(name, n, metrics):
        for metric, mv in metrics.items():
            arrow = {True: " ↑", False: " ↓"}.get(hib.get(metric), "")
            lines.append(f"| {name} | {n} | {metric}{arrow} | {_fmt(mv['value'])} | {_fmt(mv['stderr'])} |")

    for name, g in results.get("groups", {}).items():
        add(f"**{name}**", g["n"], g["metrics"])
    for name, t in results["tasks"].items():
        add(name, t["n"], t["metrics"])
    m = results.get("model") or {}
    head = f"Model `{m.get('name')}` ({m.get('n_params')} params), suite `{results.get('suite')}`"
    head += f", limit {results['limit']}" if results.get("limit") else ""
    head += ", chat template" if (results.get("env") or {}).get("chat_template") else ", plain text"
    return head + "\n\n" + "\n".join(lines) + "\n"


def write_run(results: dict, output_dir: str | Path) -> dict:
    """Write samples/<task>.jsonl, results.md, then results.json (last, so it only ever points at complete files).

    Each file is written atomically. Returns the results dict as written (without `sample_rows`).
    """
    output_dir = Path(output_dir)
    rows = results.get("sample_rows") or {}
    written = {k: v for k, v in results.items() if k != "sample_rows"}
    for task, info in written["tasks"].items():
        write_jsonl(output_dir / info["samples"], rows.get(task, []))
    atomic_write_text(output_dir / "results.md", markdown_table(written))
    write_json(output_dir / "results.json", written)
    return written
