"""Learning curves: how soon each variant reaches GRPO's accuracy, in steps, tokens and seconds.

    python -m recipe.xrpo.scale_model.curves run    --out results/curves --seeds 0 1 2 3 4 5 6 7
    python -m recipe.xrpo.scale_model.curves report --out results/curves
    python -m recipe.xrpo.scale_model.curves power  --runs results/scale-compare

The setting and the analysis plan are in ``docs/results.md`` (*Learning curves*), written before
any cell ran. ``run`` trains the comparison's cells (``compare.train_cell``: stock ``main_ppo``,
one warm start, 256 training prompts, 40 steps of 32 prompts, so five epochs), seed by seed with
the variants interleaved so that a seed's pair runs side by side. Each cell keeps a checkpoint per
step; afterwards its curve points are scored on one held-out set shared by every cell
(``verl_xrpo.eval``, one vLLM engine for all points), and the checkpoints are deleted. What a
cell keeps is small: ``curve.json``, compacted ``metrics.jsonl``, ``rollouts.parquet``,
``summary.json``. Finished cells are skipped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from scipy import stats

from recipe.xrpo.scale_model import tasks
from recipe.xrpo.scale_model.compare import (
    VARIANTS,
    Cell,
    Schedule,
    claimed,
    eval_start,
    start_folder,
    train_cell,
)
from recipe.xrpo.scale_model.train import REWARD_FILE, RunPaths, read_metrics

STEPS = 40
# Denser early: on the existing curves most of the gain comes in the first ten steps.
CURVE_STEPS = (2, 4, 6, 8, 10, 15, 20, 25, 30, 35, 40)
SAMPLES = 16  # per held-out prompt and point: a point's sampling standard error is about 0.006
HELDOUT_SEED = 1000  # one held-out set for every cell; no training set is drawn with this seed
THRESHOLD_SHARE = 0.8  # of GRPO's mean final gain over the warm start
CENSORED_AT = STEPS + 5  # a cell that never reaches the threshold counts as reaching it here
# cells that shared the machine with other work while training ("variant:seed" -> what and when):
# their seconds are left out of every comparison
DISTURBED_FILE = "disturbed.json"
VARIANTS_DEFAULT = ("grpo", "xrpo", "xrpo_submission")
# the multi-epoch cells' update settings: two updates a step over 32 prompts of 8 rollouts
SETTINGS = (
    "actor_rollout_ref.actor.ppo_mini_batch_size=16",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=128",
)
# what a committed cell keeps of verl's per-step metrics: the report's inputs, not the rest
KEPT_METRICS = ("timing_s/", "response_length/mean", "critic/score/mean", "xrpo/", "val-core/")


def schedule(settings: Sequence[str], warm_model: Path | None) -> Schedule:
    return Schedule(
        steps=STEPS,
        val_every=0,  # verl's own validation is off: the curve scores checkpoints afterwards
        val_size=256,
        train_size=256,
        prompts_per_step=32,
        task=tasks.CHAIN,
        warm_start="scale",
        settings=tuple(settings),
        warm_model_dir=warm_model,
        heldout_seed=HELDOUT_SEED,
        save_every=1,
    )


# ---- the cells ------------------------------------------------------------------------------------


def curve_file(cell: Cell) -> Path:
    return cell.folder / "curve.json"


def checkpoint(cell: Cell, step: int) -> Path:
    return RunPaths(cell.folder).checkpoints / f"global_step_{step}"


def evaluate_curve(cell: Cell, samples: int) -> int:
    """Scores the cell's checkpoints at ``CURVE_STEPS`` on the held-out set in one process."""
    models = [checkpoint(cell, step) for step in CURVE_STEPS]
    missing = [m.name for m in models if not m.is_dir()]
    if missing:
        print(f"[{cell.variant.name} seed {cell.seed}] no checkpoint for {', '.join(missing)}", flush=True)
        return 1
    out = curve_file(cell)
    command = [sys.executable, "-m", "verl_xrpo.eval", *map(str, models)]
    command += ["--data", str(RunPaths(cell.folder).val_data), "--samples", str(samples)]
    command += ["--k", "1", str(samples), "--max-tokens", "48", "--seed", str(cell.seed)]
    command += ["--reward-file", str(REWARD_FILE), "--out", str(out.with_suffix(".partial"))]
    print(f"[{cell.variant.name} seed {cell.seed}] scoring {len(models)} checkpoints", flush=True)
    with out.with_suffix(".log").open("w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if code:
        print(
            f"[{cell.variant.name} seed {cell.seed}] curve failed; see {out.with_suffix('.log')}", flush=True
        )
        return code
    report = json.loads(out.with_suffix(".partial").read_text())
    for step, point in zip(CURVE_STEPS, report["points"], strict=True):
        point["step"] = step
        point["model"] = str(Path(point["model"]).relative_to(cell.folder))
    out.write_text(json.dumps(report))  # compact: 16 samples x 256 prompts per point
    out.with_suffix(".partial").unlink()
    return 0


def compact_metrics(path: Path, digits: int | None = 4) -> None:
    """Keeps the keys the reports read (``KEPT_METRICS``), to ``digits`` significant digits (None:
    as verl wrote them)."""
    records, _ = read_metrics(path)
    kept = []
    for record in records:
        data = {
            key: float(f"{value:.{digits}g}") if digits and isinstance(value, float) else value
            for key, value in record["data"].items()
            if key.startswith(KEPT_METRICS)
        }
        kept.append(json.dumps({"step": record["step"], "data": data}))
    path.write_text("\n".join(kept) + "\n")


def run_cell(cell: Cell, plan: Schedule, samples: int) -> int:
    if not cell.done(plan.steps):
        code = train_cell(cell, plan)
        if code:
            return code
    code = evaluate_curve(cell, samples)
    if code:
        return code
    compact_metrics(cell.folder / "metrics.jsonl")
    shutil.rmtree(RunPaths(cell.folder).checkpoints, ignore_errors=True)
    return 0


def run(out: Path, variants: Sequence[str], seeds: Sequence[int], plan: Schedule, samples: int) -> int:
    failures = 0
    for seed in seeds:
        failures += eval_start(out, seed, plan, samples)
        for name in variants:
            cell = Cell(VARIANTS[name], seed, out)
            with claimed(cell) as mine:
                if not mine or curve_file(cell).is_file():
                    continue
                failures += run_cell(cell, plan, samples) != 0
    return failures


# ---- the analysis ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    variant: str
    seed: int
    accuracy: dict[int, float]  # step -> held-out pass@1 (step 0: the warm start)
    tokens: dict[int, float]  # step -> response tokens generated up to and including it
    seconds: dict[int, float]  # step -> training seconds up to and including it
    machine: str
    boot_id: str
    disturbed: str = ""  # why its seconds compare with no other cell's (DISTURBED_FILE), if so

    def timed_beside(self, other: Curve) -> bool:
        """Whether the two cells' seconds compare: one recorded machine and boot, neither disturbed."""
        same_boot = (self.machine, self.boot_id) == (other.machine, other.boot_id)
        return bool(self.boot_id) and same_boot and not self.disturbed and not other.disturbed

    @property
    def auc(self) -> float:
        """Mean held-out accuracy over the curve's points after step 0 (the plan's area)."""
        return statistics.fmean(self.accuracy[s] for s in CURVE_STEPS)

    @property
    def final(self) -> float:
        return self.accuracy[STEPS]


def load_curve(out: Path, variant: str, seed: int) -> Curve | None:
    folder = out / "runs" / variant / f"seed{seed}"
    start = start_folder(out, seed) / "eval.json"
    if not (folder / "curve.json").is_file() or not start.is_file():
        return None
    points = json.loads((folder / "curve.json").read_text())["points"]
    accuracy = {0: json.loads(start.read_text())["scores"]["all"]["pass@1"]}
    accuracy |= {int(p["step"]): p["scores"]["all"]["pass@1"] for p in points}
    # verl's dump has no response lengths: the step's mean length times its rollouts
    per_step = (
        pq.read_table(folder / "rollouts.parquet", columns=["step", "rollouts"])
        .group_by("step")
        .aggregate([("rollouts", "sum")])
        .to_pydict()
    )
    step_rollouts = dict(zip(per_step["step"], per_step["rollouts_sum"], strict=True))
    records, _ = read_metrics(folder / "metrics.jsonl")
    tokens, seconds, total_tokens, total_seconds = {0: 0.0}, {0: 0.0}, 0.0, 0.0
    for record in sorted(records, key=lambda r: int(r["step"])):
        data, step = record["data"], int(record["step"])
        if "timing_s/step" not in data:
            continue
        total_tokens += data.get("response_length/mean", 0.0) * step_rollouts.get(step, 0)
        # a checkpoint per step is the curve's instrument, not the algorithm's cost
        total_seconds += data["timing_s/step"] - data.get("timing_s/save_checkpoint", 0.0)
        tokens[step], seconds[step] = total_tokens, total_seconds
    summary = json.loads((folder / "summary.json").read_text())
    disturbed_file = out / DISTURBED_FILE
    disturbed = json.loads(disturbed_file.read_text()) if disturbed_file.is_file() else {}
    return Curve(
        variant,
        seed,
        accuracy,
        tokens,
        seconds,
        summary.get("machine", ""),
        summary.get("boot_id", ""),
        disturbed.get(f"{variant}:{seed}", ""),
    )


def crossing(curve: Curve, threshold: float, axis: dict[int, float] | None = None) -> float | None:
    """Where the curve first reaches ``threshold``, linearly interpolated between the points before
    and at the crossing, on ``axis`` (steps by default, else tokens or seconds by step); None if
    never (censored)."""
    steps = sorted(curve.accuracy)
    position = axis or {s: float(s) for s in steps}
    for before, at in itertools.pairwise(steps):
        low, high = curve.accuracy[before], curve.accuracy[at]
        if high >= threshold:
            share = 1.0 if high == low else max(0.0, (threshold - low) / (high - low))
            return position[before] + share * (position[at] - position[before])
    return None


def median_censored(values: Sequence[float | None]) -> float | None:
    """Median with censored values (None) counted as later than every observed one; None when
    half or more are censored (the median is then beyond the run)."""
    if not values:
        return None
    ordered = sorted(values, key=lambda v: (v is None, v or 0.0))
    middle = ordered[(len(ordered) - 1) // 2 : len(ordered) // 2 + 1]
    if any(v is None for v in middle):
        return None
    return statistics.fmean(middle)


def power_table(sd: float, seeds: Sequence[int]) -> list[dict[str, float]]:
    """Per seed count: the paired 95% interval's half-width and the smallest difference found
    with 80% power (two-sided t-test at 5%), for paired differences of standard deviation ``sd``."""
    rows = []
    for n in seeds:
        t975, t80 = stats.t.ppf(0.975, n - 1), stats.t.ppf(0.80, n - 1)
        rows.append({"seeds": n, "ci_half": t975 * sd / n**0.5, "mde80": (t975 + t80) * sd / n**0.5})
    return rows


# ---- the command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m recipe.xrpo.scale_model.curves", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=["run", "report", "power"])
    parser.add_argument("--out", type=Path, default=Path("results/curves"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS_DEFAULT))
    parser.add_argument(
        "--warm-model",
        type=Path,
        default=Path("results/scale-compare/models/warm_start"),
        help="the warm start every cell trains from (default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=list(SETTINGS),
        help="verl overrides for every cell (default: %(default)s)",
    )
    parser.add_argument("--samples", type=int, default=SAMPLES, help="samples per held-out prompt and point")
    parser.add_argument("--runs", type=Path, default=Path("results/scale-compare"), help="for power")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    if args.action == "run":
        out.mkdir(parents=True, exist_ok=True)
        plan = schedule(args.set, args.warm_model.resolve())
        return 1 if run(out, args.variants, args.seeds, plan, args.samples) else 0
    from recipe.xrpo.scale_model.curves_report import power, report

    if args.action == "power":
        return power(args.runs)
    return report(out, args.variants, args.seeds)


if __name__ == "__main__":
    raise SystemExit(main())
