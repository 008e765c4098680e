"""Intervals that mean what they say: empirical coverage of :func:`lobgym.stats.mean_ci` on synthetic
normal samples, the paired difference against a hand computation, labels, and bad input."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from lobgym.stats import BCA_MIN_N, CI, describe, mean_ci, paired_diff

#: Replications per coverage check: the Monte-Carlo standard error of a 95% coverage is then
#: sqrt(0.95 * 0.05 / 4000) = 0.0034, and the tolerance below is 4 of them.
REPLICATIONS = 4000
TOLERANCE = 4 * math.sqrt(0.95 * 0.05 / REPLICATIONS)


def coverage(interval: Callable[[np.ndarray], tuple[float, float]], n: int, replications: int = REPLICATIONS,
             seed: int = 0) -> float:
    """Fraction of ``replications`` normal samples of size ``n`` (mean 1.5, sd 2) whose interval
    contains the true mean."""
    mu = 1.5
    samples = np.random.default_rng(seed).normal(mu, 2.0, size=(replications, n))
    bounds = np.array([interval(x) for x in samples])
    return float(np.mean((bounds[:, 0] <= mu) & (mu <= bounds[:, 1])))


def _mean_ci_bounds(x: np.ndarray) -> tuple[float, float]:
    ci = mean_ci(x)
    return ci.low, ci.high


def percentile_bootstrap(x: np.ndarray, level: float = 0.95, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """The interval ``lobgym report`` used before ``lobgym.stats`` (``report.bootstrap_ci``, verbatim)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    means = np.random.default_rng(seed).choice(x, size=(n, len(x)), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@pytest.mark.parametrize("n", [2, 3, 10, 100])
def test_mean_ci_covers_95_percent_of_normal_samples(n):
    assert abs(coverage(_mean_ci_bounds, n) - 0.95) <= TOLERANCE


@pytest.mark.parametrize("n, at_most", [(2, 0.55), (3, 0.80)])
def test_the_old_percentile_bootstrap_does_not_cover_95_percent_at_few_seeds(n, at_most):
    """What the reports' "95% bootstrap CI" over 2-3 seeds really covered: about 50% and 75%."""
    got = coverage(percentile_bootstrap, n, replications=1000)
    assert got <= at_most
    assert abs(got - 0.95) > TOLERANCE  # the coverage check above would fail on it


@pytest.mark.slow
def test_bca_interval_from_its_threshold_covers_95_percent():
    def bca(x: np.ndarray) -> tuple[float, float]:
        ci = mean_ci(x, resamples=999)
        assert ci.method == "bca"
        return ci.low, ci.high

    replications = 1000
    assert abs(coverage(bca, BCA_MIN_N, replications) - 0.95) <= 4 * math.sqrt(0.95 * 0.05 / replications)


def test_auto_uses_t_below_the_threshold_and_a_deterministic_bca_from_it():
    rng = np.random.default_rng(3)
    assert mean_ci(rng.normal(size=BCA_MIN_N - 1)).method == "t"
    skewed = rng.lognormal(0.0, 1.0, size=BCA_MIN_N)
    ci = mean_ci(skewed)
    assert ci.method == "bca" and ci == mean_ci(skewed)  # a fixed bootstrap seed: same values, same interval
    assert ci.high - ci.mean > ci.mean - ci.low  # right-skewed sample: the bootstrap interval leans right
    t = mean_ci(skewed, method="t")
    assert t.method == "t" and t.se == ci.se and t.mean == ci.mean
    assert t.high - t.mean == pytest.approx(t.mean - t.low)


def test_t_interval_matches_a_hand_computation():
    ci = mean_ci([1.0, 2.0, 6.0])  # mean 3, s = sqrt(7), t_{0.975, 2} = 4.302653
    assert ci.mean == 3.0 and ci.se == pytest.approx(math.sqrt(7 / 3))
    assert (ci.low, ci.high) == pytest.approx((3 - 4.302653 * math.sqrt(7 / 3), 3 + 4.302653 * math.sqrt(7 / 3)))
    assert ci.n == 3 and ci.method == "t" and ci.level == 0.95
    narrow = mean_ci([1.0, 2.0, 6.0], level=0.5)  # t_{0.75, 2} = 0.816497
    assert narrow.high - narrow.mean == pytest.approx(0.816497 * math.sqrt(7 / 3))


def test_paired_diff_matches_a_hand_computation():
    a = [1.0, 2.0, 4.0, 7.0, 11.0]
    b = [0.0, 1.0, 1.0, 5.0, 8.0]  # differences 1, 1, 3, 2, 3: mean 2, s = 1
    d = paired_diff(a, b)
    se = 1 / math.sqrt(5)
    assert d.mean == pytest.approx(2.0) and d.se == pytest.approx(se) and d.n == 5 and d.method == "t"
    assert (d.low, d.high) == pytest.approx((2 - 2.776445 * se, 2 + 2.776445 * se))  # t_{0.975, 4}
    # unpaired, the same means are indistinguishable: pairing removes the noise both share
    assert mean_ci(a).low < mean_ci(b).high


def test_a_single_value_has_no_interval_and_a_constant_sample_a_zero_width_one():
    one = mean_ci([4.0])
    assert one.mean == 4.0 and one.n == 1 and one.method == "none"
    assert math.isnan(one.low) and math.isnan(one.high) and math.isnan(one.se)
    assert one.label() == "no interval for n = 1 seed"
    flat = mean_ci(np.full(BCA_MIN_N, 2.0))
    assert (flat.low, flat.high, flat.se) == (2.0, 2.0, 0.0)


def test_labels_name_level_method_and_n():
    three = mean_ci([1.0, 2.0, 4.0])
    assert three.label() == "95% t interval, n = 3 seeds"
    assert mean_ci(np.arange(300.0)).label("episodes") == "95% BCa bootstrap interval, n = 300 episodes"
    assert describe([three, mean_ci([1.0, 2.0]), mean_ci([5.0])]) == (
        "95% t interval, n = 2-3 seeds; no interval for n = 1 seed")
    assert mean_ci([1.0, 2.0, 4.0], level=0.9).label() == "90% t interval, n = 3 seeds"
    assert isinstance(three, CI)


@pytest.mark.parametrize("values, message", [
    ([1.0, float("nan"), 2.0], "1 of 3 values are not finite"),
    ([1.0, float("inf")], "index 1 is inf"),
    ([], "empty sample"),
    ([[1.0, 2.0], [3.0, 4.0]], "1-d sample"),
])
def test_bad_values_are_errors_naming_the_problem(values, message):
    with pytest.raises(ValueError, match=message):
        mean_ci(values)


def test_bad_level_method_and_unpaired_lengths_are_errors():
    with pytest.raises(ValueError, match="level = 95"):
        mean_ci([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="method = 'percentile'.*auto, t, bca"):
        mean_ci([1.0, 2.0], method="percentile")
    with pytest.raises(ValueError, match=r"len\(a\) = 3, len\(b\) = 2"):
        paired_diff([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="b: 1 of 2 values are not finite"):
        paired_diff([1.0, 2.0], [1.0, float("nan")])
