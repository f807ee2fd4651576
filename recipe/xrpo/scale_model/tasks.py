"""Verifiable-reward task families for the scale model, in verl's RL dataset layout.

Rows have ``data_source``, ``prompt`` (chat messages), ``ability``, ``reward_model.ground_truth``
and ``extra_info`` (question, difficulty, the reference solution), so ``data.train_files`` can
point at the parquet files as they are; ``reward.py`` beside this file is their reward function.

Two families, chosen with a task name (``compare --task``, ``train --task``):

- ``chain`` (the default): add a chain of numbers step by step. Difficulty grows with the chain's
  length, and every level needs the same skill (one addition per step), so what RL teaches on
  one prompt transfers to the others. The hard level starts with one of a small pool of two-digit
  pairs that the warm start never sees: those prompts fail until the model finds (or is shown,
  by seeding) that first step.
- ``rg:NAME[:key=value,...]``: any reasoning-gym dataset with its own settings, answered as
  "The answer is X." (e.g. ``rg:chain_sum:min_terms=2,max_terms=3``).
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recipe.xrpo.scale_model.reward import ANSWER_PREFIX

CHAIN = "chain"
CHAIN_SOURCE = "xrpo_scale/chain"


@dataclass(frozen=True)
class Level:
    name: str
    share: float  # of the rows
    terms: int
    # The warm start learns in two stages (``warmstart.py``). Its skill data works every chain step
    # by step, and a step slips (a wrong sum carried on) this often:
    slip: float
    # Its habit data works this share of the chains step by step (rarely slipping, ``HABIT_SLIP``)
    # and states the answer of the rest at once, off by up to ``guess_spread`` (0: always right).
    # Which way to answer is a habit, not a skill: RL can move it, and what it learns on one level
    # carries to the others. Training and validation rows carry the true stepwise solution.
    stepwise_share: float
    guess_spread: int
    two_digit_start: bool = False  # the chain starts with a pair from the hard pool


# Two-term chains are nearly always worked step by step and right (prompts RL cannot improve:
# all-correct groups); longer ones are right when worked step by step, which the warm start does
# now and then (mixed groups: what RL learns from); the hard level mostly fails: its first step
# adds two two-digit numbers the warm start never saw together, and its guesses are far off.
CHAIN_LEVELS = (
    Level("k2", 0.25, 2, 0.05, stepwise_share=0.9, guess_spread=0),
    Level("k3", 0.25, 3, 0.20, stepwise_share=0.3, guess_spread=3),
    Level("k4", 0.30, 4, 0.20, stepwise_share=0.15, guess_spread=3),
    Level("hard", 0.20, 3, 0.10, stepwise_share=0.1, guess_spread=10, two_digit_start=True),
)
HABIT_SLIP = 0.01
AT_ONCE_PREFIX = "The sum is "
WARM_START_STYLES = ("skill", "habit")  # the warm start's two kinds of data (``chain_rows``)
HARD_POOL_SIZE = 24  # distinct two-digit starting pairs shared by the hard prompts of every split


@dataclass(frozen=True)
class TaskSpec:
    """A task family by name: ``chain`` or ``rg:NAME[:key=value,...]``."""

    family: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> TaskSpec:
        if text == CHAIN:
            return cls(CHAIN)
        kind, _, rest = text.partition(":")
        if kind != "rg" or not rest:
            raise ValueError(f"unknown task {text!r}: use 'chain' or 'rg:NAME[:key=value,...]'")
        name, _, settings = rest.partition(":")
        options = []
        for item in filter(None, settings.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"task option {item!r} in {text!r} is not key=value")
            options.append((key, _number_or_text(value)))
        return cls(f"rg:{name}", tuple(options))

    @property
    def data_source(self) -> str:
        return CHAIN_SOURCE if self.family == CHAIN else f"reasoning_gym/{self.family[3:]}"

    def __str__(self) -> str:
        settings = ",".join(f"{k}={v}" for k, v in self.options)
        return self.family + (f":{settings}" if settings else "")


def _number_or_text(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


# ---- the chain family ---------------------------------------------------------------------------


def hard_pool(seed: int = 0) -> list[tuple[int, int]]:
    """The two-digit starting pairs of hard prompts (the same for every split of one seed)."""
    rng = random.Random(f"hard-pool-{seed}")
    pool: set[tuple[int, int]] = set()
    while len(pool) < HARD_POOL_SIZE:
        pool.add((rng.randint(10, 99), rng.randint(10, 99)))
    return sorted(pool)


def chain_terms(level: Level, rng: random.Random, pool: list[tuple[int, int]], in_pool: bool) -> list[int]:
    if not level.two_digit_start:
        return [rng.randint(1, 9) for _ in range(level.terms)]
    if in_pool:
        first = list(rng.choice(pool))
    else:  # the warm start learns the hard level's form on pairs outside the pool
        banned = set(pool)
        first = [rng.randint(10, 99), rng.randint(10, 99)]
        while tuple(first) in banned:
            first = [rng.randint(10, 99), rng.randint(10, 99)]
    return first + [rng.randint(1, 9) for _ in range(level.terms - 2)]


def chain_question(terms: list[int]) -> str:
    return f"Add {' + '.join(map(str, terms))} step by step."


def chain_solution(terms: list[int], slip: float = 0.0, rng: random.Random | None = None) -> str:
    """Running sums, one step per sentence; with ``slip`` a step is off by 1 or 10 and carried on."""
    total, steps = terms[0], []
    for term in terms[1:]:
        result = total + term
        if slip and rng is not None and rng.random() < slip:
            result = max(result + rng.choice((-10, -1, 1, 10)), 0)
        steps.append(f"{total} + {term} = {result}.")
        total = result
    return " ".join(steps) + f" {ANSWER_PREFIX}{total}."


def guessed_solution(terms: list[int], spread: int, rng: random.Random) -> str:
    """An answer stated at once, off by up to ``spread`` (never below 0).

    Its words differ from the stepwise solution's last sentence, so that a stepwise answer stays a
    copy of the last running sum rather than a guess (the reward reads the number either way).
    """
    return f"{AT_ONCE_PREFIX}{max(sum(terms) + rng.randint(-spread, spread), 0)}."


def habit_solution(terms: list[int], level: Level, rng: random.Random) -> str:
    """The warm start's habit on ``level``: stepwise (rarely slipping) or an answer at once."""
    if rng.random() < level.stepwise_share:
        return chain_solution(terms, HABIT_SLIP, rng)
    return guessed_solution(terms, level.guess_spread, rng)


def chain_rows(split: str, size: int, seed: int, warm_start: str | None = None) -> list[dict[str, Any]]:
    """``size`` chain rows with true stepwise solutions, or the warm start's (``WARM_START_STYLES``):
    ``skill`` solutions slip now and then, ``habit`` ones follow the level's habit; neither holds a
    hard-pool pair."""
    if warm_start not in (None, *WARM_START_STYLES):
        raise ValueError(f"warm_start={warm_start!r}: use None or one of {WARM_START_STYLES}")
    rng = random.Random(f"{split}-{seed}")
    pool = hard_pool()
    rows = []
    counts = _level_counts(size)
    for level, count in zip(CHAIN_LEVELS, counts, strict=True):
        for _ in range(count):
            terms = chain_terms(level, rng, pool, in_pool=not warm_start)
            if warm_start == "habit":
                solution = habit_solution(terms, level, rng)
            else:
                solution = chain_solution(terms, level.slip if warm_start else 0.0, rng)
            rows.append(
                _row(
                    CHAIN_SOURCE,
                    split,
                    len(rows),
                    chain_question(terms),
                    str(sum(terms)),
                    solution,
                    level.name,
                )
            )
    rng.shuffle(rows)
    for index, row in enumerate(rows):
        row["extra_info"]["index"] = index
    return rows


def _level_counts(size: int) -> list[int]:
    counts = [round(size * level.share) for level in CHAIN_LEVELS[:-1]]
    return [*counts, size - sum(counts)]


# ---- reasoning-gym ------------------------------------------------------------------------------


def reasoning_gym_rows(spec: TaskSpec, split: str, size: int, seed: int) -> list[dict[str, Any]]:
    import reasoning_gym

    dataset = reasoning_gym.create_dataset(
        spec.family[3:], size=size, seed=zlib.crc32(f"{split}-{seed}".encode()), **dict(spec.options)
    )
    rows = []
    for entry in dataset:
        question = f"{entry['question']} Reply with the number only."
        answer = str(entry["answer"])
        rows.append(
            _row(spec.data_source, split, len(rows), question, answer, f"{ANSWER_PREFIX}{answer}.", str(spec))
        )
    return rows


# ---- common -------------------------------------------------------------------------------------


def generate_rows(
    task: TaskSpec | str, split: str, size: int, seed: int, warm_start: str | None = None
) -> list[dict]:
    """``size`` rows of ``task``; the same arguments give the same rows. ``warm_start`` (one of
    ``WARM_START_STYLES``) asks for the warm start's data of a task family that has it."""
    spec = TaskSpec.parse(task) if isinstance(task, str) else task
    if spec.family == CHAIN:
        return chain_rows(split, size, seed, warm_start=warm_start)
    return reasoning_gym_rows(spec, split, size, seed)


def _row(
    source: str, split: str, index: int, question: str, answer: str, solution: str, difficulty: str
) -> dict[str, Any]:
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": question}],
        "ability": "arithmetic",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {
            "split": split,
            "index": index,
            "question": question,
            "difficulty": difficulty,
            "solution": solution,
        },
    }


def write_parquet(rows: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path
