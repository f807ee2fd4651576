"""The reward of the toy tasks (``recipe.xrpo.scale_model.tasks``): verl's ``reward.custom_reward_function``.

verl loads this file by path, outside the package (``reward.custom_reward_function.path``), so it
imports nothing from verl-xrpo and stays a plain module.
"""

from __future__ import annotations

import re
from typing import Any

ANSWER_PREFIX = "The answer is "
_NUMBER = re.compile(r"-?\d+")


def extract_answer(response: str) -> str | None:
    """The first integer after the answer prefix, else the first integer at all."""
    _, prefix, rest = response.partition(ANSWER_PREFIX)
    match = _NUMBER.search(rest if prefix else response)
    return match.group(0) if match else None


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **_: Any
) -> dict[str, Any]:
    """verl's custom reward function: 1.0 for the right number, else 0.0; ``acc`` says correct."""
    predicted = extract_answer(solution_str)
    correct = predicted is not None and int(predicted) == int(ground_truth)
    return {"score": 1.0 if correct else 0.0, "acc": correct}
