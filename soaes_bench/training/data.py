"""Training data: packed pretraining blocks, token-ratio mixing, and SFT examples with prompt masking.

Attention across packed documents: plain causal attention over the whole block, with <|endoftext|> between
documents (the GPT-2/GPT-3 and Qwen pretraining practice). A token may attend to the tail of the previous document;
the EOS separator teaches the model that context before it is unrelated. Per-document masks would need
position-id resets and a varlen/flex attention path that the eager and SDPA CPU kernels do not offer cheaply, and at
our block lengths (256-512) cross-document attention costs little. Evaluation and decoding never see packed
blocks, so the choice only affects training efficiency, not the benchmark contract.

SFT examples are NOT packed: one conversation per row, right-padded per batch, so no example ever attends to
another and positions start at 0 as at inference.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from soaes_bench.errors import UserError
from soaes_bench.io import iter_jsonl

IGNORE = -100  # label value ignored by the loss (torch cross_entropy default ignore_index)


# ---------------------------------------------------------------- pretraining documents -> packed blocks
def read_texts(path: str | Path) -> list[str]:
    """The `text` of every document row (DESIGN.md: {"id", "text", "source", "lang"}), in file order."""
    texts = []
    for lineno, row in iter_jsonl(path):
        text = row.get("text")
        if not isinstance(text, str):
            raise UserError(f"{path}:{lineno}: document row needs a string `text` field")
        if text.strip():
            texts.append(text)
    if not texts:
        raise UserError(f"{path}: no documents")
    return texts


def tokenize(texts: list[str], tokenizer, batch: int = 512) -> list[list[int]]:
    out: list[list[int]] = []
    for i in range(0, len(texts), batch):
        out.extend(tokenizer(texts[i:i + batch], add_special_tokens=False, verbose=False)["input_ids"])
    return out


def pack(docs: list[list[int]], seq_len: int, eos_id: int, seed: int):
    """Shuffle documents (seeded), join them with EOS after each, cut into [n_blocks, seq_len] (tail dropped).

    Same inputs and seed -> the same tensor, on every process; this is what makes resume and multi-process
    sharding exact.
    """
    import numpy as np
    import torch

    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    total = sum(len(d) + 1 for d in docs)
    flat = np.empty(total, dtype=np.int64)
    pos = 0
    for i in order:
        d = docs[i]
        flat[pos:pos + len(d)] = d
        flat[pos + len(d)] = eos_id
        pos += len(d) + 1
    n = total // seq_len
    if n == 0:
        raise UserError(f"corpus has {total} tokens, fewer than one block of seq_len {seq_len}")
    return torch.from_numpy(flat[: n * seq_len].reshape(n, seq_len).copy())


def mix_blocks(domain, general, replay_fraction: float, n_blocks: int, seed: int, focus=None,
               focus_fraction: float = 0.0):
    """`n_blocks` blocks of which round(replay_fraction * n_blocks) come from `general` (replay),
    round(focus_fraction * n_blocks) from `focus` (documents to read more often), the rest from `domain`, interleaved
    in a seeded random order.

    All blocks have the same length, so the fraction of blocks is exactly the fraction of tokens. Each source is
    read as draw_blocks reads it.
    """
    import torch

    for name, value in (("replay_fraction", replay_fraction), ("focus_fraction", focus_fraction)):
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{name}: must be in [0, 1], got {value}")
    if replay_fraction + focus_fraction > 1.0:
        raise UserError(f"replay_fraction + focus_fraction must be <= 1, got {replay_fraction + focus_fraction}")
    n_general = round(replay_fraction * n_blocks)
    n_focus = round(focus_fraction * n_blocks)
    n_domain = n_blocks - n_general - n_focus
    g = torch.Generator().manual_seed(seed)
    parts = [draw_blocks(domain, n_domain, g), draw_blocks(general, n_general, g)]
    if n_focus:  # drawn after the others, so a recipe without focus mixes exactly as before
        parts.append(draw_blocks(focus, n_focus, g))
    mixed = torch.cat([p for p in parts if p is not None])
    return mixed[torch.randperm(n_blocks, generator=g)]


def draw_blocks(blocks, k: int, generator):
    """k blocks read in seeded permutations, a new one each time the source is exhausted (epochs): a source smaller
    than its share is repeated rather than silently shrinking the share. k = 0 -> None (nothing drawn)."""
    import torch

    if k == 0:
        return None
    if blocks is None or len(blocks) == 0:
        raise UserError("mix: a corpus with a non-zero share has no blocks")
    reps = -(-k // len(blocks))
    idx = torch.cat([torch.randperm(len(blocks), generator=generator) for _ in range(reps)])[:k]
    return blocks[idx]


class Blocks:
    """Packed blocks as a dataset: item i -> {"input_ids": LongTensor[seq_len]}."""

    def __init__(self, blocks):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i]}


def collate_blocks(items: list[dict]) -> dict:
    """Stack blocks; labels = input_ids (the model shifts them). No attention mask: plain causal attention."""
    import torch

    ids = torch.stack([it["input_ids"] for it in items])
    return {"input_ids": ids, "labels": ids.clone()}


# ---------------------------------------------------------------- SFT conversations
def _render(tokenizer, messages, add_generation_prompt):
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def sft_example(messages: list[dict], tokenizer, max_len: int) -> dict | None:
    """Token ids and labels for one conversation rendered with the tokenizer's chat template.

    Labels are IGNORE on everything the model is given (system/user turns and each assistant header
    `<|im_start|>assistant\\n`) and equal to the ids on each assistant reply and its closing `<|im_end|>\\n`, so the
    model learns to answer and to stop. The text is built by rendering growing prefixes of the conversation, so
    whatever the template puts between turns is masked correctly. Right-truncated to `max_len`; returns None when
    truncation leaves no label (the prompt alone is too long).
    """
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for i, msg in enumerate(messages):
        if msg.get("role") == "assistant":
            head = _render(tokenizer, messages[:i], add_generation_prompt=True)
            full = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
            if not (head.startswith(done) and full.startswith(head)):
                raise UserError("chat template: rendering is not prefix-stable; cannot mask prompt tokens")
            prompt_part, reply_part = head[len(done):], full[len(head):]
            done = full
            p = tokenizer(prompt_part, add_special_tokens=False)["input_ids"] if prompt_part else []
            r = tokenizer(reply_part, add_special_tokens=False)["input_ids"]
            ids += p + r
            labels += [IGNORE] * len(p) + r
    if not ids:
        return None
    ids, labels = ids[:max_len], labels[:max_len]
    if all(x == IGNORE for x in labels[1:]):
        return None
    return {"input_ids": ids, "labels": labels}


@dataclass
class SFTStats:
    rows: int = 0
    kept: int = 0
    dropped_too_long: int = 0
    truncated: int = 0


def load_sft(path: str | Path, tokenizer, max_len: int) -> tuple[list[dict], SFTStats]:
    """SFT rows (DESIGN.md: {"id", "messages": [...], ...}) -> examples, in file order."""
    examples, st = [], SFTStats()
    for lineno, row in iter_jsonl(path):
        msgs = row.get("messages")
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
            raise UserError(f"{path}:{lineno}: `messages` must be a list of {{role, content}} objects")
        if not any(m["role"] == "assistant" for m in msgs):
            raise UserError(f"{path}:{lineno}: conversation has no assistant turn")
        st.rows += 1
        full_len = len(tokenizer(_render(tokenizer, msgs, False), add_special_tokens=False)["input_ids"])
        ex = sft_example(msgs, tokenizer, max_len)
        if ex is None:
            st.dropped_too_long += 1
            continue
        st.truncated += full_len > max_len
        ex["id"] = row.get("id", f"{Path(path).name}:{lineno}")
        examples.append(ex)
        st.kept += 1
    if not examples:
        raise UserError(f"{path}: no usable SFT examples")
    return examples, st


def loss_tokens(example: dict) -> int:
    """Tokens of one example that carry a next-token loss (labels[1:] not IGNORE), as the training loop counts them."""
    return sum(x != IGNORE for x in example["labels"][1:])


def with_replay(examples: list[dict], blocks, fraction: float, seed: int) -> list[dict]:
    """SFT examples plus general-text blocks (every token a label) so that `fraction` of the loss tokens of one pass
    over the result are general text: CPT's replay, carried into SFT (the InstructGPT "ptx" mix) so that fine-tuning
    on short chat answers does not erase the language model. The replay rows come after the examples."""
    import torch

    if not fraction:
        return examples
    per_block = blocks.shape[1] - 1
    k = max(1, round(fraction / (1 - fraction) * sum(map(loss_tokens, examples)) / per_block))
    drawn = draw_blocks(blocks, k, torch.Generator().manual_seed(seed))
    rows = [{"input_ids": b.tolist(), "labels": b.tolist(), "id": f"replay:{i}"} for i, b in enumerate(drawn)]
    return examples + rows


class Examples:
    """A list of SFT examples as a dataset (the loop only needs len() and [i])."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


def make_pad_collate(pad_id: int):
    """Right-pad a batch to its longest example: ids with pad_id, labels with IGNORE, attention_mask 0."""

    def collate(items: list[dict]) -> dict:
        import torch

        n = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), n), pad_id, dtype=torch.long)
        labels = torch.full((len(items), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), n), dtype=torch.long)
        for row, it in enumerate(items):
            k = len(it["input_ids"])
            ids[row, :k] = torch.as_tensor(it["input_ids"])
            labels[row, :k] = torch.as_tensor(it["labels"])
            mask[row, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def split_docs(docs: list[list[int]], val_tokens: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """Hold out whole documents (seeded choice) until they hold >= val_tokens tokens: (train, val).

    Splitting by document, before packing, keeps validation text out of every training block.
    """
    if val_tokens <= 0:
        return docs, []
    order = list(range(len(docs)))
    random.Random(seed + 7919).shuffle(order)
    val_ids, got = set(), 0
    for i in order:
        if got >= val_tokens or len(val_ids) >= len(docs) - 1:
            break
        val_ids.add(i)
        got += len(docs[i]) + 1
    return [d for i, d in enumerate(docs) if i not in val_ids], [docs[i] for i in sorted(val_ids)]


def packed_corpus(path: str | Path, tokenizer, seq_len: int, seed: int, val_blocks: int = 0):
    """Documents file -> (train blocks [n, seq_len], val blocks [<= val_blocks, seq_len] or None)."""
    docs = tokenize(read_texts(path), tokenizer)
    train_docs, val_docs = split_docs(docs, val_blocks * seq_len, seed)
    eos = tokenizer.eos_token_id
    train = pack(train_docs, seq_len, eos, seed)
    enough = sum(len(d) + 1 for d in val_docs) >= seq_len
    val = pack(val_docs, seq_len, eos, seed)[:val_blocks] if enough else None
    return train, val
