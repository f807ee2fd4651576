"""Sample-based accuracy metrics: pass@1, the unbiased pass@k estimator, and cons@k.

Each prompt has ``n`` sampled responses, each with a correctness flag and an extracted answer.

- pass@1 is the mean correctness over all samples of all prompts.
- pass@k is the unbiased estimator of Chen et al. (2021): for a prompt with ``c`` correct of
  ``n`` samples, ``1 - C(n - c, k) / C(n, k)``, the chance that k samples drawn without
  replacement hold at least one correct; averaged over prompts.
- cons@k is majority voting over the prompt's first ``k`` answers: the prompt counts as solved
  when the most frequent answer (ties: the one seen first) belongs to a correct sample. Samples
  without an extractable answer do not vote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PromptSamples:
    data_source: str
    correct: Sequence[bool]
    answers: Sequence[str | None]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for ``c`` correct of ``n`` samples (``k <= n``)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) as a product, which stays exact enough and never overflows
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_correct(correct: Sequence[bool], answers: Sequence[str | None]) -> bool:
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(a for a in answers if a is not None and votes[a] == top)
    return any(ok for ok, a in zip(correct, answers, strict=True) if a == winner)


def score_prompts(prompts: Sequence[PromptSamples], ks: Sequence[int]) -> dict[str, float]:
    """pass@1, pass@k and cons@k (k in ``ks``, each at most every prompt's sample count)."""
    if not prompts:
        raise ValueError("no prompts to score")
    smallest = min(len(p.correct) for p in prompts)
    bad = [k for k in ks if not 1 <= k <= smallest]
    if bad:
        raise ValueError(
            f"k={bad} needs at least that many samples per prompt; the fewest here is {smallest}"
        )
    flags = np.concatenate([np.asarray(p.correct, dtype=float) for p in prompts])
    result = {"prompts": float(len(prompts)), "pass@1": float(flags.mean())}
    for k in ks:
        result[f"pass@{k}"] = float(
            np.mean([pass_at_k(len(p.correct), int(sum(p.correct)), k) for p in prompts])
        )
        result[f"cons@{k}"] = float(
            np.mean([majority_correct(p.correct[:k], p.answers[:k]) for p in prompts])
        )
    return result


def score_by_source(prompts: Sequence[PromptSamples], ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """The metrics per data source, and over all prompts under ``"all"``."""
    sources = sorted({p.data_source for p in prompts})
    table = {s: score_prompts([p for p in prompts if p.data_source == s], ks) for s in sources}
    table["all"] = score_prompts(prompts, ks)
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    columns = list(next(iter(table.values())))
    width = max(len(name) for name in table)
    lines = ["  ".join([f"{'data source':<{width}}", *(f"{c:>8}" for c in columns)])]
    for name, row in table.items():
        cells = [f"{row[c]:>8.0f}" if c == "prompts" else f"{row[c]:>8.3f}" for c in columns]
        lines.append("  ".join([f"{name:<{width}}", *cells]))
    return "\n".join(lines)
