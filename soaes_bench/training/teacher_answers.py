"""Distillation text the teacher writes itself: its greedy answers to the chat questions of the SFT data.

Why: speculative decoding accepts a draft token when it equals what the target writes next, and what a small
target writes (its mistakes, its phrasing, what it writes after an answer) differs from the SFT data's reference
answers. Distilling the target's logits on its own greedy continuations (sequence-level KD, Kim & Rush 2016,
arXiv 1606.07947; on-policy data as in DistillSpec, Zhou et al. 2024, arXiv 2310.08461) aims the draft at that text.
The continuation does not stop at EOS, like the profiler's steady-state measurement, so what the target writes
after an answer is learned too. Token ids are kept as generated (prompt + continuation), never decoded and
re-tokenized, so the draft trains on exactly the sequences the target produces.
"""

from __future__ import annotations

from pathlib import Path

from soaes_bench.io import iter_jsonl, read_json, sha256_files, write_json


def questions(paths: list[str], tokenizer, exclude: set[tuple[int, ...]] = frozenset()) -> list[list[int]]:
    """Token ids of each chat question in the SFT (`messages`) files among `paths`: the messages before the last
    assistant turn, with the generation prompt. A row whose whole rendered conversation is in `exclude` (the
    held-out documents, as token tuples) is left out, so no held-out question is answered for training."""
    out = []
    for path in paths:
        for _, row in iter_jsonl(path):
            msgs = row.get("messages")
            if not isinstance(msgs, list) or len(msgs) < 2 or msgs[-1].get("role") != "assistant":
                continue
            whole = tokenizer(tokenizer.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)
            if tuple(whole["input_ids"]) in exclude:
                continue
            prompt = tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
            out.append(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return out


def pick(prompts: list[list[int]], n: int, seed: int) -> list[list[int]]:
    """n prompts drawn without replacement (seeded); all of them when there are at most n."""
    import random

    if len(prompts) <= n:
        return list(prompts)
    return [prompts[i] for i in sorted(random.Random(seed + 61).sample(range(len(prompts)), n))]


def generate(teacher, prompts: list[list[int]], new_tokens: int, pad_id: int, batch: int = 64) -> list[list[int]]:
    """Each prompt followed by the teacher's greedy continuation of exactly `new_tokens` tokens (EOS does not stop
    it). Prompts of similar length share a left-padded batch (sorted by length); the output keeps the input order."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int] | None] = [None] * len(prompts)
    dev = next(teacher.parameters()).device
    gen_cfg = teacher.generation_config
    saved = gen_cfg.eos_token_id
    gen_cfg.eos_token_id = None  # generate() refills a None it is passed from here; this keeps it from stopping
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch):
                idx = order[start:start + batch]
                width = max(len(prompts[i]) for i in idx)
                ids = torch.tensor([[pad_id] * (width - len(prompts[i])) + prompts[i] for i in idx])
                mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx])
                gen = teacher.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=new_tokens,
                                       do_sample=False, pad_token_id=pad_id)
                for row, i in enumerate(idx):
                    out[i] = prompts[i] + gen[row, width:].tolist()
    finally:
        gen_cfg.eos_token_id = saved
    return out


def cached(teacher, teacher_dir: Path, prompts: list[list[int]], new_tokens: int, pad_id: int, path: Path):
    """generate(), saved to `path` (JSON, atomic) and reused while the teacher weights, prompts and length match."""
    import hashlib
    import json

    key = {"teacher_sha256": sha256_files(teacher_dir.glob("*.safetensors")), "new_tokens": new_tokens,
           "prompts_sha256": hashlib.sha256(json.dumps(prompts).encode()).hexdigest()}
    if path.is_file():
        saved = read_json(path)
        if saved.get("key") == key:
            return saved["sequences"]
    sequences = generate(teacher, prompts, new_tokens, pad_id)
    write_json(path, {"key": key, "sequences": sequences})
    return sequences
