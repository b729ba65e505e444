"""Paired bootstrap, McNemar and the corpus statistics, against hand values and independent implementations."""

import math

import numpy as np
import pytest

from soaes_bench import stats
from soaes_bench.metrics import corpus_bleu


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
    monkeypatch.setattr(stats.bootstrap, "_CHUNK", 70)  # force many small chunks of resamples
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

    x, f = corpus_bleu.bleu_items(PAIRS)
    assert f is corpus_bleu.bleu_statistic  # the fast path agrees with metrics.chinese.bleu4
    assert f(x.sum(axis=0)[None, :], len(PAIRS))[0] == pytest.approx(bleu4([p for p, _ in PAIRS],
                                                                            [r for _, r in PAIRS]), abs=1e-9)


def test_paired_bleu_bootstrap_recomputes_corpus_bleu_on_each_resample():
    from soaes_bench.metrics.chinese import bleu4

    a_pairs = PAIRS * 2
    b_pairs = [(r if i % 2 else p, r) for i, (p, r) in enumerate(a_pairs)]  # B copies every other reference
    xa, fa = corpus_bleu.bleu_items(a_pairs)
    xb, fb = corpus_bleu.bleu_items(b_pairs)
    res = stats.paired_bootstrap(xa, xb, fa, resamples=25, seed=4, statistic_b=fb)
    # brute force: resample the sentence lists themselves and call bleu4 each time
    idx = np.random.default_rng(4).integers(0, len(a_pairs), size=(25, len(a_pairs)))
    diffs = [bleu4([b_pairs[i][0] for i in row], [b_pairs[i][1] for i in row])
             - bleu4([a_pairs[i][0] for i in row], [a_pairs[i][1] for i in row]) for row in idx]
    assert (res.diff_low, res.diff_high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-9)
    assert res.diff_low > 0


def test_median_ci():
    m = stats.median_ci([3.0, 1.0, 2.0, 10.0, 2.5])
    # n = 5 cannot reach 95%: [min, max], whose coverage is 1 - 2 * (1/2)^5 = 30/32
    assert m["median"] == 2.5 and m["ci"] == [1.0, 10.0] and m["level"] == pytest.approx(30 / 32) and m["n"] == 5
    assert m["values"] == [3.0, 1.0, 2.0, 10.0, 2.5]
    one, none = stats.median_ci([4.0]), stats.median_ci([None, float("nan")])
    assert (one["median"], one["ci"], one["level"], one["n"]) == (4.0, None, None, 1)
    assert (none["median"], none["ci"], none["level"], none["n"]) == (None, None, None, 0)


@pytest.mark.parametrize("values, level, ci, coverage", [
    # n = 3: P(min < median < max) = 1 - 2 * 1/8: the old "95%" interval of 3 repeats was a 75% one
    ([0.70, 0.76, 0.74], 0.95, [0.70, 0.76], 1 - 2 / 8),
    ([2.0, 1.0], 0.95, [1.0, 2.0], 1 - 2 / 4),
    # n = 6: [min, max] covers 1 - 2/64 = 0.96875; (x_(2), x_(5)) only 1 - 2 * (1 + 6)/64 = 0.78125
    ([6.0, 1.0, 5.0, 2.0, 4.0, 3.0], 0.95, [1.0, 6.0], 62 / 64),
    ([6.0, 1.0, 5.0, 2.0, 4.0, 3.0], 0.75, [2.0, 5.0], 50 / 64),
    # n = 8: (x_(2), x_(7)) covers 1 - 2 * (1 + 8)/256 = 0.9297 < 95%, so 95% needs [min, max] (1 - 2/256)
    (list(range(1, 9)), 0.95, [1, 8], 254 / 256),
    (list(range(1, 9)), 0.90, [2, 7], 238 / 256),
    # n = 20: P(Bin(20, 1/2) <= 5) = 21700 / 2^20, so (x_(6), x_(15)) covers 0.9586; k = 7 would give 0.8847
    (list(range(1, 21)), 0.95, [6, 15], 1 - 2 * 21700 / 2 ** 20),
])
def test_median_ci_order_statistics(values, level, ci, coverage):
    m = stats.median_ci(values, level=level)
    assert m["ci"] == ci and m["level"] == pytest.approx(coverage, abs=1e-12) and m["n"] == len(values)


def test_median_ci_level_is_the_binomial_coverage():
    assert stats.median_ci_level(3, 1) == 0.75
    assert stats.median_ci_level(8, 2) == pytest.approx(1 - 2 * (1 + 8) / 256)
    assert stats.median_ci_level(20, 7) == pytest.approx(1 - 2 * (21700 + 38760) / 2 ** 20)
    with pytest.raises(ValueError):
        stats.median_ci_level(4, 3)
    # the coverage is what it says: min/max of 3 draws brackets the true median ~75% of the time
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(20000, 3))
    hit = ((x.min(1) < np.log(2)) & (np.log(2) < x.max(1))).mean()
    assert abs(hit - 0.75) < 0.015


# gate decisions: MDE, Holm, superiority, non-inferiority ---------------------------------------------------------
def test_mde_hand_values():
    k = 1.959963984540054 + 0.8416212335729143  # z_0.975 + z_0.80
    assert stats.power_factor() == pytest.approx(k, abs=1e-12)
    assert stats.mde(0.5, 240) == pytest.approx(k * 0.5 / math.sqrt(240))  # 0.0904
    assert stats.mde(0.5, 240) == pytest.approx(0.09042, abs=1e-5)
    assert stats.mde(se=0.1) == pytest.approx(0.28016, abs=1e-5)  # corpus metric: bootstrap SE
    assert stats.mde(se=0.1, alpha=0.01, power=0.9) == pytest.approx((2.5758293 + 1.2815516) * 0.1)
    assert math.isnan(stats.mde(float("nan"), 10))
    with pytest.raises(ValueError):
        stats.mde(0.5)
    with pytest.raises(ValueError):
        stats.mde(0.5, 10, se=0.1)


@pytest.mark.parametrize("pvalues, alpha, adjusted, rejected", [
    # sorted 0.01, 0.03, 0.04: 3 * 0.01 = 0.03 <= 0.05; 2 * 0.03 = 0.06 > 0.05 -> stop; 0.04 -> max(0.06, 0.04)
    ([0.01, 0.04, 0.03], 0.05, [0.03, 0.06, 0.06], [True, False, False]),
    ([0.01, 0.02, 0.03], 0.05, [0.03, 0.04, 0.04], [True, True, True]),
    ([0.02], 0.025, [0.02], [True]),  # one test: no correction
    ([0.6, 0.3], 0.05, [0.6, 0.6], [False, False]),
    ([0.01, None, float("nan")], 0.05, [0.03, 1.0, 1.0], [True, False, False]),  # unmeasured: p = 1
    ([], 0.05, [], []),
])
def test_holm_hand_values(pvalues, alpha, adjusted, rejected):
    adj, rej = stats.holm(pvalues, alpha)
    assert adj == pytest.approx(adjusted) and rej == rejected


@pytest.mark.parametrize("low, high, hib, expected", [
    (0.01, 0.2, True, True), (0.0, 0.2, True, False), (-0.01, 0.2, True, False),
    (-0.2, -0.01, False, True), (-0.2, 0.0, False, False), (0.01, 0.2, False, False),
    (float("nan"), float("nan"), True, False),
])
def test_superior_predicate(low, high, hib, expected):
    assert stats.superior(low, high, hib) is expected


@pytest.mark.parametrize("low, high, margin, hib, expected", [
    (-0.04, 0.1, 0.05, True, True), (-0.05, 0.1, 0.05, True, False), (-0.06, 0.1, 0.05, True, False),
    (-0.3, 0.04, 0.05, False, True), (-0.3, 0.05, 0.05, False, False), (0.01, 0.2, 0.5, False, True),
    (float("nan"), 0.1, 0.05, True, False),
])
def test_non_inferior_predicate(low, high, margin, hib, expected):
    assert stats.non_inferior(low, high, margin, hib) is expected


@pytest.mark.parametrize("margin", [0.0, -0.1, float("nan"), float("inf")])
def test_non_inferior_needs_a_finite_positive_margin(margin):
    with pytest.raises(ValueError, match="margin > 0"):
        stats.non_inferior(0.0, 0.1, margin)


def test_one_sided_p_hand_values():
    d = np.array([-1.0, 0.0, 1.0, 2.0])
    assert stats.one_sided_p(d, 0.0, True) == 3 / 5  # H0 d <= 0: two draws on the null side, add-one
    assert stats.one_sided_p(d, 0.0, False) == 4 / 5  # H0 d >= 0: three draws
    assert stats.one_sided_p(d, -1.5, True) == 1 / 5  # non-inferiority, margin 1.5: no draw at or below -1.5
    assert stats.null_difference("non_inferior", 1.5, True) == -1.5
    assert stats.null_difference("non_inferior", 1.5, False) == 1.5 and stats.null_difference("superior") == 0.0
    assert math.isnan(stats.one_sided_p(np.array([]), 0.0))


def test_predicates_on_tiny_paired_arrays_with_known_cis():
    # every paired difference is +0.1 or +0.3: every resampled mean lies in [0.1, 0.3]
    a = np.zeros(6)
    b = np.array([0.1, 0.3, 0.1, 0.3, 0.1, 0.3])
    pa, pb, d = stats.paired_bootstrap_draws(a, b, resamples=500, seed=1)
    lo, hi = stats.percentile_ci(d)
    assert (pa, pb) == (0.0, pytest.approx(0.2)) and 0.1 <= lo <= hi <= 0.3
    assert stats.superior(lo, hi) and stats.one_sided_p(d, 0.0) == 1 / 501
    assert not stats.superior(-hi, -lo)  # the same run the other way round
    assert stats.non_inferior(-hi, -lo, margin=0.31) and not stats.non_inferior(-hi, -lo, margin=0.1)
    # two items, differences -1 and +1: draws are -1, 0, +1 with probabilities 1/4, 1/2, 1/4 -> 95% CI [-1, 1]
    _, _, d = stats.paired_bootstrap_draws([0.0, 1.0], [1.0, 0.0], resamples=2000, seed=0)
    assert stats.percentile_ci(d) == (-1.0, 1.0)
    assert not stats.superior(-1.0, 1.0) and stats.non_inferior(-1.0, 1.0, 1.5) and not stats.non_inferior(-1.0, 1.0, 1.0)
    # the draws are paired_bootstrap's: its CI is their percentile interval
    rng = np.random.default_rng(3)
    x, y = rng.random(30), rng.random(30)
    res = stats.paired_bootstrap(x, y, resamples=300, seed=7)
    _, _, d = stats.paired_bootstrap_draws(x, y, resamples=300, seed=7)
    assert stats.percentile_ci(d) == pytest.approx((res.diff_low, res.diff_high), abs=1e-12)
    value, draws = stats.bootstrap_draws(y, resamples=300, seed=7)
    assert (value, *stats.percentile_ci(draws)) == pytest.approx(stats.bootstrap_ci(y, resamples=300, seed=7))
