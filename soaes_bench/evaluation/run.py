"""`soaes-bench run`: the general and SOAE-domain suites through lm-eval, in-process.

    soaes-bench run --model path/to/hf_model --suite domain --output reports/mymodel
    soaes-bench run --tasks soaes_domain_qa --limit 20          # embedded default model

Which tasks a suite means, and `soaes-bench ls`: evaluation/suites.py; the chat-template rule and the stop tokens:
evaluation/chat.py.

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

import sys
from pathlib import Path

from soaes_bench import lock, validate
from soaes_bench.defaults import BATCH_SIZE, GEN_BATCH_SIZE, SEED
from soaes_bench.errors import UserError
from soaes_bench.evaluation import backends, writer
from soaes_bench.evaluation.chat import CHAT_MODES, chat_end_token, stop_token_ids, use_chat_template
from soaes_bench.evaluation.suites import quiet_lm_eval, select_tasks, task_groups, task_manager
from soaes_bench.models import load_for_eval, load_tokenizer
from soaes_bench.paths import MODELS_DIR, embedded_model
from soaes_bench.records.provenance import env_block, model_block


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

    with quiet_lm_eval():
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


def cli_run(args) -> int:
    run(model_dir=args.model, suite=args.suite, tasks=args.tasks, include_path=args.include_path, limit=args.limit,
        batch_size=args.batch_size, device=args.device, output=args.output, seed=args.seed,
        chat_template=args.chat_template, gen_batch_size=args.gen_batch_size,
        backend=getattr(args, "backend", "hf"), tensor_parallel_size=getattr(args, "tensor_parallel_size", None),
        data_parallel_size=getattr(args, "data_parallel_size", None),
        gpu_memory_utilization=getattr(args, "gpu_memory_utilization", None),
        max_model_len=getattr(args, "max_model_len", None))
    return 0


