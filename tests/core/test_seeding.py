"""Seeded prompts fit the token budget exactly as the chat template measures it."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from verl_xrpo.core.bank import Exemplar
from verl_xrpo.core.seeding import TRUNCATED, build_seeded_messages, fair_shares, prompt_tokens, render

MESSAGES = [
    {"role": "system", "content": "You are careful."},
    {"role": "user", "content": "Ben has 3 coins. How many?"},
]
EXEMPLARS = [
    Exemplar("Ava has 2 coins and finds 5. How many?", "Ava had 2, found 5, so 2 + 5 = 7. " * 30),
    Exemplar("Gus has 4 coins. How many?", "4."),
]


@settings(max_examples=80, deadline=None)
@given(budget=st.integers(20, 900))
def test_fits_the_budget_and_shortens_only_solutions(toy_tokenizer, budget):
    before = copy.deepcopy(MESSAGES)
    seeded = build_seeded_messages(MESSAGES, EXEMPLARS, toy_tokenizer, budget)
    assert before == MESSAGES  # the input is not modified
    if seeded is None:
        # Exemplars are dropped least similar first: None means even the most similar one, with a
        # single token of its solution, is over budget.
        first_token = toy_tokenizer.decode(toy_tokenizer.encode(EXEMPLARS[0].response)[:1])
        content = render(MESSAGES[-1]["content"], [(EXEMPLARS[0].question, first_token + TRUNCATED)])
        assert prompt_tokens(toy_tokenizer, [MESSAGES[0], {"role": "user", "content": content}]) > budget
        return
    assert prompt_tokens(toy_tokenizer, seeded) <= budget
    content = seeded[-1]["content"]
    assert seeded[0] == MESSAGES[0]
    assert content.endswith(MESSAGES[-1]["content"])  # the original question, whole, at the end
    assert (
        EXEMPLARS[0].question in content or EXEMPLARS[1].question not in content
    )  # least similar dropped first


def test_generous_budget_keeps_solutions_whole(toy_tokenizer):
    seeded = build_seeded_messages(MESSAGES, EXEMPLARS, toy_tokenizer, 10_000)
    content = seeded[-1]["content"]
    assert EXEMPLARS[0].response in content and EXEMPLARS[1].response in content and TRUNCATED not in content


def test_tight_budget_truncates_the_long_solution_and_keeps_the_short_one(toy_tokenizer):
    whole = prompt_tokens(toy_tokenizer, build_seeded_messages(MESSAGES, EXEMPLARS, toy_tokenizer, 10_000))
    seeded = build_seeded_messages(MESSAGES, EXEMPLARS, toy_tokenizer, whole - 100)
    content = seeded[-1]["content"]
    assert TRUNCATED in content and "Solution: 4." in content
    assert EXEMPLARS[0].question in content and EXEMPLARS[1].question in content


def test_nothing_fits_gives_none(toy_tokenizer):
    assert build_seeded_messages(MESSAGES, EXEMPLARS, toy_tokenizer, 15) is None
    assert build_seeded_messages([{"role": "system", "content": "x"}], EXEMPLARS, toy_tokenizer, 999) is None


@given(lengths=st.lists(st.integers(0, 50), min_size=1, max_size=5), room=st.integers(0, 200))
def test_fair_shares(lengths, room):
    caps = fair_shares(lengths, room)
    assert sum(caps) <= room and all(0 <= c <= n for c, n in zip(caps, lengths, strict=True))
    if sum(lengths) <= room:
        assert caps == lengths
    else:
        cut = [c for c, n in zip(caps, lengths, strict=True) if c < n]
        whole = [n for c, n in zip(caps, lengths, strict=True) if c == n]
        assert max(cut) - min(cut) <= 1  # the long ones share equally
        assert all(n <= min(cut) + 1 for n in whole)  # only items within the share stay whole
