"""A step's rollout counts: the one place that turns the planner's priorities into counts.

``RolloutPlanner`` (``planner.py``) says how much each phase may spend and which prompt would gain
most from one more rollout; this module applies the rules around it that every caller shares: the
rollouts still running count towards their prompt's n and cap, prompts whose generation failed get
nothing more this step, seeding's held rollouts come first, prompts that agreed last time
(``planning.skip_agreed``) take only what the others' caps cannot hold, and what nobody can hold is
lost. The trainer (``integration/phases.py``), the allocation benchmark and the generation model all
call ``later_phase_grants``; none keeps a copy of these rules.

``submission_counts`` decides a whole step's counts before it generates (``planning.mode``
'submission'), from each prompt's estimated success rate (``history.py``): floors first, then the
step's budget granted one rollout at a time by the same priority. Where the phases use the
deviation their rollouts showed, a submission uses the one it can expect: the sample deviation of
n rollouts at the estimated rate, averaged over their binomial outcomes (a prompt that nearly
always fails will most often show none, as phase 1 would).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from verl_xrpo.core.planner import RolloutPlanner


@dataclass
class PromptCounts:
    """What a step knows of its prompts between phases, one entry per prompt."""

    rewards: Sequence[Sequence[float] | np.ndarray]  # correctness of the rollouts that are in
    pending: np.ndarray | None = None  # rollouts asked for and neither in nor lost
    failed: np.ndarray | None = None  # a generation of the prompt failed: no more this step
    skipped: np.ndarray | None = None  # agreed on its last visit: only what the others cannot hold
    sizes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        size = len(self.rewards)
        self.pending = _or_zeros(self.pending, size, np.int64)
        self.failed = _or_zeros(self.failed, size, bool)
        self.skipped = _or_zeros(self.skipped, size, bool)
        self.sizes = np.fromiter((len(r) for r in self.rewards), dtype=np.int64, count=size)

    def cap_room(self, n_max: int) -> np.ndarray:
        """Rollouts each prompt can still be given: the cap less those in and those still running."""
        return n_max - self.sizes - self.pending


def later_phase_grants(
    planner: RolloutPlanner,
    prompts: PromptCounts,
    budget: int,
    held: np.ndarray | None = None,
    step: int = 1,
    rollouts_drawn: int = 0,
) -> np.ndarray:
    """One later phase's rollouts per prompt: ``held`` (seeding's share) plus the planner's grants.

    Prompts whose generation failed are left out; their share goes to the others up to the cap.
    Skipped prompts are left out of the planning and take, round the table, only what the planned
    prompts cannot hold; what nobody can hold is not granted (the caller counts it as lost).
    """
    healthy = ~prompts.failed
    planned = healthy & ~prompts.skipped
    held = np.zeros(len(prompts.sizes), dtype=np.int64) if held is None else np.asarray(held, np.int64)
    extra = np.where(planned, held, 0)
    rows = np.flatnonzero(planned)
    room_left = prompts.cap_room(planner.n_max)
    if len(rows):
        room = int(np.maximum(room_left[rows] - extra[rows], 0).sum())
        plan = planner.plan_phase(
            [prompts.rewards[row] for row in rows],
            min(budget - int(extra.sum()), room),
            step=step,
            rollouts_drawn=rollouts_drawn + int(prompts.sizes.sum()),
            reserved=extra[rows] + prompts.pending[rows],
        )
        extra[rows] += plan.extra
    takers = np.where(healthy & prompts.skipped, room_left, 0) - extra
    return extra + deal_round_robin(takers, budget - int(extra.sum()))


def submission_counts(
    planner: RolloutPlanner,
    success_rates: np.ndarray,
    seen: np.ndarray,
    seeded: np.ndarray | None = None,
    seeded_floor: int = 0,
    step: int = 1,
    rollouts_drawn: int = 0,
) -> np.ndarray:
    """Every prompt's rollouts for one step, adding up to the step's budget, each within the cap.

    Floors: ``n_base`` for a prompt not ``seen`` before (nothing is known of it), ``skip_agreed_base``
    for one seen before, at least ``seeded_floor`` (at most ``rollout.n``) for a ``seeded`` one.
    """
    config, n = planner.config, planner.rollouts_per_prompt
    floors = np.where(np.asarray(seen, dtype=bool), config.skip_agreed_base, config.n_base)
    if seeded is not None:
        floors = np.where(np.asarray(seeded, dtype=bool), np.maximum(floors, min(seeded_floor, n)), floors)
    floors = floors.astype(np.int64)
    rates = np.clip(np.asarray(success_rates, dtype=np.float64), 0.0, 1.0)
    time = planner.exploration_time(step, rollouts_drawn)
    budget = planner.step_budget(len(floors)) - int(floors.sum())
    std = expected_sample_std(rates, planner.n_max)
    return floors + planner.grants_by_priority(floors, std, planner.n_max - floors, budget, time)


def expected_sample_std(rates: np.ndarray, n_max: int) -> np.ndarray:
    """(P, n_max + 1): the mean sample deviation (ddof 1) of n Bernoulli(p) rewards, for n = 0..n_max;
    0 below two rewards."""
    out = np.zeros((len(rates), n_max + 1))
    p = np.asarray(rates, dtype=np.float64)[:, None]
    for n in range(2, n_max + 1):
        k = np.arange(n + 1)[None, :]
        std = np.sqrt(k * (n - k) / (n * (n - 1)))  # k ones among n
        pmf = special.comb(n, k) * p**k * (1.0 - p) ** (n - k)
        out[:, n] = (pmf * std).sum(axis=1)
    return out


def deal_round_robin(room: np.ndarray, amount: int) -> np.ndarray:
    """``amount`` rollouts dealt one at a time over the rows in order, round after round, never past
    a row's ``room``; what no row has room for is not dealt."""
    room = np.maximum(np.asarray(room, dtype=np.int64), 0)
    dealt = np.zeros_like(room)
    while amount > 0 and (open_rows := np.flatnonzero(dealt < room)).size:
        open_rows = open_rows[:amount]
        dealt[open_rows] += 1
        amount -= len(open_rows)
    return dealt


def _or_zeros(values: np.ndarray | None, size: int, dtype: type) -> np.ndarray:
    return np.zeros(size, dtype=dtype) if values is None else np.asarray(values, dtype=dtype)
