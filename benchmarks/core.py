"""Benchmark of XRPO's core: advantage, planner and exemplar retrieval, with medians and ratios.

    python -m benchmarks.core            # the issue's sizes (about 2 minutes on 2 cores)
    python -m benchmarks.core --quick    # small sizes, a smoke run

Every contender runs in the same process, interleaved round by round, so machine noise hits all
of them alike. Figures are wall-clock medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def interleaved(
    contenders: dict[str, Callable[[], object]], rounds: int, slow: set[str] = frozenset()
) -> dict:
    """Run each contender once per round, in turn; `slow` ones only in the first 3 rounds."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        for name, fn in contenders.items():
            if name in slow and r >= 3:
                continue
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def outcome_batch(num_groups: int, group_size: int, tokens: int, seed: int = 0, all_mixed: bool = False):
    """Outcome rewards on the last response token, verl's int64 mask, uid strings, log-probs.

    Per-prompt success rates: 25% always fail, 15% always succeed, the rest uniform in (0, 1),
    roughly what a GRPO batch on math looks like; `all_mixed` makes every group have variance.
    """
    gen = torch.Generator().manual_seed(seed)
    n = num_groups * group_size
    if all_mixed:
        rate = torch.rand(num_groups, generator=gen) * 0.8 + 0.1
    else:
        kind = torch.rand(num_groups, generator=gen)
        rate = torch.where(
            kind < 0.25, 0.0, torch.where(kind < 0.4, 1.0, torch.rand(num_groups, generator=gen))
        )
    correct = (torch.rand(n, generator=gen) < rate.repeat_interleave(group_size)).float()
    lengths = torch.randint(tokens // 8, tokens + 1, (n,), generator=gen)
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).to(torch.int64)
    rewards = torch.zeros(n, tokens)
    rewards[torch.arange(n), lengths - 1] = correct
    log_probs = -2.0 * torch.rand(n, tokens, generator=gen) * mask
    uid = np.array([f"{g:08x}-prompt" for g in range(num_groups)], dtype=object).repeat(group_size)
    return rewards, mask, uid, log_probs


SHARPENING_ON = {"norm_adv_by_std_in_grpo": True, "xrpo": {"sharpening": {"enable": True}}}
SHARPENING_OFF = {"norm_adv_by_std_in_grpo": True, "xrpo": {"sharpening": {"enable": False}}}


def advantage_contenders(rewards, mask, uid, log_probs, with_off: bool = True) -> dict:
    from verl.trainer.ppo import core_algos

    from verl_xrpo.integration.estimator import compute_xrpo_outcome_advantage

    contenders = {
        "verl grpo": lambda: core_algos.compute_grpo_outcome_advantage(rewards, mask, uid),
        "verl grpo_vectorized": lambda: core_algos.compute_grpo_vectorized_outcome_advantage(
            rewards, mask, uid
        ),
        "xrpo (sharpening on)": lambda: compute_xrpo_outcome_advantage(
            rewards, mask, uid, config=SHARPENING_ON, old_log_probs=log_probs
        ),
    }
    if with_off:
        contenders["xrpo (sharpening off)"] = lambda: compute_xrpo_outcome_advantage(
            rewards, mask, uid, config=SHARPENING_OFF
        )
    return contenders


def print_ratios(title: str, times: dict, digits: int = 1) -> None:
    print(title)
    ours = median_ms(times["xrpo (sharpening on)"])
    for name, samples in times.items():
        print(
            f"  {name:24s} {median_ms(samples):9.{digits}f} ms   xrpo-on speed-up vs this: "
            f"{median_ms(samples) / ours:6.2f}x"
        )


def bench_advantage(num_groups: int, group_size: int, tokens: int, rounds: int) -> None:
    for all_mixed in (False, True):
        batch = outcome_batch(num_groups, group_size, tokens, all_mixed=all_mixed)
        times = interleaved(advantage_contenders(*batch), rounds, slow={"verl grpo"})
        label = "every group mixed" if all_mixed else "realistic mix of groups"
        print_ratios(
            f"\nadvantage: {num_groups * group_size} responses x {tokens} tokens in {num_groups} groups, "
            f"int64 mask, {label}; median of {rounds} rounds (verl grpo: 3)",
            times,
        )

    # The same responses with one token each: what is left is the per-response, per-group work
    # (verl grpo's Python loop), without the memory-bound passes over tokens every estimator makes.
    batch = outcome_batch(num_groups, group_size, 1)
    times = interleaved(advantage_contenders(*batch, with_off=False), rounds)
    print_ratios(
        f"\nadvantage, per-response part only: {num_groups * group_size} responses x 1 token; "
        f"median of {rounds} rounds",
        times,
        digits=2,
    )


def bench_planner(num_prompts: int, per_prompt: int, phases: int, rounds: int) -> None:
    from verl_xrpo.config import PlanningConfig
    from verl_xrpo.core.planner import RolloutPlanner

    planner = RolloutPlanner(PlanningConfig(num_phases=phases), rollouts_per_prompt=per_prompt)
    rng = np.random.default_rng(0)
    rates = rng.uniform(size=num_prompts)

    def plan_step() -> int:
        counts = planner.base_counts(num_prompts)
        rewards = [(rng.uniform(size=c) < p).astype(float) for c, p in zip(counts, rates, strict=True)]
        for budget in planner.phase_budgets(num_prompts):
            extra = planner.plan_phase(rewards, budget, step=100).extra
            rewards = [
                np.concatenate([r, (rng.uniform(size=e) < p).astype(float)])
                for r, e, p in zip(rewards, extra, rates, strict=True)
            ]
        total = sum(len(r) for r in rewards)
        assert total == planner.step_budget(num_prompts), total
        return total

    times = interleaved({"plan": plan_step}, rounds)["plan"]
    print(
        f"\nplanner: {num_prompts} prompts, budget {per_prompt}/prompt, {phases} phases "
        f"(all planning of one step, reward simulation included): median {median_ms(times):.2f} ms "
        f"over {rounds} steps (target < 50 ms)"
    )


def synthetic_questions(count: int, seed: int) -> list[str]:
    """Math-flavoured word problems with varied vocabulary, so BM25 has real work to do."""
    rng = np.random.default_rng(seed)
    names = ["Ava", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivan", "Jun", "Kofi", "Lena"]
    things = [
        "apples",
        "marbles",
        "coins",
        "books",
        "stamps",
        "pencils",
        "cookies",
        "shells",
        "tickets",
        "cards",
        "beads",
        "rocks",
        "eggs",
        "flowers",
        "boxes",
        "bottles",
        "candles",
        "ropes",
    ]
    verbs = ["buys", "finds", "loses", "sells", "gives away", "collects", "bakes", "trades", "paints"]
    asks = [
        "How many {t} are left?",
        "What is the total number of {t}?",
        "How many {t} does each get?",
        "What fraction of the {t} remain?",
        "By how much did the {t} grow?",
    ]
    out = []
    for _ in range(count):
        n, t, v = rng.choice(names), rng.choice(things), rng.choice(verbs)
        a, b, c = rng.integers(2, 999, size=3)
        ask = rng.choice(asks).format(t=t)
        out.append(f"{n} has {a} {t}, {v} {b} more and then splits them into {c} groups. {ask}")
    return out


def bench_retrieval(bank_size: int, queries: int, rounds: int) -> None:
    from verl_xrpo.core.bank import ExemplarBank

    questions = synthetic_questions(bank_size, seed=1)
    bank = ExemplarBank(max_size=bank_size)
    start = time.perf_counter()
    for q in questions:
        bank.add(q, "Work it out step by step. The answer is 42.")
    fill_s = time.perf_counter() - start
    query_texts = synthetic_questions(queries, seed=2)
    start = time.perf_counter()
    bank.retrieve(query_texts[:1], k=2)  # builds the index
    build_s = time.perf_counter() - start
    times = interleaved({"retrieve": lambda: bank.retrieve(query_texts, k=2)}, rounds)["retrieve"]
    print(
        f"\nretrieval: {queries} queries, top-2, from a bank of {len(bank)} exemplars (BM25): "
        f"median {median_ms(times):.1f} ms over {rounds} rounds (target < 1000 ms); "
        f"filling the bank {fill_s:.2f} s, building the index {build_s:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", choices=["advantage", "planner", "retrieval"], default=None)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.quick:
        sizes = {"advantage": (32, 16, 256, 3), "planner": (64, 16, 3, 5), "retrieval": (2000, 64, 3)}
    else:
        sizes = {"advantage": (512, 16, 4096, 7), "planner": (512, 16, 3, 30), "retrieval": (100_000, 512, 5)}
    runs = {"advantage": bench_advantage, "planner": bench_planner, "retrieval": bench_retrieval}
    for name, fn in runs.items():
        if args.only in (None, name):
            fn(*sizes[name])


if __name__ == "__main__":
    main()
