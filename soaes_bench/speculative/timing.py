"""Timing primitives for the profiler: the clock, single forwards at a fixed context, and the Hugging Face baselines.

The clock depends on the device (`timer_for`): on a CPU, `time.perf_counter` around the call (`HostTimer`, which
never touches torch.cuda); on CUDA, a pair of CUDA events recorded on the device's current stream around the call,
after a `torch.cuda.synchronize()` so that work queued earlier is not counted, read once the end event has completed
(`CudaTimer`). For a decode loop, which waits for every token on the host anyway, the two clocks agree; for a single
forward the events measure the GPU's time from the first to the last queued kernel.

Forward costs are measured on a filled KV cache and cut back after each step (`DynamicCache.crop(-n)`), so every
timed step sees the same context length. `warm_up` runs untimed forwards first on a GPU (kernel selection, allocator,
cuBLAS workspaces); the CPU path does not call it.
"""

from __future__ import annotations

import statistics
import time

import torch

from soaes_bench.speculative.decode import cache_kwarg, new_cache


class HostTimer:
    """Seconds of fn() by the host clock (CPU)."""

    kind = "perf_counter"

    def __call__(self, fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0


class CudaTimer:
    """Seconds of fn() by CUDA events on `device`'s current stream. `cuda` is the torch.cuda module (tests pass a
    fake one with Event, synchronize and current_stream)."""

    kind = "cuda_events"

    def __init__(self, device, cuda=None):
        self.device, self.cuda = torch.device(device), cuda if cuda is not None else torch.cuda

    def __call__(self, fn):
        cuda = self.cuda
        cuda.synchronize(self.device)  # earlier queued work is not ours
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        stream = cuda.current_stream(self.device)
        start.record(stream)
        out = fn()
        end.record(stream)
        end.synchronize()
        return out, start.elapsed_time(end) / 1000.0  # elapsed_time is in ms


def timer_for(device) -> HostTimer | CudaTimer:
    """The clock for `device`: CUDA events on a GPU, perf_counter otherwise."""
    return CudaTimer(device) if torch.device(device).type == "cuda" else HostTimer()


def timed(fn, device):
    """(fn(), seconds) by the clock of `device`."""
    return timer_for(device)(fn)


def _filled_cache(model, context_ids: list[int]):
    cache = new_cache(model)
    model(input_ids=torch.tensor([context_ids], device=model.device), **{cache_kwarg(model): cache}, use_cache=True,
          logits_to_keep=1)
    return cache


def _block(context_ids: list[int], n: int, device) -> torch.Tensor:
    return torch.tensor([(context_ids * n)[:n]], device=device)


def _timed_ms(fn, device) -> float:
    return 1000 * timed(fn, device)[1]


@torch.inference_mode()
def warm_up(models, context_ids: list[int], gammas, steps: int = 3) -> None:
    """Untimed forwards of every model at the shapes the profiler times (prefill, one token, gamma+1 tokens), then
    a synchronize: on a GPU the first calls of a shape pay for kernel selection and memory allocation."""
    for model in models:
        for _ in range(steps):
            cache = _filled_cache(model, context_ids)
            kw = {cache_kwarg(model): cache}
            for n in sorted({1, *(g + 1 for g in gammas)}):
                model(input_ids=_block(context_ids, n, model.device), **kw, use_cache=True)
                cache.crop(-n)
    for model in models:
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)


@torch.inference_mode()
def forward_ms(model, context_ids: list[int], n_tokens: int = 1, steps: int = 20, warmup: int = 3) -> float:
    """Median ms of one forward of n_tokens new tokens on top of a KV cache holding context_ids."""
    device = model.device
    cache = _filled_cache(model, context_ids)
    block = _block(context_ids, n_tokens, device)
    kw = {cache_kwarg(model): cache}
    times = []
    for _ in range(warmup + steps):
        times.append(_timed_ms(lambda: model(input_ids=block, **kw, use_cache=True), device))
        cache.crop(-n_tokens)  # keep the context length fixed
    return statistics.median(times[warmup:])


@torch.inference_mode()
def round_ms(target, draft, context_ids: list[int], gamma: int, steps: int = 20, warmup: int = 3) -> dict:
    """The two halves of one speculative round, timed in the order the loop runs them: a (gamma+1)-token target
    verification, then gamma single-token draft forwards. Medians in ms: {"verify_ms", "draft_ms"} (per draft
    forward). The draft runs right after the target has streamed its weights through the CPU caches, which
    evicts the draft's; measured alone, a small draft looks up to 3x cheaper than it is inside the loop."""
    device = target.device
    tcache, dcache = _filled_cache(target, context_ids), _filled_cache(draft, context_ids)
    block, one = _block(context_ids, gamma + 1, device), _block(context_ids, 1, device)
    tkw, dkw = {cache_kwarg(target): tcache}, {cache_kwarg(draft): dcache}

    def propose():
        for _ in range(gamma):
            draft(input_ids=one, **dkw, use_cache=True, logits_to_keep=1)

    verify, drafts = [], []
    for _ in range(warmup + steps):
        verify.append(_timed_ms(lambda: target(input_ids=block, **tkw, use_cache=True), device))
        tcache.crop(-(gamma + 1))
        drafts.append(_timed_ms(propose, device) / gamma)
        dcache.crop(-gamma)
    return {"verify_ms": statistics.median(verify[warmup:]), "draft_ms": statistics.median(drafts[warmup:])}


def measure_costs(target, draft, context_ids: list[int], gammas, steps: int = 20) -> dict:
    """Forward costs at one context length. c_isolated = draft / target single-token forward, each timed alone;
    per gamma, from round_ms: verify_cost = (gamma+1)-token verification / single-token forward, and c = a draft
    forward inside the round / single-token target forward (the c the predictions use)."""
    t_ms = forward_ms(target, context_ids, 1, steps)
    d_ms = forward_ms(draft, context_ids, 1, steps)
    verify = []
    for g in gammas:
        r = round_ms(target, draft, context_ids, g, steps)
        verify.append({"gamma": g, "verify_ms": r["verify_ms"], "verify_cost": r["verify_ms"] / t_ms,
                       "draft_ms": r["draft_ms"], "c": r["draft_ms"] / t_ms})
    return {"context": len(context_ids), "target_ms": t_ms, "draft_ms": d_ms, "c_isolated": d_ms / t_ms,
            "verify": verify}


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
