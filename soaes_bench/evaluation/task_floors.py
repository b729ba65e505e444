"""Content-free floors: what a predictor that reads no question scores on a task, from the task data alone.

A task is trusted only when models beat its floor. Every floor is computed by feeding constant predictions through
**the task's own lm-eval hooks** (requests from `build_all_requests`, the task's filters, `process_results`, then
the task's `aggregation()`), so a floor uses exactly the metrics the task reports, for any lm-eval task under
`--include-path` (also custom `process_results`/aggregations, cloze and circular forms: a circular task's docs are
already expanded into rotations, and the constant predictions go through the same hooks). No model runs.

Floors by output type:

- ``multiple_choice``: per item the loglikelihoods ``[0.0 if i == k else -1.0, ...]`` with is_greedy ``i == k``:
  - ``always A``, ``always B``, ...: always choice index k (0, 1, ...; named by position letter whether the
    choices are letters or texts); an item with fewer than k+1 choices gets its last choice;
  - ``uniform chance``: the expected value of a uniformly random pick per item: exact (mean over items of the
    mean over its choices) when the metric's aggregation is lm-eval's ``mean``, else a Monte Carlo estimate
    (``MC_DRAWS`` draws, seed 0) of the aggregation over random picks;
  - ``longest choice (answer-only)`` / ``shortest choice (answer-only)``: the longest / shortest choice text in
    characters (first on ties). They read the options, not the question. When the choices are labels of equal
    length (``A``/``B``/...), the texts are the doc's ``choices`` list if it has one of the same length; with no
    such texts they are left out (they would equal ``always A``).
- ``generate_until``: the same answer goes through the task's filters and ``process_results``:
  - ``empty answer``: "";
  - ``question copied``: the doc's ``question`` field if present, else the rendered prompt (``doc_to_text``);
  - ``most common answer``: the single most common reference (``doc_to_target``; ``doc_to_choice[target]`` when
    the task has choices; the first reference of a list), ties broken by first occurrence, answered to every item.
- ``loglikelihood_rolling`` (bits per byte, byte/word perplexity): a loglikelihood per document:
  - ``uniform bytes``: -ln 256 nats per UTF-8 byte, i.e. 8 bits per byte and byte perplexity 256 (word
    perplexity follows from the task's own word count). Any model that has learnt anything beats it;
  - ``unigram chars (fit on test)``: each character scored by its frequency in the task's own documents (the
    scored texts themselves, no smoothing needed). It knows the test set's character distribution but nothing of
    order or context, so it is an *optimistic* content-free floor: a model worse than it has not learnt even
    which characters are common.
- ``loglikelihood`` (one continuation): ``uniform bytes`` for the continuation, never greedy.
- any other output type: no floor (``no_floor`` says why), never an error.

API: ``task_floors(task, include_path=None, limit=None)`` -> one task's floors and directions (shape below);
``best_floor(task, metric, include_path=None)`` -> (name, value) of the best floor in the metric's good direction
(max when higher is better, min when lower is better), None when there is none (unknown metric, no direction, no
floor); ``floors(tasks=None, include_path=None)`` -> {task: task_floors} (default: every task of both suites).
Floors of one (task, include_path, limit) are computed once per process.

``task_floors`` returns::

    {"task": "soaes_general_mc", "output_type": "multiple_choice", "n": 240,
     "higher_is_better": {"acc": true, "acc_norm": true},          # per metric, from the task (None: no direction)
     "floors": {"acc": {"always A": 0.3042, ..., "uniform chance": 0.25}, ...},   # {metric: {floor: value}}
     "best": {"acc": {"name": "always A", "value": 0.3042}, ...},   # None for a metric without a direction
     "about": {"always A": "choice 1 for every item", ...},         # what each floor is
     "no_floor": null}                                              # or why the task has none

The floor names and the pure helpers live in soaes_bench.metrics.floors (``constant_position_accuracy``,
``uniform_chance_accuracy``, ``most_common_answer``, ``uniform_byte_loglikelihood``, ``unigram_char_loglikelihoods``,
``bits_per_byte``, ``best_of``): they compute the same numbers for simple tasks without lm-eval; tests check the hook
path against them. This module is the part that runs lm-eval's task machinery (no model).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import math
import random
from pathlib import Path
from typing import Callable, Sequence

from soaes_bench.config import suggest
from soaes_bench.defaults import SEED
from soaes_bench.errors import UserError
from soaes_bench.metrics.floors import (EMPTY, LONGEST, MOST_COMMON, QUESTION, SHORTEST, UNIFORM_BYTES,
                                        UNIFORM_CHANCE, UNIGRAM, best_of, most_common_answer, position_name,
                                        uniform_byte_loglikelihood, unigram_char_loglikelihoods)
from soaes_bench.results import metric_higher_is_better

MC_DRAWS = 200  # Monte Carlo draws for `uniform chance` under a non-mean aggregation
FLOORED_TYPES = ("multiple_choice", "generate_until", "loglikelihood_rolling", "loglikelihood")


# --- lm-eval plumbing -------------------------------------------------------------------------------------------
def _number(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _key(include_path) -> tuple[str, str | None]:
    """Cache key: our task folder as `suites` sees it now (tests point it elsewhere) and the user's folder."""
    from soaes_bench.evaluation import suites

    if include_path and not Path(include_path).is_dir():
        raise UserError(f"--include-path {include_path}: not a directory")
    return str(Path(suites.tasks_dir()).resolve()), (str(Path(include_path).resolve()) if include_path else None)


@functools.lru_cache(maxsize=8)
def _manager(key: tuple[str, str | None]):
    """lm-eval TaskManager over our tasks folder (+ the user's), as soaes_bench.evaluation.suites.task_manager."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[p for p in key if p], include_defaults=False)


@contextlib.contextmanager
def _quiet():
    """lm-eval's per-task warnings and build_all_requests' progress bar say nothing useful here."""
    from soaes_bench.evaluation.suites import quiet_lm_eval

    with quiet_lm_eval(), contextlib.redirect_stderr(io.StringIO()):
        yield


def _load(task: str, include_key: tuple[str, str | None]):
    tm = _manager(include_key)
    if task not in tm.all_subtasks:
        kind = "a group, not a task" if task in tm.all_groups else "unknown task"
        raise UserError(f"floors: {kind} {task!r}{suggest(task, tm.all_subtasks) if kind == 'unknown task' else ''}")
    with _quiet():
        return tm.load([task])["tasks"][task]


class _Hooks:
    """One lm-eval task with its requests built once; `items(respond)` = per-doc process_results of a predictor."""

    def __init__(self, task, limit=None):
        self.task = task
        with _quiet():
            task.set_fewshot_seed(SEED)
            task.build_all_requests(limit=limit, apply_chat_template=False)
        self.docs = list(task.doc_iterator(limit=limit))
        by_doc: dict[int, list] = {}
        for inst in task.instances:
            by_doc.setdefault(inst.doc_id, []).append(inst)
        for reqs in by_doc.values():
            reqs.sort(key=lambda r: r.idx)
        self.requests = by_doc

    def items(self, respond: Callable) -> list[dict]:
        """respond(doc_id, doc, requests) -> one raw response per request; returns process_results per doc."""
        task = self.task
        for doc_id, doc in self.docs:
            reqs = self.requests[doc_id]
            for inst, resp in zip(reqs, respond(doc_id, doc, reqs), strict=True):
                inst.resps = [resp] * max(1, int(inst.repeats or 1))
                inst.filtered_resps = {}
        with _quiet():
            task.apply_filters()
        out = []
        for doc_id, doc in self.docs:
            reqs = self.requests[doc_id]
            key = list(reqs[0].filtered_resps)[-1]  # results.json keeps the last filter's value of a metric name
            out.append(task.process_results(doc, [r.filtered_resps[key] for r in reqs]))
        return out

    def aggregate(self, items: list[dict]) -> dict[str, float | None]:
        agg = self.task.aggregation()
        metrics = list(dict.fromkeys(m for it in items for m in it))
        return {m: _number(agg[m]([it[m] for it in items if m in it])) for m in metrics if m in agg}


# --- floors per output type -------------------------------------------------------------------------------------
def _mc_resps(n_choices: int, n_requests: int, k: int) -> list:
    """Loglikelihood responses that make choice k the argmax (and the only greedy one); the unconditional requests
    of acc_mutual_info (past n_choices) get 0.0, so the difference still peaks at k."""
    k = min(k, n_choices - 1)
    return [(0.0 if i == k else -1.0, i == k) for i in range(n_choices)] + [(0.0, False)] * (n_requests - n_choices)


def _choice_texts(task, doc, n: int) -> list[str] | None:
    if getattr(task, "multiple_input", False):
        return None
    try:
        choices = [str(c) for c in task.doc_to_choice(doc)]
    except Exception:
        return None
    if len(choices) == n and len({len(c) for c in choices}) > 1:
        return choices
    texts = doc.get("choices") if isinstance(doc, dict) else None
    if isinstance(texts, list) and len(texts) == n and all(isinstance(t, str) for t in texts):
        return texts
    return None


def _multiple_choice(h: _Hooks, floors: dict, about: dict) -> None:
    task = h.task
    n_choices = {}
    for doc_id, doc in h.docs:
        n_req = len(h.requests[doc_id])
        n = n_req // 2 if "acc_mutual_info" in task.aggregation() and n_req % 2 == 0 else n_req
        n_choices[doc_id] = n
    max_n = max(n_choices.values())
    per_k = []
    for k in range(max_n):
        items = h.items(lambda doc_id, doc, reqs, k=k: _mc_resps(n_choices[doc_id], len(reqs), k))
        per_k.append(items)
        name = position_name(k)
        about[name] = f"choice {k + 1} for every item" + (" (the last when an item has fewer)"
                                                            if min(n_choices.values()) <= k else "")
        for metric, v in h.aggregate(items).items():
            floors.setdefault(metric, {})[name] = v
    # uniform chance: per item, each of its choices with probability 1/n
    options = [[per_k[k][i] for k in range(n_choices[doc_id])] for i, (doc_id, _) in enumerate(h.docs)]
    from lm_eval.api.metrics import mean as lm_mean

    agg = task.aggregation()
    rng = random.Random(0)
    draws = None
    for metric in per_k[0][0]:
        if metric not in agg:
            continue
        values = [[o[metric] for o in opts] for opts in options]
        if agg[metric] is lm_mean and all(isinstance(x, (int, float)) for vs in values for x in vs):
            v = sum(sum(vs) / len(vs) for vs in values) / len(values)
            about.setdefault(UNIFORM_CHANCE, "expected value of a uniformly random choice per item")
        else:
            if draws is None:
                draws = [[rng.randrange(len(opts)) for opts in options] for _ in range(MC_DRAWS)]
            v = sum(_number(agg[metric]([values[i][d[i]] for i in range(len(values))])) or 0.0
                    for d in draws) / MC_DRAWS
            about[UNIFORM_CHANCE] = (f"expected value of a uniformly random choice per item (Monte Carlo, "
                                     f"{MC_DRAWS} draws, for metrics not aggregated by a mean)")
        floors.setdefault(metric, {})[UNIFORM_CHANCE] = _number(v)
    # answer-only heuristics
    texts = {doc_id: _choice_texts(task, doc, n_choices[doc_id]) for doc_id, doc in h.docs}
    if all(t is not None for t in texts.values()):
        for name, pick in ((LONGEST, max), (SHORTEST, min)):
            chosen = {d: pick(range(len(t)), key=lambda i, t=t: len(t[i])) for d, t in texts.items()}
            items = h.items(lambda doc_id, doc, reqs: _mc_resps(n_choices[doc_id], len(reqs), chosen[doc_id]))
            about[name] = (f"the {'longest' if pick is max else 'shortest'} choice text (characters, first on ties); "
                           f"reads the options, not the question")
            for metric, v in h.aggregate(items).items():
                floors.setdefault(metric, {})[name] = v


def _references(task, doc) -> str:
    gold = task.doc_to_target(doc)
    if task.config.doc_to_choice is not None:
        choices = task.doc_to_choice(doc)
        if isinstance(gold, int) and 0 <= gold < len(choices):
            gold = choices[gold]
    if isinstance(gold, (list, tuple)):
        gold = gold[0] if gold else ""
    return str(gold)


def _generation(h: _Hooks, floors: dict, about: dict) -> None:
    task = h.task

    def question(doc):
        q = doc.get("question") if isinstance(doc, dict) else None
        return q if isinstance(q, str) else str(task.doc_to_text(doc))

    answer, count = most_common_answer(_references(task, doc) for _, doc in h.docs)
    short = answer if len(answer) <= 40 else answer[:40] + "…"
    about[EMPTY] = 'the empty string for every item'
    about[QUESTION] = ("the doc's question field as the answer" if all(isinstance(d, dict) and
                       isinstance(d.get("question"), str) for _, d in h.docs) else
                       "the question (or the rendered prompt) as the answer")
    about[MOST_COMMON] = f"{short!r} (the reference of {count} of {len(h.docs)} items) for every item"
    for name, respond in ((EMPTY, lambda doc: ""), (QUESTION, question), (MOST_COMMON, lambda doc: answer)):
        items = h.items(lambda doc_id, doc, reqs, respond=respond: [respond(doc)] * len(reqs))
        for metric, v in h.aggregate(items).items():
            floors.setdefault(metric, {})[name] = v


def _rolling(h: _Hooks, floors: dict, about: dict) -> None:
    texts = {(doc_id, r.idx): r.args[0] for doc_id, _ in h.docs for r in h.requests[doc_id]}
    keys = list(texts)
    unigram = dict(zip(keys, unigram_char_loglikelihoods([texts[k] for k in keys])))
    about[UNIFORM_BYTES] = "every byte value equally likely: -ln 256 nats per UTF-8 byte (8 bits per byte)"
    about[UNIGRAM] = ("each character by its frequency in this task's own documents: optimistic (fit on the "
                      "scored texts), no order or context")
    for name, ll in ((UNIFORM_BYTES, lambda k: uniform_byte_loglikelihood(texts[k])), (UNIGRAM, unigram.get)):
        items = h.items(lambda doc_id, doc, reqs, ll=ll: [ll((doc_id, r.idx)) for r in reqs])
        for metric, v in h.aggregate(items).items():
            floors.setdefault(metric, {})[name] = v


def _loglikelihood(h: _Hooks, floors: dict, about: dict) -> None:
    about[UNIFORM_BYTES] = "the continuation at -ln 256 nats per UTF-8 byte, never the greedy answer"
    items = h.items(lambda doc_id, doc, reqs: [(uniform_byte_loglikelihood(r.args[1]), False) for r in reqs])
    for metric, v in h.aggregate(items).items():
        floors.setdefault(metric, {})[UNIFORM_BYTES] = v


_BY_TYPE = {"multiple_choice": _multiple_choice, "generate_until": _generation,
            "loglikelihood_rolling": _rolling, "loglikelihood": _loglikelihood}


def compute_floors(task_obj, limit=None) -> dict:
    """Floors of a loaded lm-eval task object (no cache); the shape is `task_floors`'."""
    name = getattr(task_obj, "task_name", None) or getattr(task_obj.config, "task", None)
    output_type = getattr(task_obj, "OUTPUT_TYPE", None)
    out = {"task": name, "output_type": output_type, "n": None, "higher_is_better": {}, "floors": {},
           "best": {}, "about": {}, "no_floor": None}
    if output_type not in _BY_TYPE:
        out["no_floor"] = f"output type {output_type!r} has no content-free floor here"
        return out
    h = _Hooks(task_obj, limit)
    out["n"] = len(h.docs)
    if not h.docs:
        out["no_floor"] = "the task has no items"
        return out
    _BY_TYPE[output_type](h, out["floors"], out["about"])
    hib = task_obj.higher_is_better() or {}
    for metric, values in out["floors"].items():
        direction = hib[metric] if metric in hib else metric_higher_is_better(metric)  # the task's word wins
        out["higher_is_better"][metric] = None if direction is None else bool(direction)
        best = best_of(values, out["higher_is_better"][metric])
        out["best"][metric] = None if best is None else {"name": best[0], "value": best[1]}
    return out


@functools.lru_cache(maxsize=64)
def _cached(task: str, include_key: tuple[str, str | None], limit: int | None) -> dict:
    return compute_floors(_load(task, include_key), limit)


# --- API --------------------------------------------------------------------------------------------------------
def task_floors(task: str, include_path=None, limit: int | None = None) -> dict:
    """Floors of one task (module docstring has the shape); `limit` floors only its first N items, as
    `soaes-bench run --limit N` evaluates them. Computed once per (task, include_path, limit) in a process."""
    return copy.deepcopy(_cached(task, _key(include_path), limit))


def best_floor(task: str, metric: str, include_path=None) -> tuple[str, float] | None:
    """(floor name, value) of the best floor of `task`/`metric` in the metric's good direction (max when higher is
    better, min when lower is better); None when the metric has no floor or no direction."""
    best = _cached(task, _key(include_path), None)["best"].get(metric)
    return None if best is None else (best["name"], best["value"])


def most_common_reference(task: str, include_path=None) -> str:
    """The full text of the `most common answer` floor of a generation task (its predictor, for a floor run)."""
    task_obj = _load(task, _key(include_path))
    return most_common_answer(_references(task_obj, doc) for _, doc in task_obj.doc_iterator())[0]


def leaf_tasks(names: Sequence[str], include_path=None) -> list[str]:
    """Task names with groups expanded to their tasks (in group order), without duplicates."""
    tm = _manager(_key(include_path))
    out: list[str] = []
    for name in names:
        if name in tm.all_subtasks:
            found = [name]
        else:
            with _quiet():
                found = list(tm.load([name])["tasks"])
        out += [t for t in found if t not in out]
    return out


def floors(tasks: list[str] | None = None, include_path=None) -> dict:
    """{task: task_floors(task)} for `tasks` (names of tasks or groups; default: every task of both suites). A task
    that cannot be loaded or floored gets a `no_floor` entry with the error instead of stopping the others."""
    from soaes_bench.evaluation.suites import select_tasks

    tm = _manager(_key(include_path))
    names, _ = select_tasks(tm, "all", tasks)
    out = {}
    for name in leaf_tasks(names, include_path):
        try:
            out[name] = task_floors(name, include_path)
        except UserError:
            raise
        except Exception as e:  # a broken user task must not hide the others
            out[name] = {"task": name, "output_type": None, "n": None, "higher_is_better": {}, "floors": {},
                         "best": {}, "about": {},
                         "no_floor": f"error: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}
    return out


def results_block(task: str, include_path=None, limit: int | None = None) -> dict:
    """results.json's `floors` block of a task: {metric: {"name", "value"}} for every metric with a best floor."""
    f = task_floors(task, include_path, limit)
    return {m: dict(b) for m, b in f["best"].items() if b is not None}


# --- CLI ---------------------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if abs(v) >= 1000 else f"{v:.4f}"


def _align(rows: list[list[str]], right_from: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i >= right_from else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def format_floors(result: dict) -> str:
    """One small table per task: a row per metric, a column per floor, then the best floor."""
    blocks = []
    for name, f in result.items():
        head = f"{name}  ({f.get('output_type')}, {f.get('n') if f.get('n') is not None else '?'} items)"
        if f.get("no_floor"):
            blocks.append(f"{head}\n  no floor: {f['no_floor']}")
            continue
        names: list[str] = []
        for values in f["floors"].values():
            names += [n for n in values if n not in names]
        rows = [["metric", *names, "best"]]
        for metric, values in f["floors"].items():
            arrow = {True: " ↑", False: " ↓"}.get(f["higher_is_better"].get(metric), " (no direction)")
            best = f["best"].get(metric)
            rows.append([metric + arrow, *[_fmt(values.get(n)) for n in names],
                         "–" if best is None else f"{_fmt(best['value'])} ({best['name']})"])
        lines = [head] + ["  " + line for line in _align(rows)]
        lines += [f"  {n}: {f['about'][n]}" for n in names if n in f.get("about", {})]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def cli_floors(args) -> int:
    """`soaes-bench floors`: the content-free floors of the suites' (or the given) tasks, as tables or JSON."""
    from soaes_bench.evaluation.suites import SUITES, select_tasks

    tm = _manager(_key(args.include_path))
    if args.tasks:
        names, _ = select_tasks(tm, "all", args.tasks)
    else:
        if args.suite not in SUITES:
            raise UserError(f"--suite: must be one of {', '.join(SUITES)}, got {args.suite!r}")
        names, _ = select_tasks(tm, args.suite, None)
    result = floors(names, args.include_path)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(format_floors(result), end="")
    return 0
