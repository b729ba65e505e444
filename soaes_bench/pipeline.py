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
from dataclasses import asdict
from pathlib import Path

from soaes_bench import lock, phase_eval
from soaes_bench import validate as vd
from soaes_bench.config import load_dataclass
from soaes_bench.errors import UserError
from soaes_bench.io import read_json, write_json
from soaes_bench.pipeline_recipe import (CPT_VAL_TASK, EXIT_GATE_FAILED, EXIT_TIME_CAP, FLOOR, INTERNAL_TASKS,
                                         PHASE_METRICS, PipelineRecipe, gated_tasks, preflight, saved_settings,
                                         training_settings, validate)
from soaes_bench.records import gate as gate_record
from soaes_bench.records import summary as summary_record
from soaes_bench.records import timings as timings_record
from soaes_bench.reporting.ablations import phase_reports
from soaes_bench.reporting.gates import (evaluate_gate, gate_markdown, load_run, locate_samples, refuse_vacuous,
                                         write_gate)
from soaes_bench.results import PLAIN, PLAIN_DIR
from soaes_bench.training.dist import make_accelerator, on_main


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
        finished = saved_settings(type(cfg), read_json(done_file)["settings"])
        if training_settings(finished) != training_settings(settings):
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
        self.say(f"pipeline: {phase} gate {'passed' if verdict['passed'] else 'FAILED'} "
                 f"({self.out / phase / 'gate.md'}); train {trained:.1f} s, "
                 f"eval+gate {self.timings[phase]['eval_gate_s']:.1f} s")
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
