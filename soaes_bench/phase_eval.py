"""Evaluation of the pipeline's models: what each model is scored on (EvalSpec), the lm-eval runs of a model dir and
of the content-free floor, read back from disk when a run already made them, and merging them into one results dict
the gates read. pipeline.py decides when; this module decides how.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from soaes_bench.config import positive
from soaes_bench.defaults import BATCH_SIZE, GEN_BATCH_SIZE
from soaes_bench.io import read_json
from soaes_bench.results import PLAIN, PLAIN_DIR


@dataclass
class EvalSpec:
    """Recipe block `evaluation:`."""

    suite: str = field(default="all", metadata={"help": "general, domain or all"})
    tasks: list[str] | None = field(default=None, metadata={"help": "only these tasks (overrides suite): the ones the gates read"})
    plain_tasks: list[str] = field(default_factory=list, metadata={
        "help": f"tasks scored once more as plain text, no chat template; gates read them as <task>{PLAIN}"})
    ablation_tasks: list[str] | None = field(default=None, metadata={
        "help": "tasks of the single-stage SFT ablation model (default: the same as every phase model's); its "
                "report reads soaes_domain_qa"})
    gated_only: bool = field(default=False, metadata={
        "help": "evaluate each model only on the tasks that gates read from it (of tasks and plain_tasks): a few "
                "minutes less on 2 cores; `soaes-bench run` scores the final model on the whole suite"})
    limit: int | None = field(default=None, metadata={"help": "items per task (None = all)", "check": positive})
    batch_size: int = field(default=BATCH_SIZE, metadata={"help": "sequences per scoring forward", "check": positive})
    gen_batch_size: int = field(default=GEN_BATCH_SIZE, metadata={"help": "prompts per generation batch", "check": positive})

    def for_ablation(self) -> "EvalSpec":
        """What the single-stage model is evaluated on."""
        return self if self.ablation_tasks is None else replace(self, tasks=self.ablation_tasks, plain_tasks=[])

    def for_model(self, read: set[str]) -> "EvalSpec | None":
        """What a model whose results gates read `read` (task names, <task>@plain) is evaluated on; None: nothing."""
        if not self.gated_only:
            return self
        plain = [t for t in self.plain_tasks if t + PLAIN in read]
        read = {t for t in read if not t.endswith(PLAIN)}
        tasks = sorted(read) if self.tasks is None else [t for t in self.tasks if t in read]
        return replace(self, tasks=tasks, plain_tasks=plain) if tasks or plain else None


def evaluate_model(model_dir: Path, spec: EvalSpec, out: Path, evaluate_fn) -> dict:
    """lm-eval results of model_dir (read back from out/results.json when present), plus the plain-text run of
    spec.plain_tasks in <out>/../eval_plain/ with its task names suffixed by PLAIN. Each task entry gets
    `results_path` (its results.json), where gates find its per-item samples."""
    from soaes_bench.evaluation import writer
    from soaes_bench.models import load_for_eval
    from soaes_bench.records.provenance import model_block

    runs = [(out, {"suite": spec.suite, "tasks": spec.tasks}, "")] if spec.tasks != [] else []
    if spec.plain_tasks:
        runs.append((out.parent / PLAIN_DIR, {"tasks": spec.plain_tasks, "chat_template": "off"}, PLAIN))
    loaded, parts = None, []
    for where, kw, suffix in runs:
        if (where / "results.json").is_file():
            res = read_json(where / "results.json")
        else:
            model, tokenizer = loaded = loaded or load_for_eval(model_dir)
            info = model_block(model, model_dir, name=str(model_dir))  # "runs/x/sft/model": reports label by name
            res = writer.write_run(evaluate_fn(model, tokenizer, limit=spec.limit, batch_size=spec.batch_size,
                                               gen_batch_size=spec.gen_batch_size, model_info=info, **kw), where)
        # each task keeps the results.json it came from: gates pair its per-item samples with a reference's
        parts.append({"tasks": {k + suffix: dict(v, results_path=str(where / "results.json"))
                                for k, v in res.get("tasks", {}).items()},
                      "groups": {} if suffix else res.get("groups") or {}})
    return merge_results(*parts)


def evaluate_floor(tasks: list[str], limit, where: Path) -> dict:
    """Gate reference "floor": each task's best content-free predictor (evaluation.constant.floor_lm) run once like
    a model. A content-free answer reads no chat template, so its tasks also stand for <task>@plain."""
    from soaes_bench.evaluation import writer
    from soaes_bench.evaluation.constant import evaluate_constant, floor_lm

    res = read_json(where / "results.json") if (where / "results.json").is_file() else None
    if res is None or not set(tasks) <= set(res["tasks"]):  # a gate added since (e.g. on --resume): run them all again
        res = writer.write_run(evaluate_constant(floor_lm(tasks, limit=limit), tasks=tasks, limit=limit), where)
    entries = {k: dict(v, results_path=str(where / "results.json")) for k, v in res["tasks"].items()}
    return {"tasks": {**entries, **{k + PLAIN: v for k, v in entries.items()}}, "groups": {}}


def default_evaluate(model, tokenizer, **kw):  # suite, tasks, limit, batch_size, gen_batch_size, chat_template, model_info
    from soaes_bench.evaluation.run import evaluate

    return evaluate(model, tokenizer, **kw)


def val_task(name: str, values: dict | None) -> dict:
    """Phase-internal validation losses as a results-style task (lower is better), so gates can read them."""
    metrics = {k: {"value": v, "stderr": None} for k, v in (values or {}).items()}
    return {"tasks": {name: {"n": None, "metrics": metrics, "higher_is_better": {k: False for k in metrics}}}}


def merge_results(*results: dict) -> dict:
    out = {"tasks": {}, "groups": {}}
    for r in results:
        out["tasks"].update(r.get("tasks") or {})
        out["groups"].update(r.get("groups") or {})
    return out
