"""An agent loop with no language model, for driving verl's real agent-loop workers in tests.

Each prompt's ``extra_info`` carries a solve ``rate``; a rollout succeeds when a hash of
(question, session id) falls below it, so results are deterministic and differ across sessions.
A prompt whose text differs from ``extra_info["question"]`` (seeded by XRPO with exemplars)
succeeds at ``seeded_rate``.
The response text names the session, so tests can tell rollouts apart.

Faults, also from ``extra_info``: sessions listed in ``fail_sessions`` raise (verl marks the prompt
"failure"), sessions in ``empty_sessions`` return no output (no trajectory, the prompt still
"finished"), sessions in ``slow_sessions`` take ``slow_seconds`` first, and ``hang: true`` never
returns. Sessions in ``wait_sessions`` return only once
TransferQueue holds a trajectory of session ``wait_until_session`` or later of a prompt whose uid
starts with ``wait_prefix`` (a later phase's rollout): under a barrier per phase they never return.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import transfer_queue as tq
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput


def unit_hash(*parts: Any) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ScriptedAgentLoop(AgentLoopBase):
    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput | list:
        messages = list(kwargs["raw_prompt"])
        question = messages[-1]["content"]
        info = kwargs.get("extra_info") or {}
        seeded = question != info.get("question", question)
        rate = float(info.get("seeded_rate", 1.0)) if seeded else float(info.get("rate", 0.5))
        session = int(kwargs["session_id"])
        if info.get("hang"):
            await asyncio.Event().wait()  # nothing ever sets it
        if session in info.get("slow_sessions", ()):
            await asyncio.sleep(float(info["slow_seconds"]))
        if session in info.get("wait_sessions", ()):
            await wait_for_a_later_phase(info["wait_prefix"], int(info["wait_until_session"]))
        if session in info.get("fail_sessions", ()):
            raise RuntimeError(f"scripted failure of session {session}")
        if session in info.get("empty_sessions", ()):
            return []
        correct = unit_hash(info.get("name", question), session) < rate
        prompt_ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if not isinstance(prompt_ids, list):
            prompt_ids = list(prompt_ids["input_ids"])
        text = f"session {session} answer {'right' if correct else 'wrong'}"
        response_ids = self.tokenizer.encode(text, add_special_tokens=False)
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids,
            response_mask=[1] * len(response_ids),
            reward_score=1.0 if correct else -1.0,
            num_turns=2,
            metrics=AgentLoopMetrics(),
            extra_fields={"reward_extra_info": {"acc": correct}},
        )


async def wait_for_a_later_phase(prefix: str, session: int, timeout_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        listed = ((await tq.async_kv_list("train")) or {}).get("train", {})
        if any(
            key.startswith(prefix) and key.count("_") >= 2 and int(key.rsplit("_", 2)[1]) >= session
            for key in listed
        ):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no rollout of session {session} or later of {prefix}* in {timeout_seconds:g} s")
