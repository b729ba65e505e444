"""check(): exit 0 when nothing regressed, 1 on a significant drop beyond tolerance, 2 on bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.reporting_runs import make_results

from soaes_bench import cli, stats
from soaes_bench.errors import UserError
from soaes_bench.reporting.check import Policy, Tolerance, check, load_policy

SHIPPED_POLICY = Path(__file__).resolve().parents[1] / "reports" / "policy.yaml"
RNG = np.random.default_rng(1)
ACC = [float(x) for x in RNG.random(200) < 0.6]
ROUGE = list(RNG.uniform(0, 60, 80))
LLS = list(RNG.uniform(-120, -80, 40))


def _run(path, acc=ACC, rouge=ROUGE, lls=LLS, tasks=None):
    t = {"soaes_general_mc": {"acc": acc}, "soaes_domain_qa": {"rouge1": rouge},
         "soaes_domain_text": {"bits_per_byte": [[x, 50] for x in lls]}}
    return make_results(path, "m", {k: v for k, v in t.items() if tasks is None or k in tasks})


def _status(df, metric):
    return df[df.metric == metric].iloc[0].status


def _cli(baseline, results, *extra):
    return cli.main(["check", "--baseline", str(baseline), "--results", str(results), "--resamples", "300", *extra])


def test_baseline_against_itself_passes(tmp_path, capsys):
    base = _run(tmp_path / "base")
    assert _cli(base, base, "--policy", str(SHIPPED_POLICY)) == 0
    out = capsys.readouterr().out
    assert "no metric moved" in out and "OK" in out


def test_injected_regression_fails(tmp_path, capsys):
    base = _run(tmp_path / "base")
    worse = [0.0 if i % 4 == 0 else x for i, x in enumerate(ACC)]  # a quarter of the items now wrong
    latest = _run(tmp_path / "latest", acc=worse)
    assert _cli(base, latest, "--policy", str(SHIPPED_POLICY)) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "soaes_general_mc" in out and "FAIL: 1 regression" in out
    code, df = check(base, latest, resamples=300)
    assert code == 1 and _status(df, "acc") == "REGRESSED" and df[df.metric == "acc"].iloc[0].ci_high < 0


def test_improvement_and_small_drop_pass(tmp_path):
    base = _run(tmp_path / "base")
    better = _run(tmp_path / "better", acc=[1.0 if i % 4 == 0 else x for i, x in enumerate(ACC)])
    code, df = check(base, better, resamples=300)
    assert code == 0 and _status(df, "acc") == "better"
    # a significant but tiny ROUGE drop (every item -0.1) is within the 0.5 tolerance
    tiny = _run(tmp_path / "tiny", rouge=[r - 0.1 for r in ROUGE])
    code, df = check(base, tiny, SHIPPED_POLICY, resamples=300)
    assert code == 0 and _status(df, "rouge1") == "within tolerance"
    # zero tolerance: the same drop is now a regression (the CI is [-0.1, -0.1])
    code, df = check(base, tiny, {"tolerance": {"absolute": 0.0}}, resamples=300)
    assert code == 1 and _status(df, "rouge1") == "REGRESSED"


def test_large_but_noisy_drop_is_not_significant(tmp_path):
    base = _run(tmp_path / "base")
    noise = RNG.normal(0, 25, len(ROUGE))
    noisy = _run(tmp_path / "noisy", rouge=list(np.asarray(ROUGE) - 1.0 + noise - noise.mean()))
    code, df = check(base, noisy, {"tolerance": {"absolute": 0.5}}, resamples=300)
    row = df[df.metric == "rouge1"].iloc[0]
    assert row["diff"] == pytest.approx(-1.0) and row.ci_low < 0 < row.ci_high
    assert code == 0 and row.status == "not significant"


def test_bits_per_byte_is_lower_is_better(tmp_path):
    base = _run(tmp_path / "base")
    worse = _run(tmp_path / "worse", lls=[x - 5 for x in LLS])  # more nats per byte: higher bpb
    code, df = check(base, worse, SHIPPED_POLICY, resamples=300)
    assert code == 1 and _status(df, "bits_per_byte") == "REGRESSED"
    better = _run(tmp_path / "better", lls=[x + 5 for x in LLS])
    code, df = check(base, better, SHIPPED_POLICY, resamples=300)
    assert code == 0 and _status(df, "bits_per_byte") == "better"


def test_missing_task_is_a_regression_by_default(tmp_path):
    base = _run(tmp_path / "base")
    partial = _run(tmp_path / "partial", tasks={"soaes_general_mc", "soaes_domain_qa"})
    code, df = check(base, partial, resamples=100)
    assert code == 1 and _status(df, "bits_per_byte") == "missing"
    assert check(base, partial, {"missing": "ignore"}, resamples=100)[0] == 0
    with pytest.raises(UserError, match="soaes_domain_text:bits_per_byte"):
        check(base, partial, {"missing": "error"}, resamples=100)
    assert check(base, partial, {"ignore": ["soaes_domain_text"]}, resamples=100)[0] == 0


def test_ignore_and_precedence_of_tolerances():
    pol = load_policy({"tolerance": {"relative": 0.1}, "metrics": {"acc": {"absolute": 0.02}},
                       "tasks": {"t1": {"tolerance": {"absolute": 3.0}, "metrics": {"acc": {"absolute": 0.5}}},
                                 "t2": {"ignore": True}},
                       "ignore": ["bleu4", "t3:rouge1"]})
    assert pol.tolerance_for("t1", "acc").allowed(0.5) == 0.5
    assert pol.tolerance_for("t1", "rouge1").allowed(20) == 3.0
    assert pol.tolerance_for("t0", "acc").allowed(0.5) == 0.02
    assert pol.tolerance_for("t0", "rouge1").allowed(20) == pytest.approx(2.0)
    assert Tolerance(absolute=1.0, relative=0.1).allowed(30) == pytest.approx(3.0)  # the larger allowance
    assert pol.ignored("t2", "acc") and pol.ignored("t0", "bleu4") and pol.ignored("t3", "rouge1")
    assert not pol.ignored("t0", "rouge1")


def test_shipped_policy_loads():
    pol = load_policy(SHIPPED_POLICY)
    assert isinstance(pol, Policy) and pol.missing == "regression" and pol.resamples >= 1000
    # calibrated (soaes-bench calibrate): BLEU-4 never moved across the settings, so one item's swing, 100/200
    assert pol.tolerance_for("soaes_domain_qa", "bleu4").absolute == 0.5
    assert "soaes-bench calibrate" in SHIPPED_POLICY.read_text().split("\n", 3)[1]


def test_bad_policy_key_exits_2_naming_the_key(tmp_path, capsys):
    base = _run(tmp_path / "base")
    bad = tmp_path / "policy.yaml"
    bad.write_text("tolerence:\n  relative: 0.01\n")
    assert _cli(base, base, "--policy", str(bad)) == 2
    err = capsys.readouterr().err
    assert "tolerence" in err and "did you mean tolerance" in err and len(err.strip().splitlines()) == 1
    bad.write_text("metrics:\n  acc: {absolut: 0.01}\n")
    assert _cli(base, base, "--policy", str(bad)) == 2
    assert "metrics.acc.absolut" in capsys.readouterr().err
    bad.write_text("tolerance: {relative: -1}\n")
    assert _cli(base, base, "--policy", str(bad)) == 2
    assert "tolerance.relative" in capsys.readouterr().err


def test_missing_or_incomparable_input_exits_2(tmp_path, capsys):
    base = _run(tmp_path / "base")
    assert _cli(base, tmp_path / "nope" / "results.json") == 2
    assert "file not found" in capsys.readouterr().err
    assert _cli(base, base, "--policy", str(tmp_path / "nope.yaml")) == 2
    other = make_results(tmp_path / "other", "m", {"soaes_general_mc": {"acc": ACC}}, config="new")
    assert _cli(base, other) == 2
    assert "config_sha256" in capsys.readouterr().err


def test_a_gate_or_profile_is_not_a_baseline(tmp_path, capsys):
    from fixtures.reporting_runs import make_gate, make_profile

    base = _run(tmp_path / "base")
    profile = make_profile(tmp_path / "profile" / "profile.json")
    assert _cli(profile, base) == 2  # used to compare nothing and exit 0
    err = capsys.readouterr().err
    assert "--baseline is a profile file" in err and len(err.strip().splitlines()) == 1
    gate = make_gate(tmp_path / "cpt" / "gate.json")
    assert _cli(base, gate) == 2
    assert "--results is a gate file" in capsys.readouterr().err


def test_runs_without_a_shared_task_are_bad_input(tmp_path, capsys):
    a = _run(tmp_path / "a", tasks={"soaes_general_mc"})
    b = _run(tmp_path / "b", tasks={"soaes_domain_qa"})
    assert _cli(a, b) == 2
    err = capsys.readouterr().err
    assert "no task in common" in err and "soaes_domain_qa" in err and "soaes_general_mc" in err


def _rewrite_samples(run_dir, task, fn):
    path = run_dir / "samples" / f"{task}.jsonl"
    rows = fn([json.loads(x) for x in path.read_text().splitlines()])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_results_must_agree_with_their_samples(tmp_path, capsys):
    base = _run(tmp_path / "base")
    edited = _run(tmp_path / "edited")

    def flip(rows):  # one item's answer edited after the run: the mean no longer matches results.json
        rows[3]["metrics"]["acc"] = 1.0 - rows[3]["metrics"]["acc"]
        return rows

    _rewrite_samples(tmp_path / "edited", "soaes_general_mc", flip)
    assert _cli(base, edited) == 2
    err = capsys.readouterr().err
    assert "tasks.soaes_general_mc.metrics.acc" in err and "samples give" in err
    assert len(err.strip().splitlines()) == 1
    # the baseline is verified too, and bits per byte is recomputed from (loglikelihood, bytes)
    _rewrite_samples(tmp_path / "base", "soaes_domain_text",
                     lambda rows: [dict(r, loglikelihood=r["loglikelihood"] - 1) if i == 0 else r
                                   for i, r in enumerate(rows)])
    assert _cli(base, base) == 2
    assert "tasks.soaes_domain_text.metrics.bits_per_byte" in capsys.readouterr().err


def test_truncated_samples_are_refused(tmp_path, capsys):
    base = _run(tmp_path / "base")
    # dropping balanced items keeps the mean: only the count shows the samples are not the run's
    short = _run(tmp_path / "short", acc=[1.0, 0.0] * 100)
    _rewrite_samples(tmp_path / "short", "soaes_general_mc", lambda rows: rows[:100])
    assert _cli(base, short) == 2
    assert "tasks.soaes_general_mc: n is 200 but its samples hold 100 rows" in capsys.readouterr().err


# clusters and power ---------------------------------------------------------------------------------------------------
def _clustered(path, lost=(), keys=True):
    """200 items in 20 documents of 10; the items of the `lost` documents are now wrong."""
    acc = [0.0 if i // 10 in lost else 1.0 if i % 10 < 8 else 0.0 for i in range(200)]
    cl = {"soaes_general_mc": [f"news:{i // 10}" for i in range(200)]} if keys else None
    return make_results(path, "m", {"soaes_general_mc": {"acc": acc}}, clusters=cl)


def test_a_drop_in_two_documents_is_not_significant_over_documents(tmp_path, capsys):
    base, latest = _clustered(tmp_path / "base"), _clustered(tmp_path / "latest", lost=(0, 1))
    code, df = check(base, latest, resamples=1000)
    row = df[df.metric == "acc"].iloc[0]
    assert code == 0 and row.status == "not significant" and row.unit == "cluster" and int(row.n_clusters) == 20
    code, df = check(base, latest, resamples=1000, unit="item")  # as if the 200 items were independent
    assert code == 1 and df[df.metric == "acc"].iloc[0].status == "REGRESSED"
    assert _cli(base, latest, "--unit", "item") == 1
    assert _cli(base, latest) == 0
    out = capsys.readouterr().out
    assert "200 items in 20 clusters; BCa bootstrap, level expanded for 20 clusters" in out


def test_check_prints_the_drop_each_metric_would_have_detected(tmp_path, capsys):
    base = _run(tmp_path / "base")
    assert _cli(base, base, "--policy", str(SHIPPED_POLICY)) == 0
    out = capsys.readouterr().out
    code, df = check(base, base, SHIPPED_POLICY, resamples=300)
    acc = df[df.metric == "acc"].iloc[0]
    # the same run: no item differs, so the paired SE (0) says nothing: the baseline's own SE stands in for it
    assert acc.se == 0 and acc.detectable == pytest.approx(stats.detectable_drop(np.std(ACC, ddof=1) / np.sqrt(200),
                                                                                  0.01))
    assert "no item differs: baseline SE assumed" in out
    latest = _run(tmp_path / "latest", acc=[1.0 - x if i % 10 == 0 else x for i, x in enumerate(ACC)])
    code, df = check(base, latest, SHIPPED_POLICY, resamples=300)
    acc = df[df.metric == "acc"].iloc[0]
    assert acc.detectable == pytest.approx(stats.detectable_drop(acc.se, 0.01)) and acc.detectable > 0.01
    _cli(base, latest, "--policy", str(SHIPPED_POLICY))
    out = capsys.readouterr().out
    assert f"soaes_general_mc acc: a drop of {acc.detectable:.3f} would have been detected (80% power" in out
    assert "soaes_domain_text bits_per_byte: a drop of" in out and "detectable" in out.splitlines()[1]


def test_a_baseline_without_cluster_keys_is_checked_by_items(tmp_path, capsys):
    base, latest = _clustered(tmp_path / "base", keys=False), _clustered(tmp_path / "latest", lost=(0,))
    code, df = check(base, latest, resamples=500)
    row = df[df.metric == "acc"].iloc[0]
    assert row.unit == "cluster" and int(row.n_clusters) == 20  # the results' keys are used: the same items
    code, df = check(base, _clustered(tmp_path / "old", lost=(0,), keys=False), resamples=500)
    assert df[df.metric == "acc"].iloc[0].unit == "item"
    _cli(base, tmp_path / "old")
    assert "no cluster keys in the samples, written before they existed: items resampled" in capsys.readouterr().out


def _without_samples_or_stderr(path):
    """The run's results.json with no samples and no stderr: the tolerance alone can judge it."""
    f = Path(path)
    f = f if f.name == "results.json" else f / "results.json"
    obj = json.loads(f.read_text())
    for t in obj["tasks"].values():
        t.pop("samples", None)
        for m in t["metrics"].values():
            m["stderr"] = None
    f.write_text(json.dumps(obj))
    return f


def test_without_samples_or_stderr_the_tolerance_alone_decides(tmp_path, capsys):
    """A path no CI reaches must still flag a drop beyond tolerance (and pass one within it)."""
    base = _without_samples_or_stderr(make_results(tmp_path / "base", "m", {"soaes_general_mc": {"acc": ACC}}, write_samples=False))
    far = [0.0 if i % 4 == 0 else x for i, x in enumerate(ACC)]  # mean drops by ~0.15
    near = list(ACC)
    near[next(i for i, x in enumerate(ACC) if x == 1.0)] = 0.0  # one item of 200: -0.005
    worse = _without_samples_or_stderr(make_results(tmp_path / "far", "m", {"soaes_general_mc": {"acc": far}}, write_samples=False))
    close = _without_samples_or_stderr(make_results(tmp_path / "near", "m", {"soaes_general_mc": {"acc": near}}, write_samples=False))
    policy = {"tolerance": {"absolute": 0.01}}
    code, df = check(base, worse, policy, resamples=300)
    assert code == 1 and _status(df, "acc") == "REGRESSED" and not results_ci(df)
    code, df = check(base, close, policy, resamples=300)
    assert code == 0 and _status(df, "acc") != "REGRESSED"


def results_ci(df):
    """Whether the acc row carries a CI (it must not: nothing to compute one from)."""
    r = df[df.metric == "acc"].iloc[0]
    return bool(np.isfinite(r.ci_low)) if r.ci_low is not None else False


def test_check_names_where_its_tolerances_came_from(tmp_path, capsys):
    base = _run(tmp_path / "base")
    hand = tmp_path / "hand.yaml"
    hand.write_text("tolerance:\n  absolute: 0.01\n", encoding="utf-8")
    assert _cli(base, base, "--policy", str(SHIPPED_POLICY)) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"tolerances: {SHIPPED_POLICY} (calibrated from measured " \
                                                      "run-to-run spread: soaes-bench calibrate)"
    assert _cli(base, base, "--policy", str(hand)) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"tolerances: {hand} (hand-set)"
    assert _cli(base, base) == 0
    assert capsys.readouterr().out.startswith("tolerances: built-in defaults")
