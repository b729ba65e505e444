"""Speculative-decoding profiler: acceptance, tau, draft/target cost ratio and measured vs predicted speedup.

    soaes-bench profile --target DIR --draft DIR --gamma 1,2,3,4,6,8 --contexts 128,512,1024 --output reports/profile
    from soaes_bench.speculative.profile import profile
    report = profile(target, draft, tokenizer, prompts={"domain": ["..."]}, gammas=[1, 2, 3])
    relabel(report)  # recompute a profile's CIs and labels from its per-repeat values, no models

What is measured. Short prompts ("domain", "general" or a prompt file; chat template applied when the tokenizer has
one) at every gamma; then long contexts (category "long", held-out domain text cut to each context length) at the
best gamma. Per prompt and repeat: target-only decoding, speculative decoding at each gamma (both decode.py, same
cache code) and, with hf_baseline, Hugging Face assisted generation (`generate(assistant_model=draft)`, constant
num_assistant_tokens = gamma, confidence early-stop off) and HF target-only generate. Every call is timed end to
end (prefill + decode) after `warmup` untimed calls; tokens/s = new tokens / seconds summed over a setting's prompts,
once per repeat; reported as the median over repeats with a distribution-free CI of the median (a pair of order
statistics, soaes_bench.stats.median_ci) at its real coverage, recorded as ci_level: 6 repeats (the default) give
[min, max] at 96.9%; 3 give [min, max] at 75%; 95% needs at least 6. Speedup = speculative / target tokens/s within
the same repeat (its CI: the same rule on the per-repeat ratios). Costs at the same context (KV cache filled,
medians of `cost_steps`, timing.round_ms): c = one draft forward timed inside a round (right after the target's verification, as the loop runs it) / one
single-token target forward; c_isolated = the same draft forward timed alone (warm caches; on CPU up to 3x lower);
verify_cost = a (gamma+1)-token target forward / a single-token forward. Predicted
speedup = acceptance.expected_speedup(alpha_token, gamma, c) (Leviathan et al. 2023) and, with the measured
verify_cost, predicted_speedup_verify.

profile.json: its layout (schema "soaes-bench/profile") is written down in soaes_bench/records/profile.py; per
setting, alpha = accepted / proposed, alpha_token = accepted / judged (the paper's per-token alpha, see
acceptance.token_acceptance_rate; the predictions use it), expected_tau comes from alpha_token, ideal_speedup =
tau / (gamma c + verify_cost) (zero loop overhead, measured tau) and loop_efficiency = speedup / ideal_speedup.
outputs.jsonl (--save-outputs): {category, context, gamma, temperature, prompt_ids, target_ids, spec_ids} per prompt
and setting, from the first timed repeat.

Clock (timing.timer_for): time.perf_counter on a CPU, CUDA events on a GPU, where every shape is warmed up first
(timing.warm_up); env records the GPU, CUDA version, dtype, attention kernel and clock.
"""

from __future__ import annotations

import datetime as _dt
import statistics
from pathlib import Path

import torch

from soaes_bench import validate
from soaes_bench.defaults import SEED
from soaes_bench.errors import UserError
from soaes_bench.paths import embedded_model
from soaes_bench.speculative import acceptance
from soaes_bench.speculative.decode import (check_compatible, eos_ids, max_positions, speculative_generate,
                                             target_generate, text_config)
from soaes_bench.speculative.prompts import encode, load_long_text, load_prompts, long_contexts
from soaes_bench.records import profile as profile_record
from soaes_bench.records.provenance import env_block, model_block
from soaes_bench.speculative.timing import hf_generate, measure_costs, timed, timer_for, warm_up
from soaes_bench.stats import median_ci

# measurement --------------------------------------------------------------------------------------------------
def _measure_prompt(target, draft, ids, gammas, cfg: dict, seed: int, max_new: int) -> list[dict]:
    """One prompt: target-only, speculative at each gamma, HF baselines; one run record per call."""
    dev, T, top_p, eos = target.device, cfg["temperature"], cfg["top_p"], cfg["eos"]

    def gen():
        return torch.Generator(device=dev).manual_seed(seed)

    base, sec = timed(lambda: target_generate(target, ids, max_new, eos, T, top_p, gen()), dev)
    runs = [{"method": "target", "gamma": 0, "seconds": sec, "tokens": base.tokens}]
    for g in gammas:
        spec, sec = timed(lambda: speculative_generate(target, draft, ids, g, max_new, eos, T, top_p, gen()), dev)
        runs.append({"method": "spec", "gamma": g, "seconds": sec, "tokens": spec.tokens, "records": spec.records,
                     "lossless": spec.tokens == base.tokens if T == 0 else None})
    if cfg["hf_baseline"]:
        torch.manual_seed(seed)
        out, sec = timed(lambda: hf_generate(target, None, ids, None, max_new, cfg["hf_eos"], T, top_p), dev)
        runs.append({"method": "hf_target", "gamma": 0, "seconds": sec, "tokens": out})
        for g in gammas:
            torch.manual_seed(seed)
            out, sec = timed(lambda: hf_generate(target, draft, ids, g, max_new, cfg["hf_eos"], T, top_p), dev)
            runs.append({"method": "hf_assisted", "gamma": g, "seconds": sec, "tokens": out,
                         "lossless": out == base.tokens if T == 0 else None})
    return runs


def _measure_set(target, draft, name, context, prompts, gammas, cfg, log) -> list[dict]:
    """All repeats of one prompt set; repeats are the outer loop so load drift hits every method alike."""
    for _ in range(cfg["warmup"]):
        _measure_prompt(target, draft, prompts[0], gammas, cfg, cfg["seed"], min(8, cfg["max_new_tokens"]))
    runs = []
    for r in range(cfg["repeats"]):
        for i, ids in enumerate(prompts):
            for run in _measure_prompt(target, draft, ids, gammas, cfg, cfg["seed"] + 1000 * r + i,
                                       cfg["max_new_tokens"]):
                runs.append({**run, "category": name, "context": context, "repeat": r, "prompt": i})
        if log:
            log(f"profile: {name} context={context} repeat {r + 1}/{cfg['repeats']} done")
    return runs


# aggregation (pure: run records -> settings) -------------------------------------------------------------------
def _tokens_per_s(runs, method, gamma, repeat) -> float | None:
    sel = [r for r in runs if r["method"] == method and r["gamma"] == gamma and r["repeat"] == repeat]
    secs = sum(r["seconds"] for r in sel)
    return sum(len(r["tokens"]) for r in sel) / secs if sel and secs > 0 else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def aggregate(runs: list[dict], category: str, context: int, gamma: int, costs: dict | None, temperature: float
              ) -> dict:
    """One setting's numbers from its run records (see the module docstring for the fields)."""
    repeats = sorted({r["repeat"] for r in runs})
    tps = {m: [_tokens_per_s(runs, m, g, k) for k in repeats]
           for m, g in (("target", 0), ("spec", gamma), ("hf_assisted", gamma), ("hf_target", 0))}
    speed = [_ratio(s, t) for s, t in zip(tps["spec"], tps["target"])]
    ours_hf = [_ratio(s, h) for s, h in zip(tps["spec"], tps["hf_assisted"])]
    spec_runs = [r for r in runs if r["method"] == "spec" and r["gamma"] == gamma]
    records = [rec for r in spec_runs for rec in r["records"]]
    s = acceptance.summarize(records, gamma)
    out = {"category": category, "context": context, "gamma": gamma,
           "mode": "greedy" if temperature == 0 else "sampling", "temperature": temperature,
           "n_prompts": len({r["prompt"] for r in spec_runs}),
           "new_tokens": sum(len(r["tokens"]) for r in spec_runs) // max(len(repeats), 1),
           "rounds": s["rounds"], "alpha": s["alpha"], "alpha_token": s["alpha_token"], "tau": s["tau"],
           "expected_tau": acceptance.expected_accepted(s["alpha_token"], gamma) if s["alpha_token"] is not None else None,
           "acceptance_by_position": s["acceptance_by_position"],
           "conditional_acceptance_by_position": s["conditional_acceptance_by_position"]}
    row = next((x for x in costs["verify"] if x["gamma"] == gamma), {}) if costs else {}
    c, v = row.get("c"), row.get("verify_cost")
    a = s["alpha_token"]
    ok = a is not None and c is not None
    out.update(c=c, c_isolated=costs.get("c_isolated") if costs else None, verify_cost=v,
               predicted_speedup=acceptance.expected_speedup(a, gamma, c) if ok else None,
               predicted_speedup_verify=acceptance.expected_speedup(a, gamma, c, v) if ok and v else None)
    levels = []
    for key, vals in (("speedup", speed), ("target_tokens_per_s", tps["target"]),
                      ("spec_tokens_per_s", tps["spec"]), ("hf_assisted_tokens_per_s", tps["hf_assisted"]),
                      ("hf_target_tokens_per_s", tps["hf_target"]), ("ours_over_hf", ours_hf)):
        m = median_ci([x for x in vals if x is not None])
        out[key], out[f"{key}_ci"], out[f"{key}_values"] = m["median"], m["ci"], m["values"] or None
        levels += [m["level"]] if m["ci"] else []
    out["ci_level"] = min(levels) if levels else None
    out["measured_over_predicted"] = _ratio(out["speedup"], out["predicted_speedup"])
    # what a loop with zero per-round overhead would reach with the measured tau (no i.i.d. assumption) and costs
    out["ideal_speedup"] = s["tau"] / (gamma * c + (v or 1.0)) if s["tau"] is not None and c is not None else None
    out["loop_efficiency"] = _ratio(out["speedup"], out["ideal_speedup"])
    for key, method in (("lossless", "spec"), ("hf_lossless", "hf_assisted")):
        flags = [r["lossless"] for r in runs if r["method"] == method and r["gamma"] == gamma
                 and r.get("lossless") is not None]
        out[key] = sum(flags) / len(flags) if flags else None
    return out


CI_KEYS = ("speedup", "target_tokens_per_s", "spec_tokens_per_s", "hf_assisted_tokens_per_s", "hf_target_tokens_per_s",
           "ours_over_hf")  # the setting fields reported as median [CI] over repeats
SUMMARY_CI_KEYS = ("speedup", "ours_over_hf")


def _interval(node: dict, key: str, repeats: int) -> dict:
    """median_ci of one field of a setting, from its per-repeat `<key>_values`; for a profile written before they
    were stored, from (median, ci) when that determines the values: the old bootstrap CI of the median of 3 values
    was [min, max] (each resampled median is one of the 3 values, the smallest with probability 7/27, so its 2.5th
    percentile of 2000 draws is the minimum; likewise the maximum), hence the values were (min, median, max)."""
    vals = node.get(f"{key}_values")
    med, ci = node.get(key), node.get(f"{key}_ci")
    if vals is None:
        if med is None:
            vals = []
        elif ci is None:
            vals = [med]
        elif repeats in (2, 3) and ci[0] <= med <= ci[1]:  # 2 values: median = midpoint, bootstrap CI [min, max]
            vals = [ci[0], med, ci[1]] if repeats == 3 else list(ci)
        else:
            raise UserError(f"{key}: a profile of {repeats} repeats without per-repeat values; its CI cannot be "
                            "recomputed, re-run the profile")
    m = median_ci(vals)
    if (m["median"] is None) != (med is None) or (med is not None and abs(m["median"] - med) > 1e-9 * abs(med)):
        raise UserError(f"{key}: median {med} does not match its values {vals}")
    return m


def _ci_level(node: dict, keys, repeats: int) -> float | None:
    """The coverage of a row's intervals (the lowest, should a repeat have lacked a value)."""
    levels = [m["level"] for m in (_interval(node, k, repeats) for k in keys if k in node) if m["ci"]]
    return min(levels) if levels else None


def relabel(report: dict) -> dict:
    """Recompute every interval of a profile.json object (and its ci_level) with soaes_bench.stats.median_ci, without
    re-running the models: from the stored per-repeat values, or, for profiles of 3 repeats written before those
    were stored, from (median, [min, max]) (see `_interval`). Medians and everything else are kept. In place."""
    repeats = report["config"]["repeats"]
    for row in report["settings"]:
        for key in CI_KEYS:
            if key in row:
                row[f"{key}_ci"] = _interval(row, key, repeats)["ci"]
        row["ci_level"] = _ci_level(row, CI_KEYS, repeats)
    s = report["summary"]
    top = next(r for r in report["settings"] if r["category"] == s["category"] and r["gamma"] == s["best_gamma"])
    for key in SUMMARY_CI_KEYS:
        if s.get(key) != top.get(key):
            raise UserError(f"summary.{key} {s.get(key)} is not the best setting's {top.get(key)}")
        s[f"{key}_ci"] = top[f"{key}_ci"]
    s["ci_level"] = _ci_level(top, SUMMARY_CI_KEYS, repeats)
    return report


def _geomean(xs):
    xs = [x for x in xs if x]
    return statistics.geometric_mean(xs) if xs else 0.0


def pick_best(settings: list[dict], categories: list[str]) -> int:
    """Gamma with the highest geometric-mean measured speedup over `categories` (ties: smaller gamma)."""
    by_gamma: dict[int, list[float]] = {}
    for s in settings:
        if s["category"] in categories:
            by_gamma.setdefault(s["gamma"], []).append(s["speedup"])
    return max(sorted(by_gamma), key=lambda g: (_geomean(by_gamma[g]), -g))


# the API ------------------------------------------------------------------------------------------------------
def _check_args(gammas, contexts, max_new_tokens, temperature, top_p, repeats, num_prompts) -> None:
    if not gammas or min(gammas) < 1:
        raise UserError(f"--gamma: need one or more values >= 1, got {list(gammas)}")
    if contexts and min(contexts) < 1:
        raise UserError(f"--contexts: values must be >= 1, got {list(contexts)}")
    for flag, v in (("--max-new-tokens", max_new_tokens), ("--repeats", repeats), ("--num-prompts", num_prompts)):
        if v < 1:
            raise UserError(f"{flag}: must be >= 1, got {v}")
    validate.finite("--temperature", temperature, lo=0)
    if not 0 < top_p <= 1:
        raise UserError(f"top_p: must be in (0, 1], got {top_p}")


def profile(target, draft, tokenizer, *, prompts: dict[str, list[str]] | list[str] | None = None,
            long_text: str | None = None, gammas=(1, 2, 3, 4, 6, 8), contexts=(128, 512, 1024),
            max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0, repeats: int = 6,
            num_prompts: int = 8, warmup: int = 1, seed: int = SEED, hf_baseline: bool = False,
            chat_template: str = "auto", draft_tokenizer=None, target_path=None, draft_path=None,
            keep_outputs: bool = False, cost_steps: int = 20, ignore_eos: bool = False, log=None) -> dict:
    """Profile a target/draft pair; returns the profile.json object (plus "outputs" rows when keep_outputs)."""
    gammas, contexts = sorted(set(gammas)), sorted(set(contexts or []))
    _check_args(gammas, contexts, max_new_tokens, temperature, top_p, repeats, num_prompts)
    check_compatible(target, draft, tokenizer, draft_tokenizer)
    if prompts is None:
        prompts = load_prompts("all", num_prompts)
    elif isinstance(prompts, (list, tuple)):
        prompts = {"custom": list(prompts)}
    if not any(prompts.values()):
        raise UserError("prompts: no prompts to profile")
    chat = bool(getattr(tokenizer, "chat_template", None)) if chat_template == "auto" else chat_template == "on"
    max_pos = min((m for m in (max_positions(target), max_positions(draft)) if m is not None), default=None)
    torch.manual_seed(seed)
    if ignore_eos:
        eos = []
    else:  # plus the chat template's end-of-turn token (<|eot_id|>, <end_of_turn>, ...), as `run` stops on it
        from soaes_bench.evaluation.chat import chat_end_token

        turn_end = chat_end_token(tokenizer) if chat else None
        eos = eos_ids(target, tokenizer, extra=("<|im_end|>", *([turn_end] if turn_end else [])))
    # HF generate needs some eos id; one outside the vocabulary can never be generated
    cfg = {"temperature": temperature, "top_p": top_p, "eos": eos, "hf_eos": eos or [int(text_config(target).vocab_size)],
           "hf_baseline": hf_baseline,
           "warmup": warmup, "repeats": repeats, "seed": seed, "max_new_tokens": max_new_tokens}
    sets = {cat: [encode(tokenizer, t, chat) for t in texts[:num_prompts]] for cat, texts in prompts.items() if texts}
    for cat, plist in sets.items():
        if max_pos is not None and max(map(len, plist)) + max_new_tokens > max_pos:
            raise UserError(f"prompts ({cat}): longest prompt {max(map(len, plist))} tokens + --max-new-tokens "
                            f"{max_new_tokens} exceeds max_position_embeddings {max_pos}")
    pool = [i for plist in sets.values() for ids in plist for i in ids]
    if target.device.type == "cuda":  # first calls of each shape pay for kernel selection and allocation
        warm_up([target, draft], pool[:max(map(len, next(iter(sets.values()))))], gammas)
    costs: dict[int, dict] = {}

    def cost(length: int) -> dict:
        if length not in costs:
            ctx = (pool * (length // len(pool) + 1))[:length]
            costs[length] = measure_costs(target, draft, ctx, gammas, cost_steps)
        return costs[length]

    runs, outputs, settings = [], [], []

    def measure(name, context, plist, gs):
        new = _measure_set(target, draft, name, context, plist, gs, cfg, log)
        for r in new:
            r["prompt"] = f"{name}/{context}/{r['prompt']}"
        if keep_outputs:
            ids_of = {f"{name}/{context}/{i}": ids for i, ids in enumerate(plist)}
            base = {r["prompt"]: r["tokens"] for r in new if r["repeat"] == 0 and r["method"] == "target"}
            outputs.extend({"category": name, "context": context, "gamma": r["gamma"], "temperature": temperature,
                            "prompt_ids": ids_of[r["prompt"]], "target_ids": base[r["prompt"]],
                            "spec_ids": r["tokens"]} for r in new if r["repeat"] == 0 and r["method"] == "spec")
        runs.extend(new)
        return new

    short = list(sets)
    for cat, plist in sets.items():
        ctx = int(statistics.median(map(len, plist)))
        new = measure(cat, ctx, plist, gammas)
        settings += [aggregate(new, cat, ctx, g, cost(ctx), temperature) for g in gammas]
    if len(short) > 1:
        ctx = int(statistics.median(len(ids) for plist in sets.values() for ids in plist))
        settings += [aggregate(runs, "all", ctx, g, cost(ctx), temperature) for g in gammas]
    best = pick_best(settings, short)
    long_source = None
    if contexts:
        text = long_text or load_long_text()
        long_source = "given" if long_text else ("domain_text" if text else "prompts")
        text = text or "\n".join(t for texts in prompts.values() for t in texts)
        for L in contexts:
            if max_pos is not None and L + max_new_tokens > max_pos:
                raise UserError(f"--contexts: {L} + --max-new-tokens {max_new_tokens} exceeds "
                                f"max_position_embeddings {max_pos}")
            new = measure("long", L, long_contexts(tokenizer, text, L, num_prompts), [best])
            settings.append(aggregate(new, "long", L, best, cost(L), temperature))
    head = "all" if len(short) > 1 else short[0]
    best_by_cat = {}
    for cat in [*short, *(["all"] if len(short) > 1 else [])]:
        rows = [s for s in settings if s["category"] == cat]
        b = max(rows, key=lambda s: (s["speedup"] or 0.0, -s["gamma"]))
        best_by_cat[cat] = {"gamma": b["gamma"], "speedup": b["speedup"], "predicted_speedup": b["predicted_speedup"]}
    top = next(s for s in settings if s["category"] == head and s["gamma"] == best)
    report = profile_record.new(
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), seed=seed,
        model=model_block(target, target_path, None if target_path else "target"),
        draft=model_block(draft, draft_path, None if draft_path else "draft"),
        env=env_block(target.device, dtype=str(target.dtype).removeprefix("torch."),
                      attn_implementation=attn_implementation(target), timer=timer_for(target.device).kind),
        config={"gammas": gammas, "contexts": contexts, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "top_p": top_p, "repeats": repeats, "warmup": warmup,
                "num_prompts": num_prompts, "prompts": {c: len(p) for c, p in sets.items()},
                "chat_template": chat, "hf_baseline": hf_baseline, "long_source": long_source,
                "ignore_eos": ignore_eos},
        costs=[costs[k] for k in sorted(costs)],
        settings=settings,
        best=best_by_cat,
        summary={"category": head, "best_gamma": best,
                 **{k: top[k] for k in ("speedup", "speedup_ci", "predicted_speedup", "predicted_speedup_verify",
                                        "measured_over_predicted", "ideal_speedup", "loop_efficiency",
                                        "alpha", "alpha_token", "tau", "c", "c_isolated", "ours_over_hf",
                                        "ours_over_hf_ci", "lossless")},
                 "ci_level": _ci_level(top, SUMMARY_CI_KEYS, repeats)},
    )
    if keep_outputs:
        report["outputs"] = outputs
    return report


def attn_implementation(model) -> str | None:
    """The attention kernel transformers runs the model with ("eager", "sdpa", "flash_attention_2", ...)."""
    cfg = model.config
    return getattr(cfg, "_attn_implementation", None) or getattr(cfg, "attn_implementation", None)


# model directories ------------------------------------------------------------------------------------------------
def default_pair_dirs(target: str | None, draft: str | None) -> tuple[Path, Path]:
    """(target dir, draft dir): the given ones, else the embedded target (or default model) and draft."""
    if target is None:
        t = embedded_model("target")
        if not (t / "config.json").is_file():
            try:
                t = embedded_model("default")
            except FileNotFoundError:
                raise UserError("--target: no embedded target model; pass --target DIR and --draft DIR") from None
        target = t
    if draft is None:
        draft = embedded_model("draft")
        if not (draft / "config.json").is_file():
            raise UserError(f"--draft: no embedded draft model ({draft}); pass --target DIR and --draft DIR")
    return Path(target), Path(draft)
