"""Hierarchical rollout planning (``docs/algorithm.md`` section 1).

A step has the same rollout budget as GRPO: ``num_prompts * rollouts_per_prompt``. Phase 1 gives every
prompt ``n_base`` rollouts; the rest is shared out over the later phases, one rollout at a time, to the
prompt with the highest priority

    Pi_q = Delta_q + phi_q
    Delta_q = s_q * (t_{n-1} / sqrt(n) - t_n / sqrt(n + 1))        (CI half-width shrink, s_q fixed)
    phi_q   = lambda * sqrt(log(1 + T) / n)                           (UCB bonus)

recomputed after every grant. Each prompt's priority only falls as its count grows, so the greedy
sequence of grants equals taking the ``budget`` largest entries of the table of marginal priorities
``Pi_q(n_q), Pi_q(n_q + 1), ...``: that is how it is computed here, without a loop over grants.
Ties go to the prompt with fewer rollouts, then to the lower index, so equal prompts share evenly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

from verl_xrpo.config import CONFIG_ROOT, PlanningConfig, SeedingConfig, XRPOConfigError


@dataclass(frozen=True)
class PhasePlan:
    """What one later phase adds: ``extra[q]`` more rollouts for prompt q."""

    extra: np.ndarray  # (P,) int64
    priorities: np.ndarray  # (P,) float64, Pi_q at the start of the phase
    ci_shrink: np.ndarray  # (P,) float64, Delta_q at the start of the phase
    bonus: np.ndarray  # (P,) float64, phi_q at the start of the phase


@lru_cache(maxsize=64)
def _shrink_factors(alpha: float, n_max: int) -> np.ndarray:
    """g[n] = t_{n-1}/sqrt(n) - t_n/sqrt(n+1) for n = 0..n_max (so Delta = s * g[n]); g[0], g[1] unused."""
    n = np.arange(n_max + 2, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf(1.0 - alpha / 2.0, np.maximum(n - 1.0, 1.0))  # t[n] has n-1 degrees of freedom
        half_width_per_unit_s = t / np.sqrt(n)  # h(n) / s
    g = half_width_per_unit_s[:-1] - half_width_per_unit_s[1:]
    g[:2] = np.inf
    g.setflags(write=False)
    return g


def reward_statistics(rewards: Sequence[Sequence[float] | np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt count and sample standard deviation (ddof=1; 0 where fewer than 2 rewards)."""
    counts = np.fromiter((len(r) for r in rewards), dtype=np.int64, count=len(rewards))
    if counts.sum() == 0:
        return counts, np.zeros(len(rewards))
    flat = np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1) for r in rewards])
    if not np.all(np.isfinite(flat)):
        raise ValueError("rewards contain NaN or infinity; the planner needs finite per-rollout rewards")
    owner = np.repeat(np.arange(len(rewards)), counts)
    sums = np.bincount(owner, weights=flat, minlength=len(rewards))
    means = np.divide(sums, counts, out=np.zeros(len(rewards)), where=counts > 0)
    squares = np.bincount(owner, weights=(flat - means[owner]) ** 2, minlength=len(rewards))
    std = np.sqrt(np.divide(squares, counts - 1, out=np.zeros(len(rewards)), where=counts > 1))
    return counts, std


class RolloutPlanner:
    """Splits one step's rollout budget over prompts and phases.

    ``rollouts_per_prompt`` is the uniform budget (verl's ``rollout.n``): the step's total is always
    ``num_prompts * rollouts_per_prompt``, whatever the planner decides.
    """

    def __init__(self, config: PlanningConfig, rollouts_per_prompt: int):
        self.config = config
        self.rollouts_per_prompt = rollouts_per_prompt
        if rollouts_per_prompt < 1:
            raise XRPOConfigError(
                f"actor_rollout_ref.rollout.n={rollouts_per_prompt} must be at least 1 (it sets the budget)."
            )
        self.n_max = config.n_max if config.n_max is not None else 2 * rollouts_per_prompt
        if not config.enable:
            return
        if config.n_base > rollouts_per_prompt:
            raise XRPOConfigError(
                f"{CONFIG_ROOT}.planning.n_base={config.n_base} is above the budget of "
                f"rollout.n={rollouts_per_prompt} rollouts per prompt. Lower n_base or raise rollout.n."
            )
        if self.n_max < rollouts_per_prompt:
            raise XRPOConfigError(
                f"{CONFIG_ROOT}.planning.n_max={self.n_max} is below rollout.n={rollouts_per_prompt}, so the "
                f"step's budget could not be spent. Raise n_max or set it to null (2 x rollout.n)."
            )
        if config.num_phases == 1 and config.skip_agreed:
            raise XRPOConfigError(
                f"{CONFIG_ROOT}.planning.skip_agreed=true frees budget for later phases, and "
                f"planning.num_phases=1 has none. Use num_phases >= 2 or skip_agreed=false."
            )
        if config.num_phases == 1 and config.n_base != rollouts_per_prompt:
            raise XRPOConfigError(
                f"{CONFIG_ROOT}.planning.num_phases=1 leaves no phase for the rest of the budget "
                f"(n_base={config.n_base} < rollout.n={rollouts_per_prompt}). Use num_phases >= 2."
            )
        self._g = _shrink_factors(config.alpha, self.n_max)

    def base_counts(self, num_prompts: int, skipped: np.ndarray | None = None) -> np.ndarray:
        """Rollouts per prompt in phase 1 (all of them when planning is off); ``skipped`` prompts
        (``planning.skip_agreed``) get ``skip_agreed_base``."""
        per_prompt = self.config.n_base if self.config.enable else self.rollouts_per_prompt
        counts = np.full(num_prompts, per_prompt, dtype=np.int64)
        if skipped is not None and self.config.enable:
            counts[np.asarray(skipped, dtype=bool)] = self.config.skip_agreed_base
        return counts

    def phase_budgets(self, num_prompts: int, phase_one: int | None = None) -> list[int]:
        """Rollouts to hand out in each later phase; they add up to the rest of the step's budget
        after the ``phase_one`` rollouts of phase 1 (default: ``n_base`` for every prompt)."""
        if not self.config.enable:
            return []
        if phase_one is None:
            phase_one = num_prompts * self.config.n_base
        rest = self.step_budget(num_prompts) - phase_one
        phases = self.config.num_phases - 1
        share, remainder = divmod(rest, phases) if phases else (0, 0)
        return [share + (1 if i < remainder else 0) for i in range(phases)]

    def exploration_time(self, step: int, rollouts_drawn: int) -> int:
        """T in the UCB bonus, as chosen by ``planning.time_mode``."""
        return step if self.config.time_mode == "step" else rollouts_drawn

    def priorities(self, counts: np.ndarray, std: np.ndarray, time: int) -> tuple[np.ndarray, np.ndarray]:
        """(Delta, phi) for prompts with ``counts`` rollouts so far; under 2 rollouts gives +inf Delta."""
        counts = np.asarray(counts, dtype=np.int64)
        g = self._g[np.clip(counts, 2, len(self._g) - 1)]
        shrink = np.where(counts < 2, np.inf, std * g)
        bonus = self.config.ucb_lambda * np.sqrt(np.log1p(max(time, 0)) / np.maximum(counts, 1))
        bonus = np.where(counts == 0, np.inf, bonus)
        return shrink, bonus

    def plan_phase(
        self,
        rewards: Sequence[Sequence[float] | np.ndarray],
        budget: int,
        step: int,
        rollouts_drawn: int = 0,
        reserved: np.ndarray | None = None,
    ) -> PhasePlan:
        """Grant ``budget`` more rollouts given each prompt's rewards so far (any group sizes).

        ``reserved[q]`` rollouts of this phase are already promised to prompt q (seeding's share):
        they count towards its n and its cap, and are not part of ``extra``.
        Rewards should be correctness (0/1); any finite values work. Deterministic for the same input.
        """
        if not self.config.enable:
            raise RuntimeError(
                "planning is off (algorithm.xrpo.planning.enable=false): there are no later phases"
            )
        counts, std = reward_statistics(rewards)
        if reserved is not None:
            counts = counts + np.asarray(reserved, dtype=np.int64)
        room = np.maximum(self.n_max - counts, 0)
        if budget < 0:
            raise ValueError(f"a phase budget cannot be negative, got {budget}")
        if budget > room.sum():
            raise ValueError(
                f"cannot place {budget} rollouts: the per-prompt cap n_max={self.n_max} "
                f"leaves room for {room.sum()}"
            )
        time = self.exploration_time(step, rollouts_drawn)
        shrink, bonus = self.priorities(counts, std, time)
        extra = self.grants_by_priority(counts, std, room, budget, time)
        return PhasePlan(extra=extra, priorities=shrink + bonus, ci_shrink=shrink, bonus=bonus)

    def grants_by_priority(
        self, counts: np.ndarray, std: np.ndarray, room: np.ndarray, budget: int, time: int
    ) -> np.ndarray:
        """``budget`` rollouts granted one at a time to the highest priority for prompts with
        ``counts`` rollouts and reward deviation ``std``, at most ``room`` each. ``std`` is one value
        a prompt (held fixed, as the paper's shrink holds it) or, shape (P, n_max + 1), one a count."""
        num_prompts = len(counts)
        extra = np.zeros(num_prompts, dtype=np.int64)
        if budget == 0:
            return extra
        # Table of marginal priorities: column j is the priority of a prompt's (j+1)-th grant this phase.
        # No prompt can take more than `budget` grants, so the table is at most budget columns wide.
        width = int(min(room.max(), budget))
        levels = counts[:, None] + np.arange(width)[None, :]
        if std.ndim == 2:
            level_std = np.take_along_axis(std, np.minimum(levels, std.shape[1] - 1), axis=1).ravel()
        else:
            level_std = np.repeat(std, width)
        shrink, bonus = self.priorities(levels.ravel(), level_std, time)
        table = (shrink + bonus).reshape(num_prompts, width)
        valid = np.arange(width)[None, :] < room[:, None]
        # Sort by priority (high first), then fewer rollouts, then lower prompt index.
        rows = np.broadcast_to(np.arange(num_prompts)[:, None], table.shape)[valid]
        order = np.lexsort((rows, levels[valid], -table[valid]))
        chosen_rows = rows[order[:budget]]
        np.add.at(extra, chosen_rows, 1)
        return extra

    def seeding_share(self, eligible: int, num_prompts: int, seeding: SeedingConfig) -> np.ndarray:
        """Seeding's phase-2 rollouts for ``eligible`` prompts (``seeding_grants``), within ``n_max``."""
        budgets = self.phase_budgets(num_prompts)
        if not budgets:
            return np.zeros(eligible, dtype=np.int64)
        per_prompt = min(seeding.rollouts_per_prompt, self.n_max - self.config.n_base)
        return seeding_grants(eligible, sum(budgets), budgets[0], per_prompt, seeding.max_budget_share)

    def step_budget(self, num_prompts: int) -> int:
        """Rollouts in a whole step: the same as GRPO with ``rollout.n`` per prompt."""
        return num_prompts * self.rollouts_per_prompt


def seeding_grants(
    eligible: int, later_budget: int, first_phase_budget: int, per_prompt: int, max_share: float
) -> np.ndarray:
    """Seeding's rollouts for ``eligible`` prompts, placed in the first later phase.

    Each prompt gets ``per_prompt``, unless that exceeds ``max_share`` of the later phases' budget;
    the cap never cuts below one rollout per prompt, and the first later phase must hold it all.
    Rollouts go evenly, any remainder to the prompts listed first.
    """
    if eligible <= 0:
        return np.zeros(0, dtype=np.int64)
    cap = max(int(max_share * later_budget), eligible)
    total = min(eligible * per_prompt, cap, first_phase_budget)
    share, remainder = divmod(total, eligible)
    return np.array([share + (1 if i < remainder else 0) for i in range(eligible)], dtype=np.int64)
