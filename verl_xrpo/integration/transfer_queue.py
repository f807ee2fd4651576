"""Reading a step's trajectories back from TransferQueue while the step is still generating.

verl's layout, which this relies on: a prompt is a key ``{uid}`` tagged ``is_prompt`` with a
``status`` (pending, running, finished, failure); each trajectory is a key
``{uid}_{session_id}_{index}`` whose fields hold ``rm_scores`` (the score on the last response
token), ``responses``, ``response_mask`` and ``extra_fields["reward_extra_info"]``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import transfer_queue as tq

logger = logging.getLogger(__name__)

DONE = ("finished", "failure")
FAILURE = "failure"
SHOWN_PROMPTS = 5  # prompts named in a message; the rest are counted


@dataclass(frozen=True)
class Trajectory:
    key: str
    uid: str
    session_id: int
    score: float
    correct: bool
    response_ids: list[int]


def split_key(key: str) -> tuple[str, int, int]:
    uid, session_id, index = key.rsplit("_", 2)
    return uid, int(session_id), int(index)


class PhaseTimeout(RuntimeError):
    """A phase's prompts were not all done in time; the message names the phase and those prompts."""


def wait_for_prompts(
    uids: Sequence[str],
    timeout_seconds: float,
    partition_id: str = "train",
    poll_seconds: float = 0.2,
    first_poll_seconds: float = 0.01,
    progress_seconds: float = 60.0,
    label: str = "",
    names: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Block until every prompt has a finished or failed status; returns each prompt's status.

    Raises ``PhaseTimeout`` after ``timeout_seconds`` (``algorithm.xrpo.phase_timeout_seconds``),
    naming the prompts still pending or running (``names`` gives each uid a readable label).
    The poll starts at ``first_poll_seconds`` and backs off to ``poll_seconds``: a phase that ends
    within a second (small models, the CPU) is seen at once, a long one costs few polls.
    """
    wanted = set(uids)
    started = last_report = time.monotonic()
    wait = first_poll_seconds
    while True:
        tags = (tq.kv_list(partition_id) or {}).get(partition_id, {})
        status = {uid: tags.get(uid, {}).get("status", "missing") for uid in wanted}
        pending = [uid for uid in uids if status[uid] not in DONE]
        if not pending:
            return status
        now = time.monotonic()
        if now - started >= timeout_seconds:
            shown = [
                f"{uid} ({status[uid]}{': ' + names[uid] if names and uid in names else ''})"
                for uid in pending
            ]
            more = f" and {len(shown) - SHOWN_PROMPTS} more" if len(shown) > SHOWN_PROMPTS else ""
            raise PhaseTimeout(
                f"XRPO {label}: {len(pending)} of {len(wanted)} prompts still generating after "
                f"{now - started:.0f} s (algorithm.xrpo.phase_timeout_seconds={timeout_seconds:g}): "
                f"{'; '.join(shown[:SHOWN_PROMPTS])}{more}. The rollout workers' log says why; raise the "
                f"limit if their generations are just slow."
            )
        if now - last_report >= progress_seconds:
            done = len(wanted) - len(pending)
            logger.info("XRPO %s: %d/%d prompts done after %.0f s", label, done, len(wanted), now - started)
            last_report = now
        time.sleep(wait)
        wait = min(wait * 1.5, poll_seconds)


def trajectory_keys(
    uids: Iterable[str], partition_id: str = "train", min_session: dict[str, int] | None = None
) -> dict[str, list[str]]:
    """The trajectory keys of each uid, in session order (only sessions >= min_session[uid])."""
    wanted = set(uids)
    tags = (tq.kv_list(partition_id) or {}).get(partition_id, {})
    keys: dict[str, list[str]] = defaultdict(list)
    for key, tag in tags.items():
        if tag.get("is_prompt") or key.count("_") < 2:
            continue
        uid, session_id, _ = split_key(key)
        if uid in wanted and session_id >= (min_session or {}).get(uid, 0):
            keys[uid].append(key)
    return {uid: sorted(keys.get(uid, []), key=split_key) for uid in uids}


def read_trajectories(
    keys: Sequence[str], success_key: str, success_threshold: float, partition_id: str = "train"
) -> list[Trajectory]:
    """Scores and correctness of trajectories (correct: ``reward_extra_info[success_key]`` if present,
    else score > success_threshold)."""
    if not keys:
        return []
    data = tq.kv_batch_get(
        keys=list(keys),
        partition_id=partition_id,
        select_fields=["rm_scores", "extra_fields", "responses", "response_mask"],
    )
    scores = [float(row.sum()) for row in data["rm_scores"].unbind()]
    extras = list(data["extra_fields"])
    responses = data["responses"].unbind()
    masks = data["response_mask"].unbind()
    out = []
    for key, score, extra, response, mask in zip(keys, scores, extras, responses, masks, strict=True):
        info = (extra or {}).get("reward_extra_info") or {}
        flag = info.get(success_key)
        correct = bool(float(flag) > 0.5) if flag is not None else score > success_threshold
        uid, session_id, _ = split_key(key)
        out.append(Trajectory(key, uid, session_id, score, correct, response[mask.bool()].tolist()))
    return out
