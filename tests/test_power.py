"""`soaes-bench power`: items and clusters needed to detect a difference, from a baseline's samples."""

import math

import numpy as np
import pytest
from fixtures.reporting_runs import make_results

from soaes_bench import cli, stats
from soaes_bench.reporting.power import power_table

RNG = np.random.default_rng(3)


def _baseline(tmp_path, keys=True, name="base", shift=0.0):
    """120 accuracy items in 12 documents of 10 whose accuracy varies by document (ICC > 0), 60 ROUGE items."""
    p_doc = RNG.uniform(0.1, 0.9, 12)
    acc = [float(RNG.random() < p_doc[i // 10]) for i in range(120)]
    rouge = list(RNG.uniform(0, 60, 60) + shift)
    cl = {"soaes_general_mc": [f"news:{i // 10}" for i in range(120)]} if keys else None
    return make_results(tmp_path / name, "m", {"soaes_general_mc": {"acc": acc}, "soaes_domain_qa": {"rouge1": rouge}},
                        clusters=cl), acc


def test_items_needed_follow_from_sd_icc_and_design_effect(tmp_path):
    base, acc = _baseline(tmp_path)
    df = power_table(base, effect=0.1)
    row = df[(df.task == "soaes_general_mc") & (df.metric == "acc")].iloc[0]
    keys = [f"news:{i // 10}" for i in range(120)]
    sd, rho = np.std(acc, ddof=1), stats.icc(acc, keys)
    deff = 1 + (10 - 1) * rho
    assert (row.n, row.n_clusters) == (120, 12) and row.sd == pytest.approx(sd) and row.icc == pytest.approx(rho)
    assert rho > 0.1 and row.deff == pytest.approx(deff)
    assert (row.items_needed, row.clusters_needed) == stats.items_needed(sd, 0.1, 0.05, 0.8, deff, 10.0)
    assert row.mde == pytest.approx(stats.mde(se=sd * math.sqrt(deff / 120), df=11))
    rouge = df[df.metric == "rouge1"].iloc[0]  # no keys in that task: independent items
    assert np.isnan(rouge.n_clusters) and rouge.deff == 1.0 and rouge.items_needed == stats.items_needed(
        rouge.sd, 0.1)[0]
    items = power_table(base, effect=0.1, unit="item", task="soaes_general_mc").iloc[0]
    assert items.deff == 1.0 and items.items_needed < row.items_needed


def test_paired_differences_of_two_runs(tmp_path):
    base, _ = _baseline(tmp_path)
    other, _ = _baseline(tmp_path, name="other", shift=1.0)
    row = power_table(base, effect=2.0, task="soaes_domain_qa", metric="rouge1", results_path=other).iloc[0]
    from soaes_bench import results

    d = results.load_samples(other, "soaes_domain_qa")["rouge1"] - results.load_samples(base, "soaes_domain_qa")["rouge1"]
    assert row.basis == "paired differences" and row.sd == pytest.approx(float(np.std(d, ddof=1)))


def test_cli_prints_the_plan_and_refuses_bad_options(tmp_path, capsys):
    base, _ = _baseline(tmp_path)
    assert cli.main(["power", "--baseline", str(base), "--effect", "0.1", "--task", "soaes_general_mc"]) == 0
    out = capsys.readouterr().out
    assert "items needed" in out and "soaes_general_mc" in out and "To detect a true difference of 0.1" in out
    for bad, msg in ((["--effect", "0"], "--effect"), (["--power", "1.5"], "--power"), (["--task", "nope"], "--task"),
                     (["--metric", "nope"], "--metric")):
        assert cli.main(["power", "--baseline", str(base), *bad]) == 2
        assert msg in capsys.readouterr().err
    old, _ = _baseline(tmp_path, keys=False, name="old")
    assert cli.main(["power", "--baseline", str(old), "--task", "soaes_general_mc"]) == 0
    assert "items planned as independent for soaes_general_mc" in capsys.readouterr().out


def _smallest_k(var: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Brute force, independent of stats: the fewest paired trainings k >= 2 whose paired t-test on the k per-seed
    differences reaches `power`: (t_{k-1, 1-alpha/2} + t_{k-1, power})^2 * var / effect^2 <= k."""
    from scipy.stats import t

    k = 2
    while (t.ppf(1 - alpha / 2, k - 1) + t.ppf(power, k - 1)) ** 2 * var / effect ** 2 > k:
        k += 1
    return k


@pytest.mark.parametrize("se, sd, effect", [(0.95, 1.0, 0.48), (0.2, 0.5, 1.0), (0.0, 1.0, 0.3), (3.0, 0.0, 2.0)])
def test_trainings_needed_is_the_smallest_k_of_a_paired_t_test(se, sd, effect):
    assert stats.trainings_needed(se, sd, effect) == _smallest_k(sd ** 2 + se ** 2, effect)


def test_more_items_do_not_remove_training_noise():
    z_floor = (stats.power_factor() * 1.0 / 0.48) ** 2  # 34.1: what infinitely many items would leave
    ks = [stats.trainings_needed(0.95 * math.sqrt(200 / n), 1.0, 0.48) for n in (200, 5760, 10**6)]
    assert ks[0] > ks[1] > z_floor and ks[1] >= ks[2] > z_floor and ks[0] == 67
    assert stats.trainings_needed(0.0, 0.0, 1.0) == 2  # nothing varies: the fewest a t-test can use
    for bad in ((-0.1, 1.0, 1.0), (0.1, -1.0, 1.0), (0.1, 1.0, 0.0), (math.inf, 1.0, 1.0)):
        with pytest.raises(ValueError):
            stats.trainings_needed(*bad)


def test_training_sd_adds_the_one_training_mde_and_the_trainings_needed(tmp_path, capsys):
    base, _ = _baseline(tmp_path)
    other, _ = _baseline(tmp_path, name="other", shift=1.0)
    plain = power_table(base, effect=2.0, task="soaes_domain_qa", metric="rouge1", results_path=other).iloc[0]
    row = power_table(base, effect=2.0, task="soaes_domain_qa", metric="rouge1", results_path=other,
                      training_sd=1.5).iloc[0]
    se = row.sd / math.sqrt(row.n)  # independent items here (no keys in this task)
    assert row.mde == pytest.approx(plain.mde) and np.isnan(plain.mde_one_training) and plain.trainings_needed is None
    assert row.mde_one_training == pytest.approx(2.8015852 * math.sqrt(se ** 2 + 1.5 ** 2), rel=1e-6)
    assert row.trainings_needed == _smallest_k(se ** 2 + 1.5 ** 2, 2.0)
    assert cli.main(["power", "--baseline", str(base), "--results", str(other), "--task", "soaes_domain_qa",
                     "--effect", "2", "--training-sd", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "trainings needed" in out and "training-to-training SD of 1.5" in out
    assert cli.main(["power", "--baseline", str(base), "--training-sd", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--training-sd: must be a finite number >= 0" in err


def test_paired_plan_covers_the_tasks_both_runs_have(tmp_path, capsys):
    base, _ = _baseline(tmp_path)  # soaes_general_mc and soaes_domain_qa
    only_qa = make_results(tmp_path / "qa", "m", {"soaes_domain_qa": {"rouge1": list(RNG.uniform(0, 60, 60))}})
    df = power_table(base, effect=2.0, results_path=only_qa)
    assert set(df.task) == {"soaes_domain_qa"}
    assert cli.main(["power", "--baseline", str(base), "--results", str(only_qa), "--task", "soaes_general_mc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--task: soaes_general_mc is not in" in err
