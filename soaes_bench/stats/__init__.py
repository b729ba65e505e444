"""Paired statistics for comparing runs item by item: bootstrap CIs of differences and ratios over items or
clusters, their interval methods, medians of repeated timings, power and planning, and the test decisions.

One module per concern (bootstrap draws, intervals, repeats, power, decisions); callers import the package
(`from soaes_bench import stats; stats.paired_ci(...)`). All functions are pure: arrays in, numbers out, every
random draw seeded.
"""

from soaes_bench.stats.bootstrap import (Statistic, Units, bits_per_byte_statistic, bootstrap_draws, bootstrap_p,
                                         jackknife, jackknife_se, mean_statistic, paired_bootstrap_draws, paired_se,
                                         percentile_ci, perplexity_statistic, pseudo_values, resample_sums,
                                         unit_draws, units)
from soaes_bench.stats.decisions import (CORRECTIONS, adjust_p, benjamini_hochberg, holm, mcnemar, mcnemar_p,
                                         non_inferior, null_difference, one_sided_p, outcomes, superior,
                                         win_tie_loss)
from soaes_bench.stats.intervals import (INTERVAL_METHODS, SMALL_ITEMS, SMALL_UNITS, Interval, Paired, bootstrap_ci,
                                         clopper_pearson, describe_method, expanded_confidence, interval_method,
                                         mean_ci, min_units, normal_diff_ci, normal_z, paired_bootstrap, paired_ci,
                                         percentile_coverage, ratio_ci, statistic_ci)
from soaes_bench.stats.power import (design_effect, detectable_drop, icc, items_needed, mde, power_factor,
                                     trainings_needed)
from soaes_bench.stats.repeats import level_label, median_ci, median_ci_level

__all__ = [
    "Statistic", "Units", "bits_per_byte_statistic", "bootstrap_draws", "bootstrap_p", "jackknife", "jackknife_se",
    "mean_statistic", "paired_bootstrap_draws", "paired_se", "percentile_ci", "perplexity_statistic",
    "pseudo_values", "resample_sums", "unit_draws", "units",
    "CORRECTIONS", "adjust_p", "benjamini_hochberg", "holm", "mcnemar", "mcnemar_p", "non_inferior",
    "null_difference", "one_sided_p", "outcomes", "superior", "win_tie_loss",
    "INTERVAL_METHODS", "SMALL_ITEMS", "SMALL_UNITS", "Interval", "Paired", "bootstrap_ci", "clopper_pearson",
    "describe_method", "expanded_confidence", "interval_method", "mean_ci", "min_units", "normal_diff_ci",
    "normal_z", "paired_bootstrap", "paired_ci", "percentile_coverage", "ratio_ci", "statistic_ci",
    "design_effect", "detectable_drop", "icc", "items_needed", "mde", "power_factor", "trainings_needed",
    "level_label", "median_ci", "median_ci_level",
]
