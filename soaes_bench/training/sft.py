"""Phase 2: domain-progressive SFT, and its single-stage ablation.

SOAEsV2 fine-tunes in stages of increasing domain specificity: stage 1 on weakly related instructions (finance,
law, business, politics), then stage 2 on expert SOAE questions, each stage starting from the previous stage's
weights with its own warm-up + cosine schedule. The ablation (`single_stage: true`) trains the same starting model
once on the union of all stages with the same total step budget (first stage's optimiser settings), so the only
difference is the curriculum. Loss: cross-entropy on assistant tokens only (data.sft_example masks prompts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from soaes_bench.config import positive
from soaes_bench.training.gate_spec import Check
from soaes_bench.training.loop import TrainArgs


@dataclass
class SFTStage:
    data: str = field(metadata={"help": "SFT JSONL ({id, messages, ...})"})
    train: TrainArgs = field(default_factory=lambda: TrainArgs(max_steps=100, lr=5e-4, warmup_steps=10))


@dataclass
class SFTConfig:
    """Recipe block `sft:`."""

    stages: list[SFTStage] = field(default_factory=lambda: [
        SFTStage("training/data/sft_stage1.jsonl"), SFTStage("training/data/sft_stage2.jsonl")])
    max_len: int = field(default=512, metadata={"help": "tokens per example (right-truncated)", "check": positive})
    single_stage: bool = field(default=False, metadata={"help": "also train the single-stage ablation on the union"})
    gates: list[Check] = field(default_factory=list)

    def __post_init__(self):
        if not self.stages:
            raise ValueError("sft.stages: at least one stage")


def _mean_len(examples) -> float:
    return sum(len(e["input_ids"]) for e in examples) / len(examples)


def _train_stage(model, examples, args: TrainArgs, tok, work: Path, resume: bool, desc: str, accelerator, steps=None):
    from soaes_bench.training import data
    from soaes_bench.training.loop import resolve_steps, train

    steps = steps or resolve_steps(args, _mean_len(examples))
    return train(model, data.Examples(examples), data.make_pad_collate(tok.pad_token_id), args, work, total_steps=steps,
                 resume=resume, desc=desc, accelerator=accelerator)


def run_sft(cfg: SFTConfig, init_model: str | Path, out_dir: str | Path, tokenizer_dir=None, resume: bool = True) -> dict:
    """Progressive stages -> <out>/model (and <out>/stageN/model); ablation -> <out>/single_stage/model."""
    from dataclasses import replace

    from soaes_bench.training import data
    from soaes_bench.training.dist import broadcast_json, make_accelerator
    from soaes_bench.training.loop import resolve_steps
    from soaes_bench.models import check_same_vocab, load_model, load_tokenizer, save_model

    out = Path(out_dir)
    accelerator = make_accelerator()
    tok = load_tokenizer(tokenizer_dir)
    check_same_vocab(tok, load_tokenizer(init_model), "sft: tokenizer vs initial model")
    sets = [data.load_sft(st.data, tok, cfg.max_len) for st in cfg.stages]
    summary = {"phase": "sft", "init": str(init_model), "config": asdict(cfg), "stages": []}
    current = Path(init_model)
    for i, (stage, (examples, stats)) in enumerate(zip(cfg.stages, sets), 1):
        stage_dir = out / f"stage{i}"
        model = load_model(current)
        res = _train_stage(model, examples, stage.train, tok, stage_dir / "work", resume, f"sft stage {i}", accelerator)
        if res.stopped_by != "done":
            summary["stopped_by"] = res.stopped_by
            return summary
        info = {"data": stage.data, "examples": stats.kept, "dropped_too_long": stats.dropped_too_long,
                "truncated": stats.truncated, "steps": res.steps, "tokens": res.tokens, "last_train_loss": res.last_loss}
        summary["stages"].append(info)
        if accelerator.is_main_process:
            save_model(res.model, tok, stage_dir / "model", extra_json={"soaes_training.json": info})
        accelerator.wait_for_everyone()
        current = stage_dir / "model"
    if cfg.single_stage:
        union = [e for examples, _ in sets for e in examples]
        total = sum(resolve_steps(st.train, _mean_len(ex)) for st, (ex, _) in zip(cfg.stages, sets))
        args = replace(cfg.stages[0].train, max_steps=total, max_tokens=None)
        res = _train_stage(load_model(init_model), union, args, tok, out / "single_stage" / "work", resume,
                           "sft single-stage", accelerator, steps=total)
        summary["single_stage"] = {"examples": len(union), "steps": res.steps, "tokens": res.tokens,
                                   "last_train_loss": res.last_loss, "stopped_by": res.stopped_by}
        if accelerator.is_main_process and res.stopped_by == "done":
            save_model(res.model, tok, out / "single_stage" / "model", extra_json={"soaes_training.json": summary["single_stage"]})
        accelerator.wait_for_everyone()
    summary["stopped_by"] = "done"
    if accelerator.is_main_process:
        save_model(load_model(current), tok, out / "model", extra_json={"soaes_training.json": summary})
    return broadcast_json(summary, accelerator)
