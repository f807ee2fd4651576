"""One training step's rollouts in phases: plan, seed, submit, wait, read back.

With ``planning.mode=submission`` the step has one phase, whose counts and seeded prompts come
from each prompt's history (``core/history.py``, ``core/allocation.submission_counts``).

The trainer hands over the step's prompt batch (a verl TensorDict with ``uid`` and ``raw_prompt``)
and a ``submit`` function; this module decides what each phase generates and reports metrics.
Every trajectory stays under its prompt's uid, so verl's replay buffer later hands the trainer all
phases of a prompt together.

Each submission of a prompt (one phase's rollouts of it) is tracked on its own: the agent-loop
worker reports how many of its sessions have ended and when all have (``rollout.py``), and the
trajectories in TransferQueue say which sessions produced output; they are read once a phase's
wait is over, not while the engine generates. So a phase can be planned before the previous
one is all in (``planning.overlap_share`` < 1), the rollouts still running counting towards their
prompt's n and cap, while verl's single status per prompt is overwritten by each submission.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu

from verl_xrpo.config import XRPOConfig
from verl_xrpo.core.allocation import later_phase_grants
from verl_xrpo.core.bank import ExemplarBank
from verl_xrpo.core.history import PromptHistory
from verl_xrpo.core.planner import RolloutPlanner
from verl_xrpo.integration import transfer_queue as xtq
from verl_xrpo.integration.prompts import (
    PromptRecord,
    prompt_counts,
    prompt_records,
    step_metrics,
    zero_variance_share,
)
from verl_xrpo.integration.request_keys import ROLLOUT_N_KEY, SESSION_OFFSET_KEY, SUBMISSION_KEY
from verl_xrpo.integration.rollout import SubmissionNews
from verl_xrpo.integration.submission import Seeding, plan_submission

logger = logging.getLogger(__name__)

# The longest single wait for the workers' news, between checks of the phase's clock.
NEWS_WAIT_SECONDS = 1.0
# How often a phase that is still generating is logged.
PROGRESS_LOG_SECONDS = 60.0


@dataclass
class Submission:
    """One phase's rollouts of one prompt: its sessions ``offset`` .. ``offset + asked - 1``."""

    name: str
    record: PromptRecord
    phase: int
    offset: int
    asked: int
    seeded: bool
    status: str | None = None  # verl's "finished" or "failure", once every session has settled
    ended: int = 0  # sessions the worker reports ended (trajectory stored, or raised)
    received: int = 0  # sessions whose trajectories are read
    resolved: bool = False  # settled, and its lost sessions counted


@dataclass
class InFlight:
    """A step's submissions and what has come back of them."""

    submissions: dict[str, Submission] = field(default_factory=dict)
    by_uid: dict[str, list[Submission]] = field(default_factory=dict)
    read_keys: set[str] = field(default_factory=set)
    sessions_read: set[tuple[str, int]] = field(default_factory=set)
    faults: dict[int, list[str]] = field(default_factory=dict)  # phase -> faults, until reported
    reported: set[int] = field(default_factory=set)  # phases whose faults are logged
    # phase -> when it was sent, and when the trainer heard of each of its sessions' end (perf_counter)
    sent_at: dict[int, float] = field(default_factory=dict)
    ended_at: dict[int, list[float]] = field(default_factory=dict)

    def add(self, sub: Submission) -> None:
        self.submissions[sub.name] = sub
        self.by_uid.setdefault(sub.record.uid, []).append(sub)

    def owner(self, uid: str, session: int) -> Submission:
        for sub in self.by_uid[uid]:
            if sub.offset <= session < sub.offset + sub.asked:
                return sub
        raise KeyError(f"no submission of prompt {uid} asked for session {session}")

    def of_phase(self, phase: int) -> list[Submission]:
        return [s for s in self.submissions.values() if s.phase == phase]

    def phase_timing(self) -> dict[str, float]:
        """Seconds from each phase's submission to its first session's end, to the end that makes three
        quarters of its sessions (where ``planning.overlap_share=0.75`` would plan the next phase),
        and to its last. The time from the three-quarter end to the last is what that overlap can
        run the next phase over; the time to the first end is latency that no overlap hides."""
        timing = {}
        for phase, sent in sorted(self.sent_at.items()):
            ends = sorted(self.ended_at.get(phase, []))
            if ends:
                prefix = f"timing_s/xrpo_phase{phase}"
                timing[f"{prefix}_first_end"] = ends[0] - sent
                timing[f"{prefix}_75pct_end"] = ends[math.ceil(0.75 * len(ends)) - 1] - sent
                timing[f"{prefix}_last_end"] = ends[-1] - sent
        return timing


class WorkerNews:
    """Waits for news from the agent-loop workers of verl's ``manager``: the first worker to report
    ends the wait, and the calls to the others stay out for the next wait, so none of their news
    is lost. One per trainer, kept across steps, for the same reason."""

    def __init__(self, manager: Any):
        self.workers = list(manager.agent_loop_workers)
        self.calls: dict[int, ray.ObjectRef] = {}  # worker index -> its wait_news call still out

    def __call__(self, timeout_seconds: float) -> SubmissionNews:
        for index, worker in enumerate(self.workers):
            if index not in self.calls:
                self.calls[index] = worker.wait_news.remote(timeout_seconds)
        # A worker returns after timeout_seconds at the latest; the margin covers Ray's round trip.
        ready, _ = ray.wait(list(self.calls.values()), num_returns=1, timeout=timeout_seconds + 5.0)
        # Whatever else is back by now comes too: one call per worker, all of its news.
        ready, _ = ray.wait(list(self.calls.values()), num_returns=len(self.calls), timeout=0)
        news = SubmissionNews()
        for index, call in list(self.calls.items()):
            if call in ready:
                news.merge(ray.get(call))
                del self.calls[index]
        return news


@dataclass
class StepReport:
    metrics: dict[str, float]
    rollouts: int


class PhasedRollout:
    """Runs the phases of one step. ``submit`` sends a prompt sub-batch to verl's agent loops;
    ``news`` waits up to the seconds it is given for the workers' news of submissions (``WorkerNews``)."""

    def __init__(
        self,
        settings: XRPOConfig,
        planner: RolloutPlanner,
        bank: ExemplarBank | None,
        tokenizer: Any,
        max_prompt_tokens: int,
        submit: Callable[[TensorDict], Any],
        news: Callable[[float], SubmissionNews],
        history: PromptHistory | None = None,
    ):
        self.settings = settings
        self.planner = planner
        self.bank = bank if settings.seeding.enable else None
        self.tokenizer = tokenizer
        self.seeding = Seeding(settings, self.bank, tokenizer, max_prompt_tokens)
        self.submit = submit
        self.news = news
        self.history = history if settings.planning.enable else None
        self.submission = settings.planning.enable and settings.planning.mode == "submission"
        self.lift_phase = 1 if self.submission else 2

    def run(self, batch: TensorDict, step: int, rollouts_drawn: int = 0) -> StepReport:
        timing = {"planning": 0.0, "retrieval": 0.0, "generation": 0.0}
        records = prompt_records(batch)
        if self.history is not None and self.settings.planning.skips_agreed:
            for record in records:
                record.skipped = self.history.agreed(record.question)
        flight = InFlight()
        share = self.settings.planning.overlap_share
        reserved, first_seeded = np.zeros(len(records), dtype=np.int64), {}
        if self.submission:
            # one submission: every count, and which prompts are seeded, decided from earlier visits
            counts, reserved, first_seeded = plan_submission(
                records, self.history, self.planner, self.seeding, step, rollouts_drawn, timing
            )
            budgets = []
        else:
            skipped = np.array([r.skipped for r in records], dtype=bool)
            counts = self.planner.base_counts(len(records), skipped)
            budgets = self.planner.phase_budgets(len(records), int(counts.sum()))
        # counts: sessions asked for so far, per prompt; the next phase numbers its sessions from
        # there, so a failed session's id is never reused.
        rows = np.arange(len(records))
        self._submit(batch, records, flight, rows, counts, np.zeros_like(counts), first_seeded, step, 1)
        zero_variance_before = math.nan
        phases_run, last_phase = 1, 1
        for phase, budget in enumerate(budgets, start=2):
            self._collect(records, flight, flight.of_phase(last_phase), share, timing, step)
            if phase == 2:
                zero_variance_before = zero_variance_share(records)
                start = time.perf_counter()
                reserved, first_seeded = self._seeding_share(records, budgets, step)
                timing["retrieval"] += time.perf_counter() - start
            held = reserved if phase == 2 else np.zeros_like(reserved)
            start = time.perf_counter()
            extra = later_phase_grants(
                self.planner, prompt_counts(records), budget, held, step, rollouts_drawn
            )
            timing["planning"] += time.perf_counter() - start
            rows = np.flatnonzero(extra)
            if len(rows) == 0:
                continue
            start = time.perf_counter()
            seeded = first_seeded if phase == 2 else self._seeded_messages(records, rows)
            seeded = {row: m for row, m in seeded.items() if extra[row] > 0}
            timing["retrieval"] += time.perf_counter() - start
            self._submit(batch, records, flight, rows, extra[rows], counts[rows], seeded, step, phase)
            counts = counts + extra
            phases_run, last_phase = phases_run + 1, phase
        self._collect(records, flight, list(flight.submissions.values()), 1.0, timing, step)
        if math.isnan(zero_variance_before):
            zero_variance_before = zero_variance_share(records)
        generated = sum(len(r.correct) for r in records)
        if generated == 0:
            raise RuntimeError(
                f"XRPO step {step}: none of the {len(records)} prompts got a rollout, every generation "
                f"failed; the rollout workers' log has the errors."
            )
        # A later submission of a prompt overwrites verl's status of it; a failure must stay one.
        xtq.mark_failed(
            [r.uid for r in records if any(s.status == xtq.FAILURE for s in flight.by_uid[r.uid])]
        )
        if self.history is not None:
            for record in records:
                self.history.record(record.question, record.correct)
        metrics = step_metrics(records)
        metrics.update(
            {
                "xrpo/phases_run": float(phases_run),
                "xrpo/generation_calls": float(len(flight.sent_at)),  # submissions to verl's agent loops
                "xrpo/zero_variance_share/before_planning": zero_variance_before,
                "xrpo/budget/seeding_rollouts": float(reserved.sum()),
                # What faults cost the step: its budget (GRPO's) less the rollouts that exist.
                "xrpo/budget/rollouts_lost": float(self.planner.step_budget(len(records)) - generated),
                "xrpo/bank_size": float(len(self.bank)) if self.bank is not None else 0.0,
                # the leakage guard at work: solutions of validation questions kept out of the bank
                "xrpo/bank_refused_leaks": float(self.bank.refused_leaks) if self.bank is not None else 0.0,
                "xrpo/history/skipped_prompts": float(sum(r.skipped for r in records)),
                "timing_s/xrpo_planning": timing["planning"],
                "timing_s/xrpo_retrieval": timing["retrieval"],
                "timing_s/xrpo_generation_phases": timing["generation"],
                **flight.phase_timing(),
            }
        )
        return StepReport(metrics=metrics, rollouts=generated)

    def _seeding_share(
        self, records: list[PromptRecord], budgets: list[int], step: int
    ) -> tuple[np.ndarray, dict[int, list[dict]]]:
        """Seeding's own rollouts for the first later phase, and the seeded prompts they are drawn with.

        Every prompt whose phase-1 rollouts that are in all failed (under the barrier: all of them;
        with ``overlap_share`` < 1 some may still run), and that has exemplars that fit, qualifies;
        a random ``control_share`` of them gets the same rollouts unseeded (the control arm).
        """
        reserved = np.zeros(len(records), dtype=np.int64)
        if not budgets:
            return reserved, {}
        seeded = self.seeding.arms(records, self._seeded_messages(records, np.arange(len(records))), step)
        qualifying = [row for row, r in enumerate(records) if r.qualified]
        reserved[qualifying] = self.planner.seeding_share(
            len(qualifying), len(records), self.settings.seeding
        )
        return reserved, seeded

    def _seeded_messages(self, records: list[PromptRecord], rows: np.ndarray) -> dict[int, list[dict]]:
        """Seeded chat messages for the rows whose rollouts in so far all failed (where exemplars fit).

        Rollouts still running are not waited for: under an overlap a prompt's slowest rollouts are
        most often its failing ones, and waiting for them left the prompts that need exemplars unseeded
        (the generation benchmark's useful share, ``docs/benchmarks.md``)."""
        failing = [
            int(row)
            for row in rows
            if records[row].correct
            and not any(records[row].correct)
            and not records[row].control
            and not records[row].failed
            and not records[row].skipped
        ]
        return self.seeding.exemplar_messages(records, failing)

    def _submit(
        self,
        batch: TensorDict,
        records: list[PromptRecord],
        flight: InFlight,
        rows: np.ndarray,
        extra: np.ndarray,
        offsets: np.ndarray,
        seeded: dict[int, list[dict]],
        step: int,
        phase: int,
    ) -> None:
        # Always a copy, even when the phase covers every prompt: the fields set below (counts,
        # offsets, seeded prompts) belong to this phase and must not leak into the step's batch.
        sub = tu.index_select_tensor_dict(batch, rows.tolist())
        names = [f"{records[row].uid}@{int(offset)}" for row, offset in zip(rows, offsets, strict=True)]
        tu.assign_non_tensor_stack(sub, ROLLOUT_N_KEY, [int(n) for n in extra])
        tu.assign_non_tensor_stack(sub, SESSION_OFFSET_KEY, [int(o) for o in offsets])
        tu.assign_non_tensor_stack(sub, SUBMISSION_KEY, names)
        if seeded:
            prompts = [seeded.get(int(row), records[row].messages) for row in rows]
            tu.assign_non_tensor_stack(sub, "raw_prompt", prompts)
        for name, row, n, offset in zip(names, rows, extra, offsets, strict=True):
            record = records[row]
            record.pending += int(n)
            flight.add(Submission(name, record, phase, int(offset), int(n), int(row) in seeded))
        flight.sent_at[phase] = time.perf_counter()
        self.submit(sub)
        logger.info(
            "XRPO step %d phase %d: %d prompts (%d seeded), %d rollouts asked",
            step,
            phase,
            len(rows),
            len(seeded),
            int(extra.sum()),
        )

    def _collect(
        self,
        records: list[PromptRecord],
        flight: InFlight,
        awaited: list[Submission],
        share: float,
        timing: dict[str, float],
        step: int,
    ) -> None:
        """Wait for the workers' news until the ``awaited`` submissions have all settled or, with
        ``share`` < 1, that share of their sessions has ended; then read what came in.

        Raises ``xtq.PhaseTimeout`` after ``phase_timeout_seconds``, naming the prompts still out.
        """
        start = last_report = time.perf_counter()
        # Under a barrier (share 1) the statuses must be in too: they say which prompts failed.
        wanted = math.ceil(share * sum(s.asked for s in awaited)) if share < 1 else math.inf
        while True:
            out = [s for s in awaited if s.status is None]
            if not out or sum(min(s.ended, s.asked) for s in awaited) >= wanted:
                break
            now = time.perf_counter()
            label = f"step {step} phase {min(s.phase for s in out)}"
            uids = list(dict.fromkeys(s.record.uid for s in out))
            if now - start >= self.settings.phase_timeout_seconds:
                names = {s.record.uid: s.record.snippet() for s in out}
                raise xtq.timeout_error(
                    label,
                    uids,
                    len({s.record.uid for s in awaited}),
                    now - start,
                    self.settings.phase_timeout_seconds,
                    names,
                )
            if now - last_report >= PROGRESS_LOG_SECONDS:
                logger.info(
                    "XRPO %s: %d prompts still generating after %.0f s", label, len(uids), now - start
                )
                last_report = now
            left = self.settings.phase_timeout_seconds - (now - start)
            self._take_news(flight, self.news(max(min(NEWS_WAIT_SECONDS, left), 0.0)))
        self._receive(records, flight, step)
        timing["generation"] += time.perf_counter() - start

    @staticmethod
    def _take_news(flight: InFlight, news: SubmissionNews) -> None:
        now = time.perf_counter()
        for name, count in news.ended.items():
            if name in flight.submissions:  # not a leftover of an earlier step
                sub = flight.submissions[name]
                sub.ended += count
                flight.ended_at.setdefault(sub.phase, []).extend([now] * count)
        for name, status in news.settled.items():
            if name in flight.submissions:
                flight.submissions[name].status = status

    def _receive(self, records: list[PromptRecord], flight: InFlight, step: int) -> None:
        """Read every trajectory not read yet (a settled submission's trajectories are all stored
        before it reports), then count what the settled ones lost."""
        waiting = [r.uid for r in records if r.pending]
        keys = xtq.trajectory_keys(waiting)
        new = [key for uid in waiting for key in keys[uid] if key not in flight.read_keys]
        trajectories = xtq.read_trajectories(new, self.settings.success_key, self.settings.success_threshold)
        for traj in trajectories:
            flight.read_keys.add(traj.key)
            sub = flight.owner(traj.uid, traj.session_id)
            record = sub.record
            if (traj.uid, traj.session_id) not in flight.sessions_read:
                flight.sessions_read.add((traj.uid, traj.session_id))
                sub.received += 1
                record.pending -= 1
            record.correct.append(float(traj.correct))
            if sub.phase == self.lift_phase:
                record.lift_sessions += 1
                record.lift_correct += int(traj.correct)
            if sub.seeded:
                record.seeded_sessions += 1
                record.seeded_correct += int(traj.correct)
            if self.bank is not None and traj.correct:
                self.bank.add(record.question, traj.response_text(self.tokenizer))
        for sub in flight.submissions.values():
            if sub.status is not None and not sub.resolved:
                self._resolve(sub, flight)
        for phase in sorted({s.phase for s in flight.submissions.values()} - flight.reported):
            subs = flight.of_phase(phase)
            if all(s.resolved for s in subs):
                flight.reported.add(phase)
                self._warn_faults(flight.faults.pop(phase, []), len(subs), f"step {step} phase {phase}")

    @staticmethod
    def _resolve(sub: Submission, flight: InFlight) -> None:
        """A settled submission: the sessions that left no trajectory are lost, and a prompt with a
        failed session or a lost one gets no more rollouts this step."""
        sub.resolved = True
        lost = sub.asked - sub.received
        record = sub.record
        record.pending -= lost
        if sub.status == xtq.FAILURE or lost:
            record.failed = True
            record.missing += lost
            fault = f"{record.label()} {sub.status} with {sub.received} of {sub.asked} rollouts"
            flight.faults.setdefault(sub.phase, []).append(fault)

    @staticmethod
    def _warn_faults(faults: list[str], prompts: int, label: str) -> None:
        if faults:
            logger.warning(
                "XRPO %s: generation failed for %d of %d prompts (%s); their groups keep the rollouts "
                "that exist and get no more this step",
                label,
                len(faults),
                prompts,
                "; ".join(faults[: xtq.SHOWN_PROMPTS]) + (" ..." if len(faults) > xtq.SHOWN_PROMPTS else ""),
            )
