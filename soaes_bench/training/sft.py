"""Phase 2: domain-progressive SFT, and its single-stage ablation.

SOAEsV2 fine-tunes in stages of increasing domain specificity: stage 1 on weakly related instructions (finance,
law, business, politics), then stage 2 on expert SOAE questions, each stage starting from the previous stage's
weights with its own warm-up + cosine schedule. The ablation (`single_stage: true`) trains the same starting model
once on the union of all stages with the same budget (first stage's optimiser settings): the stages' total steps
(`ablation_budget: steps`), or as many steps as buy the stages' total example tokens (`tokens`: when the union's
rows are longer on average than a long stage's, equal steps give the ablation more compute). Loss: cross-entropy
on assistant tokens only (data.sft_example masks prompts), plus, with `replay_fraction`, plain general text mixed
into every stage (data.with_replay) so the model keeps its general language modelling; the ablation's union carries
the same replay rows.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from soaes_bench.config import fraction, positive
from soaes_bench.errors import UserError
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
    general: str | None = field(default=None, metadata={"help": "general documents JSONL replayed in every stage"})
    replay_fraction: float = field(default=0.0, metadata={
        "help": "fraction of each stage's loss tokens from `general` (plain text, every token a label)", "check": fraction})
    replay_len: int = field(default=128, metadata={"help": "tokens per replayed general block", "check": positive})
    ablation_budget: Literal["steps", "tokens"] = field(default="steps", metadata={
        "help": "the ablation's budget: the stages' total steps, or their total example tokens"})
    ablation_in_parallel: bool = field(default=False, metadata={
        "help": "train the single-stage ablation in a second process (one torch thread each) while the stages train"})
    gates: list[Check] = field(default_factory=list)

    def __post_init__(self):
        if not self.stages:
            raise ValueError("sft.stages: at least one stage")
        if self.replay_fraction >= 1:
            raise ValueError(f"replay_fraction must be < 1 (some SFT tokens), got {self.replay_fraction}")
        if self.replay_fraction and not self.general:
            raise ValueError(f"replay_fraction {self.replay_fraction} needs a general file (general:)")


def _mean_len(examples) -> float:
    return sum(len(e["input_ids"]) for e in examples) / len(examples)


def _train_stage(model, examples, args: TrainArgs, tok, work: Path, resume: bool, desc: str, accelerator, steps=None):
    from soaes_bench.training import data
    from soaes_bench.training.loop import resolve_steps, train

    steps = steps or resolve_steps(args, _mean_len(examples))
    return train(model, data.Examples(examples), data.make_pad_collate(tok.pad_token_id), args, work, total_steps=steps,
                 resume=resume, desc=desc, accelerator=accelerator)


def _load_sets(cfg: SFTConfig, tok):
    """[(examples, stats)] per stage, each with its general replay rows (data.with_replay) when the recipe asks."""
    from soaes_bench.training import data

    sets = [data.load_sft(st.data, tok, cfg.max_len) for st in cfg.stages]
    if not cfg.replay_fraction:
        return sets
    general = data.packed_corpus(cfg.general, tok, cfg.replay_len, cfg.stages[0].train.seed)[0]
    return [(data.with_replay(ex, general, cfg.replay_fraction, st.train.seed + i), stats)
            for i, (st, (ex, stats)) in enumerate(zip(cfg.stages, sets))]


def ablation_steps(cfg: SFTConfig, stages: list[tuple[int, int, float]], batch: int, union_mean_len: float) -> int:
    """Steps of the single-stage run from the stages' (steps, batch size, mean example tokens): their sum, or (budget
    `tokens`) the steps at `batch` examples of `union_mean_len` tokens that read as many example tokens as they do."""
    if cfg.ablation_budget == "steps":
        return sum(steps for steps, _, _ in stages)
    return max(1, round(sum(s * b * m for s, b, m in stages) / (batch * union_mean_len)))


def _single_stage(cfg: SFTConfig, sets, init_model, out: Path, tok, resume: bool, accelerator) -> dict:
    """The ablation: the union of all stages (replay rows included), the stages' budget, stage 1's optimiser."""
    from dataclasses import replace

    from soaes_bench.models import load_model, save_model
    from soaes_bench.training.loop import resolve_steps

    union = [e for examples, _ in sets for e in examples]
    stages = [(resolve_steps(st.train, _mean_len(ex)), st.train.batch_size, _mean_len(ex))
              for st, (ex, _) in zip(cfg.stages, sets)]
    total = ablation_steps(cfg, stages, cfg.stages[0].train.batch_size, _mean_len(union))
    args = replace(cfg.stages[0].train, max_steps=total, max_tokens=None)
    res = _train_stage(load_model(init_model), union, args, tok, out / "single_stage" / "work", resume,
                       "sft single-stage", accelerator, steps=total)
    info = {"examples": len(union), "budget": cfg.ablation_budget, "steps": res.steps, "tokens": res.tokens,
            "last_train_loss": res.last_loss, "stopped_by": res.stopped_by}
    if accelerator.is_main_process and res.stopped_by == "done":
        save_model(res.model, tok, out / "single_stage" / "model", extra_json={"soaes_training.json": info})
    accelerator.wait_for_everyone()
    return info


def _single_stage_process(cfg_dict: dict, init_model: str, out: str, tokenizer_dir, resume: bool, result: str):
    """Entry point of the ablation's own process: one torch thread, result as JSON in `result`, with the seconds it
    took (`wall_s`: the parent only sees when it collects the process, which may be much later)."""
    import time

    import torch

    from soaes_bench.config import from_dict
    from soaes_bench.io import write_json

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        info = run_single_stage(from_dict(SFTConfig, cfg_dict, "sft"), init_model, out, tokenizer_dir, resume)
    except UserError as e:  # one line, as the CLI would print it; the parent says which process failed
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    write_json(result, {**info, "wall_s": round(time.perf_counter() - t0, 2)})


class Ablation:
    """The single-stage ablation in a second process while this one trains the stages, one torch thread each.

    Why: SFT's short batches scale badly across threads (on 2 cores: ~780 tokens/s in one process on 2 threads vs
    ~600 on 1 each, two at once), and the ablation feeds nothing downstream, so the pipeline goes on (gate,
    distillation) while it finishes, and collects it when it has (pipeline._Run; this process keeps one torch
    thread until then). On 2 cores with the ablation on the stages' token budget it finished before the stages (v5
    reference run, docs/results/2026-12-reference-v5.md). Used only when the recipe asks (`ablation_in_parallel`) and
    training runs in one process."""

    def __init__(self, cfg: SFTConfig, init_model, out: Path, tokenizer_dir, resume: bool):
        import multiprocessing

        import torch

        self.result = out / "single_stage" / "result.json"
        self.result.unlink(missing_ok=True)
        self.threads = torch.get_num_threads()
        args = (asdict(cfg), str(init_model), str(out), tokenizer_dir and str(tokenizer_dir), resume, str(self.result))
        self.proc = multiprocessing.get_context("spawn").Process(target=_single_stage_process, args=args, daemon=True)
        self.result.parent.mkdir(parents=True, exist_ok=True)
        self.proc.start()
        torch.set_num_threads(1)

    def finished(self) -> bool:
        """The process has exited (its result, or its failure, is ready for join())."""
        return not self.proc.is_alive()

    def join(self) -> dict:
        """Wait for the process; its summary (as _single_stage returns it), with the seconds it ran (`wall_s`)."""
        from soaes_bench.io import read_json

        self.proc.join()
        self.stop()
        if self.proc.exitcode != 0 or not self.result.is_file():
            raise UserError(f"sft: the single-stage ablation process failed (exit code {self.proc.exitcode}); its "
                            "error is printed above; rerun with --resume")
        return read_json(self.result)

    def stop(self):
        """Terminate the process if it still runs (this run is failing), and give this process its threads back."""
        import torch

        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()
        torch.set_num_threads(self.threads)


def start_ablation(cfg: SFTConfig, init_model, out_dir, tokenizer_dir=None, resume: bool = True) -> Ablation | None:
    """The ablation's process when the recipe trains it in parallel and this is a single-process run, else None."""
    from soaes_bench.training.dist import make_accelerator

    if not (cfg.single_stage and cfg.ablation_in_parallel) or make_accelerator().num_processes > 1:
        return None
    return Ablation(cfg, init_model, Path(out_dir), tokenizer_dir, resume)


def run_single_stage(cfg: SFTConfig, init_model, out_dir, tokenizer_dir=None, resume: bool = True) -> dict:
    """The ablation alone, in this process (a resumed run whose ablation process did not finish)."""
    from soaes_bench.models import load_tokenizer
    from soaes_bench.training.dist import make_accelerator

    tok = load_tokenizer(tokenizer_dir)
    return _single_stage(cfg, _load_sets(cfg, tok), init_model, Path(out_dir), tok, resume, make_accelerator())


def run_sft(cfg: SFTConfig, init_model: str | Path, out_dir: str | Path, tokenizer_dir=None, resume: bool = True,
            ablation: Ablation | None = None) -> dict:
    """Progressive stages -> <out>/model (and <out>/stageN/model); ablation -> <out>/single_stage/model.

    `ablation`: the caller started it (start_ablation) and collects it (Ablation.join); the summary then has no
    `single_stage` entry. Without it, the ablation is trained here: in a second process when the recipe asks, else
    after the stages."""
    from soaes_bench.training.dist import broadcast_json, make_accelerator
    from soaes_bench.models import check_same_vocab, load_model, load_tokenizer, save_model

    out = Path(out_dir)
    accelerator = make_accelerator()
    tok = load_tokenizer(tokenizer_dir)
    check_same_vocab(tok, load_tokenizer(init_model), "sft: tokenizer vs initial model")
    sets = _load_sets(cfg, tok)
    summary = {"phase": "sft", "init": str(init_model), "config": asdict(cfg), "stages": []}
    own = ablation is None
    parallel = start_ablation(cfg, init_model, out, tokenizer_dir, resume) if own else None
    try:
        current = Path(init_model)
        for i, (stage, (examples, stats)) in enumerate(zip(cfg.stages, sets), 1):
            stage_dir = out / f"stage{i}"
            model = load_model(current)
            res = _train_stage(model, examples, stage.train, tok, stage_dir / "work", resume, f"sft stage {i}", accelerator)
            if res.stopped_by != "done":
                summary["stopped_by"] = res.stopped_by
                return summary
            info = {"data": stage.data, "examples": stats.kept, "replay_rows": len(examples) - stats.kept,
                    "dropped_too_long": stats.dropped_too_long,
                    "truncated": stats.truncated, "steps": res.steps, "tokens": res.tokens, "last_train_loss": res.last_loss}
            summary["stages"].append(info)
            if accelerator.is_main_process:
                save_model(res.model, tok, stage_dir / "model", extra_json={"soaes_training.json": info})
            accelerator.wait_for_everyone()
            current = stage_dir / "model"
        if parallel is not None:
            summary["single_stage"] = parallel.join()
        elif cfg.single_stage and own:
            summary["single_stage"] = _single_stage(cfg, sets, init_model, out, tok, resume, accelerator)
    finally:
        if parallel is not None:
            parallel.stop()
    summary["stopped_by"] = "done"
    if accelerator.is_main_process:
        save_model(load_model(current), tok, out / "model", extra_json={"soaes_training.json": summary})
    return broadcast_json(summary, accelerator)
