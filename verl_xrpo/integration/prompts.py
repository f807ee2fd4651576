"""A prompt of a training step as XRPO tracks it, and the step's metrics over such prompts.

Shared by the synchronous trainer's phases (``phases.py``) and the asynchronous trainers
(``async_trainer.py``), which learn from a prompt's group when it is trained instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verl_xrpo.core.allocation import PromptCounts


def question_text(messages: Sequence[dict[str, Any]] | str) -> str:
    """The text a prompt asks: its last user message (or the string itself)."""
    if isinstance(messages, str):
        return messages
    for message in reversed(list(messages)):
        if message.get("role") == "user":
            content = message.get("content", "")
            return content if isinstance(content, str) else str(content)
    return ""


@dataclass
class PromptRecord:
    uid: str
    messages: list[dict[str, Any]]
    question: str
    correct: list[float] = field(default_factory=list)
    seeded_sessions: int = 0
    seeded_correct: int = 0
    # Failed all of phase 1 and had exemplars that fit; in the control arm it is sampled without them.
    qualified: bool = False
    control: bool = False
    # Rollouts of the phase where seeding's lift is measured: the first later phase (phase 2), or the
    # step's one submission in planning.mode 'submission'.
    lift_sessions: int = 0
    lift_correct: int = 0
    # Rollouts asked for and not generated (a failed session, an agent loop without output).
    missing: int = 0
    # Rollouts asked for that are neither in nor known to be lost.
    pending: int = 0
    # A phase of this prompt failed (status "failure" or missing rollouts): it gets no more
    # rollouts this step, since a failure that repeats (a reward that raises, a broken row) would
    # take budget in every phase; its group keeps the rollouts that exist.
    failed: bool = False
    # Its rollouts all agreed the last time it was trained (planning.skip_agreed): it gets
    # skip_agreed_base rollouts in phase 1, no seeding, and later rollouts only if the other
    # prompts' caps cannot hold the budget.
    skipped: bool = False

    def snippet(self) -> str:
        """The start of the question, quoted, for logs and errors."""
        return repr(" ".join(self.question.split())[:60])

    def label(self) -> str:
        return f"{self.uid} {self.snippet()}"


def prompt_records(batch: Any) -> list[PromptRecord]:
    """The batch's prompts (verl's ``uid`` and ``raw_prompt``), each known by its question."""
    raw = batch["raw_prompt"]
    return [PromptRecord(str(uid), list(raw[i]), question_text(raw[i])) for i, uid in enumerate(batch["uid"])]


def prompt_counts(records: list[PromptRecord]) -> PromptCounts:
    """What the allocator needs to know of the step's prompts between phases."""
    return PromptCounts(
        [r.correct for r in records],
        pending=np.array([r.pending for r in records], dtype=np.int64),
        failed=np.array([r.failed for r in records], dtype=bool),
        skipped=np.array([r.skipped for r in records], dtype=bool),
    )


def step_metrics(records: list[PromptRecord]) -> dict[str, float]:
    """How the step's budget went, from every rollout's correctness (groups as they end the step)."""
    sizes = np.array([len(r.correct) for r in records])
    solved = np.array([sum(r.correct) for r in records])
    mixed, all_fail = (solved > 0) & (solved < sizes), solved == 0
    treated = [r for r in records if r.qualified and not r.control]
    control = [r for r in records if r.qualified and r.control]
    return {
        "xrpo/rollouts_per_prompt/mean": float(sizes.mean()),
        "xrpo/rollouts_per_prompt/min": float(sizes.min()),
        "xrpo/rollouts_per_prompt/max": float(sizes.max()),
        "xrpo/zero_variance_share/after_planning": zero_variance_share(records),
        "xrpo/budget/rollouts_mixed": float(sizes[mixed].sum()),
        "xrpo/budget/rollouts_all_fail": float(sizes[all_fail].sum()),
        "xrpo/budget/rollouts_all_correct": float(sizes[~mixed & ~all_fail].sum()),
        # Rollouts in groups of mixed correctness (some right, some wrong): those carry a signal.
        "xrpo/budget/mixed_group_rollout_share": float(sizes[mixed].sum() / max(sizes.sum(), 1)),
        "xrpo/seeding/prompts_seeded": float(sum(r.seeded_sessions > 0 for r in records)),
        "xrpo/seeding/seeded_rollouts": float(sum(r.seeded_sessions for r in records)),
        "xrpo/seeding/seeded_successes": float(sum(r.seeded_correct for r in records)),
        "xrpo/seeding/prompts_with_seeded_success": float(sum(r.seeded_correct > 0 for r in records)),
        # Seeding's lift, as an experiment (seeding.control_share > 0): rollouts of prompts that
        # qualified for seeding, with exemplars (treated) and without (control), in the phase where
        # seeding acts (phase 2; in planning.mode 'submission' the step's one submission).
        "xrpo/seeding/treated_rollouts": float(sum(r.lift_sessions for r in treated)),
        "xrpo/seeding/treated_successes": float(sum(r.lift_correct for r in treated)),
        "xrpo/seeding/control_rollouts": float(sum(r.lift_sessions for r in control)),
        "xrpo/seeding/control_successes": float(sum(r.lift_correct for r in control)),
        "xrpo/faults/failed_prompts": float(sum(r.failed for r in records)),
        "xrpo/faults/missing_rollouts": float(sum(r.missing for r in records)),
    }


def zero_variance_share(records: list[PromptRecord]) -> float:
    groups = [r.correct for r in records if r.correct]
    return float(np.mean([min(g) == max(g) for g in groups])) if groups else 0.0
