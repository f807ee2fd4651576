"""A rollout-budget simulation: XRPO's planner against GRPO's uniform n, on simulated prompts.

Each prompt has a hidden solve rate (a quarter never solved, some always solved, the rest spread
out, as in a GRPO batch on math); a rollout succeeds with that probability. At the same budget per
step, it reports how many rollouts land in groups with a learning signal (non-zero reward
variance) and how well each prompt's solve rate is estimated. No model, no GPU, a few seconds.

    python -m verl_xrpo.simulate --steps 20 --prompts 64 --rollout-n 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from verl_xrpo.config import PlanningConfig
from verl_xrpo.core.planner import RolloutPlanner


def draw_rates(num_prompts: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.uniform(size=num_prompts)
    return np.where(kind < 0.25, 0.0, np.where(kind < 0.35, 1.0, rng.beta(0.7, 0.7, size=num_prompts)))


def sample(rates: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    return [(rng.uniform(size=c) < p).astype(float) for c, p in zip(counts, rates, strict=True)]


def step_summary(rewards: list[np.ndarray], rates: np.ndarray) -> dict[str, float]:
    counts = np.array([len(r) for r in rewards])
    mixed = np.array([0 < r.sum() < len(r) for r in rewards])
    error = np.array([abs(r.mean() - p) for r, p in zip(rewards, rates, strict=True)])
    return {
        "useful_rollout_share": float(counts[mixed].sum() / counts.sum()),
        "zero_variance_group_share": float(1 - mixed.mean()),
        "rate_abs_error": float(error.mean()),
        "rollouts_min": int(counts.min()),
        "rollouts_max": int(counts.max()),
    }


def run(steps: int, num_prompts: int, rollout_n: int, config: PlanningConfig, seed: int) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    planner = RolloutPlanner(config, rollouts_per_prompt=rollout_n)
    totals: dict[str, list[dict]] = {"grpo": [], "xrpo": []}
    plan_seconds = 0.0
    for step in range(1, steps + 1):
        rates = draw_rates(num_prompts, rng)
        totals["grpo"].append(step_summary(sample(rates, np.full(num_prompts, rollout_n), rng), rates))
        rewards = sample(rates, planner.base_counts(num_prompts), rng)
        for budget in planner.phase_budgets(num_prompts):
            start = time.perf_counter()
            extra = planner.plan_phase(rewards, budget, step=step).extra
            plan_seconds += time.perf_counter() - start
            rewards = [
                np.concatenate([r, more]) for r, more in zip(rewards, sample(rates, extra, rng), strict=True)
            ]
        assert sum(len(r) for r in rewards) == planner.step_budget(num_prompts)
        totals["xrpo"].append(step_summary(rewards, rates))
        g, x = totals["grpo"][-1], totals["xrpo"][-1]
        print(
            f"step {step:3d}/{steps}  useful rollouts: grpo {g['useful_rollout_share']:.3f}  "
            f"xrpo {x['useful_rollout_share']:.3f}   "
            f"xrpo rollouts/prompt {x['rollouts_min']}-{x['rollouts_max']}",
            flush=True,
        )
    summary = {
        name: {k: float(np.mean([s[k] for s in rows])) for k in rows[0]} for name, rows in totals.items()
    }
    summary["xrpo"]["planning_ms_per_step"] = 1000 * plan_seconds / steps
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rollout-n", type=int, default=8)
    parser.add_argument("--n-base", type=int, default=4)
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--ucb-lambda", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = PlanningConfig(n_base=args.n_base, num_phases=args.phases, ucb_lambda=args.ucb_lambda)
    print(f"{args.prompts} prompts x {args.rollout_n} rollouts per step, planner {config}")
    summary = run(args.steps, args.prompts, args.rollout_n, config, args.seed)
    print(f"\nmean over {args.steps} steps, same budget ({args.prompts * args.rollout_n} rollouts/step):")
    print(f"  {'':28s} {'grpo':>8s} {'xrpo':>8s}")
    for key in ("useful_rollout_share", "zero_variance_group_share", "rate_abs_error"):
        print(f"  {key:28s} {summary['grpo'][key]:8.3f} {summary['xrpo'][key]:8.3f}")
    print(f"  planning time per step: {summary['xrpo']['planning_ms_per_step']:.2f} ms")


if __name__ == "__main__":
    main()
