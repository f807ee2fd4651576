"""pass@k, cons@k and pass@1 against their definitions, computed the slow way."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verl_xrpo.eval.metrics import (
    PromptSamples,
    format_table,
    majority_correct,
    pass_at_k,
    score_by_source,
    score_prompts,
)


@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_is_the_share_of_k_subsets_holding_a_correct_sample(case):
    n, c, k = case
    flags = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(flags, k))
    expected = sum(any(s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_edges_and_errors():
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 1, 8) == 1.0
    assert pass_at_k(8, 2, 1) == pytest.approx(2 / 8)
    assert pass_at_k(100, 3, 10) == pytest.approx(1 - math.comb(97, 10) / math.comb(100, 10))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_majority_vote_ignores_missing_answers_and_breaks_ties_by_first_seen():
    assert majority_correct([False, True, True], ["3", "4", "4"])
    assert not majority_correct([True, False, False], ["4", "3", "3"])
    assert majority_correct([True, False], ["4", "3"])  # a tie: the first answer seen wins
    assert not majority_correct([False, False], [None, None])
    assert majority_correct([False, False, True], [None, None, "7"])


def test_scores_per_source_and_overall():
    prompts = [
        PromptSamples("a", [True, False, False, False], ["1", "2", "2", "3"]),
        PromptSamples("a", [True, True, True, False], ["5", "5", "5", "6"]),
        PromptSamples("b", [False] * 4, ["0", "0", "1", None]),
    ]
    table = score_by_source(prompts, ks=[1, 4])
    assert set(table) == {"a", "b", "all"}
    assert table["a"]["pass@1"] == pytest.approx(4 / 8) and table["a"]["pass@4"] == 1.0
    assert table["a"]["cons@4"] == 0.5  # the first prompt's majority answer ("2") is wrong
    assert table["b"] == {"prompts": 1.0, "pass@1": 0.0, "cons@1": 0.0, "pass@4": 0.0, "cons@4": 0.0}
    assert table["all"]["pass@1"] == pytest.approx(4 / 12)
    assert table["all"]["pass@1"] == score_prompts(prompts, [1])["pass@1"]
    assert "data source" in format_table(table).splitlines()[0]


def test_k_larger_than_the_samples_is_refused():
    with pytest.raises(ValueError, match="at least that many samples"):
        score_prompts([PromptSamples("a", [True, False], ["1", "2"])], ks=[4])
