"""profile.md: the profile.json numbers as Markdown tables (costs, settings, acceptance by position)."""

from __future__ import annotations

from soaes_bench.stats import level_label


def _f(x, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def _ci(value, ci, spec: str = ".2f") -> str:
    if value is None:
        return "–"
    return f"{value:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]" if ci else f"{value:{spec}}"


def ci_levels(report: dict) -> list[float]:
    """The distinct coverages of a profile's intervals (settings and summary), sorted; [] when none is recorded."""
    rows = [*report["settings"], report["summary"]]
    return sorted({r["ci_level"] for r in rows if r.get("ci_level") is not None})


def ci_note(report: dict) -> str:
    """What the [low, high] after a median is: a distribution-free CI of the median over repeats, at its real level."""
    levels, n = ci_levels(report), report["config"]["repeats"]
    if not levels:
        if n < 2:
            return f"the value of {n} repeat (no CI)"
        return (f"median over {n} repeats [CI of the median; its level is not recorded: a profile written before "
                "ci_level, see speculative.profile.relabel]")
    minmax = all(abs(lv - (1 - 2 / 2 ** n)) < 1e-12 for lv in levels)
    what = "[min, max] of the repeats" if minmax else "the k-th smallest and largest repeat"
    return (f"median over {n} repeats [{' / '.join(map(level_label, levels))} CI of the median: {what}, "
            "a distribution-free order-statistic interval of coverage 1 − 2·P(Bin(n, ½) ≤ k − 1)]")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _env_extra(env: dict) -> str:
    """CUDA version, attention kernel and clock, for profiles that record them."""
    parts = [f"CUDA {env['cuda']}" if env.get("cuda") else "",
             f"{env['attn_implementation']} attention" if env.get("attn_implementation") else "",
             f"timed by {env['timer']}" if env.get("timer") else ""]
    return "".join(f", {p}" for p in parts if p)


def to_markdown(report: dict) -> str:
    m, d, env, cfg, s = report["model"], report["draft"], report["env"], report["config"], report["summary"]
    best_level = f" ({level_label(s['ci_level'])} CI)" if s.get("ci_level") else ""
    mode = "greedy" if cfg["temperature"] == 0 else f"sampling T={cfg['temperature']}, top-p {cfg['top_p']}"
    lines = [
        "# Speculative-decoding profile", "",
        f"- target: {m['name']} ({m['layers']}×{m['hidden']}, {m['n_params']:,} params, weights {str(m['weights_sha256'])[:12]})",
        f"- draft: {d['name']} ({d['layers']}×{d['hidden']}, {d['n_params']:,} params, weights {str(d['weights_sha256'])[:12]})",
        f"- {env['device']} ({env['device_name']}), {env['threads']} threads, {env.get('dtype') or 'float32'}, torch {env['torch']}, "
        f"transformers {env['transformers']}{_env_extra(env)}; {report['date']}, seed {report['seed']}",
        f"- {mode}; {cfg['max_new_tokens']} new tokens{' (EOS ignored)' if cfg.get('ignore_eos') else ''}; {cfg['repeats']} repeats after {cfg['warmup']} warm-up; "
        f"prompts {cfg['prompts']}; chat template {'on' if cfg['chat_template'] else 'off'}; "
        f"long contexts from {cfg['long_source'] or '–'}",
        "",
        f"**Best γ = {s['best_gamma']}** ({s['category']}): measured speedup {_ci(s['speedup'], s['speedup_ci'])}×"
        f"{best_level}, "
        f"predicted {_f(s['predicted_speedup'], '.2f')}× (with verify cost {_f(s['predicted_speedup_verify'], '.2f')}×), "
        f"measured/predicted {_f(s['measured_over_predicted'], '.2f')}, loop efficiency "
        f"{_f(s['loop_efficiency'], '.2f')}; α {_f(s['alpha_token'])} (accepted/proposed {_f(s['alpha'])}), τ {_f(s['tau'], '.2f')}, "
        f"c {_f(s['c'])} (alone {_f(s.get('c_isolated'))}); lossless {_f(s['lossless'])}; ours/HF assisted {_ci(s['ours_over_hf'], s['ours_over_hf_ci'])}"
        f"{best_level if s.get('ours_over_hf_ci') else ''}",
        "", f"Speedup, tokens/s and ours/HF: {ci_note(report)}; α per token = accepted / (accepted + "
        "rejections); predicted = (1−α^(γ+1))/((1−α)(γc+1)) (Leviathan et al. 2023, i.i.d. acceptance); c = a draft forward "
        "timed inside a round, right after the target's verification (\"alone\": timed on its own, warm caches) / a "
        "target step; pred. w/ verify uses the measured (γ+1)-token verification cost "
        "instead of 1; loop eff. = measured / (τ / (γc + verify cost)), the share of a zero-overhead loop's speedup.", "",
        "## Forward costs", "",
    ]
    gammas = cfg["gammas"]
    rows = [[str(c["context"]), _f(c["target_ms"], ".2f"), _f(c["draft_ms"], ".2f"), _f(c.get("c_isolated")),
             *(f"{_f(v.get('c'))} / {_f(v['verify_cost'], '.2f')}" for v in c["verify"])] for c in report["costs"]]
    lines += _table(["context", "target ms", "draft ms alone", "c alone",
                     *(f"γ={g}: c / verify" for g in gammas)], rows)
    lines += ["", "## Settings", ""]
    rows = [[r["category"], str(r["context"]), str(r["gamma"]), _f(r["alpha"]), _f(r["alpha_token"]),
             f"{_f(r['tau'], '.2f')} ({_f(r['expected_tau'], '.2f')})", _f(r["c"]), _f(r["predicted_speedup"], ".2f"),
             _f(r["predicted_speedup_verify"], ".2f"), _ci(r["speedup"], r["speedup_ci"]),
             _f(r["measured_over_predicted"], ".2f"), _f(r["loop_efficiency"], ".2f"), _f(r["target_tokens_per_s"], ".1f"),
             _f(r["spec_tokens_per_s"], ".1f"), _f(r["hf_assisted_tokens_per_s"], ".1f"),
             _f(r["hf_target_tokens_per_s"], ".1f"), _ci(r["ours_over_hf"], r["ours_over_hf_ci"]),
             _f(r["lossless"], ".2f")] for r in report["settings"]]
    lines += _table(["category", "context", "γ", "accepted/proposed", "α (per token)", "τ (expected)", "c", "predicted", "pred. w/ verify",
                     "measured [CI]", "meas/pred", "loop eff.", "target tok/s", "spec tok/s", "HF assisted tok/s",
                     "HF target tok/s", "ours/HF assisted", "lossless"], rows)
    lines += ["", "## Acceptance by draft position", "",
              "P(position i accepted | proposed); in brackets P(i accepted | 1..i−1 accepted).", ""]
    top = max(gammas)
    rows = []
    for r in report["settings"]:
        if r["gamma"] == top or r["category"] == "long":
            cells = [f"{_f(a, '.2f')} ({_f(b, '.2f')})" for a, b in
                     zip(r["acceptance_by_position"], r["conditional_acceptance_by_position"])]
            rows.append([r["category"], str(r["context"]), str(r["gamma"]), *cells, *[""] * (top - len(cells))])
    lines += _table(["category", "context", "γ", *(f"pos {i}" for i in range(1, top + 1))], rows)
    return "\n".join(lines) + "\n"
