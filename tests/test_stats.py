"""Paired bootstrap, McNemar and the corpus statistics, against hand values and independent implementations."""

import math

import numpy as np
import pytest

from soaes_bench.reporting import stats


# McNemar -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b,c,expected", [
    (1, 9, 2 * 11 / 1024),  # P[X<=1], X~Bin(10,1/2) = (1 + 10)/1024
    (9, 1, 2 * 11 / 1024),  # symmetric
    (0, 6, 2 / 64),  # P[X=0] = 1/64
    (0, 0, 1.0),  # no discordant pairs
    (5, 5, 1.0),  # 2 * P[X<=5] > 1 -> capped
    (2, 8, 2 * (1 + 10 + 45) / 1024),
])
def test_mcnemar_exact_hand_values(b, c, expected):
    assert stats.mcnemar_p(b, c) == pytest.approx(expected, abs=1e-15)


def test_mcnemar_counts_discordant_pairs():
    a = [1, 1, 1, 0, 0, 1, 0]
    b = [1, 0, 0, 1, 0, 1, 1]
    # A right & B wrong: items 1, 2 -> b=2; A wrong & B right: items 3, 6 -> c=2
    assert stats.mcnemar(a, b) == (2, 2, 1.0)
    assert stats.mcnemar(a, a) == (0, 0, 1.0)
    with pytest.raises(ValueError):
        stats.mcnemar([1, 0], [1])


# paired bootstrap ----------------------------------------------------------------------------------------------------
def _numpy_reference(a, b, resamples, seed):
    """Independent implementation: resample item indices, mean of per-item differences, percentile CI."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    idx = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    diffs = (b - a)[idx].mean(axis=1)
    ratios = b[idx].mean(axis=1) / a[idx].mean(axis=1)
    return np.percentile(diffs, [2.5, 97.5]), np.percentile(ratios, [2.5, 97.5])


def test_bootstrap_of_mean_matches_independent_numpy_implementation():
    a = [0.2, 0.5, 0.1, 0.9, 0.4, 0.3, 0.8]
    b = [0.3, 0.4, 0.3, 0.9, 0.6, 0.5, 0.7]
    p = stats.paired_bootstrap(a, b, resamples=500, seed=7)
    (lo, hi), (rlo, rhi) = _numpy_reference(a, b, 500, 7)
    assert (p.diff_low, p.diff_high) == pytest.approx((lo, hi), abs=1e-12)
    assert (p.ratio_low, p.ratio_high) == pytest.approx((rlo, rhi), abs=1e-12)
    assert p.diff == pytest.approx(np.mean(b) - np.mean(a))
    assert p.ratio == pytest.approx(np.mean(b) / np.mean(a))
    assert p.n == 7


def test_bootstrap_hand_case_single_item_has_degenerate_distribution():
    # one item: every resample is that item, so B - A = 3 and B / A = 2.5 exactly
    p = stats.paired_bootstrap([2.0], [5.0], resamples=50, seed=0)
    assert (p.diff, p.diff_low, p.diff_high) == (3.0, 3.0, 3.0)
    assert (p.ratio, p.ratio_low, p.ratio_high) == (2.5, 2.5, 2.5)
    assert p.p_value == pytest.approx(2 / 51)  # every diff > 0: 2 * (0 + 1) / (R + 1)


def test_identical_runs_give_zero_interval_and_p_one():
    x = np.random.default_rng(1).random(40)
    p = stats.paired_bootstrap(x, x.copy(), resamples=300, seed=3)
    assert (p.diff, p.diff_low, p.diff_high) == (0.0, 0.0, 0.0)
    assert p.p_value == 1.0
    assert p.ratio_low == pytest.approx(1.0) and p.ratio_high == pytest.approx(1.0)


def test_clear_difference_excludes_zero_and_noise_does_not():
    rng = np.random.default_rng(0)
    a = rng.normal(10, 2, 200)
    better = stats.paired_bootstrap(a, a + 1.0 + rng.normal(0, 0.5, 200), resamples=1000, seed=0)
    assert better.diff_low > 0 and better.ratio_low > 1 and better.p_value < 0.01
    noise = stats.paired_bootstrap(a, a + rng.normal(0, 0.5, 200), resamples=1000, seed=0)
    assert noise.diff_low < 0 < noise.diff_high


def test_seed_makes_it_reproducible_and_chunking_does_not_change_draws(monkeypatch):
    a, b = np.arange(30.0), np.arange(30.0)[::-1].copy()
    one = stats.paired_bootstrap(a, b, resamples=200, seed=5)
    monkeypatch.setattr(stats, "_CHUNK", 70)  # force many small chunks of resamples
    assert stats.paired_bootstrap(a, b, resamples=200, seed=5) == one
    assert stats.paired_bootstrap(a, b, resamples=200, seed=6) != one


def test_bootstrap_rejects_mismatched_or_empty_inputs():
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        stats.paired_bootstrap([], [])


def test_bootstrap_ci_single_run_and_normal_fallback():
    v, lo, hi = stats.bootstrap_ci([1.0, 1.0, 1.0])
    assert (v, lo, hi) == (1.0, 1.0, 1.0)
    v, lo, hi = stats.bootstrap_ci(np.random.default_rng(2).random(100), resamples=400)
    assert lo < v < hi
    lo, hi = stats.normal_diff_ci(0.0, 3.0, 1.0, 4.0)  # sqrt(9 + 16) = 5
    assert (lo, hi) == pytest.approx((1 - 1.959963984540054 * 5, 1 + 1.959963984540054 * 5))


# corpus statistics -----------------------------------------------------------------------------------------------
def test_bits_per_byte_statistic_is_sum_ratio():
    sums = np.array([[-2.0 + -4.0, 1.0 + 3.0]])
    assert stats.bits_per_byte_statistic(sums, 2)[0] == pytest.approx(6 / 4 / math.log(2))
    assert stats.perplexity_statistic(sums, 2)[0] == pytest.approx(math.exp(6 / 4))


PAIRS = [("国有资产监督管理机构依法履行出资人职责", "国有资产监督管理机构代表本级人民政府履行出资人职责"),
         ("企业改制应当制定改制方案", "企业改制应当依照法定程序制定改制方案"),
         ("国家出资企业合并", "国家出资企业的合并分立须经批准"),
         ("我不知道", "国有资本经营预算按年度单独编制"),
         ("关联方不得利用关联关系损害企业利益", "国家出资企业的关联方不得利用与该企业的关联关系谋取不当利益")]


def test_corpus_bleu_from_summed_stats_equals_project_bleu4():
    from soaes_bench.metrics.chinese import bleu4

    x, f = stats.bleu_items(PAIRS)
    assert f is stats.bleu_statistic  # the fast path agrees with metrics.chinese.bleu4
    assert f(x.sum(axis=0)[None, :], len(PAIRS))[0] == pytest.approx(bleu4([p for p, _ in PAIRS],
                                                                            [r for _, r in PAIRS]), abs=1e-9)


def test_paired_bleu_bootstrap_recomputes_corpus_bleu_on_each_resample():
    from soaes_bench.metrics.chinese import bleu4

    a_pairs = PAIRS * 2
    b_pairs = [(r if i % 2 else p, r) for i, (p, r) in enumerate(a_pairs)]  # B copies every other reference
    xa, fa = stats.bleu_items(a_pairs)
    xb, fb = stats.bleu_items(b_pairs)
    res = stats.paired_bootstrap(xa, xb, fa, resamples=25, seed=4, statistic_b=fb)
    # brute force: resample the sentence lists themselves and call bleu4 each time
    idx = np.random.default_rng(4).integers(0, len(a_pairs), size=(25, len(a_pairs)))
    diffs = [bleu4([b_pairs[i][0] for i in row], [b_pairs[i][1] for i in row])
             - bleu4([a_pairs[i][0] for i in row], [a_pairs[i][1] for i in row]) for row in idx]
    assert (res.diff_low, res.diff_high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-9)
    assert res.diff_low > 0


def test_median_ci():
    m = stats.median_ci([3.0, 1.0, 2.0, 10.0, 2.5])
    assert m["median"] == 2.5 and m["ci"][0] <= 2.5 <= m["ci"][1] and 1.0 <= m["ci"][0] and m["ci"][1] <= 10.0
    assert stats.median_ci([4.0])["ci"] is None and stats.median_ci([])["median"] is None
