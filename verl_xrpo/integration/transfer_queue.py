"""Reading a step's trajectories back from TransferQueue while the step is still generating.

verl's layout, which this relies on: a prompt is a key ``{uid}`` tagged ``is_prompt`` with a
``status`` (pending, running, finished, failure); each trajectory is a key
``{uid}_{session_id}_{index}`` whose fields hold ``rm_scores`` (the score on the last response
token), ``responses``, ``response_mask`` and ``extra_fields["reward_extra_info"]``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import transfer_queue as tq

logger = logging.getLogger(__name__)

FINISHED, FAILURE = "finished", "failure"  # verl's terminal statuses of a prompt
SHOWN_PROMPTS = 5  # prompts named in a message; the rest are counted


@dataclass(frozen=True)
class Trajectory:
    key: str
    uid: str
    session_id: int
    correct: bool
    response_ids: list[int]

    def response_text(self, tokenizer: Any) -> str:
        """The response as the exemplar bank keeps it: decoded, without special tokens."""
        return tokenizer.decode(self.response_ids, skip_special_tokens=True)


def split_key(key: str) -> tuple[str, int, int]:
    uid, session_id, index = key.rsplit("_", 2)
    return uid, int(session_id), int(index)


class PhaseTimeout(RuntimeError):
    """A phase's prompts were not all done in time; the message names the phase and those prompts."""


def timeout_error(
    label: str,
    uids: Sequence[str],
    prompts: int,
    waited: float,
    timeout_seconds: float,
    names: Mapping[str, str] | None = None,
    partition_id: str = "train",
) -> PhaseTimeout:
    """The error for prompts still generating after ``algorithm.xrpo.phase_timeout_seconds``,
    naming each with verl's status of it (``names`` gives each uid a readable label)."""
    tags = (tq.kv_list(partition_id) or {}).get(partition_id, {})
    names = names or {}
    shown = [
        f"{uid} ({tags.get(uid, {}).get('status', 'missing')}{': ' + names[uid] if uid in names else ''})"
        for uid in uids
    ]
    more = f" and {len(shown) - SHOWN_PROMPTS} more" if len(shown) > SHOWN_PROMPTS else ""
    return PhaseTimeout(
        f"XRPO {label}: {len(uids)} of {prompts} prompts still generating after {waited:.0f} s "
        f"(algorithm.xrpo.phase_timeout_seconds={timeout_seconds:g}): "
        f"{'; '.join(shown[:SHOWN_PROMPTS])}{more}. The rollout workers' log says why; raise the "
        f"limit if their generations are just slow."
    )


def mark_failed(uids: Sequence[str], partition_id: str = "train") -> None:
    """Set verl's status of these prompts to "failure" (a later submission may have overwritten it)."""
    for uid in uids:
        tq.kv_put(key=uid, partition_id=partition_id, tag={"status": FAILURE})


def trajectory_keys(uids: Iterable[str], partition_id: str = "train") -> dict[str, list[str]]:
    """The stored trajectory keys of each uid, in session order.

    TransferQueue lists a key as soon as a put starts and tags it when its fields are stored; only
    tagged keys (verl's trajectory tag has a ``status``) can be read.
    """
    wanted = set(uids)
    tags = (tq.kv_list(partition_id) or {}).get(partition_id, {})
    keys: dict[str, list[str]] = defaultdict(list)
    for key, tag in tags.items():
        if tag.get("is_prompt") or key.count("_") < 2 or "status" not in tag:
            continue
        uid, _, _ = split_key(key)
        if uid in wanted:
            keys[uid].append(key)
    return {uid: sorted(keys.get(uid, []), key=split_key) for uid in uids}


def read_trajectories(
    keys: Sequence[str], success_key: str, success_threshold: float, partition_id: str = "train"
) -> list[Trajectory]:
    """Correctness and responses of trajectories (correct: ``reward_extra_info[success_key]`` if
    present, else score > success_threshold)."""
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
        out.append(Trajectory(key, uid, session_id, correct, response[mask.bool()].tolist()))
    return out
