"""Statistics and text similarity: intervals, tests and verdicts checked against known values."""

from __future__ import annotations

import math
import random

import pytest

from promptloop.core.similarity import retained_share, similarity, unified_diff
from promptloop.core.stats import (
    Interval,
    bootstrap_mean_interval,
    mean_interval,
    normal_quantile,
    paired_difference,
    percentile,
    proportion,
    sign_test_p,
    t_cdf,
    t_quantile,
    verdict,
)

# --- proportions -------------------------------------------------------------------------------


def test_wilson_interval_for_8_of_10() -> None:
    interval = proportion(8, 10)
    assert interval.value == 0.8
    assert interval.n == 10
    assert interval.low == pytest.approx(0.4902, abs=5e-4)
    assert interval.high == pytest.approx(0.9433, abs=5e-4)


def test_wilson_interval_stays_inside_0_and_1() -> None:
    none = proportion(0, 20)
    assert none.value == 0.0 and none.low == 0.0
    assert none.high == pytest.approx(0.1611, abs=5e-4)
    every = proportion(20, 20)
    assert every.high == 1.0
    assert every.low == pytest.approx(0.8389, abs=5e-4)


def test_proportion_of_nothing_has_no_value() -> None:
    assert proportion(0, 0) == Interval(None, None, None, 0)


def test_a_higher_confidence_widens_the_interval() -> None:
    narrow, wide = proportion(8, 10, confidence=0.9), proportion(8, 10, confidence=0.99)
    assert wide.low is not None and narrow.low is not None
    assert wide.high is not None and narrow.high is not None
    assert wide.low < narrow.low and wide.high > narrow.high


@pytest.mark.parametrize(("successes", "n"), [(-1, 5), (6, 5), (1, -1)])
def test_proportion_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        proportion(successes, n)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95.0])
def test_confidence_must_be_a_fraction(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        proportion(1, 2, confidence=confidence)


# --- distributions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "expected"),
    [(0.5, 0.0), (0.975, 1.959964), (0.025, -1.959964), (0.995, 2.575829), (1e-10, -6.361341)],
)
def test_normal_quantile(p: float, expected: float) -> None:
    assert normal_quantile(p) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042), (1000, 1.962)],
)
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-3)


@pytest.mark.parametrize("df", [1, 1.5, 2, 3, 4, 7, 12, 29, 100, 10_000])
@pytest.mark.parametrize("p", [1e-9, 0.001, 0.05, 0.3, 0.5, 0.8, 0.99])
def test_t_quantile_inverts_t_cdf(df: float, p: float) -> None:
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, rel=1e-8)


@pytest.mark.parametrize(
    ("t", "df", "two_sided_p"),
    [(2.0, 10, 0.0734), (1.0, 5, 0.3632), (2.0, 1, 0.2952), (3.0, 30, 0.00538)],
)
def test_t_cdf_gives_known_p_values(t: float, df: int, two_sided_p: float) -> None:
    assert 2 * (1 - t_cdf(t, df)) == pytest.approx(two_sided_p, abs=1e-4)
    assert 2 * t_cdf(-t, df) == pytest.approx(two_sided_p, abs=1e-4)


def test_t_cdf_approaches_the_normal_for_large_df() -> None:
    assert t_cdf(1.959964, 1_000_000) == pytest.approx(0.975, abs=1e-5)
    assert t_cdf(0.0, 3) == 0.5
    assert t_cdf(math.inf, 3) == 1.0


@pytest.mark.parametrize("n", [1, 2, 5, 13, 40])
def test_sign_test_matches_the_exact_binomial(n: int) -> None:
    for wins in range(n + 1):
        k = min(wins, n - wins)
        exact = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
        assert sign_test_p(wins, n - wins) == pytest.approx(exact, rel=1e-10)


def test_sign_test_edges() -> None:
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(5, 0) == pytest.approx(0.0625)
    assert sign_test_p(10, 10) == 1.0
    with pytest.raises(ValueError):
        sign_test_p(-1, 3)


# --- means ---------------------------------------------------------------------------------------


def test_mean_interval_uses_the_t_distribution() -> None:
    interval = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert interval.value == 3.0
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert interval.low == pytest.approx(3.0 - half)
    assert interval.high == pytest.approx(3.0 + half)


def test_mean_interval_needs_two_values() -> None:
    assert mean_interval([]) == Interval(None, None, None, 0)
    assert mean_interval([4.0]) == Interval(4.0, None, None, 1)
    assert mean_interval([2.0, 2.0, 2.0]) == Interval(2.0, 2.0, 2.0, 3)


def test_mean_interval_rejects_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        mean_interval([1.0, math.nan])


def test_bootstrap_interval_contains_the_mean_and_is_reproducible() -> None:
    rng = random.Random(7)
    values = [rng.gauss(5.0, 2.0) for _ in range(1000)]
    interval = bootstrap_mean_interval(values, seed=3)
    assert interval.value is not None and interval.low is not None and interval.high is not None
    assert interval.low < interval.value < interval.high
    assert interval == bootstrap_mean_interval(values, seed=3)
    assert interval != bootstrap_mean_interval(values, seed=4)
    # Close to the t interval for well-behaved data.
    t_based = mean_interval(values)
    assert t_based.low is not None and t_based.high is not None
    assert interval.low == pytest.approx(t_based.low, abs=0.03)
    assert interval.high == pytest.approx(t_based.high, abs=0.03)


def test_bootstrap_needs_two_values() -> None:
    assert bootstrap_mean_interval([]) == Interval(None, None, None, 0)
    assert bootstrap_mean_interval([1.5]) == Interval(1.5, None, None, 1)


def test_percentile_interpolates_linearly() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 95) == pytest.approx(3.85)
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="q"):
        percentile([1.0], 101)


# --- paired comparisons ------------------------------------------------------------------------


def test_clearly_better_booleans_improve_with_the_sign_test() -> None:
    candidate, control = [1.0] * 25 + [0.0] * 5, [0.0] * 30
    comparison = paired_difference(candidate, control)
    assert (comparison.n, comparison.wins, comparison.losses, comparison.ties) == (30, 25, 0, 5)
    assert comparison.test == "exact sign test (McNemar) on 25 discordant pairs"
    assert comparison.p_value == pytest.approx(2 / 2**25)
    assert comparison.mean_difference.value == pytest.approx(25 / 30)
    assert verdict(comparison) == "improved"
    assert verdict(comparison, higher_is_better=False) == "regressed"
    reversed_comparison = paired_difference(control, candidate)
    assert verdict(reversed_comparison) == "regressed"
    assert verdict(reversed_comparison, higher_is_better=False) == "improved"


def test_identical_scores_show_no_change() -> None:
    scores = [0.2, 0.9, 0.5, 0.7]
    comparison = paired_difference(scores, scores)
    assert comparison.p_value == 1.0
    assert comparison.ties == 4
    assert comparison.test == "paired t-test on 4 pairs"
    assert verdict(comparison) == "no detectable change"
    booleans = paired_difference([True, False, True], [True, False, True])
    assert booleans.p_value == 1.0
    assert verdict(booleans) == "no detectable change"


def test_paired_t_test_p_value() -> None:
    # Differences 1..5 shifted by -2: mean 1, sd sqrt(2.5), t = sqrt(2), df 4.
    control = [0.0, 0.0, 0.0, 0.0, 0.0]
    candidate = [-1.0, 0.0, 1.0, 2.0, 3.0]
    comparison = paired_difference(candidate, control)
    assert comparison.test == "paired t-test on 5 pairs"
    assert comparison.p_value == pytest.approx(2 * (1 - t_cdf(math.sqrt(2), 4)))
    assert comparison.p_value == pytest.approx(0.2302, abs=1e-4)
    assert verdict(comparison) == "no detectable change"
    assert verdict(comparison, alpha=0.5) == "improved"


def test_a_consistent_shift_in_real_scores_is_detected() -> None:
    rng = random.Random(11)
    control = [rng.random() for _ in range(20)]
    candidate = [c + 0.1 + rng.gauss(0, 0.05) for c in control]
    comparison = paired_difference(candidate, control)
    assert comparison.p_value is not None and comparison.p_value < 1e-5
    assert verdict(comparison) == "improved"
    assert verdict(paired_difference(control, candidate)) == "regressed"


def test_too_few_pairs_show_no_change() -> None:
    one = paired_difference([1.0], [0.0])
    assert one.p_value is None
    assert verdict(one) == "no detectable change"
    assert paired_difference([], []).mean_difference == Interval(None, None, None, 0)


def test_paired_difference_needs_pairs() -> None:
    with pytest.raises(ValueError, match="pair"):
        paired_difference([1.0, 2.0], [1.0])


# --- similarity ----------------------------------------------------------------------------------


def test_similarity_bounds() -> None:
    assert similarity("abc", "abc") == 1.0
    assert similarity("", "") == 1.0
    assert similarity("", "x") == 0.0
    assert similarity("abc", "xyz") == 0.0
    assert similarity("abcd", "abxd") == pytest.approx(0.75)


def test_similarity_is_symmetric() -> None:
    rng = random.Random(5)
    for _ in range(50):
        a = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 30)))
        assert similarity(a, b) == similarity(b, a)


def test_retained_share() -> None:
    assert retained_share("hello world", "hello world!!!") == 1.0
    assert retained_share("hello world", "") == 0.0
    assert retained_share("", "anything") == 1.0
    assert retained_share("hello world", "hello") == pytest.approx(5 / 11)


def test_unified_diff() -> None:
    diff = unified_diff("keep\nold\n", "keep\nnew\n")
    lines = diff.split("\n")
    assert lines[:2] == ["--- output", "+++ correction"]
    assert "-old" in lines and "+new" in lines and " keep" in lines
    assert unified_diff("same\n", "same\n") == ""


def _prose(rng: random.Random, size: int) -> str:
    vocabulary = ["the", "model", "answer", "prompt", "user", "is", "a", "of", "and", "to"] + [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    words = [rng.choice(vocabulary) + ("\n" if rng.random() < 0.08 else " ") for _ in range(size)]
    return "".join(words)[:size]


def _edit(rng: random.Random, text: str, edits: int) -> str:
    chars = list(text)
    for _ in range(edits):
        chars[rng.randrange(len(chars))] = rng.choice("xyz")
    return "".join(chars)


def test_long_texts_are_compared_within_bounds() -> None:
    rng = random.Random(1)
    text = _prose(rng, 100_000)
    edited = _edit(rng, text, 1000)
    score = similarity(text, edited)
    assert 0.9 < score < 1.0
    assert 0.9 < retained_share(text, edited) < 1.0
    assert 0.0 <= similarity(text, _prose(rng, 100_000)) < 0.5
    assert 0.0 <= similarity("a" * 100_000, "a" * 99_999 + "b") <= 1.0
    assert 0.0 <= similarity("ab\n" * 30_000, "ba\n" * 30_000) <= 1.0
    assert 0.0 <= similarity("x" * 100_000, "y" * 100_000) <= 1.0


def test_medium_texts_agree_with_character_matching() -> None:
    rng = random.Random(2)
    text = _prose(rng, 3000)
    edited = _edit(rng, text, 30)
    assert similarity(text, edited) == pytest.approx(1 - 30 / 3000, abs=0.01)
