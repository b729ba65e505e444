"""`soaes-bench run` and `soaes-bench ls`: the general and SOAE-domain suites through lm-eval, in-process.

    soaes-bench run --model path/to/hf_model --suite domain --output reports/mymodel
    soaes-bench run --tasks soaes_domain_qa --limit 20          # embedded default model
    soaes-bench ls

`evaluate(model, tokenizer)` scores an in-memory model and returns the results dict (nothing written; the training
gates use it); `run(model_dir)` loads a local Hugging Face model directory, calls `evaluate` and writes
results.json, samples/<task>.jsonl and results.md (soaes_bench.evaluation.writer holds the schema).

Chat template rule: a model's chat template is used when its tokenizer has one, plain text otherwise
(`--chat-template auto`; `on`/`off` force it). The same numbers come from plain lm-eval (0.4.13):

    lm_eval --model hf --model_args pretrained=<dir>,dtype=float32 --device cpu --include_path tasks \\
        --tasks soaes_general,soaes_domain --batch_size 8 --seed 1234 [--apply_chat_template]

with `--apply_chat_template` exactly when the tokenizer has a chat template; `--device cpu` as a flag (lm-eval
0.4.13's CLI defaults --device to cuda:0, and device=cpu inside --model_args then fails with "multiple values for
keyword argument 'device'"); `dtype=float32` because shipped weights are stored in bfloat16 (lm-eval's default
dtype "auto" would evaluate them in bfloat16). Loglikelihood scores do not depend on the batch size (up to float
rounding); greedy generations do not either if the model's generation_config.eos_token_id lists both <|endoftext|>
and <|im_end|> (finished rows are then padded instead of generating on). tests/test_run.py checks plain lm-eval against `run`.

Speed: a 17M-parameter model takes about 155 CPU-seconds for `--suite all` (1630 items). torch's intra-op threads
buy little for models this small, and on a CPU shared with other jobs 2 threads can be 10-25x slower than 1 (OpenMP
spinning); set OMP_NUM_THREADS=1 there.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from soaes_bench.config import suggest
from soaes_bench.defaults import BATCH_SIZE, GEN_BATCH_SIZE, SEED
from soaes_bench.errors import UserError
from soaes_bench.evaluation import writer
from soaes_bench import lock, validate
from soaes_bench.models import load_for_eval
from soaes_bench.records.provenance import env_block, model_block
from soaes_bench.paths import MODELS_DIR, embedded_model, tasks_dir

SUITES = {"general": ["soaes_general"], "domain": ["soaes_domain"], "all": ["soaes_general", "soaes_domain"]}
CHAT_MODES = ("auto", "on", "off")


# --- tasks -------------------------------------------------------------------------------------------------
def task_manager(include_path=None):
    """lm-eval TaskManager over our task folder (+ the user's), without lm-eval's ~200 built-in folders (fast)."""
    from lm_eval.tasks import TaskManager

    paths = [str(tasks_dir())]
    if include_path:
        p = Path(include_path)
        if not p.is_dir():
            raise UserError(f"--include-path {include_path}: not a directory")
        paths.append(str(p.resolve()))
    return TaskManager(include_path=paths, include_defaults=False)


def select_tasks(tm, suite: str = "all", tasks=None) -> tuple[list[str], str]:
    """Names to pass to lm-eval and the `suite` label for results.json; unknown names raise UserError."""
    if tasks:
        names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
        for name in names:
            if name not in tm.all_tasks:
                raise UserError(f"--tasks: unknown task {name!r}{suggest(name, tm.all_tasks)}")
        if not names:
            raise UserError("--tasks: no task names given")
        return names, "custom"
    if suite in SUITES:
        return list(SUITES[suite]), suite
    if suite in tm.all_groups:
        return [suite], suite
    raise UserError(f"--suite: unknown suite {suite!r}{suggest(suite, [*SUITES, *tm.all_groups])};"
                    f" choose {', '.join(SUITES)} or a group name")


def task_groups(tm) -> dict[str, str]:
    """task -> the group that lists it (from the index: no data is loaded)."""
    from lm_eval.tasks._index import Kind

    out = {}
    for name, entry in tm.task_index.items():
        if entry.kind == Kind.GROUP and entry.cfg:
            for child in entry.cfg.get("task") or []:
                if isinstance(child, str):
                    out.setdefault(child, name)
    return out


# --- chat template, lm-eval --------------------------------------------------------------------------------
def use_chat_template(tokenizer, mode: str = "auto") -> bool:
    if mode not in CHAT_MODES:
        raise UserError(f"--chat-template: must be one of {', '.join(CHAT_MODES)}, got {mode!r}")
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "on" and not has:
        raise UserError("--chat-template on: the tokenizer has no chat template")
    return has if mode == "auto" else mode == "on"


@contextlib.contextmanager
def _quiet_lm_eval():
    """lm-eval logs several warnings per task that are expected here (custom_dataset, pre-initialised model,
    group metrics missing in member tasks); keep errors, keep the tqdm progress bars."""
    logger = logging.getLogger("lm_eval")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _check_device(device: str) -> None:
    import torch

    if device not in ("cpu", "cuda"):
        raise UserError(f"--device: must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device available")


def _check_positive(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UserError(f"--{name}: must be a positive integer, got {value!r}")


# --- API ---------------------------------------------------------------------------------------------------
def _hflm(model, tokenizer, batch_size: int, gen_batch_size: int, device: str):
    """lm-eval's HFLM with its own batch size for generation. Scoring (loglikelihood) is compute-bound and pads
    more in bigger batches (batch 32 ran 10-25% slower than 8 here); greedy generation of short answers is bound by
    per-forward overhead, so 32 prompts at once run 2.4x faster than 8, with the same scores."""
    from lm_eval.models.huggingface import HFLM

    class _HFLM(HFLM):
        def generate_until(self, requests, disable_tqdm: bool = False):
            saved, self.batch_size_per_gpu = self.batch_size_per_gpu, gen_batch_size
            try:
                return super().generate_until(requests, disable_tqdm=disable_tqdm)
            finally:
                self.batch_size_per_gpu = saved

    return _HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)


def lm_eval_run(lm, tm, names: list[str], limit=None, chat: bool = False, seed: int = SEED) -> dict:
    """lm-eval's simple_evaluate of any lm-eval model on `names`, seeded, with per-sample logs (the one call)."""
    import lm_eval

    with _quiet_lm_eval():
        return lm_eval.simple_evaluate(
            lm, tasks=names, task_manager=tm, limit=limit, apply_chat_template=chat, log_samples=True,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        )


def evaluate(model, tokenizer, suite="all", tasks=None, limit=None, batch_size=BATCH_SIZE, device="cpu", seed=SEED,
             include_path=None, chat_template="auto", model_info=None, gen_batch_size=GEN_BATCH_SIZE) -> dict:
    """Evaluate an in-memory causal LM; returns the results dict (DESIGN.md schema) and writes nothing.
    batch_size: sequences per scoring forward; gen_batch_size: prompts per generation batch (_hflm says why).

    The dict also holds `sample_rows` ({task: [rows]}) for `writer.write_run`. `model_info` fills results["model"]
    (records.provenance.model_block of the model dir); without it the hashes are null (no directory to hash).
    """
    _check_device(device)
    _check_positive("limit", limit)
    _check_positive("batch-size", batch_size)
    _check_positive("gen-batch-size", gen_batch_size)
    tm = task_manager(include_path)
    names, suite_label = select_tasks(tm, suite, tasks)
    chat = use_chat_template(tokenizer, chat_template)
    model.to(device)
    model.eval()
    out = lm_eval_run(_hflm(model, tokenizer, batch_size, gen_batch_size, device), tm, names, limit, chat, seed)
    info = dict(model_info) if model_info else model_block(
        model, name=getattr(model.config, "_name_or_path", None) or type(model).__name__)
    results = writer.build_results(out, task_groups=task_groups(tm), model=info,
                                   env=env_block(device, chat_template=chat),
                                   suite=suite_label, seed=seed, limit=limit)
    return attach_floors(results, include_path=include_path, limit=limit)


def attach_floors(results: dict, include_path=None, limit=None) -> dict:
    """Put each task's best content-free floors into results["tasks"][task]["floors"] ({metric: {"name", "value"}},
    soaes_bench.evaluation.task_floors, on the same `limit` items). A task whose floors cannot be computed gets none and a
    warning on stderr: floors never cost an evaluation."""
    from soaes_bench.evaluation.task_floors import results_block

    for name, t in results.get("tasks", {}).items():
        try:
            t["floors"] = results_block(name, include_path, limit)
        except Exception as e:  # noqa: BLE001 -- a floor is a comment on the score, not a reason to lose it
            print(f"soaes-bench: warning: no floors for {name}: {type(e).__name__}: {e}", file=sys.stderr)
    return results


POSITION_WARN_SHARE = 0.5  # one option position taking more than this share of a task's answers is flagged


def position_warnings(results: dict, threshold: float = POSITION_WARN_SHARE) -> list[str]:
    """One warning line per multiple-choice task where one option position takes more than `threshold` of the
    predictions (results.json `tasks.<task>.positions`): its accuracy then mostly measures that preference."""
    lines = []
    for name, t in (results.get("tasks") or {}).items():
        p = t.get("positions") or {}
        if isinstance(p.get("top_share"), (int, float)) and p["top_share"] > threshold:
            gold = (p.get("target_shares") or {}).get(p["top"])
            gold = f", gold answers there {gold:.0%}" if isinstance(gold, (int, float)) else ""
            lines.append(f"soaes-bench run: warning: {name}: {p['top_share']:.0%} of {p.get('n')} predictions are "
                         f"option {p['top']}{gold}: the accuracy mostly measures a position preference")
    return lines


def run(model_dir=None, suite="all", tasks=None, include_path=None, limit=None, batch_size=BATCH_SIZE, device="cpu",
        output="reports/latest", seed=SEED, chat_template="auto", gen_batch_size=GEN_BATCH_SIZE) -> dict:
    """Evaluate a local model directory (default: the embedded model) and write the run into `output`.

    Returns the results dict as written to results.json; prints the Markdown table.
    """
    if chat_template not in CHAT_MODES:
        raise UserError(f"--chat-template: must be one of {', '.join(CHAT_MODES)}, got {chat_template!r}")
    _check_device(device)
    _check_positive("limit", limit)
    _check_positive("batch-size", batch_size)
    _check_positive("gen-batch-size", gen_batch_size)
    validate.seed("--seed", seed)
    if include_path:
        validate.task_folder(include_path)
    select_tasks(task_manager(include_path), suite, tasks)  # fail on a typo before loading anything
    from soaes_bench.evaluation import constant

    if not constant.is_constant(model_dir):
        if model_dir is None:
            try:
                model_dir = embedded_model("default")
            except FileNotFoundError:
                raise UserError(f"no embedded model in {MODELS_DIR}; pass --model DIR") from None
        # config/weights agreement, complete files, finite weights: a NaN model would score 0 with exit 0
        validate.model_dir(model_dir, require_tokenizer=True)
    out = validate.output_dir(output)  # nothing is created before here; the lock creates the directory
    with lock.hold(out, "soaes-bench run"):  # one writer per directory; a failure removes the dir it created
        if constant.is_constant(model_dir):  # `constant:[ANSWER]`: the content-free model (constant.py), no weights
            lm = constant.ConstantLM(model_dir.removeprefix(constant.PREFIX))
            return _write(constant.evaluate_constant(lm, suite=suite, tasks=tasks, limit=limit, seed=seed,
                                                     include_path=include_path), out)
        model, tokenizer = load_for_eval(model_dir)
        info = model_block(model, model_dir)
        results = evaluate(model, tokenizer, suite=suite, tasks=tasks, limit=limit, batch_size=batch_size,
                           device=device, seed=seed, include_path=include_path, chat_template=chat_template,
                           model_info=info, gen_batch_size=gen_batch_size)
        return _write(results, out)


def _write(results: dict, out: Path) -> dict:
    """Write the run, print its tables and warnings."""
    results["run"] = out.resolve().name
    written = writer.write_run(results, out)
    print(writer.markdown_table(written))
    positions = writer.positions_markdown(written)
    if positions:
        print(positions)
    for line in position_warnings(written):
        print(line, file=sys.stderr)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'samples'}/")
    return written


# --- ls ----------------------------------------------------------------------------------------------------
def list_suites(include_path=None) -> dict:
    """{group: [{"task", "output_type", "n"}]}: our suites first (tasks in group order), then any other group in
    the user's folder, then "(no group)"."""
    tm = task_manager(include_path)
    groups = task_groups(tm)
    order = [g for g in SUITES["all"] if g in tm.all_groups] + [g for g in tm.all_groups if g not in SUITES["all"]]
    members = {g: [t for t in (tm.task_index[g].cfg or {}).get("task", []) if t in tm.all_subtasks] for g in order}
    members["(no group)"] = [t for t in tm.all_subtasks if t not in groups]
    out: dict[str, list[dict]] = {}
    with _quiet_lm_eval():
        for group, names in members.items():
            for name in names:
                try:
                    task = tm.load([name])["tasks"][name]
                    item = {"task": name, "output_type": task.OUTPUT_TYPE, "n": len(task.eval_docs)}
                except Exception as e:  # a broken user task must not hide the others
                    item = {"task": name, "output_type": None, "n": None, "error": str(e).splitlines()[0][:120]}
                out.setdefault(group, []).append(item)
    return out


def list_models() -> list[dict]:
    try:
        default = embedded_model("default").name
    except FileNotFoundError:
        default = None
    models = []
    if MODELS_DIR.is_dir():
        for d in sorted(p for p in MODELS_DIR.iterdir() if (p / "config.json").is_file()):
            size = sum(f.stat().st_size for f in d.glob("*.safetensors"))
            models.append({"name": d.name, "path": str(d), "mb": round(size / 2**20, 1), "default": d.name == default})
    return models


def cli_run(args) -> int:
    run(model_dir=args.model, suite=args.suite, tasks=args.tasks, include_path=args.include_path, limit=args.limit,
        batch_size=args.batch_size, device=args.device, output=args.output, seed=args.seed,
        chat_template=args.chat_template, gen_batch_size=args.gen_batch_size)
    return 0


def cli_ls(args) -> int:
    suites = list_suites(getattr(args, "include_path", None))
    for group, items in suites.items():
        print(f"{group}  ({len(items)} tasks)")
        for it in items:
            n = "?" if it["n"] is None else it["n"]
            extra = f"  error: {it['error']}" if it.get("error") else ""
            print(f"  {it['task']:<28} {str(it['output_type']):<22} {n:>6} items{extra}")
    models = list_models()
    print("embedded models:" + ("" if models else f" none in {MODELS_DIR}"))
    for m in models:
        print(f"  {m['name']:<12} {m['mb']:>7} MB  {m['path']}{'  (default for run)' if m['default'] else ''}")
    return 0
