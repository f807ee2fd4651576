"""The rollout planner: budget, bounds, priorities from the formulas, and its greedy rule."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from verl_xrpo.config import PlanningConfig, XRPOConfigError
from verl_xrpo.core.planner import RolloutPlanner, reward_statistics, seeding_grants


def run_step(planner: RolloutPlanner, rates: np.ndarray, rng: np.random.Generator, step: int = 5):
    """Phase 1 plus every later phase, with Bernoulli rewards; returns per-prompt reward lists."""
    rewards = [
        (rng.uniform(size=c) < p).astype(float)
        for c, p in zip(planner.base_counts(len(rates)), rates, strict=False)
    ]
    for budget in planner.phase_budgets(len(rates)):
        extra = planner.plan_phase(rewards, budget, step=step).extra
        assert extra.sum() == budget
        rewards = [
            np.concatenate([r, (rng.uniform(size=e) < p)])
            for r, e, p in zip(rewards, extra, rates, strict=False)
        ]
    return rewards


@settings(max_examples=150, deadline=None)
@given(
    num_prompts=st.integers(1, 40),
    n_base=st.integers(2, 6),
    extra_per_prompt=st.integers(0, 12),
    cap_slack=st.integers(0, 10),
    num_phases=st.integers(2, 5),
    ucb_lambda=st.floats(0.0, 2.0),
    seed=st.integers(0, 2**16),
)
def test_budget_is_spent_exactly_within_bounds(
    num_prompts, n_base, extra_per_prompt, cap_slack, num_phases, ucb_lambda, seed
):
    rollout_n = n_base + extra_per_prompt
    config = PlanningConfig(
        n_base=n_base, n_max=rollout_n + cap_slack, num_phases=num_phases, ucb_lambda=ucb_lambda
    )
    planner = RolloutPlanner(config, rollouts_per_prompt=rollout_n)
    rng = np.random.default_rng(seed)
    counts = np.array([len(r) for r in run_step(planner, rng.uniform(size=num_prompts), rng)])
    assert counts.sum() == num_prompts * rollout_n == planner.step_budget(num_prompts)
    assert counts.min() >= n_base
    assert counts.max() <= rollout_n + cap_slack


def test_phase_budgets_share_the_rest_evenly():
    planner = RolloutPlanner(PlanningConfig(n_base=4, num_phases=3), rollouts_per_prompt=8)
    assert planner.phase_budgets(5) == [10, 10]
    planner = RolloutPlanner(PlanningConfig(n_base=3, num_phases=3), rollouts_per_prompt=8)
    assert planner.phase_budgets(5) == [13, 12]
    assert planner.base_counts(5).tolist() == [3] * 5


def half_width(n: int, s: float, alpha: float) -> float:
    return stats.t.ppf(1 - alpha / 2, n - 1) * s / math.sqrt(n)


def test_priorities_equal_the_formulas():
    alpha, lam, step = 0.05, 0.3, 10
    planner = RolloutPlanner(PlanningConfig(alpha=alpha, ucb_lambda=lam, n_base=3), rollouts_per_prompt=8)
    rewards = [[1, 0, 0, 1], [1, 1, 0], [0, 0, 0, 0, 0]]
    plan = planner.plan_phase(rewards, budget=0, step=step)
    for q, r in enumerate(rewards):
        n, s = len(r), float(np.std(r, ddof=1))
        delta = half_width(n, s, alpha) - half_width(n + 1, s, alpha)
        phi = lam * math.sqrt(math.log(1 + step) / n)
        assert plan.ci_shrink[q] == pytest.approx(delta, rel=1e-12, abs=1e-15)
        assert plan.bonus[q] == pytest.approx(phi, rel=1e-12)
        assert plan.priorities[q] == pytest.approx(delta + phi, rel=1e-12)
    assert plan.ci_shrink[2] == 0.0  # all-equal group: only the bonus can win it rollouts


def test_time_mode_rollouts_uses_rollouts_drawn():
    config = PlanningConfig(ucb_lambda=1.0, time_mode="rollouts")
    planner = RolloutPlanner(config, rollouts_per_prompt=8)
    plan = planner.plan_phase([[0, 1, 1, 0]], budget=0, step=3, rollouts_drawn=999)
    assert plan.bonus[0] == pytest.approx(math.sqrt(math.log(1000) / 4))


def reference_greedy(planner: RolloutPlanner, rewards, budget: int, step: int) -> np.ndarray:
    """The rule as the design states it: one rollout at a time to the highest priority, recomputed."""
    counts, std = reward_statistics(rewards)
    counts = counts.copy()
    extra = np.zeros(len(rewards), dtype=int)

    def key(q):
        shrink, bonus = planner.priorities(counts[q : q + 1], std[q : q + 1], step)
        return (-(shrink[0] + bonus[0]), counts[q], q)

    heap = [key(q) for q in range(len(rewards)) if counts[q] < planner.n_max]
    heapq.heapify(heap)
    for _ in range(budget):
        _, _, q = heapq.heappop(heap)
        extra[q] += 1
        counts[q] += 1
        if counts[q] < planner.n_max:
            heapq.heappush(heap, key(q))
    return extra


@settings(max_examples=200, deadline=None)
@given(
    groups=st.lists(st.lists(st.integers(0, 1), min_size=0, max_size=9), min_size=1, max_size=12),
    ucb_lambda=st.sampled_from([0.0, 0.05, 0.5, 3.0]),
    step=st.integers(0, 1000),
    data=st.data(),
)
def test_vectorised_plan_equals_one_at_a_time_greedy(groups, ucb_lambda, step, data):
    planner = RolloutPlanner(PlanningConfig(ucb_lambda=ucb_lambda, n_base=2, n_max=10), rollouts_per_prompt=8)
    room = sum(max(planner.n_max - len(g), 0) for g in groups)
    budget = data.draw(st.integers(0, room))
    expected = reference_greedy(planner, groups, budget, step)
    np.testing.assert_array_equal(planner.plan_phase(groups, budget, step=step).extra, expected)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(2, 12),
    successes=st.tuples(st.integers(0, 12), st.integers(0, 12)),
    others=st.lists(st.tuples(st.integers(2, 12), st.integers(0, 12)), max_size=6),
    budget_fraction=st.floats(0, 1),
    ucb_lambda=st.sampled_from([0.0, 0.05, 1.0]),
)
def test_more_variance_never_gets_fewer_rollouts_at_equal_counts(
    n, successes, others, budget_fraction, ucb_lambda
):
    def group(size, k):
        k = min(k, size)
        return [1] * k + [0] * (size - k)

    a, b = group(n, successes[0]), group(n, successes[1])
    if np.std(a) < np.std(b):
        a, b = b, a
    rewards = [a, b] + [group(size, k) for size, k in others]
    planner = RolloutPlanner(
        PlanningConfig(ucb_lambda=ucb_lambda, n_base=2, n_max=16), rollouts_per_prompt=12
    )
    room = sum(16 - len(r) for r in rewards)
    extra = planner.plan_phase(rewards, int(budget_fraction * room), step=7).extra
    assert extra[0] >= extra[1]


def test_all_equal_groups_share_evenly_without_bonus():
    planner = RolloutPlanner(PlanningConfig(ucb_lambda=0.0, n_base=4), rollouts_per_prompt=8)
    rewards = [[1, 1, 1, 1]] * 3 + [[0, 0, 0, 0]] * 3
    extra = planner.plan_phase(rewards, budget=12, step=10).extra
    assert extra.tolist() == [2] * 6


def test_mixed_groups_win_over_all_equal_ones():
    planner = RolloutPlanner(PlanningConfig(n_base=4), rollouts_per_prompt=8)
    rewards = [[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]]
    extra = planner.plan_phase(rewards, budget=8, step=10).extra
    assert extra[0] + extra[3] > extra[1] + extra[2]
    assert extra[0] >= extra[3]  # p = 0.5 has the widest interval


def test_prompts_with_fewer_than_two_rewards_come_first():
    planner = RolloutPlanner(PlanningConfig(n_base=2), rollouts_per_prompt=4)
    extra = planner.plan_phase([[1, 0, 1, 0], [], [1]], budget=3, step=1).extra
    assert extra.tolist() == [0, 2, 1]


def test_plan_is_deterministic():
    planner = RolloutPlanner(PlanningConfig(), rollouts_per_prompt=16)
    rng = np.random.default_rng(3)
    rewards = [rng.integers(0, 2, size=4) for _ in range(64)]
    first = planner.plan_phase(rewards, 200, step=9)
    second = planner.plan_phase([r.copy() for r in rewards], 200, step=9)
    np.testing.assert_array_equal(first.extra, second.extra)
    np.testing.assert_array_equal(first.priorities, second.priorities)


def test_planning_off_is_uniform_grpo():
    planner = RolloutPlanner(PlanningConfig(enable=False), rollouts_per_prompt=8)
    assert planner.base_counts(3).tolist() == [8, 8, 8]
    assert planner.phase_budgets(3) == []
    with pytest.raises(RuntimeError, match=r"planning\.enable=false"):
        planner.plan_phase([[1, 0]], 1, step=0)


@pytest.mark.parametrize(
    ("kwargs", "rollout_n", "key"),
    [
        ({"n_base": 1}, 8, "planning.n_base=1"),
        ({"n_base": 9}, 8, "planning.n_base=9"),
        ({"n_base": 4, "n_max": 3}, 8, "planning.n_max=3"),
        ({"n_max": 6}, 8, "planning.n_max=6"),
        ({"ucb_lambda": -0.1}, 8, "planning.ucb_lambda=-0.1"),
        ({"alpha": 1.5}, 8, "planning.alpha=1.5"),
        ({"num_phases": 1}, 8, "planning.num_phases=1"),
        ({"time_mode": "epoch"}, 8, "planning.time_mode='epoch'"),
        ({"skip_agreed_base": 0}, 8, "planning.skip_agreed_base=0"),
        ({"skip_agreed_base": 5}, 8, "planning.skip_agreed_base=5"),
        ({"overlap_share": 0.0}, 8, "planning.overlap_share=0.0"),
        ({"overlap_share": 1.5}, 8, "planning.overlap_share=1.5"),
        ({"skip_agreed": True, "num_phases": 1, "n_base": 8}, 8, "planning.skip_agreed=true"),
    ],
)
def test_impossible_settings_fail_at_construction_naming_the_key(kwargs, rollout_n, key):
    with pytest.raises(
        XRPOConfigError, match="algorithm.xrpo." + key.replace(".", r"\.").replace("(", r"\(")
    ):
        RolloutPlanner(PlanningConfig(**kwargs), rollouts_per_prompt=rollout_n)


def test_bad_rewards_and_budgets_are_refused():
    planner = RolloutPlanner(PlanningConfig(n_base=2, n_max=4), rollouts_per_prompt=4)
    with pytest.raises(ValueError, match="NaN"):
        planner.plan_phase([[1.0, float("nan")]], 1, step=0)
    with pytest.raises(ValueError, match="cap n_max=4"):
        planner.plan_phase([[1, 0], [0, 1]], 5, step=0)
    with pytest.raises(ValueError, match="negative"):
        planner.plan_phase([[1, 0]], -1, step=0)


@settings(max_examples=200, deadline=None)
@given(
    eligible=st.integers(0, 64),
    num_prompts_extra=st.integers(0, 64),
    n_base=st.integers(2, 6),
    extra_per_prompt=st.integers(1, 12),
    num_phases=st.integers(2, 4),
    per_prompt=st.integers(1, 6),
    max_share=st.floats(0.01, 1.0),
)
def test_seeding_share_is_bounded_and_reaches_every_prompt_it_can(
    eligible, num_prompts_extra, n_base, extra_per_prompt, num_phases, per_prompt, max_share
):
    num_prompts = eligible + num_prompts_extra
    planner = RolloutPlanner(
        PlanningConfig(n_base=n_base, num_phases=num_phases), rollouts_per_prompt=n_base + extra_per_prompt
    )
    budgets = planner.phase_budgets(num_prompts)
    grants = seeding_grants(eligible, sum(budgets), budgets[0] if budgets else 0, per_prompt, max_share)
    assert len(grants) == eligible
    assert grants.sum() <= (budgets[0] if budgets else 0)
    assert grants.sum() <= max(int(max_share * sum(budgets)), eligible)  # the cap, never below 1 each
    if eligible:
        assert grants.max() <= per_prompt and grants.max() - grants.min() <= 1  # shared evenly
        if budgets[0] >= eligible:
            assert grants.min() >= 1  # every qualifying prompt is seeded while phase 2 has room


def test_skipped_prompts_start_with_fewer_rollouts_and_the_later_phases_get_what_they_free():
    planner = RolloutPlanner(PlanningConfig(skip_agreed=True, skip_agreed_base=2), rollouts_per_prompt=8)
    counts = planner.base_counts(4, skipped=np.array([True, False, True, False]))
    assert counts.tolist() == [2, 4, 2, 4]
    budgets = planner.phase_budgets(4, int(counts.sum()))
    assert sum(budgets) + counts.sum() == planner.step_budget(4) == 32
    assert planner.phase_budgets(4) == [8, 8]  # no prompt skipped: the paper's split
    off = RolloutPlanner(PlanningConfig(enable=False), rollouts_per_prompt=8)
    assert off.base_counts(2, skipped=np.array([True, True])).tolist() == [8, 8]  # GRPO ignores it
