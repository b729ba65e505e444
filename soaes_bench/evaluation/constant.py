"""A content-free "model" for lm-eval: what a gate or a task must beat.

`soaes-bench run --model constant:` (or `constant:<answer>`) evaluates it like any model, so its results.json and
samples can be compared, checked and gated with the same code as a real model's. It reads nothing of the question:

- every continuation is scored by a uniform byte model, -ln(256) nats per UTF-8 byte (so bits per byte is 8.0);
- between equal scores the first choice wins (lm-eval takes the argmax), so letter-form multiple choice answers
  "A" every time, cloze acc picks the shortest choice and cloze acc_norm (per byte) the first;
- every generation is the same fixed answer (default: empty).

Per task it can instead always pick choice `positions[task]` and always answer `answers[task]` (or, with
`answers[task] = ECHO`, copy the item's question): with each task's best content-free predictor the run is the
natural reference for a `superior` gate ("better than a model that knows nothing"); `floor_lm` builds it.

It is the model-run counterpart of the floors in `soaes_bench.evaluation.task_floors`, which compute the same kind of
predictors from the task data without running lm-eval's request machinery.
"""

from __future__ import annotations

from lm_eval.api.model import LM

from soaes_bench.defaults import SEED
from soaes_bench.metrics import floors
from soaes_bench.metrics.floors import uniform_byte_loglikelihood
from soaes_bench.results import FORM_METRICS

PREFIX = "constant:"
LONGEST, SHORTEST = "longest", "shortest"  # positions[task]: the longest / shortest option of each item
ECHO = "\x00question"  # answers[task] = ECHO: the answer is the item's own question (a floor of generation tasks)


def is_constant(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


class ConstantLM(LM):
    """Content-free lm-eval model (module docstring). `answer` is what every generation returns."""

    def __init__(self, answer: str = "", positions: dict[str, int] | None = None,
                 answers: dict[str, str] | None = None, label: str | None = None) -> None:
        super().__init__()
        self.answer = answer
        self.positions = dict(positions or {})
        self.answers = dict(answers or {})
        self.label = label

    @property
    def name(self) -> str:
        return self.label or f"{PREFIX}{self.answer}"

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        out = []
        for r in requests:
            k = self.positions.get(r.task_name)
            if k in (LONGEST, SHORTEST):  # answer-only: the longest/shortest option text (first on ties)
                lens = [len(str(c)) for c in (r.doc or {}).get("choices") or []]
                k = (lens.index(max(lens)) if k == LONGEST else lens.index(min(lens))) if lens else 0
            out.append((uniform_byte_loglikelihood(r.args[1]), False) if k is None else
                       (0.0 if r.idx == k else -1.0, r.idx == k))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return [uniform_byte_loglikelihood(r.args[0]) for r in requests]

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        for r in requests:
            a = self.answers.get(r.task_name, self.answer)
            out.append(str((r.doc or {}).get("question", "")) if a == ECHO else a)
        return out


def floor_lm(tasks: list[str], include_path=None, limit: int | None = None) -> ConstantLM:
    """The best content-free predictor of each task, as one ConstantLM: for each task, the predictor of the best
    floor (soaes_bench.evaluation.task_floors) of its first metric that has a direction and is not a form metric (multiple
    choice: acc; generation: rouge1), on the first `limit` items as a run with that limit scores them. Rolling-
    loglikelihood tasks get the uniform byte model."""
    from soaes_bench.evaluation import task_floors

    positions, answers = {}, {}
    for task in tasks:
        tf = task_floors.task_floors(task, include_path, limit)
        best = next((b for m, b in tf["best"].items() if b is not None and m not in FORM_METRICS), None)
        if best is None:
            continue
        name = best["name"]
        if name.startswith("always "):
            positions[task] = ord(name.removeprefix("always ")) - ord("A")
        elif name in (floors.LONGEST, floors.SHORTEST):
            positions[task] = LONGEST if name == floors.LONGEST else SHORTEST
        elif name == floors.QUESTION:
            answers[task] = ECHO
        elif name == floors.MOST_COMMON:
            answers[task] = task_floors.most_common_reference(task, include_path)
    return ConstantLM("", positions, answers, label="content-free floor")


def evaluate_constant(lm: ConstantLM, suite="all", tasks=None, limit=None, seed=SEED, include_path=None) -> dict:
    """soaes_bench.evaluate for a ConstantLM: the same lm-eval run, results schema and floors, with no model."""
    from soaes_bench.evaluation import run, suites, writer
    from soaes_bench.records.provenance import env_block, model_block

    tm = suites.task_manager(include_path)
    names, suite_label = suites.select_tasks(tm, suite, tasks)
    out = run.lm_eval_run(lm, tm, names, limit=limit, chat=False, seed=seed)
    # no weights, no tokenizer, no torch threads at work
    model, env = model_block(None, name=lm.name), env_block("cpu", chat_template=False, threads=None)
    results = writer.build_results(out, task_groups=suites.task_groups(tm), model=model, env=env,
                                   suite=suite_label, seed=seed, limit=limit,
                                   backend={"name": "constant"})  # no engine: compare pairs it with any backend
    return run.attach_floors(results, include_path=include_path, limit=limit)
