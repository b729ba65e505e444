"""Timing primitives for the profiler: single forwards at a fixed context, and the Hugging Face baselines.

Forward costs are measured on a filled KV cache and cut back after each step (`DynamicCache.crop(-n)`), so every
timed step sees the same context length; CUDA is synchronised around each timed call.
"""

from __future__ import annotations

import statistics
import time

import torch


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def forward_ms(model, context_ids: list[int], n_tokens: int = 1, steps: int = 20, warmup: int = 3) -> float:
    """Median ms of one forward of n_tokens new tokens on top of a KV cache holding context_ids."""
    from transformers import DynamicCache

    device = model.device
    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([context_ids], device=device), cache=cache, use_cache=True, logits_to_keep=1)
    block = torch.tensor([(context_ids * n_tokens)[:n_tokens]], device=device)
    times = []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        model(input_ids=block, cache=cache, use_cache=True)
        _sync(device)
        times.append(time.perf_counter() - t0)
        cache.crop(-n_tokens)  # keep the context length fixed
    return 1000 * statistics.median(times[warmup:])


def measure_costs(target, draft, context_ids: list[int], gammas, steps: int = 20) -> dict:
    """c = draft / target single-token forward time, and each gamma's (gamma+1)-token verification cost."""
    t_ms = forward_ms(target, context_ids, 1, steps)
    d_ms = forward_ms(draft, context_ids, 1, steps)
    verify = []
    for g in gammas:
        v_ms = forward_ms(target, context_ids, g + 1, steps)
        verify.append({"gamma": g, "verify_ms": v_ms, "verify_cost": v_ms / t_ms})
    return {"context": len(context_ids), "target_ms": t_ms, "draft_ms": d_ms, "c": d_ms / t_ms, "verify": verify}


def hf_generate(target, draft, ids: list[int], gamma: int | None, max_new_tokens: int, eos: list[int],
                temperature: float = 0.0, top_p: float = 1.0) -> list[int]:
    """HF generate, assisted by `draft` with a constant gamma (or target-only when draft is None)."""
    x = torch.tensor([ids], device=target.device)
    kw = dict(max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=eos[0] if eos else None,
              attention_mask=torch.ones_like(x), do_sample=temperature > 0)
    if temperature > 0:  # the same warp as decode.sampling_probs: no top-k
        kw.update(temperature=temperature, top_p=top_p, top_k=0)
    else:
        kw.update(temperature=None, top_p=None, top_k=None)
    if draft is None:
        return target.generate(x, **kw)[0, len(ids):].tolist()
    gc = draft.generation_config
    saved = (gc.num_assistant_tokens, gc.num_assistant_tokens_schedule, gc.assistant_confidence_threshold)
    # transformers reads the draft length from the *assistant's* generation_config; pin it and disable early stop
    gc.num_assistant_tokens, gc.num_assistant_tokens_schedule, gc.assistant_confidence_threshold = gamma, "constant", 0.0
    try:
        out = target.generate(x, assistant_model=draft, num_assistant_tokens=gamma,
                              num_assistant_tokens_schedule="constant", **kw)
    finally:
        gc.num_assistant_tokens, gc.num_assistant_tokens_schedule, gc.assistant_confidence_threshold = saved
    return out[0, len(ids):].tolist()


def timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0
