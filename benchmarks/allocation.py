"""Allocation benchmark: how well each way of spending a step's rollouts finds a learning signal.

Each prompt has a true success probability p; a rollout succeeds with it. Every allocator spends
GRPO's step budget (``prompts x rollout-n``) and is scored on the rollouts it puts into groups with
reward variance (mixed groups: the only ones with a non-zero GRPO advantage):

- ``uniform``: GRPO, ``rollout-n`` for every prompt;
- ``xrpo``: XRPO's planner at its defaults (phases, t-interval shrink + UCB bonus), with seeding's
  own share for the prompts that failed all of phase 1 (seeded rollouts succeed with
  ``max(p, --seeded-success)``: 0, the default, assumes exemplars never help);
- ``xrpo_no_seeding``: the same planner without seeding's share;
- ``oracle``: knows every p and places the same budget (at most ``n_max`` per prompt) to maximise
  the expected rollouts in mixed groups, sum of k (1 - p^k - (1-p)^k), by dynamic programming;
- ``oracle_after_phase1``: knows every p too, but like XRPO first gives every prompt ``n_base``
  rollouts, sees their outcomes, then places the rest in one later phase; this separates what a
  phase 1 costs from what the later phases' planning leaves;
- ``xrpo_history`` (only with ``--history``): XRPO with ``planning.skip_agreed``, where each
  prompt's outcome in the previous epoch is known. A prompt whose previous ``rollout-n`` rollouts
  all agreed (all failed or all passed) gets ``--history-base`` rollouts in phase 1 and none
  planned later, as Knapsack-RL and GRESO skip such prompts. The previous epoch's policy differs
  from this one: its success probability is ``p`` moved by ``N(0, --history-drift)`` on the logit
  scale.

    python -m benchmarks.allocation                          # every built-in mixture, a table of medians
    python -m benchmarks.allocation --rates rates.json       # per-prompt success rates recorded elsewhere
    python -m benchmarks.allocation --rates train_eval.json  # verl_xrpo.eval's output (pooled if several)

No model and no GPU: a few seconds. Figures and their reading are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from verl_xrpo.config import PlanningConfig, SeedingConfig, XRPOConfigError
from verl_xrpo.core.allocation import PromptCounts, later_phase_grants
from verl_xrpo.core.planner import RolloutPlanner


@dataclass(frozen=True)
class Mixture:
    """Per-prompt success probabilities: shares of Beta(a, b) components."""

    name: str
    components: tuple[tuple[float, float, float], ...]  # (share, a, b)

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        shares = np.array([c[0] for c in self.components])
        which = rng.choice(len(shares), size=size, p=shares / shares.sum())
        a = np.array([c[1] for c in self.components])[which]
        b = np.array([c[2] for c in self.components])[which]
        return rng.beta(a, b)


# Shaped like math RL batches: many prompts almost never solved, many almost always, some between.
MIXTURES = (
    Mixture("math_hard", ((0.45, 0.2, 6.0), (0.15, 6.0, 0.2), (0.40, 1.0, 1.0))),
    Mixture("math_easy", ((0.20, 0.2, 6.0), (0.45, 6.0, 0.2), (0.35, 1.0, 1.0))),
    Mixture("math_polar", ((0.40, 0.1, 10.0), (0.40, 10.0, 0.1), (0.20, 0.7, 0.7))),
)


@dataclass(frozen=True)
class Recorded:
    """Per-prompt success rates measured elsewhere (e.g. a warm start), resampled with replacement."""

    name: str
    rates: np.ndarray

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.rates, size=size, replace=True)


def load_rates(path: Path) -> np.ndarray:
    """Per-prompt success rates from a JSON list of probabilities, or from the output of
    ``python -m verl_xrpo.eval`` (successes per prompt over its samples). ValueError if neither."""
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "successes_per_prompt" in data and data.get("samples"):
        data = [s / data["samples"] for s in data["successes_per_prompt"]]
    rates = np.asarray(data, dtype=float) if isinstance(data, list) else np.empty(0)
    if rates.ndim != 1 or len(rates) == 0 or ((rates < 0) | (rates > 1)).any():
        raise ValueError(
            f"--rates {path}: expected a JSON list of probabilities, or verl_xrpo.eval output "
            "(with successes_per_prompt and samples)"
        )
    return rates


def sample(rates: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    return [(rng.uniform(size=c) < p).astype(float) for c, p in zip(counts, rates, strict=True)]


@dataclass(frozen=True)
class StepOutcome:
    rewards: list[np.ndarray]
    failed_phase_one: int = 0  # prompts whose phase-1 rollouts all failed
    seeded: int = 0  # of those, prompts that got seeded rollouts


def uniform(rates: np.ndarray, rollout_n: int, rng: np.random.Generator) -> StepOutcome:
    return StepOutcome(sample(rates, np.full(len(rates), rollout_n), rng))


def xrpo(
    rates: np.ndarray,
    rollout_n: int,
    rng: np.random.Generator,
    step: int,
    planning: PlanningConfig,
    seeding: SeedingConfig | None,
    seeded_success: float,
    skipped: np.ndarray | None = None,
) -> StepOutcome:
    """One step as ``integration/phases.py`` runs it, with every prompt's exemplars fitting.

    ``skipped`` (``planning.skip_agreed``): prompts that get ``skip_agreed_base`` rollouts in phase
    1, no seeding, and later rollouts only where the other prompts' caps cannot hold the budget.
    """
    planner = RolloutPlanner(planning, rollouts_per_prompt=rollout_n)
    skipped = np.zeros(len(rates), dtype=bool) if skipped is None else skipped
    base = planner.base_counts(len(rates), skipped)
    rewards = sample(rates, base, rng)
    budgets = planner.phase_budgets(len(rates), int(base.sum()))
    failing = [q for q in np.flatnonzero(~skipped) if not rewards[q].any()]
    reserved = np.zeros(len(rates), dtype=np.int64)
    if seeding is not None and budgets:
        reserved[failing] = planner.seeding_share(len(failing), len(rates), seeding)
    seeded_rates = np.maximum(rates, seeded_success)
    for phase, budget in enumerate(budgets):
        held = reserved if phase == 0 else None
        extra = later_phase_grants(planner, PromptCounts(rewards, skipped=skipped), budget, held, step=step)
        # rollouts of prompts that have failed every rollout so far are drawn seeded
        unsolved = np.array([not r.any() for r in rewards]) & (seeding is not None) & ~skipped
        phase_rates = np.where(unsolved, seeded_rates, rates)
        rewards = [
            np.concatenate([r, more])
            for r, more in zip(rewards, sample(phase_rates, extra, rng), strict=True)
        ]
    seeded = int((reserved[failing] > 0).sum()) if failing else 0
    return StepOutcome(rewards, failed_phase_one=len(failing), seeded=seeded)


@dataclass(frozen=True)
class History:
    """What the benchmark assumes of each prompt's previous epoch (``xrpo_history``)."""

    drift: float  # sd of the policy's change between epochs, on the logit scale of p
    base: int  # phase-1 rollouts of a prompt whose previous rollouts all agreed

    def agreed_before(self, rates: np.ndarray, rollout_n: int, rng: np.random.Generator) -> np.ndarray:
        """Prompts whose previous epoch's ``rollout_n`` rollouts all failed or all passed."""
        clipped = np.clip(rates, 1e-6, 1 - 1e-6)
        logit = np.log(clipped / (1 - clipped)) + rng.normal(0.0, self.drift, len(rates))
        successes = rng.binomial(rollout_n, 1 / (1 + np.exp(-logit)))
        return (successes == 0) | (successes == rollout_n)


def best_counts(gain: np.ndarray, budget: int) -> np.ndarray:
    """Per row, the column index (a rollout count) such that the counts add up to ``budget`` and the
    summed ``gain[row, count]`` is largest (dynamic programming; -inf marks a count not allowed)."""
    num_rows, width = gain.shape
    best = np.full(budget + 1, -np.inf)
    best[0] = 0.0
    choice = np.zeros((num_rows, budget + 1), dtype=np.int64)
    for q in range(num_rows):
        # candidates[j, k] = best[j - k] + gain[q, k]
        shifted = np.full((budget + 1, width), -np.inf)
        for kk in range(min(width - 1, budget) + 1):
            shifted[kk:, kk] = best[: budget + 1 - kk] + gain[q, kk]
        choice[q] = shifted.argmax(axis=1)
        best = shifted.max(axis=1)
    counts = np.zeros(num_rows, dtype=np.int64)
    left = budget
    for q in range(num_rows - 1, -1, -1):
        counts[q] = choice[q, left]
        left -= counts[q]
    return counts


def oracle_counts(rates: np.ndarray, budget: int, n_max: int) -> np.ndarray:
    """Rollouts per prompt (at most ``n_max``) maximising expected rollouts in mixed groups."""
    if not 0 <= budget <= len(rates) * n_max:
        raise ValueError(f"{budget} rollouts cannot go to {len(rates)} prompts at most {n_max} each")
    k = np.arange(n_max + 1)[None, :]
    p = rates[:, None]
    return best_counts(k * (1.0 - p**k - (1.0 - p) ** k), budget)


def oracle(rates: np.ndarray, rollout_n: int, rng: np.random.Generator, n_max: int) -> StepOutcome:
    return StepOutcome(sample(rates, oracle_counts(rates, len(rates) * rollout_n, n_max), rng))


def oracle_after_phase1(
    rates: np.ndarray, rollout_n: int, rng: np.random.Generator, n_max: int, n_base: int
) -> StepOutcome:
    """Knows every p and sees phase 1's outcomes (``n_base`` each), then places the rest of the
    budget in one go to maximise the expected rollouts in mixed groups: a prompt already mixed
    gains every rollout it gets, an agreed one gains its whole group only if a new rollout
    disagrees. What an allocator that must sample every prompt first can expect of one more phase."""
    first = sample(rates, np.full(len(rates), n_base), rng)
    wins = np.array([r.sum() for r in first])[:, None]
    k = np.arange(n_max - n_base + 1)[None, :]
    p = rates[:, None]
    disagrees = np.where(wins == 0, 1.0 - (1.0 - p) ** k, np.where(wins == n_base, 1.0 - p**k, 1.0))
    extra = best_counts((n_base + k) * disagrees, len(rates) * (rollout_n - n_base))
    return StepOutcome(
        [np.concatenate([a, b]) for a, b in zip(first, sample(rates, extra, rng), strict=True)]
    )


def score(outcome: StepOutcome) -> dict[str, float]:
    sizes = np.array([len(r) for r in outcome.rewards])
    mixed = np.array([0 < r.sum() < len(r) for r in outcome.rewards])
    scores = {
        "useful_share": float(sizes[mixed].sum() / sizes.sum()),
        "zero_variance_groups": float(1.0 - mixed.mean()),
    }
    if outcome.failed_phase_one:
        scores["seeded_share_of_phase1_fails"] = outcome.seeded / outcome.failed_phase_one
    return scores


def benchmark(
    source: Mixture | Recorded,
    draws: int,
    num_prompts: int,
    rollout_n: int,
    seeded_success: float,
    seed: int,
    history: History | None = None,
    phase_counts: tuple[int, ...] = (),
    ucb_lambdas: tuple[float, ...] = (),
    step: int | None = None,
) -> dict[str, dict[str, float]]:
    """Medians over ``draws`` steps; every allocator sees the same prompts in each draw.

    ``phase_counts``: other values of ``planning.num_phases`` to run as ``xrpo_<n>_phases``;
    ``ucb_lambdas``: other values of ``planning.ucb_lambda``, run as ``xrpo_lambda_<value>``.
    ``step``: the training step T of the UCB bonus in every draw (default: the draw's index, 1, 2, ...).
    """
    planning, seeding = PlanningConfig(), SeedingConfig()
    n_max = RolloutPlanner(planning, rollout_n).n_max
    allocators: dict[str, Callable[[np.ndarray, np.random.Generator, int], StepOutcome]] = {
        "uniform": lambda r, g, s: uniform(r, rollout_n, g),
        "xrpo": lambda r, g, s: xrpo(r, rollout_n, g, s, planning, seeding, seeded_success),
        "xrpo_no_seeding": lambda r, g, s: xrpo(r, rollout_n, g, s, planning, None, seeded_success),
        "oracle": lambda r, g, s: oracle(r, rollout_n, g, n_max),
        # knows p too, but like XRPO samples every prompt n_base times first: what planning could reach
        "oracle_after_phase1": lambda r, g, s: oracle_after_phase1(r, rollout_n, g, n_max, planning.n_base),
    }
    others = {f"xrpo_{c}_phases": replace(planning, num_phases=c) for c in phase_counts}
    others |= {f"xrpo_lambda_{v:g}": replace(planning, ucb_lambda=v) for v in ucb_lambdas}
    for name, other in others.items():
        if other != planning:
            allocators[name] = lambda r, g, s, other=other: xrpo(
                r, rollout_n, g, s, other, seeding, seeded_success
            )
    if history is not None:
        skipping = replace(planning, skip_agreed=True, skip_agreed_base=history.base)
        allocators["xrpo_history"] = lambda r, g, s: xrpo(
            r, rollout_n, g, s, skipping, seeding, seeded_success, history.agreed_before(r, rollout_n, g)
        )
    rng = np.random.default_rng(seed)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in allocators}
    for draw in range(1, draws + 1):
        rates = source.draw(num_prompts, rng)
        for name, allocate in allocators.items():
            outcome = allocate(rates, np.random.default_rng([seed, draw]), step or draw)
            assert sum(len(r) for r in outcome.rewards) == num_prompts * rollout_n  # GRPO's budget
            results[name].append(score(outcome))
    table = {}
    for name, rows in results.items():
        keys = sorted({k for row in rows for k in row})
        table[name] = {k: float(np.median([row[k] for row in rows if k in row])) for k in keys}
    oracle_share = table["oracle"]["useful_share"]
    for row in table.values():
        row["fraction_of_oracle"] = row["useful_share"] / oracle_share if oracle_share else float("nan")
    return table


def format_table(name: str, table: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        f"{name}:",
        f"  {'allocator':20s} {'useful':>7s} {'zero-var':>9s} {'of oracle':>10s} {'seeded':>7s}",
    ]
    for allocator, row in table.items():
        seeded = row.get("seeded_share_of_phase1_fails")
        lines.append(
            f"  {allocator:20s} {row['useful_share']:7.3f} {row['zero_variance_groups']:9.3f} "
            f"{row['fraction_of_oracle']:10.3f} {'-' if seeded is None else f'{seeded:7.2f}':>7s}"
        )
    return lines


def add_step_arguments(parser: argparse.ArgumentParser, draws: int, prompts: int) -> None:
    """The step's shape and the number of steps drawn: the flags every benchmark here shares."""
    parser.add_argument(
        "--draws", type=int, default=draws, help="steps drawn per source (default: %(default)s)"
    )
    parser.add_argument(
        "--prompts", type=int, default=prompts, help="prompts per step (default: %(default)s)"
    )
    parser.add_argument(
        "--rollout-n", type=int, default=8, help="GRPO's rollouts per prompt (default: %(default)s)"
    )
    parser.add_argument(
        "--phases",
        type=int,
        nargs="+",
        default=[],
        help="other planning.num_phases to run beside the default's",
    )


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the per-prompt success rates come from, and what seeding does to them."""
    parser.add_argument(
        "--seeded-success",
        type=float,
        default=0.0,
        help="success probability of a seeded rollout at least (default: %(default)s, seeding never helps)",
    )
    parser.add_argument(
        "--rates",
        type=Path,
        nargs="+",
        default=None,
        help="recorded per-prompt rates: JSON lists, or verl_xrpo.eval outputs; several are pooled",
    )


def sources_from_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace, mixtures: Sequence[Mixture]
) -> list[Mixture | Recorded]:
    """The recorded rates of ``--rates`` (first, when given), then ``mixtures``; refuses a
    ``--seeded-success`` that is not a probability."""
    if not 0.0 <= args.seeded_success <= 1.0:
        parser.error("--seeded-success must be a probability")
    sources: list[Mixture | Recorded] = list(mixtures)
    if args.rates is not None:
        try:
            rates = np.concatenate([load_rates(path) for path in args.rates])
        except (ValueError, OSError) as error:
            parser.error(str(error))
        names = ", ".join(path.name for path in args.rates)
        sources.insert(0, Recorded(f"recorded ({names}, {len(rates)} prompts)", rates))
    return sources


def check_step_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.prompts < 1 or args.rollout_n < 2 or args.draws < 1:
        parser.error("--prompts and --draws must be at least 1, --rollout-n at least 2")
    for count in args.phases:
        if count < 2:
            parser.error(f"--phases {count}: at least 2 (phase 1 and one that plans)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.allocation",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_step_arguments(parser, draws=200, prompts=64)
    add_source_arguments(parser)
    parser.add_argument(
        "--history", action="store_true", help="add xrpo_history: prompts that agreed last epoch skipped"
    )
    parser.add_argument(
        "--history-drift",
        type=float,
        default=0.5,
        help="policy change between epochs, sd on the logit scale (default: %(default)s)",
    )
    parser.add_argument(
        "--history-base",
        type=int,
        default=2,
        help="phase-1 rollouts of a prompt that agreed last epoch (default: %(default)s)",
    )
    parser.add_argument(
        "--ucb-lambda",
        type=float,
        nargs="+",
        default=[],
        help="other planning.ucb_lambda to run beside the default's",
    )
    parser.add_argument(
        "--step",
        type=int,
        default=None,
        help="training step T of the UCB bonus in every draw (default: the draw's index)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    check_step_arguments(parser, args)
    sources = sources_from_arguments(parser, args, MIXTURES)
    if args.step is not None and args.step < 1:
        parser.error(f"--step {args.step}: the training step counts from 1")
    for value in args.ucb_lambda:
        try:  # the trainer's own bounds for ucb_lambda
            PlanningConfig(ucb_lambda=value)
        except XRPOConfigError as error:
            parser.error(f"--ucb-lambda {value}: {error}")
    if args.history_drift < 0:
        parser.error("--history-drift must be >= 0")
    try:  # the trainer's own bounds for skip_agreed_base
        PlanningConfig(skip_agreed_base=args.history_base)
    except XRPOConfigError as error:
        parser.error(f"--history-base {args.history_base}: {error}")
    history = History(args.history_drift, args.history_base) if args.history else None
    print(
        f"{args.prompts} prompts x {args.rollout_n} rollouts per step, {args.draws} draws per source, "
        f"medians; seeded rollouts succeed with max(p, {args.seeded_success}); "
        f"T of the UCB bonus: {args.step or 'the draw index'}"
    )
    tables = {}
    for source in sources:
        table = benchmark(
            source,
            args.draws,
            args.prompts,
            args.rollout_n,
            args.seeded_success,
            args.seed,
            history,
            tuple(args.phases),
            tuple(args.ucb_lambda),
            args.step,
        )
        tables[source.name] = table
        print("\n".join(format_table(source.name, table)))
    if args.json is not None:
        args.json.write_text(json.dumps(tables, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
