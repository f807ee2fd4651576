"""Generation-time benchmark: what XRPO's phase barriers cost on heavy-tailed response lengths.

GRPO submits a step's ``prompts x rollout-n`` rollouts at once and waits for the slowest. XRPO as
built waits for every phase's slowest rollout before it plans the next phase, so on reasoning
lengths (a long right tail) its generation time tends towards the sum of the phases' tails. This
benchmark puts numbers on that with a model of a continuous-batching engine, and measures the
overlapped schedule, which plans the next phase once a share of the current one's rollouts is in,
so new work fills the slots the tail leaves idle. As in the trainer
(``algorithm.xrpo.planning.overlap_share``), a prompt may get new rollouts while its earlier ones
still run; they count towards its n and its cap. And it measures ``planning.mode=submission``:
every prompt's rollout count decided before the step generates, from the prompt's earlier visits,
so the step makes one submission and waits for one tail, as GRPO does.

The models:

- lengths: per prompt a median ``median x exp(N(0, prompt_sigma))``, per rollout times
  ``exp(N(0, sigma))``, wrong answers ``wrong_factor`` times longer, cut at ``max_len`` (assumed
  shapes, printed with the share of responses that hit the cut; change them with the flags);
- engine: ``replicas`` vLLM servers, each decoding up to ``max_num_seqs`` sequences together, one
  token per sequence per iteration of ``base_ms + per_seq_ms x running`` milliseconds (decode is
  memory-bound: an iteration costs little more with more sequences); prefill is left out;
  requests go to the server with the fewest outstanding requests, as verl's server manager does;
- rewards: per-prompt success rates from ``allocation.MIXTURES``, allocation by XRPO's own planner
  with seeding's share (``allocation.py`` describes the allocation benchmark itself);
- the submission's history (``LastVisit``): each prompt has exactly one earlier visit, ``gap``
  steps before this one (default 8: 256 training prompts, 32 a step, as in ``benchmarks.epochs``),
  of ``rollout.n`` rollouts (GRPO's counts, what a first epoch under ``planning.mode=submission``
  draws), at the success rate the prompt had then: this step's rate with its logit moved back by
  a drift of N(mean, sd^2) a step over the gap (default ``benchmarks.epochs``' fit to the
  scale-model traces, N(+0.03, 0.2^2) a step, so N(+0.24, 0.57^2) over 8 steps). That visit is
  recorded into the library's ``PromptHistory`` (its prior mix: these visits' alone) and the step
  planned by its ``submission_counts`` at the defaults, seeding included: a prompt whose visit
  failed every rollout is drawn seeded as a whole group, within seeding's share of the step, as
  the trainer does. Every prompt has been seen, once: a second epoch, not a first (where the
  submission is GRPO's allocation) nor a later one (where the history holds more, older visits).

    python -m benchmarks.generation            # table of medians: time ratio, useful share
    python -m benchmarks.generation --visit-gap 2 --drift-sd 0.1   # a fresher history

A model of an engine, not a measurement of one: ratios, not seconds, are what it is for.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from benchmarks.allocation import (
    MIXTURES,
    Mixture,
    Recorded,
    StepOutcome,
    add_source_arguments,
    add_step_arguments,
    check_step_arguments,
    score,
    sources_from_arguments,
)
from benchmarks.epochs import Drift
from verl_xrpo.config import PlanningConfig, SeedingConfig
from verl_xrpo.core.allocation import PromptCounts, later_phase_grants, submission_counts
from verl_xrpo.core.history import PromptHistory
from verl_xrpo.core.planner import RolloutPlanner

BUILT = "xrpo (phases as built)"  # the barrier schedule, which the others' useful share is set against
SUBMISSION = "xrpo submission (planned from history)"  # planning.mode=submission
# benchmarks.epochs' drift of largest likelihood on the scale-model traces (2026-12-07, 12,776 visit
# pairs; results/epochs/allocation.json): logit p moves by N(+0.03, 0.2^2) a step between visits
TRACE_DRIFT = Drift(mean=0.03, sd=0.2)


@dataclass(frozen=True)
class Lengths:
    median: float = 2000.0
    prompt_sigma: float = 0.5
    sigma: float = 0.5
    wrong_factor: float = 1.5
    max_len: int = 8192

    def draw(self, prompt_scale: np.ndarray, correct: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = np.exp(rng.normal(0.0, self.sigma, size=correct.shape))
        raw = self.median * prompt_scale * noise * np.where(correct, 1.0, self.wrong_factor)
        return np.clip(np.round(raw), 1, self.max_len)


@dataclass(frozen=True)
class Engine:
    replicas: int = 8
    max_num_seqs: int = 256
    base_ms: float = 12.0
    per_seq_ms: float = 0.05

    def iteration_seconds(self, running: np.ndarray) -> np.ndarray:
        return (self.base_ms + self.per_seq_ms * running) / 1000.0


class EngineRun:
    """A fluid model of ``Engine``: each running sequence advances 1 token per iteration."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.now = 0.0
        self.queues: list[list[int]] = [[] for _ in range(engine.replicas)]
        self.running: list[dict[int, float]] = [{} for _ in range(engine.replicas)]
        self.length: dict[int, float] = {}
        self.busy_slot_seconds = 0.0

    def outstanding(self, replica: int) -> int:
        return len(self.queues[replica]) + len(self.running[replica])

    def submit(self, request: int, length: float) -> None:
        replica = min(range(self.engine.replicas), key=self.outstanding)
        self.length[request] = length
        self.queues[replica].append(request)
        self._fill(replica)

    def _fill(self, replica: int) -> None:
        queue, running = self.queues[replica], self.running[replica]
        while queue and len(running) < self.engine.max_num_seqs:
            request = queue.pop(0)
            running[request] = self.length[request]

    def advance(self) -> list[int]:
        """Run to the next completion(s); returns the finished requests (empty when idle)."""
        sizes = np.array([len(r) for r in self.running], dtype=float)
        if not sizes.any():
            return []
        per_iteration = self.engine.iteration_seconds(sizes)
        to_next = [
            min(r.values()) * t if r else np.inf for r, t in zip(self.running, per_iteration, strict=True)
        ]
        dt = min(to_next)
        self.now += dt
        self.busy_slot_seconds += dt * sizes.sum()
        finished = []
        for replica, (running, t) in enumerate(zip(self.running, per_iteration, strict=True)):
            for request in list(running):
                running[request] -= dt / t
                if running[request] <= 1e-9:
                    del running[request]
                    finished.append(request)
            self._fill(replica)
        return finished


@dataclass(frozen=True)
class LastVisit:
    """The submission schedule's history: each prompt's one earlier visit, ``gap`` steps back."""

    drift: Drift = TRACE_DRIFT  # of logit p, a step
    gap: int = 8

    def rates(self, rates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The success rates of the earlier visit: this step's, their logit moved back by the drift
        over the gap (this step's = then + N(mean x gap, sd^2 x gap))."""
        clipped = np.clip(rates, 1e-6, 1 - 1e-6)
        moved = rng.normal(self.drift.mean * self.gap, self.drift.sd * np.sqrt(self.gap), size=len(rates))
        return 1 / (1 + np.exp(moved - np.log(clipped / (1 - clipped))))


@dataclass(frozen=True)
class StepResult:
    seconds: float
    rollouts: int
    submissions: int  # generation calls: one for GRPO and the submission, one a phase otherwise
    useful_share: float
    slot_utilisation: float  # busy sequence slots over all slots while the step ran
    clipped_share: float


def run_step(
    rates: np.ndarray,
    rollout_n: int,
    step: int,
    planning: PlanningConfig | None,
    overlap_share: float,
    seeding: SeedingConfig,
    lengths: Lengths,
    engine: Engine,
    rng: np.random.Generator,
    seeded_success: float = 0.0,
    last_visit: LastVisit | None = None,
) -> StepResult:
    """One step's generation: GRPO when ``planning`` is None, XRPO's one submission planned from
    history when ``planning.mode`` is 'submission' (``last_visit``: the history), else its phases.

    XRPO plans the next phase once ``overlap_share`` of the current phase's rollouts are
    in (1.0: after all of them, the barrier as built). Prompts with rollouts still running are
    planned on the rewards that are in, their pending rollouts counted towards n and the cap.
    Rollouts of a prompt that has failed every rollout in so far (one at least; under the barrier,
    all of its rollouts) are drawn seeded, as the trainer draws them: they succeed with
    ``max(p, seeded_success)``, and the first later phase holds seeding's share for such prompts.
    In a submission the seeded prompts are those whose earlier visit failed every rollout, their
    whole group drawn seeded.
    """
    num_prompts = len(rates)
    prompt_scale = np.exp(rng.normal(0.0, lengths.prompt_sigma, size=num_prompts))
    seeded_rates = np.maximum(rates, seeded_success)
    sim = EngineRun(engine)
    owner: list[int] = []
    reward: list[float] = []
    done: list[bool] = []
    all_lengths: list[float] = []
    submissions = 0

    def submit(counts: np.ndarray, seeded: np.ndarray | None = None) -> list[int]:
        """``seeded``: prompts drawn seeded (default: those failing every rollout so far)."""
        nonlocal submissions
        submissions += 1
        first = len(owner)
        unsolved = failing_so_far(progress()[0]) if seeded is None else seeded
        for q, count in enumerate(counts):
            rate = seeded_rates[q] if planning is not None and unsolved[q] else rates[q]
            correct = rng.uniform(size=int(count)) < rate
            for c, length in zip(
                correct, lengths.draw(np.full(int(count), prompt_scale[q]), correct, rng), strict=True
            ):
                owner.append(q)
                reward.append(float(c))
                done.append(False)
                all_lengths.append(float(length))
                sim.submit(len(owner) - 1, float(length))
        return list(range(first, len(owner)))

    def wait_for(requests: list[int], share: float) -> None:
        need = int(np.ceil(share * len(requests)))
        while sum(done[r] for r in requests) < need:
            for r in sim.advance():
                done[r] = True

    def progress() -> tuple[list[list[float]], np.ndarray]:
        """Each prompt's rewards that are in, and its rollouts still running."""
        finished: list[list[float]] = [[] for _ in range(num_prompts)]
        pending = np.zeros(num_prompts, dtype=np.int64)
        for r, q in enumerate(owner):
            if done[r]:
                finished[q].append(reward[r])
            else:
                pending[q] += 1
        return finished, pending

    def failing_so_far(finished: list[list[float]]) -> np.ndarray:
        """Prompts that failed every rollout that is in, with one in at least (some may still run)."""
        return np.array([bool(f) and not any(f) for f in finished])

    if planning is None:
        wait_for(submit(np.full(num_prompts, rollout_n)), 1.0)
    elif planning.mode == "submission":
        wait_for(submit(*plan_submission(rates, rollout_n, step, planning, seeding, last_visit, rng)), 1.0)
    else:
        planner = RolloutPlanner(planning, rollouts_per_prompt=rollout_n)
        phase = submit(planner.base_counts(num_prompts))
        for index, budget in enumerate(planner.phase_budgets(num_prompts)):
            wait_for(phase, overlap_share)
            finished, pending = progress()
            held = np.zeros(num_prompts, dtype=np.int64)
            if index == 0:
                # seeding's share: prompts whose phase-1 rollouts in so far all failed
                failing = np.flatnonzero(failing_so_far(finished))
                held[failing] = planner.seeding_share(len(failing), num_prompts, seeding)
            prompts = PromptCounts([np.array(f) for f in finished], pending=pending)
            phase = submit(later_phase_grants(planner, prompts, budget, held, step=step))
        wait_for(list(range(len(owner))), 1.0)
    groups = [np.array([reward[r] for r, o in enumerate(owner) if o == q]) for q in range(num_prompts)]
    slots = engine.replicas * engine.max_num_seqs
    return StepResult(
        seconds=sim.now,
        rollouts=len(owner),
        submissions=submissions,
        useful_share=score(StepOutcome(groups))["useful_share"],
        slot_utilisation=sim.busy_slot_seconds / (sim.now * slots),
        clipped_share=float(np.mean(np.array(all_lengths) >= lengths.max_len)),
    )


def plan_submission(
    rates: np.ndarray,
    rollout_n: int,
    step: int,
    planning: PlanningConfig,
    seeding: SeedingConfig,
    last_visit: LastVisit | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Each prompt's rollouts and whether they are drawn seeded, as the trainer plans a step in
    ``planning.mode=submission`` (``integration/phases.py``), every prompt's exemplars fitting: its
    earlier visit recorded into a ``PromptHistory``, the counts from ``submission_counts``."""
    last_visit = last_visit or LastVisit()
    planner = RolloutPlanner(planning, rollouts_per_prompt=rollout_n)
    history = PromptHistory(decay=planning.history_decay)
    questions = [f"prompt {q}" for q in range(len(rates))]
    for question, rate in zip(questions, last_visit.rates(rates, rng), strict=True):
        history.record(question, (rng.uniform(size=rollout_n) < rate).astype(float))
    failed_last = np.array([seeding.enable and history.failed_all(q) for q in questions], dtype=bool)
    counts = submission_counts(
        planner,
        history.estimate(questions),
        np.array([history.seen(q) for q in questions], dtype=bool),
        seeded=failed_last,
        seeded_floor=seeding.rollouts_per_prompt,
        step=step,
    )
    # seeding's share of the step, as the trainer caps it: the seeded groups that fit, in batch
    # order (one at least); a group left out is drawn unseeded at its count
    cap = int(seeding.max_budget_share * planner.step_budget(len(rates)))
    seeded = np.zeros(len(rates), dtype=bool)
    for q in np.flatnonzero(failed_last):
        used = int(counts[seeded].sum())
        seeded[q] = not used or used + counts[q] <= cap
    return counts, seeded


def benchmark(
    source: Mixture | Recorded,
    draws: int,
    num_prompts: int,
    rollout_n: int,
    lengths: Lengths,
    engine: Engine,
    overlap_shares: tuple[float, ...],
    seed: int,
    phase_counts: tuple[int, ...] = (),
    seeded_success: float = 0.0,
    last_visit: LastVisit | None = None,
) -> dict[str, dict[str, float]]:
    """Medians over ``draws`` steps; every schedule sees the same prompts in each draw.

    ``phase_counts``: other values of ``planning.num_phases`` to run with the barrier, beside the
    default's. ``seeded_success``: ``run_step``'s. ``last_visit``: the history of the submission
    schedule (``planning.mode=submission``), run last; None leaves it out.
    """
    # name -> (planning, overlap share); GRPO has no planning
    schedules: dict[str, tuple[PlanningConfig | None, float]] = {
        "grpo": (None, 1.0),
        BUILT: (PlanningConfig(), 1.0),
    }
    for count in phase_counts:
        if count != PlanningConfig().num_phases:
            schedules[f"xrpo, {count} phases"] = (PlanningConfig(num_phases=count), 1.0)
    for share in overlap_shares:
        schedules[f"xrpo overlap {share:.2f}"] = (PlanningConfig(), share)
    if last_visit is not None:
        schedules[SUBMISSION] = (PlanningConfig(mode="submission"), 1.0)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[StepResult]] = {name: [] for name in schedules}
    for step in range(1, draws + 1):
        rates = source.draw(num_prompts, rng)
        for name, (planning, share) in schedules.items():
            result = run_step(
                rates,
                rollout_n,
                step,
                planning,
                share,
                SeedingConfig(),
                lengths,
                engine,
                np.random.default_rng([seed, step]),
                seeded_success,
                last_visit,
            )
            rows[name].append(result)
    grpo_seconds = np.array([r.seconds for r in rows["grpo"]])
    built_useful = np.array([r.useful_share for r in rows[BUILT]])
    table = {}
    for name, results in rows.items():
        seconds = np.array([r.seconds for r in results])
        # paired by draw: the schedule's useful share less the barrier's, in points, with a 95% interval
        gap = 100.0 * (np.array([r.useful_share for r in results]) - built_useful)
        half = 1.96 * gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else float("nan")
        table[name] = {
            "useful_vs_built_pt": float(gap.mean()),
            "useful_vs_built_half_pt": float(half),
            "seconds": float(np.median(seconds)),
            "vs_grpo": float(np.median(seconds / grpo_seconds)),
            "useful_share": float(np.median([r.useful_share for r in results])),
            "slot_utilisation": float(np.median([r.slot_utilisation for r in results])),
            "clipped_share": float(np.median([r.clipped_share for r in results])),
        }
    return table


def format_table(name: str, table: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        f"{name}:",
        f"  {'schedule':42s} {'gen s':>7s} {'vs GRPO':>8s} {'useful':>7s} {'slots busy':>11s}"
        f"  useful vs as built (pt, mean and 95%)",
    ]
    for schedule, row in table.items():
        gap = (
            ""
            if schedule == BUILT
            else f"{row['useful_vs_built_pt']:+6.1f} +/- {row['useful_vs_built_half_pt']:.1f}"
        )
        lines.append(
            f"  {schedule:42s} {row['seconds']:7.1f} {row['vs_grpo']:8.2f} {row['useful_share']:7.3f} "
            f"{row['slot_utilisation']:11.2f}  {gap}".rstrip()
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generation", description=__doc__.split("\n\n")[0]
    )
    add_step_arguments(parser, draws=30, prompts=128)
    add_source_arguments(parser)
    parser.add_argument(
        "--mixtures",
        nargs="*",
        default=[m.name for m in MIXTURES],
        choices=[m.name for m in MIXTURES],
        help="simulated sources (default: all; the flag alone: none, --rates only)",
    )
    parser.add_argument(
        "--overlap", type=float, nargs="+", default=[0.75, 0.9], help="overlap shares to compare"
    )
    models = (Lengths(), Engine())
    for model in models:  # one flag per field of the length and engine models, their defaults
        for field, default in vars(model).items():
            parser.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument(
        "--visit-gap",
        type=int,
        default=LastVisit().gap,
        help="steps between a prompt's earlier visit and this one, for the submission (default: %(default)s)",
    )
    parser.add_argument(
        "--drift-mean",
        type=float,
        default=TRACE_DRIFT.mean,
        help="mean change of logit p a step between visits (default: %(default)s, fitted to the traces)",
    )
    parser.add_argument(
        "--drift-sd",
        type=float,
        default=TRACE_DRIFT.sd,
        help="sd of the change of logit p a step between visits (default: %(default)s, fitted to the traces)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    check_step_arguments(parser, args)
    sources = sources_from_arguments(parser, args, [m for m in MIXTURES if m.name in args.mixtures])
    if not sources:
        parser.error("nothing to run: --mixtures named none and --rates gave no file")
    lengths, engine = (type(m)(**{f: getattr(args, f) for f in vars(m)}) for m in models)
    for share in args.overlap:
        if not 0.0 < share <= 1.0:
            parser.error(f"--overlap {share}: a share of the phase's rollouts, in (0, 1]")
    if args.visit_gap < 1 or args.drift_sd < 0:
        parser.error("--visit-gap must be at least 1 and --drift-sd at least 0")
    last_visit = LastVisit(Drift(args.drift_mean, args.drift_sd), args.visit_gap)
    print(
        f"{args.prompts} prompts x {args.rollout_n} rollouts per step, {args.draws} draws, medians;"
        f" seeded rollouts succeed with max(p, {args.seeded_success}); {lengths}; {engine}"
    )
    gap, drift = last_visit.gap, last_visit.drift
    print(
        f"{SUBMISSION}: one earlier visit of {args.rollout_n} rollouts per prompt, {gap} steps back;"
        f" logit p then = now - N({drift.mean * gap:+.2f}, {drift.sd * np.sqrt(gap):.2f}^2)"
        f" (drift N({drift.mean:+.3f}, {drift.sd:.3f}^2) a step)"
    )
    for source in sources:
        table = benchmark(
            source,
            args.draws,
            args.prompts,
            args.rollout_n,
            lengths,
            engine,
            tuple(args.overlap),
            args.seed,
            tuple(args.phases),
            args.seeded_success,
            last_visit,
        )
        print(f"responses at the {lengths.max_len}-token cut: {table['grpo']['clipped_share']:.1%}")
        print("\n".join(format_table(source.name, table)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
