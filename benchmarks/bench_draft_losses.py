"""Draft-model training steps with the old and the new loss code, side by side on one machine.

    .venv/bin/python benchmarks/bench_draft_losses.py --recipe training/recipes/reference.yaml --repeats 6

A 1 x 128 draft with a 12,000-token vocabulary spends most of a step on its [B, T, V] logits, not in its layer,
so the way the loss touches them sets the step time. Two pairs, each timed as full optimizer steps (forward, loss,
backward, AdamW) on the recipe's distillation shapes (batch x seq_len, top-k), random tokens and teacher top-k,
alternating (old, new, new, old, ...) so machine-load drift hits both:
- ce: next-token cross-entropy on sliced logits[:, :-1] (copied, and a zero-filled [B, T, V] buffer in the backward)
  against losses.causal_lm_loss, which shifts the labels instead. The weights after the steps must be bit-identical.
- kd: the distillation loss with the student's tail by plain autograd (losses.topk_tail_plain) on sliced rows,
  against distill.make_kd_loss (the fused _TopkTail on all rows, last position masked). Losses must agree closely.
Printed: median step seconds of each, the median ratio old / new with the order-statistic CI of that median over the
repeats, labelled with its real level (6 repeats, the default: [min, max] at 96.9%; 5: [min, max] at 93.8%).
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

from bench_training import DEFAULT_REPEATS, ci_text, machine, median_interval, side_by_side_main  # shared helpers


def old_ce(model, batch):
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], use_cache=False).logits
    rows = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    return F.cross_entropy(rows, batch["labels"][:, 1:].reshape(-1), reduction="sum"), rows.size(0)


def old_kd(cfg):
    """The KD loss as it was: no tau^2 factor and no cross-entropy mix, so it equals make_kd_loss only at
    temperature 1 and ce_weight 0 (the reference recipe's settings; main refuses others)."""
    from soaes_bench.training import losses

    def loss_fn(model, batch):
        logits = model(input_ids=batch["input_ids"], use_cache=False).logits
        rows = logits[:, :-1].flatten(0, 1)
        s, t = losses.topk_distributions(rows, batch["t_values"][:, :-1].flatten(0, 1),
                                         batch["t_indices"][:, :-1].flatten(0, 1), cfg.temperature, fused=False)
        return losses.divergence(s, t, cfg.kind, cfg.beta).sum(), rows.size(0)

    return loss_fn


def run_steps(model, loss_fn, batches) -> tuple[float, float, object]:
    """(seconds, last loss per token, model) of one optimizer step per batch."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for batch in batches:
        total, n = loss_fn(model, batch)
        (total / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, float(total.detach()) / n, model


def make_batches(cfg, vocab: int, steps: int, seed: int) -> list[dict]:
    """Random blocks and a random teacher's top-k log-probs at the recipe's shapes (distill.collate_cached's form)."""
    import torch

    from soaes_bench.training.losses import teacher_topk

    g = torch.Generator().manual_seed(seed)
    b, t = cfg.train.batch_size, cfg.seq_len
    out = []
    for _ in range(steps):
        ids = torch.randint(1, vocab, (b, t), generator=g)
        values, indices = teacher_topk(3 * torch.randn(b * t, vocab, generator=g), cfg.top_k, cfg.temperature)
        out.append({"input_ids": ids, "labels": ids.clone(), "t_values": values.half().float().view(b, t, -1),
                    "t_indices": indices.view(b, t, -1)})
    return out


def bench(a) -> dict:
    import torch

    from soaes_bench.config import load_dataclass
    from soaes_bench.training.distill import make_kd_loss
    from soaes_bench.training.loop import lm_loss
    from soaes_bench.models import load_tokenizer, new_model
    from soaes_bench.pipeline_recipe import PipelineRecipe

    torch.set_num_threads(a.threads)
    recipe = load_dataclass(PipelineRecipe, a.recipe)
    cfg = recipe.distill
    if cfg is None or cfg.temperature != 1.0 or cfg.ce_weight != 0.0:
        raise SystemExit(f"{a.recipe}: distill: this benchmark needs a distill block with temperature 1 and ce_weight 0 "
                         "(the old loss it times had neither)")
    tok = load_tokenizer(recipe.tokenizer)
    init = new_model(cfg.draft_size, tok, seed=0)
    batches = make_batches(cfg, len(tok), a.steps, seed=1)
    pairs = {"ce": (old_ce, lm_loss), "kd": (old_kd(cfg), make_kd_loss(cfg))}
    print(f"{cfg.draft_size} model of {a.recipe}: batch {cfg.train.batch_size} x {cfg.seq_len}, vocab {len(tok)}, "
          f"top-k {cfg.top_k}; {a.steps} steps x {a.repeats} repeats each, {torch.get_num_threads()} thread(s); "
          f"{machine()}",
          flush=True)
    out = {}
    for name, (old, new) in pairs.items():
        times, losses, weights = {"old": [], "new": []}, {}, {}
        run_steps(copy.deepcopy(init), new, batches[:1])  # warm-up: allocator and kernels
        for r in range(a.repeats):
            for k in (("old", "new") if r % 2 == 0 else ("new", "old")):
                sec, loss, model = run_steps(copy.deepcopy(init), old if k == "old" else new, batches)
                times[k].append(sec / a.steps)
                losses[k], weights[k] = loss, [p.detach() for p in model.parameters()]
        same = all(torch.equal(x, y) for x, y in zip(weights["old"], weights["new"]))
        ratios = [o / n for o, n in zip(times["old"], times["new"])]
        m = median_interval(ratios)
        print(f"  {name}: old {statistics.median(times['old']):.3f} s/step, new {statistics.median(times['new']):.3f} "
              f"s/step; RATIO old/new {ci_text(ratios)}; last loss "
              f"old {losses['old']:.6f}, new {losses['new']:.6f}; weights bit-identical: {same}", flush=True)
        out[name] = {"times_s": times, "ratios": ratios, "ratio_median": statistics.median(ratios),
                     "ratio_ci": m["ci"], "ratio_ci_level": m["level"], "losses": losses, "weights_identical": same}
    return out


def main(argv=None) -> int:
    return side_by_side_main(argv, __doc__.splitlines()[0], bench, "pipeline recipe with a distill block", steps=5,
                             repeats=DEFAULT_REPEATS)


if __name__ == "__main__":
    sys.exit(main())
