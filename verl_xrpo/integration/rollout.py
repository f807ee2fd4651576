"""Agent-loop worker and manager that let one prompt be sampled again in a later phase.

verl's ``AgentLoopWorkerTQ._run_prompt`` numbers a prompt's sessions 0..n-1 and stores each
trajectory under ``{uid}_{session_id}_{index}``, so a second submission of the same uid would
overwrite the first. XRPO's later phases pass ``__session_offset__`` (the sessions the prompt
already has) and this worker shifts the session ids by it: every trajectory of every phase gets
its own key, and all of them keep the prompt's uid, so verl groups them as one prompt.

verl keeps one status per prompt (``{uid}``'s tag), which a second submission of the prompt
overwrites while the first still runs. So each XRPO submission also carries a name
(``__xrpo_submission__``), and the worker reports, per name, how many of its sessions have ended
(each after its trajectory is stored) and, once all have, whether any raised (verl's own "finished"
or "failure", per submission): ``wait_news``. The trainer blocks on it instead of polling
TransferQueue, so a phase's end is seen within a Ray round trip and the wait costs no CPU that the
rollout engine could use.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import ray
import transfer_queue as tq
from verl.experimental.agent_loop import AgentLoopWorker
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ

from verl_xrpo.integration.request_keys import SESSION_OFFSET_KEY, SUBMISSION_KEY
from verl_xrpo.integration.transfer_queue import FAILURE, FINISHED


@dataclass
class SubmissionNews:
    """Per submission name: sessions that ended (stored or raised), and the status of those whose
    sessions have all ended."""

    ended: dict[str, int] = field(default_factory=dict)
    settled: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.ended or self.settled)

    def merge(self, other: SubmissionNews) -> None:
        for name, count in other.ended.items():
            self.ended[name] = self.ended.get(name, 0) + count
        self.settled.update(other.settled)


class _XRPOAgentLoopWorker(AgentLoopWorkerTQ.__ray_actor_class__):  # Ray actors cannot be subclassed directly
    def __init__(self, *args: Any, **kwargs: Any):
        # AgentLoopWorkerTQ.__init__ calls zero-argument super(), which fails in a Ray worker for a
        # subclass (its class cell and the unpickled class differ); so its two lines are done here.
        AgentLoopWorker.__init__(self, *args, **kwargs)
        tq.init()
        self.background_tasks = set()
        self._news = SubmissionNews()  # until the trainer takes it
        self._news_arrived = asyncio.Event()
        self._raised: set[str] = set()  # submissions with a session that raised

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False):
        # Left in the prompt: verl passes it on to every session, whose _run_agent_loop pops it.
        submission = prompt.get(SUBMISSION_KEY)
        try:
            await super()._run_prompt(prompt, sampling_params, trajectory=trajectory, trace=trace)
        finally:
            if submission is not None:
                raised = submission in self._raised
                self._raised.discard(submission)
                self._news.settled[submission] = FAILURE if raised else FINISHED
                self._news_arrived.set()

    async def wait_news(self, timeout_seconds: float) -> SubmissionNews:
        """What happened to submissions since the last call; waits up to ``timeout_seconds`` for
        something to happen if nothing has."""
        if not self._news:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news_arrived.wait(), timeout_seconds)
        self._news_arrived.clear()
        news, self._news = self._news, SubmissionNews()
        return news

    async def _run_agent_loop(
        self,
        sampling_params: dict[str, Any],
        trajectory: dict[str, Any],
        *,
        agent_name: str,
        trace: bool = True,
        **kwargs: Any,
    ):
        # Popped, so it is neither passed to the agent loop nor stored as a trajectory field.
        offset = int(kwargs.pop(SESSION_OFFSET_KEY, 0))
        submission = kwargs.pop(SUBMISSION_KEY, None)
        kwargs["session_id"] = int(kwargs["session_id"]) + offset
        try:
            return await super()._run_agent_loop(
                sampling_params, trajectory, agent_name=agent_name, trace=trace, **kwargs
            )
        except BaseException:
            if submission is not None:
                self._raised.add(submission)
            raise
        finally:
            if submission is not None:  # verl's loop stores the trajectory before it returns
                self._news.ended[submission] = self._news.ended.get(submission, 0) + 1
                self._news_arrived.set()


XRPOAgentLoopWorker = ray.remote(_XRPOAgentLoopWorker)


class XRPOAgentLoopManager(AgentLoopManagerTQ):
    """verl's TransferQueue agent-loop manager with XRPO's worker."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Workers are created later, in create(); verl's base only sets this class if it is unset.
        self.agent_loop_workers_class = XRPOAgentLoopWorker
