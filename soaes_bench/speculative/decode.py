"""Speculative decoding (draft proposes, target verifies in one forward, caches rolled back) and the plain
target-only decoder it is compared against. Batch size 1, Hugging Face causal LMs with a `DynamicCache` each.

One round, with `seq` the tokens so far (prompt + emitted) and the target cache holding seq[:-1]:
  1. the draft feeds the tokens it has not seen yet and proposes d_1..d_gamma one token at a time;
  2. the target feeds [seq[-1], d_1..d_gamma] in ONE forward and gets next-token logits for gamma+1 positions;
  3. greedy: accept while d_i == argmax; sampling: the rejection rule (acceptance.verify), so outputs follow the
     target distribution; either way one more token comes from the target (correction, or bonus if all accepted);
  4. both caches are cut back to tokens that are still valid with `DynamicCache.crop(-n)` (transformers 5: a
     negative n removes n positions). After a full accept the draft has not seen d_gamma: it feeds it next round.
Greedy output is token-for-token the target's own greedy output (lossless), including where it stops on EOS.

Nothing here is Qwen2-specific: any causal LM whose forward takes a transformers `Cache` works. The cache keyword is
read from the forward's signature (`cache` in recent transformers 5 releases, `past_key_values` before; `cache_kwarg`),
`DynamicCache(config=...)` builds the per-layer cache the model's config asks for, and config fields are read with
fallbacks (`config_value`). A draft whose embedding matrix is padded to another size than the target's (same
tokenizer) proposes only ids both models have (`vocab_limit`); under sampling its q is zero above that.

    from soaes_bench.speculative.decode import speculative_generate, target_generate
    spec = speculative_generate(target, draft, prompt_ids, gamma=3, max_new_tokens=64, eos_token_id=[0, 2])
    base = target_generate(target, prompt_ids, max_new_tokens=64, eos_token_id=[0, 2])
    assert spec.tokens == base.tokens
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

from soaes_bench.errors import UserError
from soaes_bench.speculative.acceptance import greedy_verify, verify


@dataclass
class Generation:
    tokens: list[int]  # new tokens only (stops after the first EOS, at most max_new_tokens)
    records: list[tuple[int, int]] = field(default_factory=list)  # per round: (proposed, accepted)
    target_forwards: int = 0
    draft_forwards: int = 0


def sampling_probs(logits: torch.Tensor, temperature: float, top_p: float = 1.0) -> torch.Tensor:
    """softmax(logits / T), restricted to the smallest top-p nucleus and renormalised; rows are (..., vocab).

    Applied identically to target and draft, so speculative sampling reproduces target sampling with the same warp.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p >= top_p  # tokens after the nucleus already reached top_p
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def _eos_set(eos_token_id) -> frozenset[int]:
    if eos_token_id is None:
        return frozenset()
    if isinstance(eos_token_id, int):
        return frozenset([eos_token_id])
    return frozenset(int(e) for e in eos_token_id)


# -------------------------------------------------------------------------------------------------------------
# Model-agnostic access to the cache and the config


@functools.lru_cache(maxsize=None)
def _cache_kwarg_of(forward) -> str:
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return "cache"
    return "past_key_values" if "past_key_values" in params and "cache" not in params else "cache"


def cache_kwarg(model) -> str:
    """The forward keyword that takes a KV cache: "cache" (recent transformers 5 releases, where the old name is a
    deprecated alias) or "past_key_values" (older releases, where an unknown `cache=` would be swallowed by
    **kwargs and the cache silently not used)."""
    return _cache_kwarg_of(getattr(type(model), "forward", None) or model)


def new_cache(model):
    """An empty DynamicCache laid out for `model` (its config says which layers are full or sliding-window)."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def text_config(model):
    """The config that describes the language model (the text part of a multimodal config)."""
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def config_value(model, names: Sequence[str], default=None):
    """The first of `names` set in the model's (text) config: architectures name the same field differently
    (num_hidden_layers / n_layer / num_layers, max_position_embeddings / n_positions, ...)."""
    cfg = text_config(model)
    for name in names:
        value = getattr(cfg, name, None)
        if value is not None:
            return value
    return default


MAX_POSITION_NAMES = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def max_positions(model) -> int | None:
    """The longest sequence the model's position scheme covers, None when its config does not say."""
    value = config_value(model, MAX_POSITION_NAMES)
    return int(value) if value is not None else None


def vocab_limit(target, draft) -> int | None:
    """Token ids the draft may propose: the common vocabulary when the two embedding matrices differ in size
    (padding), None when they are equal (nothing to cut)."""
    tv, dv = _vocab_size(target), _vocab_size(draft)
    return min(tv, dv) if tv != dv else None


def _forward(model, ids: torch.Tensor, cache, last_only: bool) -> torch.Tensor:
    """Logits (n, vocab) for ids (1, n), appending to `cache`; last_only keeps only the final row."""
    return model(input_ids=ids, **{cache_kwarg(model): cache}, use_cache=True,
                 logits_to_keep=1 if last_only else 0).logits[0]


def _finish(out: list[int], new: Sequence[int], eos: frozenset[int], limit: int) -> bool:
    """Append `new` to `out`, cutting after the first EOS and at `limit`; True when generation is over."""
    for t in new:
        out.append(t)
        if t in eos or len(out) >= limit:
            return True
    return False


@torch.inference_mode()
def target_generate(target, prompt_ids: Sequence[int], max_new_tokens: int, eos_token_id=None,
                    temperature: float = 0.0, top_p: float = 1.0, generator: torch.Generator | None = None
                    ) -> Generation:
    """Target-only decoding with the same cache code: the fair baseline for tokens/s and for losslessness."""
    eos, out = _eos_set(eos_token_id), []
    if max_new_tokens <= 0:
        return Generation(out)
    device = target.device
    cache = new_cache(target)
    logits = _forward(target, torch.tensor([list(prompt_ids)], device=device), cache, True)[-1]
    forwards = 1
    while True:
        if temperature > 0:
            tok = torch.multinomial(sampling_probs(logits, temperature, top_p), 1, generator=generator)
        else:
            tok = logits.argmax(-1, keepdim=True)
        if _finish(out, [int(tok)], eos, max_new_tokens):
            break
        logits = _forward(target, tok.view(1, 1), cache, True)[-1]
        forwards += 1
    return Generation(out, target_forwards=forwards)


@torch.inference_mode()
def speculative_generate(target, draft, prompt_ids: Sequence[int], gamma: int, max_new_tokens: int,
                         eos_token_id=None, temperature: float = 0.0, top_p: float = 1.0,
                         generator: torch.Generator | None = None) -> Generation:
    """Speculative decoding of up to max_new_tokens after prompt_ids; see the module docstring for one round."""
    if gamma < 1:
        raise ValueError(f"gamma must be >= 1, got {gamma}")
    eos, out = _eos_set(eos_token_id), []
    gen = Generation(out)
    if max_new_tokens <= 0:
        return gen
    device = target.device
    seq = list(prompt_ids)
    tcache, dcache = new_cache(target), new_cache(draft)
    limit = vocab_limit(target, draft)
    if len(seq) > 1:  # the target holds seq[:-1]; seq[-1] goes into the first verification forward
        _forward(target, torch.tensor([seq[:-1]], device=device), tcache, True)
        gen.target_forwards += 1
    d_len = 0  # how many tokens of `seq` the draft cache holds
    sampling = temperature > 0
    while True:
        g = min(gamma, max_new_tokens - len(out) - 1)  # never draft past the token budget
        drafts, q_rows = [], []
        feed = torch.tensor([seq[d_len:]], device=device)
        for _ in range(g):
            logits = _forward(draft, feed, dcache, True)[-1]
            if limit is not None:
                logits = logits[:limit]
            if sampling:
                q = sampling_probs(logits, temperature, top_p)
                tok = torch.multinomial(q, 1, generator=generator)
                q_rows.append(q)
            else:
                tok = logits.argmax(-1, keepdim=True)
            drafts.append(tok)
            feed = tok.view(1, 1)
        gen.draft_forwards += g
        if g:
            d_len = len(seq) + g - 1  # the draft has seen seq + d_1..d_{g-1}
        last = torch.tensor(seq[-1:], device=device)
        block = torch.cat([last, *drafts]) if g else last
        logits = _forward(target, block.view(1, -1), tcache, False)  # (g+1, vocab): the one verification forward
        gen.target_forwards += 1
        draft_list = block[1:].tolist()
        if sampling:
            q_stack = torch.stack(q_rows) if g else logits.new_zeros((0, logits.shape[-1]))
            if q_stack.shape[-1] < logits.shape[-1]:  # a smaller draft vocabulary: q is 0 on the target's extra ids
                q_stack = torch.nn.functional.pad(q_stack, (0, logits.shape[-1] - q_stack.shape[-1]))
            n, nxt = verify(sampling_probs(logits, temperature, top_p), q_stack, block[1:], generator)
        else:
            n, nxt = greedy_verify(logits.argmax(-1).tolist(), draft_list)
        if g - n:
            tcache.crop(-(g - n))  # drop the rejected draft tokens; the target now holds seq + d_1..d_n
        keep = len(seq) + n  # valid prefix of the next round's seq[:-1]
        if d_len > keep:
            dcache.crop(-(d_len - keep))
            d_len = keep
        gen.records.append((g, n))
        new = draft_list[:n] + [nxt]
        if limit is not None and nxt >= _vocab_size(draft):
            raise UserError(f"the target generated token id {nxt}, beyond the draft's vocab_size "
                            f"{_vocab_size(draft)} (embedding padding is only safe for ids the tokenizer never makes)")
        seq.extend(new)
        if _finish(out, new, eos, max_new_tokens):
            return gen


# -------------------------------------------------------------------------------------------------------------
# Compatibility


def _vocab_size(model) -> int:
    return int(text_config(model).vocab_size)


def _specials(tok) -> dict[str, object]:
    out = {name: (getattr(tok, f"{name}_token", None), getattr(tok, f"{name}_token_id", None))
           for name in ("bos", "eos", "pad", "unk")}
    out["special tokens"] = tuple(sorted(tok.all_special_tokens))
    return out


def check_compatible(target, draft, target_tok=None, draft_tok=None) -> None:
    """Refuse a draft that does not share the target's vocabulary: one UserError listing every difference."""
    check_vocabularies(_vocab_size(target), _vocab_size(draft), target_tok, draft_tok)


def check_vocabularies(tv: int, dv: int, target_tok=None, draft_tok=None) -> None:
    """check_compatible from the two configs' vocab_size and the tokenizers: needs no weights, so the CLI can refuse
    a pair before loading it. Embedding sizes may differ (padding, e.g. Qwen2.5 7B 152064 vs 0.5B 151936) only when
    the tokenizers are given, identical, and fit in both."""
    problems: list[str] = []
    padded = (target_tok is not None and draft_tok is not None and target_tok.get_vocab() == draft_tok.get_vocab()
              and len(target_tok) <= min(tv, dv))
    if tv != dv and not padded:
        problems.append(f"model vocab_size {tv} (target) vs {dv} (draft)")
    if target_tok is not None and draft_tok is not None:
        va, vb = target_tok.get_vocab(), draft_tok.get_vocab()
        if va != vb:
            diff = sorted({t for t in set(va) | set(vb) if va.get(t) != vb.get(t)})
            problems.append(f"tokenizer vocabularies differ ({len(va)} vs {len(vb)} entries; {len(diff)} tokens "
                            f"differ, e.g. {diff[0]!r})")
        sa, sb = _specials(target_tok), _specials(draft_tok)
        for name in sa:
            if sa[name] != sb[name]:
                problems.append(f"{name} {sa[name]!r} (target) vs {sb[name]!r} (draft)")
    if problems:
        raise UserError("draft is not compatible with target: " + "; ".join(problems))


def eos_ids(model=None, tokenizer=None, extra: Iterable[str] = ("<|im_end|>",)) -> list[int]:
    """Stop tokens: the model's generation_config eos ids, the tokenizer's eos and (for chat models) <|im_end|>."""
    ids: list[int] = []
    gc_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.extend([gc_eos] if isinstance(gc_eos, int) else list(gc_eos or []))
    if tokenizer is not None:
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        vocab = tokenizer.get_vocab()
        ids.extend(vocab[t] for t in extra if t in vocab)
    return sorted(set(int(i) for i in ids))
