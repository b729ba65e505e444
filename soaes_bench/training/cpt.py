"""Phase 1: continual pre-training (CPT) on the SOAE domain corpus with general-corpus replay.

SOAEsV2 continues pre-training the base model on domain text while replaying general text against catastrophic
forgetting. Here the mix is set BY TOKENS: `replay_fraction` of every token budget comes from the general corpus and
`focus_fraction` from `focus`, documents the recipe wants read several times (the SOAE-core laws: 6% of the domain
corpus and the knowledge tasks' only source); data.mix_blocks makes the shares exact, since all blocks have the same
length. The learning rate re-warms up from zero and follows a fresh cosine schedule (loop.py), starting from the base
weights. Validation loss is logged separately on held-out domain and general documents, so forgetting shows up as a
rising general loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from soaes_bench.config import fraction, non_negative, positive
from soaes_bench.training.gate_spec import Check
from soaes_bench.training.loop import TrainArgs


@dataclass
class CPTConfig:
    """Recipe block `cpt:`."""

    domain: str = field(default="training/data/domain.jsonl", metadata={"help": "domain documents JSONL"})
    general: str = field(default="training/data/general.jsonl", metadata={"help": "general documents JSONL (replay)"})
    replay_fraction: float = field(default=0.2, metadata={"help": "fraction of training TOKENS from general", "check": fraction})
    focus: str | None = field(default=None, metadata={"help": "documents JSONL read more often (e.g. the SOAE-core laws)"})
    focus_fraction: float = field(default=0.0, metadata={"help": "fraction of training TOKENS from focus", "check": fraction})
    seq_len: int = field(default=512, metadata={"check": positive})
    val_blocks: int = field(default=16, metadata={"help": "held-out blocks per corpus", "check": non_negative})
    train: TrainArgs = field(default_factory=lambda: TrainArgs(max_steps=200, lr=1e-3, warmup_steps=20))
    gates: list[Check] = field(default_factory=list, metadata={"help": "gate checks on this phase's results"})

    def __post_init__(self):
        if self.replay_fraction + self.focus_fraction > 1:
            raise ValueError(f"replay_fraction + focus_fraction must be <= 1, got {self.replay_fraction + self.focus_fraction}")
        if self.focus_fraction and not self.focus:
            raise ValueError(f"focus_fraction {self.focus_fraction} needs a focus file (focus:)")

    @property
    def reads_focus(self) -> bool:
        """A focus file is named and given a share (a named file with share 0 is never read)."""
        return bool(self.focus and self.focus_fraction)


def run_cpt(cfg: CPTConfig, init_model: str | Path, out_dir: str | Path, tokenizer_dir=None, resume: bool = True) -> dict:
    """Train from `init_model`; write <out_dir>/model and <out_dir>/work (checkpoint, log). Returns a summary."""
    from soaes_bench.training import data
    from soaes_bench.training.dist import broadcast_json, make_accelerator
    from soaes_bench.training.loop import mean_block_loss, resolve_steps, train
    from soaes_bench.models import check_same_vocab, load_model, load_tokenizer, save_model

    out = Path(out_dir)
    accelerator = make_accelerator()
    tok = load_tokenizer(tokenizer_dir)
    check_same_vocab(tok, load_tokenizer(init_model), "cpt: tokenizer vs initial model")
    seed = cfg.train.seed
    dom, dom_val = data.packed_corpus(cfg.domain, tok, cfg.seq_len, seed, cfg.val_blocks)
    gen, gen_val = data.packed_corpus(cfg.general, tok, cfg.seq_len, seed + 1, cfg.val_blocks)
    steps = resolve_steps(cfg.train, cfg.seq_len)
    focus = data.packed_corpus(cfg.focus, tok, cfg.seq_len, seed + 2)[0] if cfg.reads_focus else None
    mixed = data.mix_blocks(dom, gen, cfg.replay_fraction, steps * cfg.train.batch_size, seed, focus, cfg.focus_fraction)
    model = load_model(init_model)

    def eval_fn(m):
        res = {}
        if dom_val is not None:
            res["val_loss_domain"] = round(mean_block_loss(m, dom_val, cfg.train.micro_batch), 5)
        if gen_val is not None:
            res["val_loss_general"] = round(mean_block_loss(m, gen_val, cfg.train.micro_batch), 5)
        return res

    before = eval_fn(model) if accelerator.is_main_process else {}
    res = train(model, data.Blocks(mixed), data.collate_blocks, cfg.train, out / "work", total_steps=steps,
                resume=resume, eval_fn=eval_fn, desc="cpt", accelerator=accelerator)
    after = next((row["eval"] for row in reversed(res.log) if "eval" in row), None)
    summary = {"phase": "cpt", "init": str(init_model), "config": asdict(cfg), "steps": res.steps,
               "total_steps": steps, "tokens": res.tokens, "stopped_by": res.stopped_by,
               "domain_tokens": int(dom.numel()), "general_tokens": int(gen.numel()),
               "focus_tokens": int(focus.numel()) if focus is not None else 0,
               "mixed_general_fraction": cfg.replay_fraction, "val_before": before, "val_after": after,
               "last_train_loss": res.last_loss}
    if accelerator.is_main_process and res.stopped_by == "done":
        save_model(res.model, tok, out / "model", extra_json={"soaes_training.json": summary})
    return broadcast_json(summary, accelerator)  # validation losses exist on the main process only; share them
