"""XRPO in verl's asynchronous V1 trainers (``trainer.v1.trainer_mode=colocate_async`` and
``separate_async``), selected by those names when ``algorithm.adv_estimator=xrpo``.

verl's asynchronous trainers train finished prompt groups while others still generate, so there
is no step-wide moment between "generated" and "trained" to plan a later phase in. XRPO works at
the two moments every prompt passes through:

- **Submission** (``_submit_batch_to_rollout``: the step's batch, the warm-up batches and the
  refills of evicted groups): each prompt's rollout count and exemplars are decided from its
  history (``submission.plan_submission``, as ``planning.mode=submission`` in the synchronous
  trainer) and handed to verl as its own per-prompt ``__rollout_n__`` and ``raw_prompt``, which
  verl also persists with the prompt for a resume. A batch of P prompts asks for P x rollout.n.
- **Training** (``_compute_advantage``, which sees whole groups only): the trained groups' outcomes
  go into the history and their correct responses into the bank, and the step's metrics are
  computed over them; then the advantage is sharpened as in the synchronous trainer.

The budget, measured on what is trained: ``xrpo/budget/rollouts_per_trained_prompt/cumulative``
averages the rollouts of every group trained so far (``xrpo/rollouts_per_prompt/mean``: this
step's); groups verl drops as stale or failed are never trained and are not counted. A prompt's
plan (its question, count, arm) is kept from submission to training and saved with the
checkpoint, so a resumed run learns from the groups verl re-issues.

verl's registry maps each of these mode names to its own trainer class; with the plugin installed
it maps them to a ``ModeDispatch`` that builds verl's class unchanged for every other estimator.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY
from verl.trainer.ppo.v1.trainer_colocate_async import PPOTrainerColocateAsync
from verl.trainer.ppo.v1.trainer_separate_async import PPOTrainerSeparateAsync
from verl.utils import tensordict_utils as tu

from verl_xrpo.eval.rollout_dump import is_padding
from verl_xrpo.integration import transfer_queue as xtq
from verl_xrpo.integration.checks import is_xrpo_run
from verl_xrpo.integration.prompts import PromptRecord, prompt_records, step_metrics
from verl_xrpo.integration.request_keys import ROLLOUT_N_KEY
from verl_xrpo.integration.submission import Seeding, plan_submission
from verl_xrpo.integration.trainer import XRPOTrainerBase

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

PLANS_FILE = "inflight_plans.json"  # in the checkpoint's XRPO folder, beside the bank and history


@dataclass(frozen=True)
class Plan:
    """What a prompt was submitted with, kept until its group is trained."""

    question: str
    rollouts: int
    seeded: bool
    qualified: bool  # qualified for seeding (treated, or in the control arm)
    control: bool
    submitted_step: int


@dataclass
class StepTrained:
    """The groups trained in one step, over all its local updates."""

    records: list[PromptRecord] = field(default_factory=list)
    ages: list[int] = field(default_factory=list)  # steps since each group's submission
    unplanned: int = 0

    def metrics(self) -> dict[str, float]:
        return {
            **step_metrics(self.records),
            "xrpo/async/submitted_steps_ago/mean": float(np.mean(self.ages)),
        }


class XRPOAsyncTrainerBase(XRPOTrainerBase):
    AUTO_PLANNING_MODE = "submission"

    def __init__(self, config: DictConfig):
        self.plans: dict[str, Plan] = {}
        self.trained_groups = 0
        self.trained_rollouts = 0
        self.step_trained = StepTrained()
        super().__init__(config)

    # ---- submission ---------------------------------------------------------------------------

    def _submit_batch_to_rollout(self, batch) -> int:
        records = prompt_records(batch)
        seeded: dict[int, list[dict]] = {}
        if self.history is not None:
            timing: dict[str, float] = {}
            seeding = Seeding(
                self.xrpo, self.bank, self.tokenizer, int(self.config.actor_rollout_ref.rollout.prompt_length)
            )
            counts, _, seeded = plan_submission(
                records, self.history, self.planner, seeding, self.global_steps, self.rollouts_drawn, timing
            )
        else:
            counts = np.full(len(records), self.planner.rollouts_per_prompt, dtype=np.int64)
        tu.assign_non_tensor_stack(batch, ROLLOUT_N_KEY, [int(n) for n in counts])
        if seeded:
            tu.assign_non_tensor_stack(
                batch, "raw_prompt", [seeded.get(row, records[row].messages) for row in range(len(records))]
            )
        for row, record in enumerate(records):
            self.plans[record.uid] = Plan(
                record.question,
                int(counts[row]),
                row in seeded,
                record.qualified,
                record.control,
                self.global_steps,
            )
        self.rollouts_drawn += int(counts.sum())
        return super()._submit_batch_to_rollout(batch)

    # ---- training -----------------------------------------------------------------------------

    def _compute_advantage(self, batch, metrics: dict):
        self._learn_from_trained(batch, metrics)
        return super()._compute_advantage(batch, metrics)

    def _learn_from_trained(self, batch, metrics: dict) -> None:
        """The trained groups' outcomes into the history and the bank, and the step's metrics."""
        keys = [key for key, tag in zip(batch.keys, batch.tags, strict=True) if not is_padding(tag)]
        trajectories = xtq.read_trajectories(keys, self.xrpo.success_key, self.xrpo.success_threshold)
        groups: dict[str, list[xtq.Trajectory]] = defaultdict(list)
        for trajectory in trajectories:
            groups[trajectory.uid].append(trajectory)
        step = self.step_trained
        for uid, group in groups.items():
            plan = self.plans.pop(uid, None)
            if plan is None:  # submitted before a resume whose checkpoint lacked its plan
                step.unplanned += 1
                continue
            record = PromptRecord(uid, [], plan.question, qualified=plan.qualified, control=plan.control)
            record.correct = [float(t.correct) for t in group]
            record.lift_sessions, record.lift_correct = len(group), sum(t.correct for t in group)
            if plan.seeded:
                record.seeded_sessions, record.seeded_correct = len(group), sum(t.correct for t in group)
            step.records.append(record)
            step.ages.append(self.global_steps - plan.submitted_step)
            self.trained_groups += 1
            self.trained_rollouts += len(group)
            if self.history is not None:
                self.history.record(plan.question, record.correct)
            if self.bank is not None:
                for trajectory in group:
                    if trajectory.correct:
                        self.bank.add(plan.question, trajectory.response_text(self.tokenizer))
        # verl averages each local update's metrics over a step (separate_async makes
        # parameter_sync_step of them), which would turn the step's counts into per-update means:
        # the step's groups are reported once, at its last update
        if self.local_trigger_step < self.parameter_sync_step - 1:
            return
        self.step_trained = StepTrained()
        if step.records:
            metrics.update(step.metrics())
            metrics["xrpo/budget/rollouts_per_trained_prompt/cumulative"] = (
                self.trained_rollouts / self.trained_groups
            )
        metrics["xrpo/async/unplanned_groups"] = float(step.unplanned)
        metrics["xrpo/async/plans_in_flight"] = float(len(self.plans))
        metrics["xrpo/bank_size"] = float(len(self.bank)) if self.bank is not None else 0.0

    # ---- checkpoints --------------------------------------------------------------------------

    def save_xrpo_state(self, folder: str) -> None:
        super().save_xrpo_state(folder)
        state = {
            "plans": {uid: asdict(plan) for uid, plan in self.plans.items()},
            "trained_groups": self.trained_groups,
            "trained_rollouts": self.trained_rollouts,
        }
        with open(os.path.join(folder, PLANS_FILE), "w", encoding="utf-8") as handle:
            json.dump(state, handle)

    def load_xrpo_state(self, folder: str) -> None:
        super().load_xrpo_state(folder)
        path = os.path.join(folder, PLANS_FILE)
        if not os.path.isfile(path):
            logger.info("XRPO: %s has no in-flight plans (saved by the synchronous trainer)", folder)
            return
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        self.plans = {uid: Plan(**plan) for uid, plan in state["plans"].items()}
        self.trained_groups, self.trained_rollouts = state["trained_groups"], state["trained_rollouts"]
        logger.info("XRPO: restored %d in-flight prompt plans from %s", len(self.plans), folder)


class XRPOColocateAsyncTrainer(XRPOAsyncTrainerBase, PPOTrainerColocateAsync):
    VERL_MODE = "colocate_async"


class XRPOSeparateAsyncTrainer(XRPOAsyncTrainerBase, PPOTrainerSeparateAsync):
    VERL_MODE = "separate_async"


XRPO_ASYNC_TRAINERS = {cls.VERL_MODE: cls for cls in (XRPOColocateAsyncTrainer, XRPOSeparateAsyncTrainer)}


class ModeDispatch:
    """verl's registry entry for an asynchronous mode with the plugin installed: XRPO's trainer for
    an XRPO run, verl's own class, untouched, for any other."""

    def __init__(self, verl_trainer: type, xrpo_trainer: type):
        self.verl_trainer, self.xrpo_trainer = verl_trainer, xrpo_trainer
        self.__name__ = verl_trainer.__name__  # verl names registry entries in its messages

    def trainer_for(self, config: Any) -> type:
        return self.xrpo_trainer if is_xrpo_run(config) else self.verl_trainer

    def __call__(self, config: Any):
        return self.trainer_for(config)(config=config)


def install_mode_dispatch() -> None:
    """Route verl's asynchronous mode names through ``ModeDispatch`` (idempotent)."""
    for mode, xrpo_trainer in XRPO_ASYNC_TRAINERS.items():
        entry = TRAINER_REGISTRY.get(mode)
        if entry is not None and not isinstance(entry, ModeDispatch):
            TRAINER_REGISTRY[mode] = ModeDispatch(entry, xrpo_trainer)


install_mode_dispatch()
