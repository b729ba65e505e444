"""Clustered resampling, small-sample intervals, multiplicity and power (soaes_bench/stats/), against scipy and
hand-computed values, and by simulation: on clustered data with a known intra-cluster correlation the clustered
95% interval covers the truth about 95% of the time while the item-level one under-covers, and a true difference
of one MDE is found about 80% of the time.

Binomial bands of the simulations (the seeds are fixed, so each test is deterministic; the bands say why its
tolerance is honest): N = 1200 replications of a 95% interval have SD sqrt(.95 * .05 / 1200) = 0.0063, so 93-97% is
+-3.2 SD; N = 400 replications of 80% power have SD 0.020, so 0.72-0.88 is +-4 SD (the MDE is a normal
approximation, so a little room for its own error).
"""

import json
import math
from collections import Counter

import numpy as np
import pytest
import scipy.stats

from soaes_bench import stats
from soaes_bench.paths import tasks_dir


def _paired(rng, g, m, rho, delta=0.0):
    """g clusters of m items; paired differences d = u_cluster + e_item + delta with Var(d) = 1, ICC rho."""
    cl = np.repeat(np.arange(g), m)
    d = rng.normal(0, math.sqrt(rho), g)[cl] + rng.normal(0, math.sqrt(1 - rho), g * m) + delta
    a = rng.normal(0, 1, g * m)
    return a, a + d, cl


# exact tests and intervals against scipy ----------------------------------------------------------------------------
@pytest.mark.parametrize("b,c", [(0, 0), (1, 9), (9, 1), (0, 6), (3, 4), (12, 30), (40, 41)])
def test_exact_mcnemar_is_scipys_two_sided_binomial_test(b, c):
    expected = 1.0 if b + c == 0 else scipy.stats.binomtest(c, b + c, 0.5).pvalue
    assert stats.mcnemar_p(b, c) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (3, 10), (17, 40), (49, 99), (1, 1)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_clopper_pearson_is_scipys_exact_interval(k, n, level):
    ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    assert stats.clopper_pearson(k, n, level) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_mean_ci_uses_clopper_pearson_for_few_independent_proportions():
    x = [1.0] * 17 + [0.0] * 23
    iv = stats.mean_ci(x)
    ci = scipy.stats.binomtest(17, 40).proportion_ci(confidence_level=0.95, method="exact")
    assert (iv.value, iv.lo, iv.hi, iv.method, iv.n, iv.n_clusters) == \
        (pytest.approx(17 / 40), pytest.approx(ci.low), pytest.approx(ci.high), "clopper-pearson", 40, None)
    # 150 items: the percentile bootstrap, as before
    assert stats.mean_ci([1.0, 0.0] * 75).method == "percentile"


def test_bca_matches_scipy_on_a_skewed_sample():
    x = np.random.default_rng(5).exponential(1.0, 40)
    ours = stats.statistic_ci(x, resamples=40000, seed=1, method="bca")
    ref = scipy.stats.bootstrap((x,), np.mean, method="BCa", n_resamples=40000, random_state=2).confidence_interval
    width = ref.high - ref.low
    assert ours.lo == pytest.approx(ref.low, abs=0.03 * width) and ours.hi == pytest.approx(ref.high, abs=0.03 * width)
    # and BCa moves the interval to the right of the percentile one for a right-skewed mean
    pct = stats.statistic_ci(x, resamples=40000, seed=1, method="percentile")
    assert ours.lo > pct.lo and ours.hi > pct.hi


# the rules: which interval, and none below what resampling supports -------------------------------------------------
def test_min_units_is_where_min_max_of_g_values_can_reach_the_level():
    assert stats.min_units(0.95) == 6 and stats.min_units(0.99) == 8 and stats.min_units(0.9) == 5
    assert 1 - 2 ** (1 - 5) < 0.95 <= 1 - 2 ** (1 - 6)


def test_expanded_level_and_percentile_coverage_hand_values():
    # z = t_{13, .975} sqrt(14/13) = 2.1604 * 1.0377 = 2.2420 -> 2 Phi(z) - 1 = 0.97504
    assert stats.expanded_confidence(0.95, 14) == pytest.approx(0.97504, abs=1e-4)
    assert stats.expanded_confidence(0.95, 1000) == pytest.approx(0.95, abs=2e-3)
    # P(|T_4| <= 1.96 sqrt(4/5)) = 0.846: a percentile interval of 5 clusters is an 85% interval
    assert stats.percentile_coverage(5) == pytest.approx(0.846, abs=2e-3)
    assert stats.percentile_coverage(20) == pytest.approx(0.929, abs=2e-3)


@pytest.mark.parametrize("n,g,clustered,prop,method", [
    (240, 240, False, False, "percentile"), (100, 100, False, True, "percentile"), (99, 99, False, False, "bca"),
    (99, 99, False, True, "clopper-pearson"), (240, 14, True, False, "bca-expanded"),
    (240, 180, True, True, "bca-expanded"), (12, 12, False, False, "bca-expanded"), (240, 5, True, False, "none"),
    (5, 5, False, False, "none"), (60, 6, True, False, "bca-expanded")])
def test_interval_method_rules(n, g, clustered, prop, method):
    assert stats.interval_method(n, g, clustered, 0.95, prop) == method


def test_five_clusters_give_no_interval_and_say_so():
    rng = np.random.default_rng(0)
    a, b, cl = _paired(rng, 5, 20, 0.3, delta=0.5)
    p = stats.paired_ci(a, b, clusters=cl, resamples=500)
    assert p.method == "none" and math.isnan(p.diff_low) and math.isnan(p.p_value) and p.n_clusters == 5
    assert p.diff == pytest.approx(float(np.mean(b - a)))
    assert "5 clusters cannot" in stats.describe_method("none", 5, True)
    assert stats.mean_ci(b - a, cl).method == "none"


def test_singleton_clusters_are_the_item_level_bootstrap_exactly():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=150), rng.normal(size=150)
    items = stats.paired_ci(a, b, resamples=700, seed=4)
    own = stats.paired_ci(a, b, clusters=[f"doc{i}" for i in range(150)], resamples=700, seed=4)
    old = stats.paired_bootstrap(a, b, resamples=700, seed=4)
    assert (own.diff_low, own.diff_high, own.p_value) == (items.diff_low, items.diff_high, items.p_value)
    assert (items.diff_low, items.diff_high, items.p_value) == (old.diff_low, old.diff_high, old.p_value)
    assert items.method == "percentile" and own.n_clusters == 150 and items.n_clusters is None


def test_cluster_draws_resample_whole_clusters():
    # cluster c holds c + 1 items of value c: every draw's mean is a size-weighted mean of drawn cluster values
    x = np.concatenate([[c] * (c + 1) for c in range(4)]).astype(float)
    keys = np.concatenate([[f"k{c}"] * (c + 1) for c in range(4)])
    u = stats.units(x, keys)
    assert u.clustered and list(u.sizes) == [1, 2, 3, 4] and list(u.sums[:, 0]) == [0, 2, 6, 12]
    sums, sizes = stats.unit_draws(u, 300, 0)
    assert set(np.unique(sizes)) <= set(range(4, 17)) and np.all(sizes >= 4)
    idx = np.random.default_rng(0).integers(0, 4, size=(300, 4))  # the same stream, written out
    assert np.array_equal(sizes, u.sizes[idx].sum(axis=1)) and np.array_equal(sums[:, 0], u.sums[idx, 0].sum(axis=1))


def test_ratio_ci_recomputes_the_ratio_over_resampled_documents():
    rng = np.random.default_rng(2)
    nbytes = rng.integers(50, 400, 120).astype(float)
    nats = nbytes * rng.uniform(1.0, 2.0, 120)
    keys = [f"law{i % 30}" for i in range(120)]
    iv = stats.ratio_ci(nats, nbytes, keys, scale=1 / math.log(2), resamples=800)
    assert iv.value == pytest.approx(nats.sum() / nbytes.sum() / math.log(2))
    assert iv.lo < iv.value < iv.hi and iv.method == "bca-expanded" and (iv.n, iv.n_clusters) == (120, 30)


def test_clustered_interval_is_never_narrower_than_the_item_one():
    # clusters that disagree internally (negative ICC) shrink the clustered SE; the interval stays the item one
    rng = np.random.default_rng(3)
    d = np.tile([1.0, -1.0], 60) + rng.normal(0, 0.1, 120)
    keys = [f"c{i // 2}" for i in range(120)]
    items = stats.paired_ci(np.zeros(120), d, resamples=1000)
    cl = stats.paired_ci(np.zeros(120), d, clusters=keys, resamples=1000)
    raw = stats.paired_ci(np.zeros(120), d, clusters=keys, resamples=1000, floor_items=False)
    assert raw.diff_high - raw.diff_low < items.diff_high - items.diff_low
    assert cl.widened and cl.diff_low <= items.diff_low and cl.diff_high >= items.diff_high


def test_p_agrees_with_the_interval():
    """p < 0.05 exactly when the 95% interval excludes 0, for every method (up to one draw)."""
    rng = np.random.default_rng(4)
    for method, g, m in (("bca-expanded", 14, 12), ("bca", 60, 1), ("percentile", 150, 1)):
        for shift in np.linspace(0, 0.6, 13):
            a, b, cl = _paired(rng, g, m, 0.3, delta=shift)
            p = stats.paired_ci(a, b, clusters=cl if m > 1 else None, resamples=2000, seed=1, floor_items=False)
            assert p.method == method
            excludes = p.diff_low > 0 or p.diff_high < 0
            if abs(p.p_value - 0.05) > 0.004:
                assert excludes == (p.p_value < 0.05), (method, shift, p)


# multiplicity ---------------------------------------------------------------------------------------------------
HAND = [0.01, 0.04, 0.03, 0.005, 0.2]


def test_holm_hand_table():
    # sorted 0.005, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1 -> 0.025, 0.04, 0.09, 0.08 -> running max 0.09, 0.2
    assert stats.adjust_p(HAND, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])
    assert stats.holm(HAND, 0.05) == (pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2]), [True, False, False, True, False])


def test_benjamini_hochberg_is_scipys():
    assert stats.adjust_p(HAND, "bh") == pytest.approx(list(scipy.stats.false_discovery_control(HAND, method="bh")))
    ps = list(np.random.default_rng(0).uniform(0, 0.2, 30))
    assert stats.benjamini_hochberg(ps) == pytest.approx(list(scipy.stats.false_discovery_control(ps)))
    # hand: sorted 0.005, 0.01, 0.03, 0.04, 0.2 times 5/1, 5/2, 5/3, 5/4, 5/5 -> step-up minimum from the top
    assert stats.benjamini_hochberg(HAND) == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.2])


def test_missing_p_counts_as_one_and_none_is_identity():
    assert stats.adjust_p([0.01, None, math.nan], "none") == [0.01, 1.0, 1.0]
    assert stats.adjust_p([0.01, None], "holm") == [0.02, 1.0]
    with pytest.raises(ValueError, match="unknown correction"):
        stats.adjust_p([0.1], "bonferonni")


# win / tie / loss -----------------------------------------------------------------------------------------------
def test_win_tie_loss_are_mcnemars_discordant_pairs_for_accuracy():
    a = [1, 1, 1, 0, 0, 1, 0]
    b = [1, 0, 0, 1, 0, 1, 1]
    bb, c, _ = stats.mcnemar(a, b)
    assert stats.win_tie_loss(a, b) == (c, 7 - bb - c, bb) == (2, 3, 2)
    # lower is better (bits per byte): a drop wins
    assert stats.win_tie_loss([2.0, 2.0, 3.0], [1.5, 2.0, 3.5], higher_is_better=False) == (1, 1, 1)


# planning: ICC, design effect, items needed ------------------------------------------------------------------------
def test_icc_by_one_way_anova_hand_value():
    # 3 clusters of 2: means 1, 3, 5 (grand 3); MSB = 2 * (4 + 0 + 4) / 2 = 8; MSW = (3 * 2 * 0.25) / 3 = 0.5
    # m0 = 2 -> ICC = (8 - 0.5) / (8 + 0.5) = 0.88235
    x = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    assert stats.icc(x, ["a", "a", "b", "b", "c", "c"]) == pytest.approx(7.5 / 8.5)
    assert math.isnan(stats.icc(x, list("abcdef")))  # no cluster with two items
    assert stats.icc([1.0] * 6, list("aabbcc")) == 0.0


def test_icc_recovers_a_known_correlation():
    rng = np.random.default_rng(6)
    a, b, cl = _paired(rng, 400, 6, 0.3)
    assert stats.icc(b - a, cl) == pytest.approx(0.3, abs=0.05)  # SE of the estimate about 0.025 here


def test_design_effect_and_items_needed_hand_values():
    assert stats.design_effect([5] * 10, 0.25) == pytest.approx(2.0)  # 1 + (5 - 1) * 0.25
    assert stats.design_effect([2, 4], 0.5) == pytest.approx(1 + (20 / 6 - 1) * 0.5)  # size-weighted mean size
    # (2.8016 * 0.5 / 0.05)^2 = 784.9 -> 785 independent items
    assert stats.items_needed(0.5, 0.05) == (785, 785)
    # deff 2 and clusters of 5: about twice the items, t quantiles on clusters - 1 df add a little
    n, g = stats.items_needed(0.5, 0.05, deff=2.0, cluster_size=5)
    assert 1570 <= n <= 1580 and g == math.ceil(n / 5)


@pytest.mark.parametrize("sd, effect, deff, size", [(0.5, 0.5, 2.0, 10), (1.0, 1.0, 1.2, 5), (0.5, 0.3, 1.5, 10),
                                                    (0.3, 0.2, 3.0, 20), (0.5, 0.05, 2.0, 5)])
def test_items_needed_with_few_clusters_is_the_smallest_t_design(sd, effect, deff, size):
    """Brute force, independent of stats: the fewest clusters G whose t test (G - 1 df) has the power; a fixed-point
    iteration used to stop at 2 clusters for the first two cases (4 and 5 are needed)."""
    from scipy.stats import t

    def items(g):
        return deff * ((t.ppf(0.975, g - 1) + t.ppf(0.8, g - 1)) * sd / effect) ** 2

    g = 2
    while items(g) > g * size:
        g += 1
    assert stats.items_needed(sd, effect, deff=deff, cluster_size=size) == (math.ceil(items(g)), g)
    assert stats.detectable_drop(0.01, tolerance=0.0) == pytest.approx(stats.mde(se=0.01))
    assert stats.detectable_drop(0.01, tolerance=0.05) == pytest.approx(0.05 + 0.841621 * 0.01, abs=1e-6)


def test_pseudo_values_are_items_for_a_mean_and_linearise_a_ratio():
    x = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    assert stats.pseudo_values(x) == pytest.approx(x)
    rows = np.array([[10.0, 5.0], [30.0, 10.0], [20.0, 20.0]])
    psi = stats.pseudo_values(rows, stats.bits_per_byte_statistic)
    theta = 60 / 35 / math.log(2)
    assert psi.mean() == pytest.approx(3 * theta - 2 * np.mean(
        [(60 - r[0]) / (35 - r[1]) / math.log(2) for r in rows]))
    assert np.std(psi, ddof=1) / math.sqrt(3) == pytest.approx(
        stats.jackknife_se(stats.jackknife(stats.units(rows), stats.bits_per_byte_statistic)))


# simulations -------------------------------------------------------------------------------------------------------
def test_clustered_interval_covers_and_the_item_interval_under_covers():
    """40 clusters of 5 items, ICC 0.3 (design effect 2.2): the clustered 95% interval covers the true difference
    (0) in 93-97% of 1200 replications (band: module docstring); the item-level one, which treats the 200 items as
    independent, covers about P(|Z| <= 1.96 / sqrt(2.2)) = 81%: asserted below 88%."""
    rng = np.random.default_rng(7)
    clustered = items = 0
    for r in range(1200):
        a, b, cl = _paired(rng, 40, 5, 0.3)
        p = stats.paired_ci(a, b, clusters=cl, resamples=1000, seed=r, floor_items=False)
        clustered += p.diff_low <= 0 <= p.diff_high
        if r < 300:
            q = stats.paired_ci(a, b, resamples=1000, seed=r)
            items += q.diff_low <= 0 <= q.diff_high
    assert p.method == "bca-expanded" and q.method == "percentile"
    assert 0.93 <= clustered / 1200 <= 0.97
    assert items / 300 < 0.88  # 300 replications: SD 0.023 around 0.81


def test_power_at_the_mde_is_about_80_percent():
    """A true difference of exactly one MDE (from the population SD, the design effect and t quantiles on
    clusters - 1 df) is found (p < 0.05) in about 80% of 400 replications, clustered and not."""
    for g, m, rho in ((40, 5, 0.3), (200, 1, 0.0)):
        n, deff = g * m, 1 + (m - 1) * rho
        effect = stats.mde(se=math.sqrt(deff / n), df=g - 1 if m > 1 else None)
        rng = np.random.default_rng(11)
        hits = 0
        for r in range(400):
            a, b, cl = _paired(rng, g, m, rho, delta=effect)
            p = stats.paired_ci(a, b, clusters=cl if m > 1 else None, resamples=1000, seed=r, floor_items=False)
            hits += p.p_value < 0.05
        assert 0.72 <= hits / 400 <= 0.88, (g, m, hits)


# the cluster keys of the shipped task data --------------------------------------------------------------------------
# task file -> (items, clusters, key kinds): what the builder writes (docs/statistics.md, "Clusters")
EXPECTED = {
    "soaes_general/zh_text.jsonl": (250, 250, {"news", "review"}),
    "soaes_general/en_text.jsonl": (250, 250, {"fortune"}),
    "soaes_general/general_mc.jsonl": (240, 180, {"news"}),
    "soaes_general/general_gen.jsonl": (200, 158, {"news"}),
    "soaes_domain/domain_text.jsonl": (250, 94, {"law", "news"}),
    "soaes_domain/domain_qa.jsonl": (200, 14, {"law"}),
    "soaes_domain/domain_mc.jsonl": (240, 14, {"law"}),
    "soaes_domain/domain_knowledge.jsonl": (200, 180, {"article"}),
    "soaes_domain/domain_knowledge_mc.jsonl": (200, 200, {"article"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_item_of_every_task_has_its_source_document(name):
    rows = [json.loads(line) for line in (tasks_dir() / name.split("/")[0] / "data" / name.split("/")[1]).open()]
    keys = Counter(r["cluster"] for r in rows)
    assert (len(rows), len(keys), {k.split(":")[0] for k in keys}) == EXPECTED[name]
    for r in rows:  # the key is the document the id names: the law of an article, the article a news item is from
        kind, doc = r["cluster"].split(":", 1)
        if kind == "law":
            assert doc in r["id"]
        elif kind in ("news", "article"):
            assert r["id"].endswith(doc)
        else:
            assert r["id"].endswith(doc)


def test_the_samples_writer_carries_the_cluster_key():
    from soaes_bench.evaluation.writer import sample_row
    from soaes_bench.records.samples import validate_row

    row = sample_row({"doc_id": 3, "doc": {"id": "mc-ident-x-001", "cluster": "law:x"}, "metrics": ["acc"], "acc": 1.0,
                      "arguments": [], "filtered_resps": [], "target": 0})
    assert row["cluster"] == "law:x" and validate_row(row, "t:1") is row
    assert "cluster" not in sample_row({"doc_id": 0, "doc": {"id": "a"}, "metrics": []})
    with pytest.raises(Exception, match="cluster"):
        validate_row({"id": "a", "cluster": 3}, "t:1")
