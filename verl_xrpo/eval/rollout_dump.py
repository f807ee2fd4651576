"""A training step as verl dumped it (``trainer.rollout_data_dir``), and XRPO's advantages recomputed.

verl writes one ``<step>.jsonl`` per step with each rollout's prompt, response, score and key;
XRPO's trainer adds the prompt group, the advantage the actor trained on, the log-likelihood that
sharpening used and whether verl padded the row in (``integration/trainer.py``). From that alone
the step's advantages can be computed again in one process: what a run with any number of ranks
must equal.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from verl_xrpo.config import SharpeningConfig
from verl_xrpo.core.advantage import compute_advantage, sequence_mean_log_prob


def is_padding(tag: dict) -> bool:
    """Whether verl padded this row in to divide the batch among its ranks (not a rollout)."""
    return bool(tag.get("is_padding", False))


def rollout_fields(
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    log_probs: torch.Tensor,
    uids: list,
    tags: list[dict],
) -> dict[str, list]:
    """Per rollout: its prompt group, the advantage the actor trained on (one value per response),
    the length-normalised log-likelihood sharpening used, its lengths, and whether verl padded it
    in. Enough to recompute every advantage of the step from the dump alone."""
    mask = response_mask.to(torch.float64)
    length = mask.sum(dim=-1)
    per_token = (advantages.to(torch.float64) * mask).sum(dim=-1) / length.clamp_min(1)
    seq_log_prob = sequence_mean_log_prob(log_probs.to(torch.float64), mask)
    return {
        "prompt_uid": [str(u) for u in uids],
        "advantage": per_token.tolist(),
        "seq_log_prob": seq_log_prob.tolist(),
        "response_length": length.long().tolist(),
        # prompt + response tokens, as verl's tag has it for balancing the ranks' shares
        "sequence_length": [tag.get("seq_len") for tag in tags],
        "is_padding": [is_padding(tag) for tag in tags],
    }


@dataclass(frozen=True)
class DumpedStep:
    step: int
    rows: list[dict]  # the rollouts, verl's padding rows left out
    padding: list[dict]  # verl's padding rows

    @property
    def rollouts_per_prompt(self) -> Counter:
        return Counter(row["prompt_uid"] for row in self.rows)


def read_step(path: Path) -> DumpedStep:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if rows and "advantage" not in rows[0]:
        raise ValueError(f"{path} has no XRPO fields: it was not dumped by XRPO's trainer")
    return DumpedStep(
        int(path.stem), [r for r in rows if not r["is_padding"]], [r for r in rows if r["is_padding"]]
    )


def read_steps(folder: Path) -> list[DumpedStep]:
    return sorted((read_step(p) for p in folder.glob("*.jsonl")), key=lambda s: s.step)


def recomputed_advantages(
    step: DumpedStep, sharpening: SharpeningConfig, norm_by_std: bool = True
) -> torch.Tensor:
    """Each row's advantage from its score, prompt group and log-likelihood, on one process."""
    scores = torch.tensor([[float(r["score"])] for r in step.rows], dtype=torch.float64)
    log_probs = torch.tensor([[float(r["seq_log_prob"])] for r in step.rows], dtype=torch.float64)
    result = compute_advantage(
        scores,
        torch.ones_like(scores),  # one "token" per row: its mean log-prob is the row's own
        [r["prompt_uid"] for r in step.rows],
        log_probs,
        sharpen=sharpening.enable,
        novelty_weight=sharpening.novelty_weight,
        max_ratio=sharpening.max_ratio,
        norm_by_std=norm_by_std,
    )
    return result.advantages[:, 0]


def largest_advantage_difference(step: DumpedStep, sharpening: SharpeningConfig) -> float:
    trained = torch.tensor([float(r["advantage"]) for r in step.rows], dtype=torch.float64)
    return float((trained - recomputed_advantages(step, sharpening)).abs().max())
