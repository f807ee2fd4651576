"""What a prompt is submitted with: its rollout count and, for seeding, its exemplars.

``Seeding`` finds exemplars for prompts and splits the prompts that qualify into the treated and
the control arm; the phases use it for their first later phase. ``plan_submission`` decides a whole
batch before it generates, from each prompt's history (``planning.mode=submission``): the
synchronous trainer's one phase, and every submission of the asynchronous trainers.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verl_xrpo.config import XRPOConfig
from verl_xrpo.core.allocation import submission_counts
from verl_xrpo.core.bank import ExemplarBank
from verl_xrpo.core.history import PromptHistory
from verl_xrpo.core.planner import RolloutPlanner
from verl_xrpo.core.seeding import build_seeded_messages
from verl_xrpo.integration.prompts import PromptRecord


@dataclass
class Seeding:
    settings: XRPOConfig
    bank: ExemplarBank | None
    tokenizer: Any
    max_prompt_tokens: int

    def exemplar_messages(self, records: list[PromptRecord], rows: Sequence[int]) -> dict[int, list[dict]]:
        """Seeded chat messages for ``rows`` from the bank, where exemplars are found and fit."""
        # a question to match and to solve: an empty prompt is never a retrieval query
        failing = [int(row) for row in rows if records[row].question.strip()]
        if self.bank is None or len(self.bank) == 0 or not failing:
            return {}
        hits = self.bank.retrieve(
            [records[row].question for row in failing], k=self.settings.seeding.num_exemplars
        )
        seeded = {}
        for row, found in zip(failing, hits, strict=True):
            if not found:
                continue
            messages = build_seeded_messages(
                records[row].messages, [ex for ex, _ in found], self.tokenizer, self.max_prompt_tokens
            )
            if messages is not None:
                seeded[row] = messages
        return seeded

    def arms(
        self, records: list[PromptRecord], seeded: dict[int, list[dict]], step: int
    ) -> dict[int, list[dict]]:
        """Every prompt with seeded messages qualifies; a random ``control_share`` of them is drawn
        unseeded (the control arm). Returns the treated prompts' messages."""
        qualifying = sorted(seeded)
        for row in qualifying:
            records[row].qualified = True
        control_share = self.settings.seeding.control_share
        if control_share > 0 and qualifying:
            # The same step and prompts give the same arms, so a rerun of a step is reproducible.
            rng = np.random.default_rng([step, zlib.crc32(" ".join(r.uid for r in records).encode())])
            controls = rng.random(len(qualifying)) < control_share
            for row, control in zip(qualifying, controls, strict=True):
                if control:
                    records[row].control = True
                    del seeded[row]
        return seeded


def plan_submission(
    records: list[PromptRecord],
    history: PromptHistory,
    planner: RolloutPlanner,
    seeding: Seeding,
    step: int,
    rollouts_drawn: int,
    timing: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, dict[int, list[dict]]]:
    """Every prompt's count, seeding's rollouts per prompt, and the seeded prompts' messages, from the
    history alone (next-visit seeding: a prompt whose last visit failed every rollout is drawn under
    exemplars as a whole group). ``timing`` gains the seconds spent in "retrieval" and "planning"."""
    settings = seeding.settings
    start = time.perf_counter()
    questions = [r.question for r in records]
    failed_last = [row for row, q in enumerate(questions) if history.failed_all(q)]
    seeded = seeding.arms(records, seeding.exemplar_messages(records, failed_last), step)
    timing["retrieval"] = timing.get("retrieval", 0.0) + time.perf_counter() - start
    start = time.perf_counter()
    qualified = np.array([r.qualified for r in records], dtype=bool)
    counts = submission_counts(
        planner,
        history.estimate(questions),
        np.array([history.seen(q) for q in questions], dtype=bool),
        seeded=qualified,
        seeded_floor=settings.seeding.rollouts_per_prompt,
        step=step,
        rollouts_drawn=rollouts_drawn,
    )
    # seeding's share of the batch: the seeded groups that fit in it, in batch order (one at least);
    # a group left out is drawn as any other, not as the seeding experiment's treated arm
    cap = int(settings.seeding.max_budget_share * planner.step_budget(len(records)))
    reserved = np.zeros(len(records), dtype=np.int64)
    for row in sorted(seeded):
        if reserved.sum() and reserved.sum() + counts[row] > cap:
            del seeded[row]
            records[row].qualified = False
        else:
            reserved[row] = counts[row]
    timing["planning"] = timing.get("planning", 0.0) + time.perf_counter() - start
    return counts, reserved, seeded
