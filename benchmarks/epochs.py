"""Allocation over several epochs: in-step phases against one submission planned from history.

Offline, no model. A training set of prompts is visited once an epoch, a fixed number of prompts a
step, at GRPO's budget per step. Each prompt's success probability drifts between its visits, as
a random walk on the logit scale whose per-step drift and spread are fitted to the committed
scale-model traces (``results/scale-compare/runs/*/seed*/rollouts.parquet``: every prompt group's
rollouts and successes per step) by maximum likelihood over consecutive visits of a prompt
(``fit_drift``). Allocators, all at GRPO's budget:

- ``uniform``: GRPO's ``rollout.n`` each;
- ``phases``: the paper's in-step phases (``benchmarks.allocation.xrpo``, the library's planner and
  allocator), no seeding (its lift is not known here);
- ``submission``: ``planning.mode=submission``: the library's ``PromptHistory`` and
  ``submission_counts``, one submission a step;
- ``oracle``: knows each visit's p and maximises the expected rollouts in mixed groups.

Scored on the useful share (rollouts in groups of mixed outcome) of each epoch; several training
runs (``--runs``), each with its own prompts and outcomes, give a mean and a 95% interval, and
the submission's gain over the phases paired by run.

    python -m benchmarks.epochs --rates results/scale-compare/runs/start/seed*/train_eval.json
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from benchmarks.allocation import load_rates, oracle_counts, sample, xrpo
from verl_xrpo.config import PlanningConfig
from verl_xrpo.core.allocation import submission_counts
from verl_xrpo.core.history import PromptHistory
from verl_xrpo.core.planner import RolloutPlanner

TRACES = "results/scale-compare/runs/*/seed*/rollouts.parquet"


@dataclass(frozen=True)
class Drift:
    """logit p moves by N(mean, sd^2) a step between a prompt's visits."""

    mean: float
    sd: float


def visit_pairs(paths: list[str]) -> np.ndarray:
    """(gap in steps, n1, k1, n2, k2) for each pair of consecutive visits of a prompt in the traces,
    unseeded rollouts only (a seeded rollout is drawn under another context)."""
    pairs = []
    for path in paths:
        frame = pd.read_parquet(path)
        frame = frame.assign(
            n=frame.rollouts - frame.seeded_rollouts, k=frame.successes - frame.seeded_successes
        )
        frame = frame[frame.n > 0].sort_values(["prompt_key", "step"])
        for _, visits in frame.groupby("prompt_key"):
            rows = visits[["step", "n", "k"]].to_numpy()
            for (s1, n1, k1), (s2, n2, k2) in itertools.pairwise(rows):
                if s2 > s1:
                    pairs.append((s2 - s1, n1, k1, n2, k2))
    return np.array(pairs, dtype=np.int64)


GRID = np.linspace(-7.0, 7.0, 141)  # logit p


def drift_log_likelihood(pairs: np.ndarray, drift: Drift) -> float:
    """log P(second visits | first visits, drift): the first visit's p on a logit grid (Jeffreys
    prior times its binomial likelihood), moved by the drift over the gap, then the second visit's
    binomial likelihood."""
    p = 1 / (1 + np.exp(-GRID))
    prior = np.sqrt(p * (1 - p))  # Jeffreys, on the logit scale
    total = 0.0
    for gap in np.unique(pairs[:, 0]):
        rows = pairs[pairs[:, 0] == gap]
        move = GRID[None, :] - GRID[:, None] - drift.mean * gap  # [from, to]
        sd = drift.sd * np.sqrt(gap)
        if sd > 0:
            moved = np.exp(-0.5 * (move / sd) ** 2)
        else:
            moved = (np.abs(move) == np.abs(move).min(axis=1, keepdims=True)).astype(float)
        moved /= moved.sum(axis=1, keepdims=True)
        _, n1, k1, n2, k2 = rows.T
        first = prior[None, :] * stats.binom.pmf(k1[:, None], n1[:, None], p[None, :])
        first /= first.sum(axis=1, keepdims=True)
        second = stats.binom.pmf(k2[:, None], n2[:, None], p[None, :])
        total += float(np.log(((first @ moved) * second).sum(axis=1)).sum())
    return total


def fit_drift(pairs: np.ndarray) -> Drift:
    """The drift of largest likelihood on a grid of means and spreads (per step)."""
    candidates = [
        Drift(mean, sd)
        for mean in np.linspace(-0.02, 0.06, 9)
        for sd in (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
    ]
    return max(candidates, key=lambda d: drift_log_likelihood(pairs, d))


def history_scores(paths: list[str], decays: tuple[float, ...], strengths: tuple[float, ...]) -> dict:
    """How well ``PromptHistory`` predicts a prompt's next visit in the traces, per setting: the
    mean log-likelihood per rollout of each revisit's outcome (Beta-binomial, unseeded rollouts),
    replaying each cell in step order; and the same from the success mix alone (no history)."""
    scores: dict[str, list[float]] = {}
    for path in paths:
        frame = pd.read_parquet(path).sort_values("step")
        frame = frame.assign(
            n=frame.rollouts - frame.seeded_rollouts, k=frame.successes - frame.seeded_successes
        )
        frame = frame[frame.n > 0]
        for decay, strength in [*itertools.product(decays, strengths), (None, 1.0)]:
            history = PromptHistory(decay=decay or 0.0, prior_strength=strength)
            name = "the mix alone" if decay is None else f"decay {decay:g}, prior worth {strength:g}"
            for _, step in frame.groupby("step"):
                for key, n, k in step[["prompt_key", "n", "k"]].itertuples(index=False):
                    if history.seen(key):
                        a, b = history.posterior(key)
                        if decay is None:  # the prior alone
                            prior = history.prior_mean()
                            a, b = strength * prior, strength * (1.0 - prior)
                        log_p = stats.betabinom.logpmf(k, n, a, b)
                        scores.setdefault(name, []).append(log_p / n)
                for key, n, k in step[["prompt_key", "n", "k"]].itertuples(index=False):
                    history.record(key, [1.0] * k + [0.0] * (n - k))
    return {name: (float(np.mean(v)), len(v)) for name, v in scores.items()}


def _logit(p: np.ndarray | float) -> np.ndarray | float:
    return np.log(p / (1 - p))


def run(
    start_rates: np.ndarray,
    drift: Drift,
    allocator: str,
    train_size: int,
    prompts_per_step: int,
    epochs: int,
    rollout_n: int,
    seed: int,
) -> list[float]:
    """One training run; the useful share of each epoch. Every allocator of a seed sees the same
    prompts, visit order and drift; only their rollouts' outcomes differ."""
    world = np.random.default_rng([seed, 0])
    logits = _logit(np.clip(world.choice(start_rates, size=train_size), 0.01, 0.99))
    questions = [f"prompt {i}" for i in range(train_size)]
    outcomes = np.random.default_rng([seed, 1])
    planning = PlanningConfig(mode="submission") if allocator == "submission" else PlanningConfig()
    planner = RolloutPlanner(planning, rollout_n)
    history = PromptHistory(decay=planning.history_decay)
    shares, step = [], 0
    for _ in range(epochs):
        order = world.permutation(train_size)
        useful = total = 0
        for start in range(0, train_size - prompts_per_step + 1, prompts_per_step):
            step += 1
            logits += world.normal(drift.mean, drift.sd, size=train_size)  # every prompt, every step
            rows = order[start : start + prompts_per_step]
            rates = 1 / (1 + np.exp(-logits[rows]))
            asked = [questions[row] for row in rows]
            if allocator == "uniform":
                rewards = sample(rates, np.full(len(rows), rollout_n), outcomes)
            elif allocator == "phases":
                rewards = xrpo(rates, rollout_n, outcomes, step, planning, None, 0.0).rewards
            elif allocator == "oracle":
                counts = oracle_counts(rates, len(rows) * rollout_n, planner.n_max)
                rewards = sample(rates, counts, outcomes)
            else:
                seen = np.array([history.seen(q) for q in asked])
                counts = submission_counts(planner, history.estimate(asked), seen, step=step)
                rewards = sample(rates, counts, outcomes)
            for question, got in zip(asked, rewards, strict=True):
                history.record(question, got)
                if 0 < got.sum() < len(got):
                    useful += len(got)
                total += len(got)
        shares.append(useful / total)
    return shares


ALLOCATORS = ("uniform", "phases", "submission", "oracle")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.epochs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=Path, nargs="+", required=True, help="start rates (eval outputs)")
    parser.add_argument("--traces", default=TRACES, help="rollout tables to fit the drift to (a glob)")
    parser.add_argument("--runs", type=int, default=20, help="training runs per allocator")
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--prompts-per-step", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rollout-n", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(args.traces))
    if not paths:
        parser.error(f"--traces {args.traces}: no rollout table")
    print("how well the prompt history predicts the next visit (mean log-likelihood a rollout):")
    for name, (score, visits) in history_scores(paths, (0.0, 0.25, 0.5, 0.75, 1.0), (1.0, 2.0, 4.0)).items():
        print(f"  {name:32s} {score:.4f}  ({visits} revisits)")
    pairs = visit_pairs(paths)
    drift = fit_drift(pairs)
    start_rates = np.concatenate([load_rates(path) for path in args.rates])
    print(
        f"drift of logit p a step, fitted to {len(pairs)} visit pairs of {len(paths)} cells: "
        f"mean {drift.mean:+.4f}, sd {drift.sd:.4f}; {args.train_size} prompts, "
        f"{args.prompts_per_step} a step, {args.epochs} epochs, {args.runs} runs"
    )
    shares = {
        name: np.array(
            [
                run(
                    start_rates,
                    drift,
                    name,
                    args.train_size,
                    args.prompts_per_step,
                    args.epochs,
                    args.rollout_n,
                    s,
                )
                for s in range(args.runs)
            ]
        )
        for name in ALLOCATORS
    }
    table = {"drift": {"mean": drift.mean, "sd": drift.sd, "pairs": len(pairs)}, "epochs": {}}
    print(
        f"  {'epoch':>5s}" + "".join(f" {name:>20s}" for name in ALLOCATORS) + "   submission - phases (95%)"
    )
    for epoch in range(args.epochs):
        row = {name: _mean_ci(shares[name][:, epoch]) for name in ALLOCATORS}
        gain = _mean_ci(shares["submission"][:, epoch] - shares["phases"][:, epoch])
        row["submission_minus_phases"] = gain
        table["epochs"][epoch + 1] = row
        cells = "".join(f" {m:8.3f} [{lo:.3f},{hi:.3f}]" for m, lo, hi in (row[n] for n in ALLOCATORS))
        print(f"  {epoch + 1:5d}{cells}   {gain[0]:+.3f} [{gain[1]:+.3f}, {gain[2]:+.3f}]")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))
    return 0


def _mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(values.mean())
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


if __name__ == "__main__":
    raise SystemExit(main())
