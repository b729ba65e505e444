"""Speculative decoding on a target/draft pair: the four ratios the project promises, measured in one run.

    .venv/bin/python benchmarks/bench_speculative.py                        # embedded target (or base) + draft
    .venv/bin/python benchmarks/bench_speculative.py --target DIR --draft DIR --undistilled-draft DIR
    .venv/bin/python benchmarks/bench_speculative.py --random-pair /tmp/pair   # timing check without trained models

Prints, greedy decoding, medians over repeats with the profiler's order-statistic CIs of the median, each labelled
with its real level (6 repeats, the default: [min, max] at 96.9%; 3 repeats: 75%). Every generation runs to
--max-new-tokens
(EOS ignored, `profile --ignore-eos`): Leviathan's formula predicts steady-state decoding, while the embedded target
answers in 7-30 tokens, so with --stop-at-eos prefill is a large share of each timed call (README, profile).
  0. the speedup at the best gamma: speculative / target-only tokens/s (same cache code); goal >= 1.3 where the
     CPU multiplies bf16 natively (the run is in bf16), >= 1.1 elsewhere (float32, e.g. an AVX2-only CPU);
  1. measured / predicted speedup at that gamma (goal >= 0.85), predicted with the measured verification cost:
     tau / (g c + v), tau = (1 - a^(g+1)) / (1 - a) (Leviathan et al.) from the measured per-token alpha
     a = accepted / (accepted + rejections) (acceptance.token_acceptance_rate), c a draft forward timed inside a
     round and v the measured (g+1)-token verification forward, both in target steps (timing.round_ms); the
     formula with v = 1 is printed too;
  2. our speculative tokens/s / HF assisted generation tokens/s at that gamma (goal >= 1.0);
  3. distilled / undistilled per-token alpha at that gamma, same prompts (goal >= 1.2; needs --undistilled-draft),
     with a paired percentile-bootstrap 95% CI over the prompts (not over repeats: greedy alpha does not vary),
     judged on the prompts whose target generation does not loop (metrics.health.is_looping: alpha on a loop
     measures copying, not prediction), and printed for all prompts too;
  4. greedy losslessness: share of speculative generations identical to target-only (goal 100%).
--random-pair DIR writes an untrained 8x384 target (the reference size, shared 12k tokenizer) and a draft that is its
truncated copy (embeddings + first layer + head), with the deeper layers' output projections scaled by
--deep-scale so the draft agrees with the target on part of the tokens: acceptance is synthetic, timing is real.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

from soaes_bench.metrics.health import is_looping
from soaes_bench.records.provenance import cpu_has_bf16
from soaes_bench.reporting.profile_report import write_outputs
from soaes_bench.speculative.decode import eos_ids, speculative_generate
from soaes_bench.speculative.model_pair import load_pair, make_qwen2, save_pair, truncated_copy
from soaes_bench.speculative.profile import default_pair_dirs, profile
from soaes_bench.speculative.prompts import encode, load_prompts


def random_pair(out_dir: Path, deep_scale: float, init_range: float, seed: int = 0) -> tuple[Path, Path]:
    from transformers import AutoTokenizer

    from soaes_bench.paths import TOKENIZER_DIR

    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    eos = eos_ids(None, tok)
    target = make_qwen2(len(tok), 8, 384, heads=6, kv_heads=2, intermediate=1024, seed=seed, eos_token_id=eos,
                        init_range=init_range)
    with torch.no_grad():
        for layer in target.model.layers[1:]:
            layer.self_attn.o_proj.weight.mul_(deep_scale)
            layer.mlp.down_proj.weight.mul_(deep_scale)
    return save_pair(target, truncated_copy(target, 1), tok, out_dir)


def alpha_per_prompt(target, draft, prompts: list[list[int]], gamma: int, max_new: int, eos,
                     generations: list | None = None) -> list[tuple[int, int]]:
    """(accepted, judged) per prompt, greedy: pooled, accepted / judged is the per-token alpha. The generated
    tokens (the target's own greedy output: decoding is lossless) are appended to `generations` when given."""
    out = []
    for ids in prompts:
        gen = speculative_generate(target, draft, ids, gamma, max_new, eos)
        accepted = sum(a for _, a in gen.records)
        out.append((accepted, accepted + sum(a < p for p, a in gen.records)))
        if generations is not None:
            generations.append(gen.tokens)
    return out


def ratio_ci(a: list[tuple[int, int]], b: list[tuple[int, int]], resamples: int = 2000, seed: int = 0):
    """Pooled alpha_a / alpha_b (rows: (accepted, judged) per prompt) and a paired bootstrap CI over prompts."""
    def pooled(rows):
        p = sum(x[1] for x in rows)
        return sum(x[0] for x in rows) / p if p else float("nan")

    rng = random.Random(seed)
    n = len(a)
    boots = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        den = pooled([b[i] for i in idx])
        if den > 0:
            boots.append(pooled([a[i] for i in idx]) / den)
    boots.sort()
    ci = [boots[int(0.025 * (len(boots) - 1))], boots[int(0.975 * (len(boots) - 1))]] if boots else None
    den = pooled(b)
    return (pooled(a) / den if den else float("inf")), ci, pooled(a), den


def _ci(x, ci, spec=".2f", level=None) -> str:
    """Value [low, high] with its level, e.g. "0.93 [0.92, 1.02] (75% CI)"; level None: the caller names it."""
    from soaes_bench.stats import level_label

    if x is None:
        return "n/a"
    tag = f" ({level_label(level)} CI)" if level is not None else ""
    return f"{x:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]{tag}" if ci else f"{x:{spec}}"


def _verdict(ok) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target")
    ap.add_argument("--draft")
    ap.add_argument("--undistilled-draft", help="draft of the same size before distillation (for the alpha ratio)")
    ap.add_argument("--random-pair", metavar="DIR", help="write and use an untrained 8x384 target + truncated draft")
    ap.add_argument("--deep-scale", type=float, default=0.03, help="--random-pair: scale of layers 2..8 outputs")
    ap.add_argument("--init-range", type=float, default=0.05, help="--random-pair: weight init std")
    ap.add_argument("--gamma", default="1,2,3,4")
    ap.add_argument("--contexts", default="", help="also profile these context lengths (comma-separated)")
    ap.add_argument("--prompts", default="all")
    ap.add_argument("--num-prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--stop-at-eos", action="store_true",
                    help="stop generations at EOS (end to end, as users see it) instead of always generating "
                         "--max-new-tokens (steady-state decoding, what the predicted speedup models)")
    ap.add_argument("--repeats", type=int, default=6,
                    help="timed repeats (6: [min, max] is a 96.9%% CI of the median; 3 only 75%%)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="auto = bfloat16 where the device has native bf16 math (models.resolve_dtype)")
    ap.add_argument("--output", default=None, help="also write profile.json/md and figures here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.random_pair:
        target_dir, draft_dir = random_pair(Path(args.random_pair), args.deep_scale, args.init_range)
    else:
        target_dir, draft_dir = default_pair_dirs(args.target, args.draft)
    target, draft, ttok, dtok = load_pair(target_dir, draft_dir, dtype=args.dtype)
    gammas = [int(g) for g in args.gamma.split(",") if g.strip()]
    contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    texts = load_prompts(args.prompts, args.num_prompts)
    rep = profile(target, draft, ttok, prompts=texts, gammas=gammas, contexts=contexts,
                  max_new_tokens=args.max_new_tokens, repeats=args.repeats, num_prompts=args.num_prompts,
                  hf_baseline=True, ignore_eos=not args.stop_at_eos, draft_tokenizer=dtok, target_path=target_dir, draft_path=draft_dir,
                  log=lambda m: print(m, file=sys.stderr))
    if args.output:
        write_outputs(rep, args.output)
    s, m, d, env = rep["summary"], rep["model"], rep["draft"], rep["env"]
    g = s["best_gamma"]
    top = next(x for x in rep["settings"] if x["category"] == s["category"] and x["gamma"] == g)
    print(f"pair: target {m['name']} {m['layers']}x{m['hidden']} ({m['n_params'] / 1e6:.1f}M) / draft {d['name']} "
          f"{d['layers']}x{d['hidden']} ({d['n_params'] / 1e6:.1f}M); {env['device']} {env['device_name']}, "
          f"{env['threads']} threads, {env['dtype']}; {args.max_new_tokens} new tokens ({'stop at EOS' if args.stop_at_eos else 'EOS ignored'}), {args.repeats} repeats, prompts "
          f"{rep['config']['prompts']}")
    print(f"per gamma ({s['category']}): " + "; ".join(
        f"g={x['gamma']} alpha={x['alpha_token']:.2f} (acc/prop {x['alpha']:.2f}) tau={x['tau']:.2f} "
        f"(exp {x['expected_tau']:.2f}) speedup {x['speedup']:.2f} "
        f"pred {x['predicted_speedup']:.2f} eff {x['loop_efficiency']:.2f}"
        for x in rep["settings"] if x["category"] == s["category"]))
    print(f"c = {s['c']:.3f} (draft timed inside the round; alone {s['c_isolated']:.3f}), alpha per token = {s['alpha_token']:.3f} (accepted/proposed {s['alpha']:.3f}), tau = {s['tau']:.2f}; target {top['target_tokens_per_s']:.1f} "
          f"tok/s, speculative {top['spec_tokens_per_s']:.1f} tok/s, HF assisted {top['hf_assisted_tokens_per_s']:.1f} "
          f"tok/s, HF target-only {top['hf_target_tokens_per_s']:.1f} tok/s")
    lv = s.get("ci_level")
    goal = 1.3 if env["dtype"] == "bfloat16" else 1.1
    print(f"0. speedup at best gamma={g}: {_ci(s['speedup'], s['speedup_ci'], level=lv)}   goal >= {goal} "
          f"({env['dtype']}; torch kernels {torch.backends.cpu.get_cpu_capability()}, native bf16 "
          f"{'yes' if cpu_has_bf16() else 'no'})  {_verdict(s['speedup'] >= goal)}")
    pv = s["predicted_speedup_verify"]
    mp = s["speedup"] / pv
    mp_ci = [c / pv for c in s["speedup_ci"]] if s["speedup_ci"] else None
    print(f"1. measured/predicted speedup at best gamma={g}: {_ci(mp, mp_ci, level=lv)} (predicted {pv:.2f}x with "
          f"the measured verify cost; {s['predicted_speedup']:.2f}x with verify = 1 step, ratio "
          f"{s['measured_over_predicted']:.2f})   goal >= 0.85  {_verdict(mp >= 0.85)}")
    print(f"   loop efficiency (measured / (tau / (gamma c + verify cost)), no i.i.d. assumption): "
          f"{s['loop_efficiency']:.2f}")
    print(f"2. ours / HF assisted tokens/s at gamma={g}: {_ci(s['ours_over_hf'], s['ours_over_hf_ci'], level=lv)}   "
          f"goal >= 1.0  {_verdict(s['ours_over_hf'] >= 1.0)}")
    if args.undistilled_draft:
        from soaes_bench.models import load_model

        und = load_model(args.undistilled_draft, str(target.dtype).removeprefix("torch.")).eval()
        chat = rep["config"]["chat_template"]
        ids = [encode(ttok, t, chat) for ts in texts.values() for t in ts]
        eos = eos_ids(target, ttok) if args.stop_at_eos else []
        generations: list[list[int]] = []
        dist = alpha_per_prompt(target, draft, ids, g, args.max_new_tokens, eos, generations)
        base = alpha_per_prompt(target, und, ids, g, args.max_new_tokens, eos)
        keep = [i for i, t in enumerate(generations) if not is_looping(ttok.decode(t, skip_special_tokens=True))]
        if keep:
            r, ci, a1, a0 = ratio_ci([dist[i] for i in keep], [base[i] for i in keep])
            print(f"3. distilled / undistilled alpha (per token) at gamma={g}, on the {len(keep)} of {len(ids)} target "
                  f"generations that do not loop: {_ci(r, ci)} (bootstrap 95% CI over prompts; {a1:.3f} vs {a0:.3f})"
                  f"   goal >= 1.2  {_verdict(r >= 1.2)}")
        else:
            print(f"3. distilled / undistilled alpha: n/a, all {len(ids)} target generations loop   goal >= 1.2  FAIL")
        r, ci, a1, a0 = ratio_ci(dist, base)
        print(f"   on all {len(ids)} generations, loops included (metrics.health.is_looping): {_ci(r, ci)} "
              f"({a1:.3f} vs {a0:.3f})")
    else:
        print("3. distilled / undistilled alpha: skipped (pass --undistilled-draft DIR)")
    flags = [x["lossless"] for x in rep["settings"] if x["category"] != "all" and x["lossless"] is not None]
    gens = sum(x["n_prompts"] for x in rep["settings"] if x["category"] != "all") * args.repeats
    loss = 100 * sum(flags) / len(flags) if flags else None
    print(f"4. greedy losslessness: {loss:.1f}% of {gens} speculative generations   goal 100%  "
          f"{_verdict(loss == 100.0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
