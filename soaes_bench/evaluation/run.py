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
rounding); greedy generations do not either: each row ends at its own stop tokens (`stop_token_ids`; plain lm-eval
does the same for the shipped models, whose generation_config.eos_token_id lists both <|endoftext|> and <|im_end|>).
tests/test_run.py checks plain lm-eval against `run`.

Backends (soaes_bench/evaluation/backends.py, docs/backends.md): `--backend hf` (default) is the above;
`--backend vllm` runs lm-eval's own vLLM model on a GPU (a separate environment). Data parallel on hf:

    accelerate launch --config_file training/accelerate/cpu2.yaml -m soaes_bench run --model DIR --output OUT

splits the documents over the processes (lm-eval's evaluator), gathers them on rank 0, and only rank 0 takes the
output lock and writes; the numbers are those of one process (tests/test_data_parallel.py).

Any local causal LM runs (tests/test_any_model_run.py): nothing here assumes the shipped Qwen2 models or their
tokenizer. Generation stops at the task's `until` strings, and each row at the model's generation_config eos ids,
the tokenizer's eos and the chat template's end-of-turn token; a tokenizer without a chat template is evaluated in
plain text (stderr says so).

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
from soaes_bench.evaluation import backends, writer
from soaes_bench import lock, validate
from soaes_bench.models import load_for_eval, load_tokenizer
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


# --- stopping generation, for any tokenizer ----------------------------------------------------------------
def _special_tokens(tokenizer) -> set[str]:
    return set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())


def chat_end_token(tokenizer) -> str | None:
    """The special token that closes an assistant turn in the tokenizer's chat template (<|im_end|> in ChatML,
    <|eot_id|> in Llama 3, <end_of_turn> in Gemma, </s> in Mistral), found by rendering one exchange; None without
    a template or when the template closes turns with no special token."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "\u2063soaes-bench\u2063"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "?"},
                                              {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # noqa: BLE001 -- a template that refuses this exchange simply gives no extra stop
        return None
    tail = text.split(marker, 1)[1].lstrip() if isinstance(text, str) and marker in text else ""
    return next((t for t in sorted(_special_tokens(tokenizer), key=len, reverse=True) if t and tail.startswith(t)),
                None)


def stop_token_ids(model, tokenizer, stop, end_of_turn: str | None = None) -> list[int]:
    """Token ids that end a row of greedy generation: the model's generation_config eos ids, the tokenizer's eos,
    the chat template's end-of-turn token and every `until` stop string that is one special token.

    Why: lm-eval stops a batch only when every row has met a stop string, decodes rows with the special tokens
    dropped, then cuts at the stop strings. A row that emits a special stop token which is not an eos id (e.g.
    <|im_end|> or <|eot_id|> of a model whose generation_config lists only its document eos) would go on
    generating, and the text after that token would be scored. As eos ids, such rows end (HF pads them) on any
    model, and greedy outputs no longer depend on the batch. The shipped models list both of their stop tokens in
    generation_config already, so their generations are unchanged.
    """
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(eos) if isinstance(eos, (list, tuple)) else [] if eos is None else [eos]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    specials = _special_tokens(tokenizer)
    for s in [*(stop or []), *([end_of_turn] if end_of_turn else [])]:
        if s in specials:
            ids.append(tokenizer.convert_tokens_to_ids(s))
    return list(dict.fromkeys(i for i in ids if isinstance(i, int) and i >= 0))


# --- API ---------------------------------------------------------------------------------------------------
def _hflm(model, tokenizer, batch_size: int, gen_batch_size: int, device: str, accelerator=None):
    """lm-eval's HFLM with its own batch size for generation. Scoring (loglikelihood) is compute-bound and pads
    more in bigger batches (batch 32 ran 10-25% slower than 8 here); greedy generation of short answers is bound by
    per-forward overhead, so 32 prompts at once run 2.4x faster than 8, with the same scores.
    `accelerator`: this process is one rank of a data-parallel evaluation (backends.attach_data_parallel)."""
    from lm_eval.models.huggingface import HFLM

    end_of_turn = chat_end_token(tokenizer)

    class _HFLM(HFLM):
        def generate_until(self, requests, disable_tqdm: bool = False):
            saved, self.batch_size_per_gpu = self.batch_size_per_gpu, gen_batch_size
            try:
                return super().generate_until(requests, disable_tqdm=disable_tqdm)
            finally:
                self.batch_size_per_gpu = saved

        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            generation_kwargs.setdefault("eos_token_id", stop_token_ids(self.model, self.tokenizer, stop, end_of_turn))
            return super()._model_generate(context, max_length, stop, **generation_kwargs)

    lm = _HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    return backends.attach_data_parallel(lm, accelerator) if accelerator is not None else lm


def lm_eval_run(lm, tm, names: list[str], limit=None, chat: bool = False, seed: int = SEED) -> dict:
    """lm-eval's simple_evaluate of any lm-eval model on `names`, seeded, with per-sample logs (the one call)."""
    import lm_eval

    with _quiet_lm_eval():
        return lm_eval.simple_evaluate(
            lm, tasks=names, task_manager=tm, limit=limit, apply_chat_template=chat, log_samples=True,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        )


def evaluate(model, tokenizer, suite="all", tasks=None, limit=None, batch_size=BATCH_SIZE, device="cpu", seed=SEED,
             include_path=None, chat_template="auto", model_info=None, gen_batch_size=GEN_BATCH_SIZE,
             accelerator=None) -> dict | None:
    """Evaluate an in-memory causal LM; returns the results dict (DESIGN.md schema) and writes nothing.
    batch_size: sequences per scoring forward; gen_batch_size: prompts per generation batch (_hflm says why).

    The dict also holds `sample_rows` ({task: [rows]}) for `writer.write_run`. `model_info` fills results["model"]
    (records.provenance.model_block of the model dir); without it the hashes are null (no directory to hash).
    `accelerator` (backends.data_parallel_accelerator, every process of an `accelerate launch` calls this): the
    documents are split over the processes; the results come back on the main process, None on the others.
    """
    _check_device(device)
    _check_positive("limit", limit)
    _check_positive("batch-size", batch_size)
    _check_positive("gen-batch-size", gen_batch_size)
    tm = task_manager(include_path)
    names, suite_label = select_tasks(tm, suite, tasks)
    chat = use_chat_template(tokenizer, chat_template)
    model.to(accelerator.device if accelerator is not None else device)
    model.eval()
    lm = _hflm(model, tokenizer, batch_size, gen_batch_size, device, accelerator)
    out = lm_eval_run(lm, tm, names, limit, chat, seed)
    if out is None:  # a data-parallel rank other than 0: lm-eval gathered its documents' results on rank 0
        return None
    info = dict(model_info) if model_info else model_block(
        model, name=getattr(model.config, "_name_or_path", None) or type(model).__name__)
    results = writer.build_results(out, task_groups=task_groups(tm), model=info,
                                   env=env_block(device, chat_template=chat),
                                   suite=suite_label, seed=seed, limit=limit,
                                   backend=backends.hf_block(batch_size, gen_batch_size, lm.world_size,
                                                             dtype=str(model.dtype).removeprefix("torch.")))
    return attach_floors(results, include_path=include_path, limit=limit)


def evaluate_vllm(model_dir, suite="all", tasks=None, limit=None, seed=SEED, include_path=None,
                  chat_template="auto", settings: dict | None = None) -> dict:
    """`evaluate` on lm-eval's vLLM model (backends.vllm_lm) of a model directory: the same tasks, seeds, chat
    template rule and results schema; `settings` are backends.vllm_settings (tensor/data parallel, memory)."""
    import torch

    settings = settings or backends.vllm_settings()
    tm = task_manager(include_path)
    names, suite_label = select_tasks(tm, suite, tasks)
    chat = use_chat_template(load_tokenizer(model_dir), chat_template)
    out = lm_eval_run(backends.vllm_lm(model_dir, seed=seed, **settings), tm, names, limit, chat, seed)
    results = writer.build_results(out, task_groups=task_groups(tm), model=dir_model_block(model_dir),
                                   env=env_block("cuda" if torch.cuda.is_available() else "cpu", chat_template=chat),
                                   suite=suite_label, seed=seed, limit=limit, backend=backends.vllm_block(settings))
    return attach_floors(results, include_path=include_path, limit=limit)


def dir_model_block(model_dir) -> dict:
    """records.provenance.model_block of a model directory without loading it (the vLLM engine loads it): parameter
    count from the safetensors headers, layers and hidden size from config.json."""
    import json
    import math

    p = Path(model_dir)
    block = model_block(None, p)
    shapes = {name: t["shape"] for w in sorted(p.glob("*.safetensors"))
              for name, t in validate.safetensors_header(w).items()}
    cfg = json.loads((p / "config.json").read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    return {**block, "n_params": sum(math.prod(s) for s in shapes.values()),
            "layers": cfg.get("num_hidden_layers"), "hidden": cfg.get("hidden_size")}


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
        output="reports/latest", seed=SEED, chat_template="auto", gen_batch_size=GEN_BATCH_SIZE, backend="hf",
        tensor_parallel_size=None, data_parallel_size=None, gpu_memory_utilization=None,
        max_model_len=None) -> dict | None:
    """Evaluate a local model directory (default: the embedded model) and write the run into `output`.

    Returns the results dict as written to results.json; prints the Markdown table. Under `accelerate launch`
    (hf backend) every process evaluates its share and only the main one writes and returns; the others return None.
    backend "vllm" takes the four vLLM settings (None: backends.VLLM_DEFAULTS); "hf" refuses them.
    """
    backends.check_backend(backend)
    vllm_flags = dict(tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
    if backend == "vllm":
        settings = backends.vllm_settings(**vllm_flags)
        backends.require_vllm()  # before any work: one line saying what to install
    else:
        backends.check_hf_flags(**vllm_flags)
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

    if backend != "hf" and constant.is_constant(model_dir):
        raise UserError(f"--backend {backend}: --model constant: is no model to load (it needs no backend)")
    processes = backends.launched_processes()
    if processes > 1 and backend != "hf":
        raise UserError(f"--backend {backend}: start it without accelerate launch / torchrun (WORLD_SIZE={processes}); "
                        "vLLM parallelises itself (--tensor-parallel-size, --data-parallel-size)")
    if processes > 1 and constant.is_constant(model_dir):
        raise UserError(f"--model constant: needs one process; start it without accelerate launch / torchrun "
                        f"(WORLD_SIZE={processes})")
    if not constant.is_constant(model_dir):
        if model_dir is None:
            try:
                model_dir = embedded_model("default")
            except FileNotFoundError:
                raise UserError(f"no embedded model in {MODELS_DIR}; pass --model DIR") from None
        # config/weights agreement, complete files, finite weights: a NaN model would score 0 with exit 0
        validate.model_dir(model_dir, require_tokenizer=True)
    out = validate.output_dir(output)  # nothing is created before here; the lock creates the directory
    # one writer per directory; a failure removes the dir it created. Under `accelerate launch` only the main
    # process locks (lock.py) and writes; if it fails, the launcher stops the other processes.
    with lock.hold(out, "soaes-bench run"):
        if constant.is_constant(model_dir):  # `constant:[ANSWER]`: the content-free model (constant.py), no weights
            lm = constant.ConstantLM(model_dir.removeprefix(constant.PREFIX))
            return _write(constant.evaluate_constant(lm, suite=suite, tasks=tasks, limit=limit, seed=seed,
                                                     include_path=include_path), out)
        if backend == "vllm":
            _note_plain_text(load_tokenizer(model_dir), chat_template)
            return _write(evaluate_vllm(model_dir, suite=suite, tasks=tasks, limit=limit, seed=seed,
                                        include_path=include_path, chat_template=chat_template, settings=settings),
                          out)
        accelerator = backends.data_parallel_accelerator(device) if processes > 1 else None
        model, tokenizer = load_for_eval(model_dir)
        if backends.is_main_process():
            _note_plain_text(tokenizer, chat_template)
        info = model_block(model, model_dir)
        results = evaluate(model, tokenizer, suite=suite, tasks=tasks, limit=limit, batch_size=batch_size,
                           device=device, seed=seed, include_path=include_path, chat_template=chat_template,
                           model_info=info, gen_batch_size=gen_batch_size, accelerator=accelerator)
        if results is None:  # not the main process: rank 0 gathered this process's documents and writes
            return None
        return _write(results, out)


def _note_plain_text(tokenizer, mode: str) -> None:
    """Say so on stderr when `--chat-template auto` finds no template: the prompts go to the model as plain text."""
    if mode == "auto" and not use_chat_template(tokenizer, mode):
        print("soaes-bench run: note: the tokenizer has no chat template: prompts are plain text "
              "(results.json env.chat_template false)", file=sys.stderr)


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
        chat_template=args.chat_template, gen_batch_size=args.gen_batch_size,
        backend=getattr(args, "backend", "hf"), tensor_parallel_size=getattr(args, "tensor_parallel_size", None),
        data_parallel_size=getattr(args, "data_parallel_size", None),
        gpu_memory_utilization=getattr(args, "gpu_memory_utilization", None),
        max_model_len=getattr(args, "max_model_len", None))
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
