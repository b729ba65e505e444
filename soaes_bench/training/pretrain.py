"""Phase 0: pretrain the small Qwen2 reference base model on the general corpus.

    soaes-bench train base --recipe training/recipes/base.yaml
    accelerate launch --config_file training/accelerate/cpu2.yaml -m soaes_bench train base --recipe training/recipes/base.yaml

Reads training/data/general.jsonl (DESIGN.md document schema), packs it into blocks, trains with the one loop
(loop.py) and writes an HF model dir (bf16 safetensors + config + tokenizer + soaes_training.json provenance).
Checkpoints and train_log.jsonl go to `work_dir`; re-running the same command resumes from the checkpoint.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from soaes_bench import lock, validate
from soaes_bench.config import load_dataclass, non_negative, positive
from soaes_bench.errors import UserError
from soaes_bench.io import sha256_file
from soaes_bench.records import summary as summary_record
from soaes_bench.models import check_size
from soaes_bench.training.loop import TrainArgs


@dataclass
class BaseRecipe:
    """Recipe for `soaes-bench train base` (training/recipes/base.yaml)."""

    name: str = field(default="base", metadata={"help": "run name (default work_dir is runs/<name>)"})
    model: str = field(default="target", metadata={"help": "model size (soaes_bench/models.py SIZES)", "check": check_size})
    data: str = field(default="training/data/general.jsonl", metadata={"help": "documents JSONL"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer dir (default: shared soaes_bench/assets/tokenizer)"})
    seq_len: int = field(default=512, metadata={"help": "packed block length in tokens", "check": positive})
    max_position: int = field(default=2048, metadata={"help": "model max_position_embeddings", "check": positive})
    val_blocks: int = field(default=32, metadata={"help": "held-out blocks for validation loss", "check": non_negative})
    output: str | None = field(default=None, metadata={
        "help": "final HF model dir (required: a recipe names its output; never inside soaes_bench/)",
        "check": lambda v: "required key is missing (the final model dir, e.g. runs/<name>/model)" if v is None else None})
    work_dir: str | None = field(default=None, metadata={"help": "checkpoints and logs (default runs/<name>)"})
    train: TrainArgs = field(default_factory=lambda: TrainArgs(max_steps=1000))

    def __post_init__(self):
        if self.seq_len > self.max_position:
            raise ValueError(f"seq_len {self.seq_len} exceeds max_position {self.max_position}")


def default_recipe() -> Path:
    from soaes_bench.paths import training_dir

    return training_dir() / "recipes" / "base.yaml"


def train_base(recipe: str | Path | BaseRecipe | None = None, output: str | Path | None = None,
               resume: bool = True) -> dict:
    """Pretrain per `recipe`; returns the provenance summary (also written as <output>/soaes_training.json)."""
    src = str(recipe) if not isinstance(recipe, BaseRecipe) else "<in-memory>"
    r = recipe if isinstance(recipe, BaseRecipe) else load_dataclass(BaseRecipe, recipe or default_recipe())
    # every input before any work: output and work dir usable and outside the package, data UTF-8, tokenizer there
    if output is None and r.output is None:
        raise UserError(f"{src}: output: required key is missing (the final model dir, e.g. runs/<name>/model)")
    out = validate.output_dir(output or r.output, "--output" if output else f"{src}: output:")
    work = validate.output_dir(r.work_dir or f"runs/{r.name}", f"{src}: work_dir:")
    if not Path(r.data).is_file():
        raise UserError(f"{src}: data: {r.data} not found (run `soaes-bench data build` first)")
    validate.input_file(r.data, f"{src}: data")
    if r.tokenizer is not None:
        validate.tokenizer_dir(r.tokenizer, f"{src}: tokenizer:")
    with lock.hold_all([work, out], "soaes-bench train base"):  # one writer per directory
        return _train_base(r, src, out, work, resume)


def _train_base(r: BaseRecipe, src: str, out: Path, work: Path, resume: bool) -> dict:
    import torch
    import transformers

    from soaes_bench.training import data
    from soaes_bench.training.loop import make_accelerator, mean_block_loss, train
    from soaes_bench.models import load_tokenizer, n_params, new_model, save_model

    accelerator = make_accelerator()
    tok = load_tokenizer(r.tokenizer)
    blocks, val = data.packed_corpus(r.data, tok, r.seq_len, r.train.seed, r.val_blocks)
    model = new_model(r.model, tok, seed=r.train.seed, max_position=r.max_position)
    if accelerator.is_main_process:
        print(f"train base: {r.model} ({n_params(model) / 1e6:.1f}M params), {len(blocks)} blocks x {r.seq_len} tokens"
              f" ({blocks.numel() / 1e6:.2f}M tokens), {accelerator.num_processes} process(es), {torch.get_num_threads()} threads")
    eval_fn = (lambda m: {"val_loss": round(mean_block_loss(m, val, r.train.micro_batch), 5)}) if val is not None else None
    res = train(model, data.Blocks(blocks), data.collate_blocks, r.train, work, resume=resume, eval_fn=eval_fn,
                desc=f"train {r.name}", accelerator=accelerator)
    summary = {
        "phase": "base", "recipe": src, "recipe_values": asdict(r), "model_size": r.model,
        "n_params": n_params(res.model), "steps": res.steps, "total_steps": res.total_steps, "tokens": res.tokens,
        "stopped_by": res.stopped_by,
        "last_train_loss": None if res.last_loss is None else round(res.last_loss, 5),
        "val_loss": next((row["eval"]["val_loss"] for row in reversed(res.log) if "eval" in row), None),
        "data_sha256": sha256_file(r.data), "corpus_tokens": int(blocks.numel()),
        "processes": accelerator.num_processes, "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if accelerator.is_main_process:
        summary_record.write(work / summary_record.FILE_NAME, summary)
        if res.stopped_by in ("done", "time"):
            save_model(res.model, tok, out, extra_json={"soaes_training.json": summary})
            print(f"train base: saved {out} (stopped by {res.stopped_by} at step {res.steps}/{res.total_steps}, "
                  f"train loss {res.last_loss}, val loss {summary['val_loss']})")
    accelerator.wait_for_everyone()
    return summary


def cli_train_base(args) -> int:
    train_base(args.recipe, args.output)
    return 0
