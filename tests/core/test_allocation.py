"""The allocator's rules between phases: caps, rollouts still running, failed and skipped prompts,
seeding's held rollouts, overflow; and a whole step with seeding's share keeps GRPO's budget."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_xrpo.config import PlanningConfig
from verl_xrpo.core.allocation import (
    PromptCounts,
    deal_round_robin,
    expected_sample_std,
    later_phase_grants,
    submission_counts,
)
from verl_xrpo.core.planner import RolloutPlanner, seeding_grants

PLANNER = RolloutPlanner(PlanningConfig(), rollouts_per_prompt=8)  # n_max 16


def test_rollouts_still_running_count_towards_the_cap():
    prompts = PromptCounts([[0, 1, 0, 1]] * 2, pending=np.array([12, 0]))
    extra = later_phase_grants(PLANNER, prompts, budget=10)
    assert extra.tolist() == [0, 10]  # the first prompt's 4 in and 12 running fill its cap of 16


def test_a_failed_prompt_gets_nothing_and_its_share_goes_to_the_others():
    prompts = PromptCounts([[0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1]], failed=np.array([False, True, False]))
    extra = later_phase_grants(PLANNER, prompts, budget=12)
    assert extra[1] == 0 and extra.sum() == 12


def test_skipped_prompts_take_only_what_the_planned_ones_cannot_hold():
    rewards = [[0, 1, 0, 1], [1, 1], [0, 0]]
    skipped = np.array([False, True, True])
    assert later_phase_grants(PLANNER, PromptCounts(rewards, skipped=skipped), budget=12).tolist() == [
        12,
        0,
        0,
    ]
    # the planned prompt holds 12 more at most; 9 go round the skipped ones
    extra = later_phase_grants(PLANNER, PromptCounts(rewards, skipped=skipped), budget=21)
    assert extra.tolist() == [12, 5, 4]


def test_held_rollouts_come_first_and_count_towards_the_phase():
    held = np.array([0, 3])
    extra = later_phase_grants(PLANNER, PromptCounts([[0, 1, 1, 0], [0, 0, 0, 0]]), budget=8, held=held)
    assert extra.sum() == 8 and extra[1] >= 3


def test_what_no_prompt_can_hold_is_not_granted():
    prompts = PromptCounts([[0, 1] * 7, [1, 0] * 7], failed=np.array([False, True]))
    assert later_phase_grants(PLANNER, prompts, budget=5).tolist() == [2, 0]  # 3 lost


def test_rollouts_dealt_round_robin_never_pass_a_rows_room():
    assert deal_round_robin(np.array([3, 0, 1, 5]), 6).tolist() == [3, 0, 1, 2]  # rounds of 3, 2, 1
    assert deal_round_robin(np.array([1, 2]), 10).tolist() == [1, 2]  # what does not fit is not dealt
    assert deal_round_robin(np.array([-1, 2]), 1).tolist() == [0, 1]


@settings(max_examples=100, deadline=None)
@given(
    num_prompts=st.integers(1, 30),
    failing_share=st.floats(0.0, 1.0),
    per_prompt=st.integers(1, 4),
    ucb_lambda=st.sampled_from([0.0, 0.05, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_a_step_with_seedings_share_keeps_grpos_budget_and_the_cap(
    num_prompts, failing_share, per_prompt, ucb_lambda, seed
):
    rng = np.random.default_rng(seed)
    planner = RolloutPlanner(PlanningConfig(n_base=4, ucb_lambda=ucb_lambda), rollouts_per_prompt=8)
    rates = np.where(rng.uniform(size=num_prompts) < failing_share, 0.0, rng.uniform(size=num_prompts))
    rewards = [
        (rng.uniform(size=c) < p).astype(float)
        for c, p in zip(planner.base_counts(num_prompts), rates, strict=True)
    ]
    budgets = planner.phase_budgets(num_prompts)
    failing = [q for q, r in enumerate(rewards) if not r.any()]
    reserved = np.zeros(num_prompts, dtype=np.int64)
    reserved[failing] = seeding_grants(len(failing), sum(budgets), budgets[0], per_prompt, 0.25)
    for phase, budget in enumerate(budgets):
        held = reserved if phase == 0 else None
        extra = later_phase_grants(planner, PromptCounts(rewards), budget, held, step=3)
        assert extra.sum() == budget
        rewards = [
            np.concatenate([r, rng.uniform(size=e) < p])
            for r, e, p in zip(rewards, extra, rates, strict=True)
        ]
    counts = np.array([len(r) for r in rewards])
    assert counts.sum() == num_prompts * 8
    assert counts.min() >= 4 and counts.max() <= planner.n_max
    assert all(counts[q] >= 5 for q in failing)  # each prompt that failed phase 1 got seeded rollouts


def test_without_history_a_submission_is_grpos_uniform_count():
    counts = submission_counts(PLANNER, np.full(6, 0.4), seen=np.zeros(6, dtype=bool))
    assert counts.tolist() == [8] * 6


def test_a_submission_gives_the_uncertain_prompts_more_and_keeps_the_budget():
    rates = np.array([0.02, 0.5, 0.98, 0.3, 0.5])
    seen = np.array([True, True, True, True, False])
    counts = submission_counts(PLANNER, rates, seen)
    assert counts.sum() == 5 * 8 and counts.max() <= PLANNER.n_max
    # nearly sure either way: the fewest, alike; the most for the most uncertain
    assert counts[0] == counts[2] == counts.min() < counts[3] <= counts[1] == counts.max()
    assert counts[4] >= 4  # not seen before: at least n_base


def test_a_seeded_prompt_gets_at_least_its_floor():
    rates = np.array([0.0, 0.5, 0.5, 0.5])
    seen = np.ones(4, dtype=bool)
    plain = submission_counts(PLANNER, rates, seen)
    seeded = submission_counts(
        PLANNER, rates, seen, seeded=np.array([True, False, False, False]), seeded_floor=6
    )
    assert plain[0] < 6 and seeded[0] == 6 and seeded.sum() == plain.sum() == 32


@settings(max_examples=100, deadline=None)
@given(
    rates=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40),
    seen_share=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_submission_counts_spend_the_budget_within_floor_and_cap(rates, seen_share, seed):
    rng = np.random.default_rng(seed)
    seen = rng.uniform(size=len(rates)) < seen_share
    counts = submission_counts(PLANNER, np.array(rates), seen, step=int(rng.integers(1, 100)))
    assert counts.sum() == len(rates) * 8
    assert (counts >= np.where(seen, 2, 4)).all() and counts.max() <= PLANNER.n_max


def test_the_expected_deviation_is_the_binomial_mean_of_the_sample_deviation():
    std = expected_sample_std(np.array([0.0, 0.5, 1.0]), n_max=4)
    assert std[0].tolist() == std[2].tolist() == [0.0] * 5  # always the same outcome: no deviation
    # n = 2, p = 0.5: one success in two half the time, sample sd sqrt(1/2)
    assert std[1, 2] == pytest.approx(0.5 * np.sqrt(0.5))
    assert std[1, :2].tolist() == [0.0, 0.0]
