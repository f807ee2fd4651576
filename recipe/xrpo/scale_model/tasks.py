"""Verifiable-reward arithmetic tasks, generated offline with the ``reasoning-gym`` package.

Rows follow verl's RL dataset layout (``data_source``, ``prompt`` as chat messages, ``ability``,
``reward_model.ground_truth``, ``extra_info``), so ``data.train_files`` can point at the parquet
files as they are; ``recipe/xrpo/scale_model/reward.py`` is their ``reward.custom_reward_function``.

The mix is chosen for a tiny CPU model: most sums have two single-digit terms (learnable within
minutes), some have three or two-digit terms (often all-fail, which is what XRPO's seeding is for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recipe.xrpo.scale_model.reward import ANSWER_PREFIX, compute_score

__all__ = ["compute_score", "generate_rows", "solution_text", "write_parquet"]

DATA_SOURCE = "reasoning_gym/chain_sum"
INSTRUCTION = "Reply with the number only."


@dataclass(frozen=True)
class Difficulty:
    name: str
    share: float
    min_terms: int
    max_terms: int
    max_digits: int


DIFFICULTIES = (
    Difficulty("easy", 0.7, 2, 2, 1),
    Difficulty("medium", 0.2, 3, 3, 1),
    Difficulty("hard", 0.1, 2, 2, 2),
)


def generate_rows(split: str, size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` task rows in verl's layout; the same (split, size, seed) gives the same rows."""
    import reasoning_gym

    rows: list[dict[str, Any]] = []
    for offset, level in enumerate(DIFFICULTIES):
        count = round(size * level.share) if offset < len(DIFFICULTIES) - 1 else size - len(rows)
        if count <= 0:
            continue
        dataset = reasoning_gym.create_dataset(
            "chain_sum",
            size=count,
            seed=seed * 1009 + offset,
            min_terms=level.min_terms,
            max_terms=level.max_terms,
            min_digits=1,
            max_digits=level.max_digits,
        )
        for entry in dataset:
            question = f"{entry['question']} {INSTRUCTION}"
            rows.append(
                {
                    "data_source": DATA_SOURCE,
                    "prompt": [{"role": "user", "content": question}],
                    "ability": "arithmetic",
                    "reward_model": {"style": "rule", "ground_truth": str(entry["answer"])},
                    "extra_info": {
                        "split": split,
                        "index": len(rows),
                        "question": question,
                        "difficulty": level.name,
                    },
                }
            )
    return rows


def write_parquet(rows: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path


def solution_text(answer: str) -> str:
    """What a correct response looks like; the warm start teaches this format."""
    return f"{ANSWER_PREFIX}{answer}."
