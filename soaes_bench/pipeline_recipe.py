"""A pipeline recipe (`soaes-bench pipeline --recipe R`) as a dataclass, and every check made on it before anything
trains: its fields and gates (`validate`: unknown references, vacuous threshold gates, statistical checks without
samples), the tasks, metrics and models it names (`preflight`), and which tasks each model is evaluated on
(`gated_tasks`). soaes_bench/pipeline.py runs it; docs/pipeline.md explains the recipe.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from soaes_bench import validate as vd
from soaes_bench.config import from_dict, suggest
from soaes_bench.errors import UserError
from soaes_bench.phase_eval import EvalSpec
from soaes_bench.reporting.gates import NO_SAMPLES_REFERENCES, check_references, refuse_vacuous
from soaes_bench.results import PLAIN
from soaes_bench.training.cpt import CPTConfig
from soaes_bench.training.distill import HELDOUT_TASK, DistillConfig
from soaes_bench.training.sft import SFTConfig

PHASES = ("cpt", "sft", "distill")
EXIT_GATE_FAILED, EXIT_TIME_CAP = 3, 4
# A phase's merged metrics (lm-eval results + phase-internal ones) that its gate judged. Not named results.json:
# that name belongs to the `soaes-bench run` schema (provenance, samples), which results.load() reads.
PHASE_METRICS = "phase_metrics.json"
# Plain-text results (results.PLAIN, results.PLAIN_DIR). Chat-templated multiple choice measures whether a model
# answers a cloze question inside a chat turn; after SFT a 17M model does not (docs/results/2026-12-reference.md), while the same
# items scored as plain text still measure what it knows. Gates can read both.
CPT_VAL_TASK = "cpt_val"  # CPT validation losses as a task
INTERNAL_TASKS = (CPT_VAL_TASK, HELDOUT_TASK)  # measured by the phases themselves, not by lm-eval
INTERNAL_METRICS = {CPT_VAL_TASK: ("val_loss_domain", "val_loss_general"),  # cpt.run_cpt's eval_fn
                    HELDOUT_TASK: ("top1_agreement", "kl_teacher", "ce")}  # distill.heldout_metrics
ROLLING_METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")  # lm-eval adds them to rolling tasks
FLOOR = "floor"  # gate reference: the best content-free predictor of each task (a `superior` gate's natural bar)


@dataclass
class PipelineRecipe:
    """A pipeline recipe (training/recipes/reference.yaml)."""

    name: str = field(metadata={"help": "run name (default output runs/<name>)"})
    output: str | None = field(default=None, metadata={
        "help": "runs directory (default runs/<name>; --output overrides; never inside soaes_bench/)"})
    init: str = field(default="soaes_bench/assets/models/base", metadata={"help": "starting model dir"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer dir (default: shared)"})
    evaluation: EvalSpec | None = field(default_factory=EvalSpec, metadata={"help": "null = no lm-eval; gates see only phase metrics"})
    cpt: CPTConfig | None = None
    sft: SFTConfig | None = None
    distill: DistillConfig | None = None

    def phases(self) -> list[str]:
        return [p for p in PHASES if getattr(self, p) is not None]


def gated_tasks(r: PipelineRecipe, model: str) -> set[str]:
    """Tasks that gates read from `model` ("base" or a phase): its own gates' tasks, and those of later gates
    that compare with it (reference "base", "previous" of the next phase, or its name)."""
    phases = r.phases()
    read = set()
    for i, p in enumerate(phases):
        for c in getattr(r, p).gates:
            before = phases[i - 1] if i else "base"
            if p == model or c.reference == model or (c.reference == "previous" and before == model):
                read.add(c.task)
    return read - set(INTERNAL_TASKS)


def _references_known(r: PipelineRecipe, phase: str) -> set[str]:
    known = {"previous", *r.phases()[: r.phases().index(phase)]}
    if r.evaluation is not None:
        known |= {"base", FLOOR}
    if phase == "cpt":
        known.add("base_val")  # the starting model's validation losses on the CPT held-out text
    if phase == "sft" and r.sft.single_stage:
        known.add("single_stage")
    if phase == "distill" and r.distill.baseline:
        known.add("baseline")
    return known


def validate(r: PipelineRecipe, source: str) -> None:
    """Refuse a recipe whose gates cannot be judged, before any training: unknown references, tasks nobody
    evaluates, statistical checks (test: superior/non_inferior) without per-item samples, and threshold gates that
    a content-free answer already passes (gates.refuse_vacuous; reference gates are checked once their reference
    results exist, in run_pipeline)."""
    if not r.phases():
        raise UserError(f"{source}: no phases (give at least one of {', '.join(PHASES)})")
    for p in r.phases():
        check_references(getattr(r, p).gates, _references_known(r, p), f"{source}: {p}.gates")
        for c in getattr(r, p).gates:
            if c.test is None:
                continue
            why = (f"task {c.task!r} is measured by the phase itself" if c.task in INTERNAL_TASKS else
                   f"reference {c.reference!r} is computed by the phase itself" if c.reference in NO_SAMPLES_REFERENCES
                   else "evaluation is null (no lm-eval runs)" if r.evaluation is None else None)
            if why:
                raise UserError(f"{source}: {p}.gates: check {c.name!r}: test {c.test} needs per-item samples of "
                                f"both runs, but {why}, with no samples; use a point check (op)")
        refuse_vacuous(getattr(r, p).gates, {}, skip=INTERNAL_TASKS, where=f"{source}: {p}.gates")
    ev = r.evaluation
    if ev is None:
        return
    plain = {t + PLAIN for t in ev.plain_tasks}
    for p in r.phases():
        for c in getattr(r, p).gates:
            missing = (c.task not in plain if c.task.endswith(PLAIN) else
                       ev.tasks is not None and c.task not in ev.tasks and c.task not in INTERNAL_TASKS)
            if missing:
                where = "evaluation.plain_tasks" if c.task.endswith(PLAIN) else "evaluation.tasks"
                raise UserError(f"{source}: {p}.gates: check {c.name!r} reads task {c.task!r}, which {where} "
                                f"does not evaluate")
            if c.reference == "single_stage" and ev.ablation_tasks is not None and c.task not in ev.ablation_tasks:
                raise UserError(f"{source}: {p}.gates: check {c.name!r} compares {c.task!r} with the single-stage "
                                f"model, which evaluation.ablation_tasks does not evaluate")


def _task_metrics(entry) -> set[str] | None:
    """Metric names an lm-eval task (or group) reports, from its indexed config; None when it declares none."""
    cfg = entry.cfg or {}
    listed = cfg.get("metric_list") or cfg.get("aggregate_metric_list") or []
    names = {m["metric"] for m in listed if isinstance(m, dict) and isinstance(m.get("metric"), str)}
    if cfg.get("output_type") == "loglikelihood_rolling":
        names |= set(ROLLING_METRICS)
    return names or None


def preflight(r: PipelineRecipe, source: str, only: str | None = None, lm_eval_metrics: bool = True) -> None:
    """Everything the phases will read, checked before the first one trains (validate() checks the gates' logic):
    the init and teacher model dirs (config/weights agreement, complete, finite), the tokenizer, every data file of
    every phase (present, UTF-8), and every task and metric that a gate or `evaluation` names (a typo in the SFT
    gate must not wait for CPT to finish). lm_eval_metrics=False: another evaluate function than lm-eval's
    reports the metrics (tests), so only the task names are checked against the task configs."""
    checked = r.phases() if only is None else [only]
    vd.model_dir(r.init, f"{source}: init:")
    if r.tokenizer is not None:
        vd.tokenizer_dir(r.tokenizer, f"{source}: tokenizer:")
    files = []
    if "cpt" in checked:
        files += [("cpt.domain", r.cpt.domain), ("cpt.general", r.cpt.general)]
        if r.cpt.reads_focus:
            files.append(("cpt.focus", r.cpt.focus))
    if "sft" in checked:
        files += [(f"sft.stages[{i}].data", st.data) for i, st in enumerate(r.sft.stages)]
        if r.sft.replay_fraction:
            files.append(("sft.general", r.sft.general))
    if "distill" in checked:
        files += [(f"distill.data[{i}]", f) for i, f in enumerate(r.distill.data)]
        if r.distill.teacher is not None:
            vd.model_dir(r.distill.teacher, f"{source}: distill.teacher:")
    for where, path in files:
        vd.input_file(path, f"{source}: {where}")
    named = [(f"{p}.gates: check {c.name!r}", c.task.removesuffix(PLAIN), c.metric)
             for p in r.phases() for c in getattr(r, p).gates]
    ev = r.evaluation
    if ev is not None:
        named += [(f"evaluation.{k}", t, None)
                  for k in ("tasks", "plain_tasks", "ablation_tasks") for t in (getattr(ev, k) or [])]
    for where, task, metric in named:
        known = INTERNAL_METRICS.get(task)
        if known and metric is not None and metric not in known:
            raise UserError(f"{source}: {where}: task {task!r} has no metric {metric!r}{suggest(metric, known)} "
                            f"(its metrics: {', '.join(known)})")
    lm_named = [(w, t, m) for w, t, m in named if t not in INTERNAL_METRICS]
    if not lm_named:
        return
    from soaes_bench.evaluation.suites import task_manager

    tm = task_manager()
    for where, task, metric in lm_named:
        if task not in tm.task_index:
            raise UserError(f"{source}: {where}: unknown task {task!r}{suggest(task, tm.all_tasks)}")
        metrics = _task_metrics(tm.task_index[task]) if lm_eval_metrics else None
        if metric is not None and metrics is not None and metric not in metrics:
            raise UserError(f"{source}: {where}: task {task!r} has no metric {metric!r}{suggest(metric, metrics)} "
                            f"(its metrics: {', '.join(sorted(metrics))})")


def saved_settings(cfg_type, saved: dict) -> dict:
    """A phase's saved settings as the current code reads them: a field added since then takes its default, so
    --resume still accepts runs made before it (a field since removed leaves them as saved, and they differ)."""
    try:
        return json.loads(json.dumps(asdict(from_dict(cfg_type, saved))))
    except UserError:
        return saved


def training_settings(settings: dict) -> dict:
    """A phase's settings without its gates: what decides the trained model (gates only judge it)."""
    return {k: v for k, v in settings.items() if k != "gates"}
