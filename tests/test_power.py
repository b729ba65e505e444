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
