"""Phase 3: logit distillation of the target into a small draft model for speculative decoding.

SOAEsV2 trains its draft on the target's output distributions so the draft's proposals are accepted more often.
Here: the teacher (the final target) runs ONCE over the packed distillation text and its top-k log-probs at
temperature tau are cached to disk (safetensors, float16 values + int16 ids, keyed by teacher weights, data, k, tau
and seq_len; `top_k: 0` instead runs the teacher on each batch and keeps its whole distribution, which no cache
could hold); the draft then trains on losses.topk_distill_rows (forward KL by default; reverse KL, JSD(beta) or TV
selectable), optionally mixed with cross-entropy on the real next token (`ce_weight`). The undistilled baseline is
the same draft (same init seed, data, steps, optimiser) trained with plain cross-entropy, so the comparison isolates
the teacher signal. With `teacher_answers: N`, the teacher first answers N chat questions of the data greedily
(teacher_answers.py) and the distilled draft trains on the data plus those answers: what speculative decoding
verifies is the target's own text; the baseline still trains on the data alone. Held-out metrics (`draft_heldout`
task, on held-out documents of the data, never on answers): top1_agreement (teacher-forced greedy agreement with
the teacher: the acceptance rate of greedy speculative decoding with gamma = 1), kl_teacher (forward KL) and ce.
top1_agreement's stderr treats the held-out blocks, not their tokens, as the independent units (`clustered_rate`):
the tokens of one block share its text and agree or disagree together.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from soaes_bench.config import non_negative, positive
from soaes_bench.errors import UserError
from soaes_bench.training.gate_spec import Check
from soaes_bench.training.loop import TrainArgs
from soaes_bench.models import check_size

HELDOUT_TASK = "draft_heldout"


@dataclass
class DistillConfig:
    """Recipe block `distill:`."""

    draft_size: str = field(default="draft", metadata={"help": "draft model size", "check": check_size})
    teacher: str | None = field(default=None, metadata={"help": "teacher dir (default: the pipeline's latest model)"})
    data: list[str] = field(default_factory=lambda: ["training/data/domain.jsonl", "training/data/sft_stage2.jsonl"],
                            metadata={"help": "document JSONL (text) and/or SFT JSONL (messages, rendered with the chat template)"})
    seq_len: int = field(default=256, metadata={"check": positive})
    val_blocks: int = field(default=16, metadata={"check": non_negative})
    top_k: int = field(default=32, metadata={
        "help": "teacher log-probs cached per position; 0 = the full vocabulary, teacher run alongside the draft",
        "check": non_negative})
    topk_mode: Literal["tail", "renorm"] = "tail"
    temperature: float = field(default=1.0, metadata={"check": positive})
    kind: Literal["forward_kl", "reverse_kl", "jsd", "tv"] = "forward_kl"
    beta: float = field(default=0.5, metadata={"help": "JSD interpolation (0 forward KL, 1 reverse KL)"})
    ce_weight: float = field(default=0.0, metadata={"help": "loss = (1 - w) * KD + w * CE"})
    chunk_size: int = field(default=1024, metadata={"help": "positions per loss chunk", "check": positive})
    baseline: bool = field(default=True, metadata={"help": "also train the undistilled (CE-only) baseline"})
    teacher_answers: int = field(default=0, metadata={
        "help": "chat questions of the SFT files in `data` the teacher answers greedily; the distilled draft also "
                "trains on those answers (teacher_answers.py), the baseline never sees them", "check": non_negative})
    answer_tokens: int = field(default=64, metadata={
        "help": "tokens of each teacher answer (EOS does not stop it, as in the profiler)", "check": positive})
    answers_only: bool = field(default=False, metadata={
        "help": "the distilled draft trains on the teacher's answers alone; `data` gives the questions, the held-out "
                "documents and the baseline's text"})
    train: TrainArgs = field(default_factory=lambda: TrainArgs(max_steps=300, lr=3e-3, warmup_steps=20))
    gates: list[Check] = field(default_factory=list)

    def __post_init__(self):
        for name in ("beta", "ce_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.answers_only and not self.teacher_answers:
            raise ValueError("answers_only needs teacher_answers > 0 (the answers to train on)")


# ---------------------------------------------------------------- data and teacher cache
def distill_texts(paths: list[str], tokenizer) -> list[str]:
    from soaes_bench.io import iter_jsonl

    texts = []
    for path in paths:
        for lineno, row in iter_jsonl(path):
            if isinstance(row.get("text"), str):
                texts.append(row["text"])
            elif isinstance(row.get("messages"), list):
                texts.append(tokenizer.apply_chat_template(row["messages"], tokenize=False))
            else:
                raise UserError(f"{path}:{lineno}: distillation rows need `text` or `messages`")
    return texts


def _cache_key(teacher_dir: Path, blocks, cfg: DistillConfig) -> dict:
    import hashlib

    from soaes_bench.io import sha256_files

    return {"teacher_sha256": sha256_files(teacher_dir.glob("*.safetensors")),
            "data_sha256": hashlib.sha256(blocks.numpy().tobytes()).hexdigest(),
            "top_k": str(cfg.top_k), "temperature": repr(float(cfg.temperature)), "seq_len": str(cfg.seq_len)}


def teacher_cache(teacher, teacher_dir: Path, blocks, cfg: DistillConfig, path: Path, batch: int = 8):
    """Top-k teacher log-probs for every position of `blocks` [n, T], computed once and reused while the key
    (teacher weights, data, k, tau, seq_len) matches. Returns (values float16 [n, T, k], ids [n, T, k])."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from soaes_bench.training.losses import teacher_topk

    key = _cache_key(teacher_dir, blocks, cfg)
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            if f.metadata() == key:
                return f.get_tensor("values"), f.get_tensor("indices")
    id_dtype = torch.int16 if teacher.config.vocab_size <= 32767 else torch.int32
    # The results go straight into their final tensors, allocated before the first teacher forward. Keeping each
    # batch's small results in lists until one torch.cat at the end (as this did before) grew the micro recipe's
    # process by ~6 MB per batch, past 11 GB for its 27 MB cache: glibc's malloc raises its mmap threshold to the
    # size of the first [batch, T, V] logits it frees and then serves the logits from its heap, where the kept 4 KB
    # results land in the holes freed logits leave; no later logits fit in such a hole, so the heap only grew. With
    # nothing long-lived allocated inside the loop, every batch reuses the memory the previous one freed
    # (benchmarks/bench_memory.py, tests/test_distill_memory.py).
    n, seq_len = blocks.shape
    values = torch.empty(n, seq_len, cfg.top_k, dtype=torch.float16)
    indices = torch.empty(n, seq_len, cfg.top_k, dtype=id_dtype)
    device = next(teacher.parameters()).device
    with torch.no_grad():
        for i in range(0, n, batch):
            logits = teacher(input_ids=blocks[i:i + batch].to(device), use_cache=False).logits
            v, ix = teacher_topk(logits.flatten(0, 1), cfg.top_k, cfg.temperature)
            values[i:i + batch] = v.view(*logits.shape[:2], -1).half().cpu()
            indices[i:i + batch] = ix.view(*logits.shape[:2], -1).to(id_dtype).cpu()
            del logits, v, ix
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"values": values, "indices": indices}, str(tmp), metadata=key)
    tmp.replace(path)
    return values, indices


def used_blocks(blocks, n_used: int, seed: int):
    """The blocks training will read: all when they are fewer than `n_used`, else a seeded subset of `n_used`.
    The loop reads the first epoch in a random order anyway, so this changes no distribution; it keeps the teacher
    (cache or online) from running on text no step reads: the chat sets of both SFT stages hold ~850k tokens, a
    300-step run reads 1.2M, a 100-step run 410k."""
    import torch

    if len(blocks) <= n_used:
        return blocks
    keep = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed + 31)).narrow(0, 0, n_used)
    return blocks[keep.sort().values]


class CachedBlocks:
    def __init__(self, blocks, values, indices):
        self.blocks, self.values, self.indices = blocks, values, indices

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i], "t_values": self.values[i], "t_indices": self.indices[i]}


def collate_cached(items):
    import torch

    ids = torch.stack([it["input_ids"] for it in items])
    return {"input_ids": ids, "labels": ids.clone(),
            "t_values": torch.stack([it["t_values"] for it in items]).float(),
            "t_indices": torch.stack([it["t_indices"] for it in items]).long()}


def make_kd_loss(cfg: DistillConfig, teacher=None):
    """loss_fn for loop.train: summed (1 - w) * KD + w * CE over all next-token positions of packed blocks.
    With `teacher` (top_k 0) the teacher runs on each batch and the loss sees its whole distribution; otherwise the
    batch carries the cached top-k rows."""
    import torch
    import torch.nn.functional as F

    from soaes_bench.training import losses

    def row_loss(logits, *teacher_rows_and_targets):
        *t_rows, targets = teacher_rows_and_targets
        if teacher is None:
            kd = losses.topk_distill_rows(logits, *t_rows, cfg.kind, cfg.beta, cfg.temperature, cfg.topk_mode)
        else:
            kd = losses.distill_rows(logits, *t_rows, cfg.kind, cfg.beta, cfg.temperature)
        kd = kd * (targets != losses.IGNORE)  # a block's last position: no next token in the block, not counted
        if cfg.ce_weight == 0.0:
            return kd
        return (1 - cfg.ce_weight) * kd + cfg.ce_weight * losses.token_ce(logits, targets)

    def loss_fn(model, batch):
        # Position t predicts token t + 1, and so does teacher row t. Every position is a row and the last one of
        # each block is masked, since slicing it off would copy the [B, T, V] logits (as causal_lm_loss explains).
        ids = batch["input_ids"]
        if teacher is None:
            t_rows = [batch["t_values"].flatten(0, 1), batch["t_indices"].flatten(0, 1)]
        else:
            with torch.no_grad():
                t_rows = [teacher(input_ids=ids, use_cache=False).logits.flatten(0, 1)]
        logits = model(input_ids=ids, use_cache=False).logits
        targets = F.pad(batch["labels"][:, 1:], (0, 1), value=losses.IGNORE).flatten()
        total = losses.chunked_rows_sum(logits.flatten(0, 1), None, row_loss, *t_rows, targets,
                                        chunk_size=cfg.chunk_size)
        return total, int((targets != losses.IGNORE).sum())

    return loss_fn


# ---------------------------------------------------------------- held-out metrics
def clustered_rate(hits, tokens) -> tuple[float, float | None]:
    """Pooled rate r = sum(a_b) / sum(t_b) over B clusters (held-out blocks) with a_b hits among t_b tokens, and its
    cluster-robust standard error (the ratio estimator's linearisation, with the usual B / (B - 1) correction):

        SE = sqrt(B / (B - 1) * sum_b (a_b - r t_b)^2) / sum_b t_b

    Unlike the binomial sqrt(r (1 - r) / sum t), which assumes every token independent, this is honest when the
    tokens of a block agree or disagree together (then it is up to sqrt(t) times larger). SE None for B < 2."""
    a = [float(x) for x in hits]
    t = [float(x) for x in tokens]
    if len(a) != len(t):
        raise ValueError(f"hits and tokens differ in length: {len(a)} vs {len(t)}")
    total = math.fsum(t)
    if total <= 0:
        return math.nan, None
    r = math.fsum(a) / total
    b = len(a)
    if b < 2:
        return r, None
    return r, math.sqrt(b / (b - 1) * math.fsum((x - r * y) ** 2 for x, y in zip(a, t))) / total


def heldout_metrics(draft, teacher, val_blocks, batch: int = 8) -> dict:
    """Teacher-forced agreement, forward KL(teacher || draft) and draft CE on held-out blocks [n, T] (results format)."""
    import torch
    import torch.nn.functional as F

    from soaes_bench.speculative.acceptance import greedy_agreement
    from soaes_bench.training.losses import divergence

    agreed, tokens, kl, ce, n = [], [], 0.0, 0.0, 0  # agreed/tokens: per held-out block
    d_dev, t_dev = next(draft.parameters()).device, next(teacher.parameters()).device
    with torch.no_grad():
        for i in range(0, len(val_blocks), batch):
            ids = val_blocks[i:i + batch].to(d_dev)
            s = draft(input_ids=ids, use_cache=False).logits[:, :-1].flatten(0, 1).float()
            t = teacher(input_ids=ids.to(t_dev), use_cache=False).logits[:, :-1].flatten(0, 1).float().to(d_dev)
            per_block = s.size(0) // ids.size(0)
            for j in range(ids.size(0)):  # the profiler's acceptance function at gamma = 1, block by block
                rows = slice(j * per_block, (j + 1) * per_block)
                agreed.append(round(greedy_agreement(t[rows], s[rows]) * per_block))
                tokens.append(per_block)
            kl += float(divergence(F.log_softmax(s, -1), F.log_softmax(t, -1), "forward_kl").sum())
            ce += float(F.cross_entropy(s, ids[:, 1:].flatten(), reduction="sum"))
            n += s.size(0)
    p, se = clustered_rate(agreed, tokens) if n else (0.0, None)
    metrics = {"top1_agreement": {"value": p, "stderr": se},
               "kl_teacher": {"value": kl / max(n, 1), "stderr": None},
               "ce": {"value": ce / max(n, 1), "stderr": None}}
    return {"tasks": {HELDOUT_TASK: {"n": n, "metrics": metrics,
                                     "higher_is_better": {"top1_agreement": True, "kl_teacher": False, "ce": False}}}}


# ---------------------------------------------------------------- the phase
def run_distill(cfg: DistillConfig, teacher_dir: str | Path, out_dir: str | Path, tokenizer_dir=None,
                resume: bool = True) -> dict:
    """Distilled draft -> <out>/model, baseline -> <out>/baseline/model; held-out metrics in the summary
    (`results` for the distilled draft, `baseline_results` for the baseline)."""
    from soaes_bench.training import data, teacher_answers
    from soaes_bench.training.dist import broadcast_json, make_accelerator
    from soaes_bench.training.loop import lm_loss, resolve_steps, train
    from soaes_bench.models import check_same_vocab, load_model, load_tokenizer, new_model, save_model

    out, teacher_dir = Path(out_dir), Path(cfg.teacher or teacher_dir)
    accelerator = make_accelerator()
    tok = load_tokenizer(tokenizer_dir)
    check_same_vocab(tok, load_tokenizer(teacher_dir), "distill: draft tokenizer vs teacher")
    teacher = load_model(teacher_dir).eval().to(accelerator.device)
    if teacher.config.vocab_size != len(tok):
        raise UserError(f"{teacher_dir}: teacher vocab {teacher.config.vocab_size} != tokenizer {len(tok)}")
    seed = cfg.train.seed
    docs = data.tokenize(distill_texts(cfg.data, tok), tok)
    train_docs, val_docs = data.split_docs(docs, cfg.val_blocks * cfg.seq_len, seed)
    val = data.pack(val_docs, cfg.seq_len, tok.eos_token_id, seed)[:cfg.val_blocks] if val_docs else None
    steps = resolve_steps(cfg.train, cfg.seq_len)
    plain = used_blocks(data.pack(train_docs, cfg.seq_len, tok.eos_token_id, seed), steps * cfg.train.batch_size, seed)
    blocks = plain
    summary = {"phase": "distill", "teacher": str(teacher_dir), "config": asdict(cfg), "steps": steps}
    if cfg.teacher_answers:  # main process generates, the others read the saved answers
        prompts = teacher_answers.pick(teacher_answers.questions(cfg.data, tok, {tuple(d) for d in val_docs}),
                                       cfg.teacher_answers, seed)
        path = out / "teacher_answers.json"
        if accelerator.is_main_process:
            teacher_answers.cached(teacher, teacher_dir, prompts, cfg.answer_tokens, tok.pad_token_id, path)
        accelerator.wait_for_everyone()
        answers = teacher_answers.cached(teacher, teacher_dir, prompts, cfg.answer_tokens, tok.pad_token_id, path)
        docs = answers if cfg.answers_only else train_docs + answers
        blocks = used_blocks(data.pack(docs, cfg.seq_len, tok.eos_token_id, seed), steps * cfg.train.batch_size, seed)
        summary["teacher_answers"] = {"answers": len(answers), "tokens": sum(map(len, answers)), "path": str(path)}
    summary["distill_tokens"] = int(blocks.numel())
    max_pos = min(teacher.config.max_position_embeddings, 2048)
    if cfg.top_k == 0:  # the full vocabulary: [n, T, V] would not fit on disk, so the teacher runs on each batch
        runs = [("distilled", out, data.Blocks(blocks), data.collate_blocks, make_kd_loss(cfg, teacher))]
    else:
        cache = out / "teacher_topk.safetensors"
        if accelerator.is_main_process:
            teacher_cache(teacher, teacher_dir, blocks, cfg, cache)
        accelerator.wait_for_everyone()
        values, indices = teacher_cache(teacher, teacher_dir, blocks, cfg, cache)
        summary["cache"] = str(cache)
        runs = [("distilled", out, CachedBlocks(blocks, values, indices), collate_cached, make_kd_loss(cfg))]
    if cfg.baseline:  # the data without the teacher's answers: the baseline learns nothing from the teacher
        runs.append(("baseline", out / "baseline", data.Blocks(plain), data.collate_blocks, lm_loss))
    for label, where, dataset, collate, loss_fn in runs:
        draft = new_model(cfg.draft_size, tok, seed=seed, max_position=max_pos)  # same init for both
        res = train(draft, dataset, collate, cfg.train, where / "work", loss_fn=loss_fn, total_steps=steps,
                    resume=resume, desc=f"distill {label}", accelerator=accelerator)
        info = {"steps": res.steps, "tokens": res.tokens, "stopped_by": res.stopped_by, "last_train_loss": res.last_loss}
        if val is not None and accelerator.is_main_process:  # evaluation on the main process only
            info["results"] = heldout_metrics(res.model, teacher, val)
        summary[label] = info
        if accelerator.is_main_process and res.stopped_by == "done":
            save_model(res.model, tok, where / "model", extra_json={"soaes_training.json": info})
        accelerator.wait_for_everyone()
        if res.stopped_by != "done":
            break
    summary["stopped_by"] = summary["distilled"]["stopped_by"]
    return broadcast_json(summary, accelerator)  # held-out metrics exist on the main process only; share them
