"""`soaes-bench pipeline`: the gated phases of a recipe, in order: cpt -> sft -> distill; and `soaes-bench gate`,
the same gates of one phase judged on saved runs.

    soaes-bench pipeline --recipe training/recipes/reference.yaml [--resume] [--only sft] [--output runs/reference]
    accelerate launch --config_file training/accelerate/cpu2.yaml -m soaes_bench pipeline --recipe ...
    soaes-bench gate --recipe training/recipes/reference.yaml --phase cpt --results runs/reference/cpt ...

The top layer (with cli.py): it wires the training phases (soaes_bench/training/), the evaluation
(soaes_bench/evaluation/) and the gate judging (soaes_bench/reporting/gates.py) and decides nothing numeric itself.
Each phase starts from the previous phase's model (the first from `init`), trains with the one loop, is evaluated
and then gated (reporting/gates.py). Layout of the output directory (default runs/<name>):

    base/eval/results.json             the starting model, evaluated once (gate reference "base")
    floor/eval/results.json            each gated task's best content-free predictor (gate reference "floor")
    <phase>/model/                     the phase's HF model (bf16 safetensors)
    <phase>/work/, stageN/, baseline/  checkpoints, logs, extra models (SFT stages, ablation, undistilled draft)
    <phase>/eval/results.json          lm-eval results of the phase model (+ samples/); evaluation.tasks picks
                                       the tasks (default: the whole suite); with evaluation.gated_only, each
                                       model gets only the tasks gates read from it (gated_tasks)
    <phase>/eval_plain/                evaluation.plain_tasks again without the chat template (gates: <task>@plain)
    <phase>/gate.json, gate.md         the gate report;  <phase>/done.json  marks a finished phase
    cpt|sft/forgetting.json, .md       items right in base and wrong now (and the reverse), McNemar (ablations.py)
    sft/ablation.json, distill/ablation.json (+ .md)   single-stage vs progressive SFT; undistilled vs distilled draft
    timings.json                       wall seconds of the base evaluation and of each phase's training and eval+gate

Several processes (`accelerate launch`): every phase trains on all of them through the one loop; evaluation, gates,
the teacher cache and every file write happen on the main process while the others wait (dist.py), and the gate
verdict is broadcast so all processes return the same exit code (the launcher itself reports any non-zero one as 1).

Exit codes: 0 every phase ran and passed its gate; 2 bad input (UserError), including a vacuous gate, one that a
content-free answer would pass (refused before training: threshold gates by `validate`, reference gates as soon as
their reference results exist; gates.py); 3 a gate failed (the pipeline stops after that phase, gate.json says which
check); 4 a phase stopped at its max_minutes time cap (re-run with --resume); 1 training diverged (a non-finite
loss or gradient norm, loop.TrainingDiverged). Every input is checked before the first phase trains (`preflight`),
and the output directory is locked for the run (soaes_bench/lock.py).
--resume skips phases with done.json (same settings; when only the gates changed, the saved results are gated again
without retraining) and continues interrupted ones from their checkpoints; without
it an existing phase directory is an error, so nothing is overwritten silently. --only PHASE runs that phase alone,
starting from the previous phase's saved model.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from soaes_bench import lock, phase_eval
from soaes_bench import validate as vd
from soaes_bench.config import from_dict, load_dataclass, suggest
from soaes_bench.errors import UserError
from soaes_bench.io import read_json, write_json
from soaes_bench.phase_eval import EvalSpec
from soaes_bench.records import gate as gate_record
from soaes_bench.records import summary as summary_record
from soaes_bench.records import timings as timings_record
from soaes_bench.reporting.ablations import phase_reports
from soaes_bench.reporting.gates import (NO_SAMPLES_REFERENCES, check_references, evaluate_gate, gate_markdown,
                                         load_run, locate_samples, refuse_vacuous, write_gate)
from soaes_bench.results import PLAIN, PLAIN_DIR
from soaes_bench.training.cpt import CPTConfig
from soaes_bench.training.dist import make_accelerator, on_main
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


def _settings(cfg_type, saved: dict) -> dict:
    """A phase's saved settings as the current code reads them: a field added since then takes its default, so
    --resume still accepts runs made before it (a field since removed leaves them as saved, and they differ)."""
    try:
        return json.loads(json.dumps(asdict(from_dict(cfg_type, saved))))
    except UserError:
        return saved


def _training_settings(settings: dict) -> dict:
    """A phase's settings without its gates: what decides the trained model (gates only judge it)."""
    return {k: v for k, v in settings.items() if k != "gates"}


def run_pipeline(recipe: str | Path, output: str | Path | None = None, resume: bool = False, only: str | None = None,
                 evaluate_fn=None) -> int:
    """Run the recipe; returns the exit code (module docstring). `evaluate_fn` replaces soaes_bench.evaluate (tests).
    Every input is checked before anything is written (validate, preflight, the output dir), and the output
    directory is locked for the run (soaes_bench/lock.py): a second pipeline into it stops at once."""
    r = load_dataclass(PipelineRecipe, recipe)
    validate(r, str(recipe))
    phases = r.phases()
    if only is not None and only not in phases:
        raise UserError(f"--only: {only!r} is not a phase of {recipe} ({', '.join(phases)})")
    todo = [only] if only else phases
    out = vd.output_dir(output or r.output or f"runs/{r.name}", "--output" if output else f"{recipe}: output:")
    preflight(r, str(recipe), only, lm_eval_metrics=evaluate_fn is None)
    evaluate_fn = evaluate_fn or phase_eval.default_evaluate
    pending = []  # the SFT ablation in its own process: collected once it has finished, stopped on an error
    with lock.hold(out, "soaes-bench pipeline"):
        try:
            return _Run(r, recipe, out, phases, todo, only, evaluate_fn, pending, make_accelerator()).run(resume)
        finally:
            for ablation in pending:
                ablation.stop()


class _Run:
    """run_pipeline's work, under the output directory's lock: the state one run carries from phase to phase
    (references for the gates, the current model, timings, the pending SFT ablation) and the steps of a phase."""

    def __init__(self, r: PipelineRecipe, recipe, out: Path, phases: list[str], todo: list[str], only: str | None,
                 evaluate_fn, pending: list, accelerator):
        self.r, self.recipe, self.out, self.phases, self.todo, self.only = r, recipe, out, phases, todo, only
        self.evaluate_fn, self.pending, self.accelerator = evaluate_fn, pending, accelerator
        self.refs: dict[str, dict] = {}
        self.current, self.previous = Path(r.init), None
        self.timings: dict[str, object] = {}

    # output, timings, the SFT ablation ------------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.accelerator.is_main_process:
            print(msg, flush=True)

    def note_time(self, key: str, value) -> None:
        self.timings[key] = value
        if self.accelerator.is_main_process:
            timings_record.write(self.out / timings_record.FILE_NAME, self.timings)

    def note_ablation(self, info: dict) -> None:  # the seconds the ablation trained, wherever it did
        self.note_time("sft", {**self.timings.get("sft", {}), "single_stage_s": info["wall_s"]})

    def finish_ablation(self, info: dict) -> None:
        on_main(self.accelerator, lambda: _complete_ablation(self.r, self.out / "sft", info, self.evaluate_fn))
        self.note_ablation(info)

    def collect(self, finished_only: bool) -> None:
        """Collect the SFT ablation trained in its own process (join: this process gets its threads back), with its
        evaluation and report: all of them, or only those that have finished (the others go on meanwhile)."""
        for ablation in [a for a in self.pending if not finished_only or a.finished()]:
            self.pending.remove(ablation)
            self.finish_ablation(ablation.join())

    def done(self, code: int) -> int:
        """Exit `code` after collecting the SFT ablation (it feeds nothing downstream, so later phases ran meanwhile)."""
        self.collect(finished_only=False)
        return code

    # before the phases ----------------------------------------------------------------------------------------------
    def start(self, resume: bool) -> None:
        """Refuse to overwrite, read the timings of earlier runs, evaluate the floor and the base (references)."""
        out, r = self.out, self.r
        if not resume:
            clash = [p for p in self.todo if (out / p).exists()]
            if clash:
                raise UserError(f"{out / clash[0]}: exists; pass --resume to continue it, or choose another --output")
        self.accelerator.wait_for_everyone()  # every process has checked the output dir before the main one writes
        # timings.json accumulates over --resume/--only runs, so the file always covers every phase that ran
        previous = (timings_record.read(out / timings_record.FILE_NAME)
                    if (resume or self.only) and (out / timings_record.FILE_NAME).is_file() else {})
        self.timings = {**previous, "processes": self.accelerator.num_processes}
        gates = [(p, c) for p in self.phases for c in getattr(r, p).gates]
        floor_tasks = sorted({c.task.removesuffix(PLAIN) for _, c in gates if c.reference == FLOOR})
        if floor_tasks:  # seconds: no model
            self.refs[FLOOR] = on_main(self.accelerator, lambda: phase_eval.evaluate_floor(
                floor_tasks, r.evaluation.limit, out / FLOOR / "eval"))
        base_spec = r.evaluation and r.evaluation.for_model(gated_tasks(r, "base"))
        if base_spec is not None and any(c.reference == "base" or (c.reference == "previous" and p == self.phases[0])
                                         for p, c in gates):
            t0 = time.perf_counter()
            cached = (out / "base" / "eval" / "results.json").is_file()
            self.refs["base"] = on_main(self.accelerator, lambda: phase_eval.evaluate_model(
                Path(r.init), base_spec, out / "base" / "eval", self.evaluate_fn))
            if not cached:
                self.note_time("base_eval_s", round(time.perf_counter() - t0, 2))
            # every gate that compares with the base can be judged for vacuity now, before CPT trains
            for p in self.todo:
                refuse_vacuous([c for c in getattr(r, p).gates if c.reference == "base"], self.refs,
                               skip=INTERNAL_TASKS, where=f"{self.recipe}: {p}.gates")
        self.previous = self.refs.get("base")

    def refuse_vacuous_now(self, phase: str) -> None:
        """Before a phase trains (or is re-gated): its gates against results that exist now (base, previous,
        earlier phases); single_stage and baseline exist only after its training."""
        available = dict(self.refs, previous=self.previous) if self.previous else dict(self.refs)
        refuse_vacuous(getattr(self.r, phase).gates, available, skip=INTERNAL_TASKS,
                       where=f"{self.recipe}: {phase}.gates")

    # one phase ------------------------------------------------------------------------------------------------------
    def read_back(self, phase: str) -> None:
        """A finished phase's model and results become the next phase's start and `previous`."""
        pdir = self.out / phase
        self.current = pdir / "model"
        self.refs[phase] = self.previous = locate_samples(read_json(pdir / PHASE_METRICS), pdir)

    def judge(self, phase: str, summary: dict) -> dict:
        """Evaluate and gate the phase model (main process); it becomes the next phase's start."""
        cfg, pdir = getattr(self.r, phase), self.out / phase
        verdict = on_main(self.accelerator, lambda: _finish_phase(self.r, phase, cfg, pdir, summary, self.refs,
                                                                  self.previous, self.evaluate_fn))
        self.current, self.refs[phase], self.previous = pdir / "model", verdict["results"], verdict["results"]
        return verdict

    def finished(self, phase: str) -> int | None:
        """A phase with done.json (--resume): check its settings, finish a stopped ablation, re-gate when only the
        gates changed, else read it back. An exit code to stop with, or None to go on."""
        cfg, pdir = getattr(self.r, phase), self.out / phase
        settings, done_file = json.loads(json.dumps(asdict(cfg))), pdir / "done.json"
        finished = _settings(type(cfg), read_json(done_file)["settings"])
        if _training_settings(finished) != _training_settings(settings):
            raise UserError(f"{done_file}: phase {phase} finished with different settings; use another --output")
        if phase == "sft" and cfg.single_stage and not (pdir / "single_stage" / "model" / "config.json").is_file():
            from soaes_bench.training.sft import run_single_stage

            self.say("pipeline: sft's single-stage ablation did not finish before the run stopped; training it now")
            t0 = time.perf_counter()
            init = summary_record.read(pdir / summary_record.FILE_NAME)["init"]
            info = run_single_stage(cfg, init, pdir, self.r.tokenizer, resume=True)
            self.finish_ablation({**info, "wall_s": round(time.perf_counter() - t0, 2)})
        if finished != settings:  # only the gates changed: judge the saved model and results again, no training
            self.refuse_vacuous_now(phase)
            self.say(f"pipeline: {phase} already trained; its gates changed, re-gating from saved results")
            verdict = self.judge(phase, summary_record.read(pdir / summary_record.FILE_NAME))
            self.say(f"pipeline: {phase} gate {'passed' if verdict['passed'] else 'FAILED'} ({pdir / 'gate.md'})")
            return None if verdict["passed"] else self.done(EXIT_GATE_FAILED)
        self.say(f"pipeline: {phase} already done, skipping")
        self.read_back(phase)
        return None if gate_record.read(pdir / gate_record.FILE_NAME)["passed"] else self.done(EXIT_GATE_FAILED)

    def train(self, phase: str) -> dict:
        """Train the phase from the current model; the SFT ablation runs in its own process beside the stages."""
        from soaes_bench.training.cpt import run_cpt
        from soaes_bench.training.distill import run_distill
        from soaes_bench.training.sft import run_sft, start_ablation

        cfg, pdir, tok = getattr(self.r, phase), self.out / phase, self.r.tokenizer
        if phase == "cpt":
            return run_cpt(cfg, self.current, pdir, tok, resume=True)
        if phase == "distill":
            return run_distill(cfg, self.current, pdir, tok, resume=True)
        ablation = start_ablation(cfg, self.current, pdir, tok, resume=True)
        if ablation is not None:
            self.pending.append(ablation)
        summary = run_sft(cfg, self.current, pdir, tok, resume=True, ablation=ablation)
        # a gate reads the ablation (wait for it now), or it has finished: either way it joins this phase's
        # evaluation, which then runs on all threads (the v5 run evaluated SFT on one thread, its ablation done)
        if ablation is not None and (ablation.finished() or any(c.reference == "single_stage" for c in cfg.gates)):
            self.pending.remove(ablation)
            summary["single_stage"] = ablation.join()
            self.note_ablation(summary["single_stage"])
        return summary

    def run_phase(self, phase: str) -> int | None:
        """Train, evaluate and gate one phase. An exit code to stop with, or None to go on."""
        self.refuse_vacuous_now(phase)
        self.collect(finished_only=True)  # an ablation that is done is collected now: this phase trains on all threads
        self.say(f"pipeline: phase {phase} from {self.current} ({self.accelerator.num_processes} process(es))")
        t0 = time.perf_counter()
        summary = self.train(phase)
        trained = round(time.perf_counter() - t0, 2)
        if summary.get("stopped_by") != "done":
            self.note_time(phase, {"train_s": trained, "stopped_by": summary.get("stopped_by")})
            self.say(f"pipeline: {phase} stopped by its time cap; re-run with --resume")
            return EXIT_TIME_CAP  # run_pipeline stops a pending ablation; --resume continues it from its checkpoint
        t1 = time.perf_counter()
        verdict = self.judge(phase, summary)
        kept = {k: v for k, v in self.timings.get(phase, {}).items() if k == "single_stage_s"}  # not an earlier try's
        self.note_time(phase, {**kept, "train_s": trained, "eval_gate_s": round(time.perf_counter() - t1, 2)})
        self.say(f"pipeline: {phase} gate {'passed' if verdict['passed'] else 'FAILED'} ({self.out / phase / 'gate.md'}); "
                 f"train {trained:.1f} s, eval+gate {self.timings[phase]['eval_gate_s']:.1f} s")
        return None if verdict["passed"] else self.done(EXIT_GATE_FAILED)

    def run(self, resume: bool) -> int:
        self.start(resume)
        for phase in self.phases:
            if phase not in self.todo:  # --only: earlier phases must already be done; later ones are ignored
                if self.phases.index(phase) > self.phases.index(self.only):
                    break
                if not (self.out / phase / "done.json").is_file():
                    raise UserError(f"--only {self.only}: phase {phase} has not finished in {self.out} "
                                    f"(no {self.out / phase / 'done.json'})")
                self.read_back(phase)
                continue
            code = (self.finished(phase) if (self.out / phase / "done.json").is_file() else self.run_phase(phase))
            if code is not None:
                return code
        return self.done(0)


def _finish_phase(r: PipelineRecipe, phase: str, cfg, pdir: Path, summary: dict, refs: dict, previous,
                  evaluate_fn) -> dict:
    """Main process only: evaluate the phase model, gate it, write results/summary/gate/done. -> {results, passed}"""
    phase_refs = dict(refs, previous=previous or {})
    internal = {}
    if phase == "cpt":
        internal = phase_eval.val_task(CPT_VAL_TASK, summary.get("val_after"))
        phase_refs["base_val"] = phase_eval.val_task(CPT_VAL_TASK, summary.get("val_before"))
    elif phase == "distill":
        internal = summary.get("distilled", {}).get("results", {})
        if "baseline" in summary:
            phase_refs["baseline"] = summary["baseline"].get("results", {})
    evaluated = {}
    spec = r.evaluation and r.evaluation.for_model(gated_tasks(r, phase))
    if spec is not None and phase != "distill":
        evaluated = phase_eval.evaluate_model(pdir / "model", spec, pdir / "eval", evaluate_fn)
        if phase == "sft" and "single_stage" in summary:  # absent while the ablation trains in its own process
            phase_refs["single_stage"] = phase_eval.evaluate_model(
                pdir / "single_stage" / "model", r.evaluation.for_ablation(), pdir / "single_stage" / "eval", evaluate_fn)
    results = phase_eval.merge_results(evaluated, internal)
    write_json(pdir / PHASE_METRICS, results)
    summary_record.write(pdir / summary_record.FILE_NAME, {"phase": phase, **summary})
    # the gate's source: the phase model's lm-eval results (its plain-text run when gated_only asked for no other)
    source = next((f for f in (pdir / "eval" / "results.json", pdir / PLAIN_DIR / "results.json")
                   if evaluated and f.is_file()), pdir / PHASE_METRICS)
    report = evaluate_gate(phase, cfg.gates, results, phase_refs, str(source))
    write_gate(report, pdir)
    write_json(pdir / "done.json", {"phase": phase, "settings": json.loads(json.dumps(asdict(cfg))),
                                    "gate_passed": report["passed"]})
    _phase_reports(pdir.parent, phase)
    return {"results": results, "passed": report["passed"]}


def _complete_ablation(r: PipelineRecipe, pdir: Path, info: dict, evaluate_fn) -> None:
    """Main process: an SFT ablation that finished after its phase's gate: its summary entry, evaluation, reports."""
    summary = summary_record.read(pdir / summary_record.FILE_NAME)
    summary_record.write(pdir / summary_record.FILE_NAME, {**summary, "single_stage": info})
    if r.evaluation is not None:
        phase_eval.evaluate_model(pdir / "single_stage" / "model", r.evaluation.for_ablation(),
                                  pdir / "single_stage" / "eval", evaluate_fn)
    _phase_reports(pdir.parent, "sft")


def _phase_reports(out: Path, phase: str) -> None:
    """Forgetting and ablation reports that follow the phase (ablations.py), after its gate and done.json: extras
    that explain the verdict, so a missing input or a failure is one printed line, never an exit code."""
    try:
        for name, what in phase_reports(out, phase).items():
            print(f"pipeline: {name}: {'wrote ' + str(what) if isinstance(what, Path) else what}", flush=True)
    except Exception as e:  # noqa: BLE001 - the report must never change the run's outcome
        print(f"pipeline: warning: {phase} reports not written ({type(e).__name__}: {e})", flush=True)


def cli_pipeline(args) -> int:
    return run_pipeline(args.recipe, args.output, resume=args.resume, only=args.only)


# soaes-bench gate ------------------------------------------------------------------------------------------------
def cli_gate(args) -> int:
    """`soaes-bench gate`: judge one phase's gates of a recipe on saved runs; exit 0 pass, 3 fail, 2 bad input."""
    if args.resamples < 1:
        raise UserError(f"--resamples: must be >= 1, got {args.resamples}")
    r = load_dataclass(PipelineRecipe, args.recipe)
    validate(r, str(args.recipe))
    phases = r.phases()
    if args.phase not in phases:
        raise UserError(f"--phase: {args.phase!r} is not a phase of {args.recipe} ({', '.join(phases)})")
    checks = getattr(r, args.phase).gates
    given: dict[str, list[str]] = {}
    for spec in args.reference or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--reference: expected NAME=RUN, got {spec!r}")
        given.setdefault(name, []).append(path)
    references = {name: load_run(paths) for name, paths in given.items()}
    # the references a phase computes itself (pipeline._finish_phase), from the phase folder's summary.json
    for d in [Path(x) for x in args.results if (Path(x) / "summary.json").is_file()]:
        summary = summary_record.read(d / summary_record.FILE_NAME)
        if "baseline" not in references and isinstance((summary.get("baseline") or {}).get("results"), dict):
            references["baseline"] = summary["baseline"]["results"]
        if "base_val" not in references and isinstance(summary.get("val_before"), dict):
            references["base_val"] = phase_eval.val_task(CPT_VAL_TASK, summary["val_before"])
    i = phases.index(args.phase)
    before = phases[i - 1] if i else "base"
    if "previous" not in references and before in references:
        references["previous"] = references[before]
    for c in checks:
        if c.reference is not None and c.reference not in references:
            alias = f" (or {before}=RUN)" if c.reference == "previous" else ""
            raise UserError(f"gate {c.name!r} compares with reference {c.reference!r}: pass --reference "
                            f"{c.reference}=RUN{alias}")
    results = load_run(args.results)
    refuse_vacuous(checks, references, skip=INTERNAL_TASKS, where=f"{args.recipe}: {args.phase}.gates")
    report = evaluate_gate(args.phase, checks, results, references, str(args.results[0]),
                           resamples=args.resamples, seed=args.seed)
    print(gate_markdown(report), end="")
    if args.output:
        write_gate(report, args.output)
    return 0 if report["passed"] else EXIT_GATE_FAILED
