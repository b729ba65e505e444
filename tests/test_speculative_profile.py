"""The profiler on tiny models: schema, figures, outputs, CLI, prompt loading and the pure aggregation."""

import json

import pytest
import torch

from soaes_bench import results
from soaes_bench.cli import main
from soaes_bench.errors import UserError
from soaes_bench.speculative.model_pair import save_pair, truncated_copy
from soaes_bench.speculative.profile import aggregate, pick_best, profile
from soaes_bench.speculative.prompts import encode, load_prompts, long_contexts, read_prompt_file



def test_profile_api_numbers(pair, tok):
    target, draft = pair
    rep = profile(target, draft, tok, prompts={"domain": ["国有资产监督", "企业改革"], "general": ["the market"]},
                  long_text="国有资产属于国家所有即全民所有。", gammas=[2, 1], contexts=[24], max_new_tokens=6,
                  repeats=2, num_prompts=2, warmup=0, cost_steps=3, keep_outputs=True)
    assert results.validate(rep, "api") == "profile"
    assert rep["config"]["gammas"] == [1, 2] and rep["config"]["prompts"] == {"domain": 2, "general": 1}
    cats = [(s["category"], s["gamma"]) for s in rep["settings"]]
    best = rep["summary"]["best_gamma"]
    assert cats == [("domain", 1), ("domain", 2), ("general", 1), ("general", 2), ("all", 1), ("all", 2),
                    ("long", best)]
    for s in rep["settings"]:
        assert s["lossless"] == 1.0 and s["mode"] == "greedy"
        assert 0 <= s["alpha"] <= 1 and 1 <= s["tau"] <= s["gamma"] + 1
        assert s["speedup"] == pytest.approx(s["spec_tokens_per_s"] / s["target_tokens_per_s"], rel=0.5)
        assert s["predicted_speedup"] is not None and s["c"] > 0
        assert len(s["acceptance_by_position"]) == s["gamma"] and s["hf_assisted_tokens_per_s"] is None
        assert len(s["speedup_values"]) == 2 and s["ci_level"] == 0.5 and s["hf_assisted_tokens_per_s_values"] is None
    assert rep["summary"]["ci_level"] == 0.5
    assert rep["settings"][-1]["context"] == 24
    assert [c["context"] for c in rep["costs"]] == sorted(c["context"] for c in rep["costs"])
    # outputs: one row per prompt and setting (3 short prompts x 2 gammas + 2 long windows x 1 gamma)
    assert len(rep["outputs"]) == 8 and all(o["spec_ids"] == o["target_ids"] for o in rep["outputs"])
    assert all(len(o["prompt_ids"]) == 24 for o in rep["outputs"] if o["category"] == "long")


def test_ignore_eos_generates_the_full_budget_everywhere(pair, tok):
    """--ignore-eos: every generation (ours and HF's) runs to max_new_tokens, and greedy stays lossless."""
    import copy

    from soaes_bench.speculative.decode import target_generate

    prompts = ["国有资产监督", "企业改革", "监督管理"]
    # make the 6th token this model generates for the first prompt an EOS, so stopping at EOS cuts it short
    target = copy.deepcopy(pair[0])
    target.generation_config.eos_token_id = [target_generate(target, encode(tok, prompts[0], True), 6).tokens[5]]
    draft = truncated_copy(target, 1)
    kw = dict(prompts={"domain": prompts}, gammas=[2], contexts=[], max_new_tokens=20, repeats=1, num_prompts=3,
              warmup=0, cost_steps=2, keep_outputs=True, hf_baseline=True)
    stop = profile(target, draft, tok, **kw)
    full = profile(target, draft, tok, ignore_eos=True, **kw)
    assert full["config"]["ignore_eos"] and not stop["config"]["ignore_eos"]
    assert all(len(o["target_ids"]) == 20 and o["spec_ids"] == o["target_ids"] for o in full["outputs"])
    assert len(stop["outputs"][0]["target_ids"]) <= 6
    s = full["settings"][0]
    assert s["new_tokens"] == 60 and s["hf_lossless"] == 1.0


def test_costs_time_the_draft_inside_a_round(pair, monkeypatch):
    """c per gamma is the in-round draft time over the target step; c_isolated the draft timed alone."""
    from soaes_bench.speculative import timing

    target, draft = pair
    costs = timing.measure_costs(target, draft, list(range(5, 25)), [1, 3], steps=3)
    assert costs["c_isolated"] == pytest.approx(costs["draft_ms"] / costs["target_ms"])
    assert [v["gamma"] for v in costs["verify"]] == [1, 3]
    for v in costs["verify"]:
        assert v["c"] == pytest.approx(v["draft_ms"] / costs["target_ms"]) and v["verify_ms"] > 0
    # round_ms runs gamma draft forwards per round and reports one: a draft that sleeps 2 ms per call shows 2+ ms
    import time

    calls = []
    slow = lambda **kw: (calls.append(kw["input_ids"].shape), time.sleep(0.002))  # noqa: E731
    real = timing._filled_cache
    no_cache = type("NoCache", (), {"crop": lambda self, n: None})()
    monkeypatch.setattr(timing, "_filled_cache", lambda model, ids: real(model, ids) if model is target else no_cache)
    r = timing.round_ms(target, slow, [1, 2, 3], gamma=3, steps=2, warmup=1)
    assert len(calls) == 3 * 3 and all(shape == (1, 1) for shape in calls)
    assert 2.0 <= r["draft_ms"] < 20.0


def test_resolve_dtype(monkeypatch):
    from soaes_bench.speculative import model_pair

    assert model_pair.resolve_dtype("float32") == "float32" and model_pair.resolve_dtype("bfloat16") == "bfloat16"
    monkeypatch.setattr(model_pair, "cpu_has_bf16", lambda: True)
    assert model_pair.resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(model_pair, "cpu_has_bf16", lambda: False)
    assert model_pair.resolve_dtype("auto", "cpu") == "float32"
    with pytest.raises(UserError, match="--dtype"):
        model_pair.resolve_dtype("fp8")


def test_load_pair_in_bfloat16(pair, tok, tmp_path):
    from soaes_bench.speculative.model_pair import load_pair

    t_dir, d_dir = save_pair(*pair, tok, tmp_path)
    target, draft, _, _ = load_pair(t_dir, d_dir, dtype="bfloat16")
    assert target.dtype == torch.bfloat16 and draft.dtype == torch.bfloat16


def test_profile_rejects_bad_settings(pair, tok):
    target, draft = pair
    with pytest.raises(UserError, match="--gamma"):
        profile(target, draft, tok, prompts=["a"], gammas=[0])
    with pytest.raises(UserError, match="max_position_embeddings"):
        profile(target, draft, tok, prompts=["a"], gammas=[1], contexts=[4096], max_new_tokens=2, repeats=1)


def test_cli_profile_writes_everything(pair, tok, tmp_path, capsys):
    target_dir, draft_dir = save_pair(*pair, tok, tmp_path / "models")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"question": "国有资产"}\n{"text": "企业改革发展"}\n', encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["profile", "--target", str(target_dir), "--draft", str(draft_dir), "--prompts", str(prompts),
               "--gamma", "1,2", "--contexts", "16", "--max-new-tokens", "5", "--repeats", "1", "--num-prompts", "2",
               "--output", str(out), "--save-outputs", "--hf-baseline"])
    assert rc == 0
    assert "best gamma" in capsys.readouterr().out
    rep = json.loads((out / "profile.json").read_text())
    assert rep["schema"] == "soaes-bench/profile" and rep["schema_version"] == 1
    assert rep["model"]["path"] == str(target_dir) and len(rep["model"]["weights_sha256"]) == 64
    assert rep["model"]["tokenizer_sha256"] and rep["draft"]["layers"] == 1 and rep["env"]["threads"] >= 1
    s = rep["settings"][0]
    assert s["category"] == "p" and s["hf_assisted_tokens_per_s"] > 0 and s["ours_over_hf"] > 0
    assert s["hf_lossless"] == 1.0  # HF assisted greedy agrees with our target-only greedy
    assert "| category |" in (out / "profile.md").read_text()
    rows = [json.loads(line) for line in (out / "outputs.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 + 2 and set(rows[0]) >= {"prompt_ids", "target_ids", "spec_ids", "gamma", "category"}
    for name in ("speedup_vs_gamma", "acceptance_by_position", "tau_by_category", "speedup_vs_context"):
        for ext in ("png", "svg"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 1000
    assert not results.load(out / "profile.json").empty


def test_cli_profile_without_models(tmp_path, monkeypatch, capsys):
    import soaes_bench.paths as paths

    monkeypatch.setattr(paths, "MODELS_DIR", tmp_path / "none")
    assert main(["profile", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "pass --target DIR and --draft DIR" in err and len(err.strip().splitlines()) == 1


def test_prompt_files_and_long_contexts(tmp_path, tok):
    txt = tmp_path / "q.txt"
    txt.write_text("第一个问题\n\n第二个问题\n", encoding="utf-8")
    assert read_prompt_file(txt) == ["第一个问题", "第二个问题"]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"answer": "x"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="b.jsonl:1: no text/question/prompt"):
        read_prompt_file(bad)
    assert load_prompts(str(txt), 1) == {"q": ["第一个问题"]}
    with pytest.raises(UserError, match="neither a suite"):
        load_prompts(str(tmp_path / "missing.txt"))
    suites = load_prompts("all", 2)  # shipped (or placeholder) eval sets
    assert set(suites) == {"domain", "general"} and all(1 <= len(v) <= 2 for v in suites.values())
    ids = encode(tok, "国有资产", chat=True)
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and tok.decode(ids).endswith("assistant\n")
    windows = long_contexts(tok, "国有资产属于国家所有。", 50, 3)
    assert [len(w) for w in windows] == [50, 50, 50] and windows[0] != windows[1]


def _run(method, gamma, repeat, prompt, seconds, n_tokens, records=(), lossless=None):
    return {"method": method, "gamma": gamma, "repeat": repeat, "prompt": prompt, "seconds": seconds,
            "tokens": [1] * n_tokens, "records": list(records), "lossless": lossless}


def test_aggregate_hand_values():
    runs = [
        _run("target", 0, 0, "a", 1.0, 10), _run("target", 0, 0, "b", 1.0, 10),
        _run("spec", 2, 0, "a", 0.5, 10, [(2, 2), (2, 1), (2, 0), (2, 2), (1, 0)], True),
        _run("spec", 2, 0, "b", 0.5, 10, [(2, 1)], False),
        _run("target", 0, 1, "a", 2.0, 10), _run("target", 0, 1, "b", 2.0, 10),
        _run("spec", 2, 1, "a", 1.0, 10, [], True), _run("spec", 2, 1, "b", 2.0, 10, [], True),
    ]
    costs = {"c_isolated": 0.05, "verify": [{"gamma": 2, "verify_cost": 1.5, "c": 0.1}]}
    s = aggregate(runs, "domain", 20, 2, costs, 0.0)
    # repeat 0: target 20 tok / 2 s = 10 tok/s, spec 20 / 1 s = 20 -> speedup 2; repeat 1: 5 and 20/3 -> 4/3
    assert s["target_tokens_per_s"] == pytest.approx(7.5) and s["spec_tokens_per_s"] == pytest.approx(40 / 3)
    assert s["speedup"] == pytest.approx((2 + 4 / 3) / 2) and s["speedup_ci"] == pytest.approx([4 / 3, 2])
    # 2 repeats: [min, max] brackets the median with probability 1 - 2 / 2^2, and says so
    assert s["speedup_values"] == pytest.approx([2, 4 / 3]) and s["ci_level"] == 0.5
    # records: proposed 11, accepted 6; tau = (3 + 2 + 1 + 3 + 1 + 2) / 6
    # per-token alpha: 6 accepted, 4 rounds with a rejection
    assert s["alpha"] == pytest.approx(6 / 11) and s["alpha_token"] == pytest.approx(0.6)
    assert s["tau"] == pytest.approx(2.0)
    a = 0.6
    assert s["expected_tau"] == pytest.approx(1 + a + a * a)
    assert s["predicted_speedup"] == pytest.approx((1 + a + a * a) / 1.2)
    assert s["predicted_speedup_verify"] == pytest.approx((1 + a + a * a) / 1.7)
    assert s["ideal_speedup"] == pytest.approx(2.0 / 1.7)  # tau / (gamma c + verify cost)
    assert s["loop_efficiency"] == pytest.approx(s["speedup"] / (2.0 / 1.7))
    assert s["lossless"] == pytest.approx(3 / 4) and s["hf_assisted_tokens_per_s"] is None
    assert s["n_prompts"] == 2 and s["new_tokens"] == 20
    settings = [{"category": "x", "gamma": 1, "speedup": 1.2}, {"category": "y", "gamma": 1, "speedup": 0.9},
                {"category": "x", "gamma": 2, "speedup": 1.5}, {"category": "y", "gamma": 2, "speedup": 0.8},
                {"category": "z", "gamma": 3, "speedup": 9.0}]
    assert pick_best(settings, ["x", "y"]) == 2  # geometric mean 1.095 vs 1.039


def _old_bootstrap_ci(vals, resamples=2000, seed=0, level=0.95):
    """The profiler's former CI (a percentile bootstrap of the median), to check `relabel` reads old files right."""
    import random
    import statistics

    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(vals, k=len(vals))) for _ in range(resamples))
    return [boots[int((1 - level) / 2 * (resamples - 1))], boots[int((1 + level) / 2 * (resamples - 1))]]


def test_relabel_gives_old_profiles_their_real_level(tmp_path):
    """Profiles of 3 repeats stored (median, bootstrap "95%" CI) = (median, [min, max]): relabel keeps the bounds,
    records their real level, 1 - 2/8 = 75%, and profile.md and the figures say it."""
    from fixtures.reporting_runs import make_profile

    from soaes_bench.io import read_json
    from soaes_bench.reporting.profile_report import relabel_dir
    from soaes_bench.speculative.profile import relabel
    from soaes_bench.reporting.profile_tables import to_markdown

    rep = read_json(make_profile(tmp_path / "p" / "profile.json"))
    speeds = [0.91, 0.84, 0.88]
    rep["settings"][0].update(speedup=0.88, speedup_ci=_old_bootstrap_ci(speeds))
    assert rep["settings"][0]["speedup_ci"] == [0.84, 0.91]  # what the old bootstrap gave for 3 values
    old = {i: (r["speedup"], r["speedup_ci"]) for i, r in enumerate(rep["settings"])}
    relabel(rep)
    assert {i: (r["speedup"], r["speedup_ci"]) for i, r in enumerate(rep["settings"])} == old
    assert all(r["ci_level"] == 0.75 for r in rep["settings"]) and rep["summary"]["ci_level"] == 0.75
    md = to_markdown(rep)
    assert "95%" not in md and "median over 3 repeats [75% CI of the median: [min, max] of the repeats" in md
    paths = relabel_dir(tmp_path / "p", figures=False)
    assert [p.name for p in paths] == ["profile.json", "profile.md"]
    assert read_json(paths[0])["summary"]["ci_level"] == 0.75
    # 6 repeats without per-repeat values: the old interval says nothing exact, so refuse
    rep["config"]["repeats"] = 6
    with pytest.raises(UserError, match="without per-repeat values"):
        relabel(rep)
    # with them (what the profiler now stores), the interval is recomputed: 6 values -> [min, max] at 62/64
    vals = [1.0, 1.3, 1.1, 0.9, 1.2, 1.25]
    rep["settings"][0].update(speedup=1.15, speedup_values=vals, speedup_ci=[1.1, 1.2])
    for r in rep["settings"][1:]:
        r["speedup_values"] = [r["speedup"]] * 6
    for r in rep["settings"]:
        r["target_tokens_per_s_values"] = [r["target_tokens_per_s"]] * 6
        r["spec_tokens_per_s_values"] = [r["spec_tokens_per_s"]] * 6
    relabel(rep)
    assert rep["settings"][0]["speedup_ci"] == [0.9, 1.3] and rep["settings"][0]["ci_level"] == 62 / 64
    assert "96.9% CI of the median: [min, max]" in to_markdown(rep)


def test_figures_label_their_error_bars(tmp_path):
    from fixtures.reporting_runs import make_profile

    import matplotlib.pyplot as plt

    from soaes_bench.io import read_json
    from soaes_bench.reporting import profile_figures
    from soaes_bench.speculative.profile import relabel

    rep = relabel(read_json(make_profile(tmp_path / "profile.json")))
    for draw in (profile_figures.speedup_vs_gamma, profile_figures.speedup_vs_context):
        fig, ax = plt.subplots()
        draw(rep, ax)
        assert ax.get_xlabel().endswith("(bars: 75% CI)")
        plt.close(fig)
