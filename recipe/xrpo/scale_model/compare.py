"""The scale-model comparison: GRPO, GSPO, XRPO and its ablations at one rollout budget, on CPU.

    python -m recipe.xrpo.scale_model.compare train  --out results/toy-compare [--seeds 0 1 2] [--steps 30]
    python -m recipe.xrpo.scale_model.compare eval   --out results/toy-compare   # pass@k / cons@k
    python -m recipe.xrpo.scale_model.compare report --out results/toy-compare   # CSV, JSON and PNG plots

Every cell (variant x seed) is one run of the main job (``recipe.xrpo.scale_model.train``) through stock
``main_ppo``, with the seed's warm-started model shared by all variants, the same data, the same
``train_batch_size * rollout.n`` rollouts per step, and held-out validation every few steps. A
finished cell is skipped when ``train`` runs again, so re-running one cell means deleting its
folder (``<out>/runs/<variant>/seed<k>``) or naming it with ``--only variant:seed``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipe.xrpo.scale_model.train import REWARD_FILE, RunPaths, ToyRun, prepare, read_metrics, train
from recipe.xrpo.scale_model.warmstart import REPORT_FILE, WarmStartSettings, build_warm_model_dir

GSPO_LOSS = (
    "actor_rollout_ref.actor.policy_loss.loss_mode=gspo",
    "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean",
    "actor_rollout_ref.actor.clip_ratio_low=0.0003",
    "actor_rollout_ref.actor.clip_ratio_high=0.0004",
)


@dataclass(frozen=True)
class Variant:
    name: str
    estimator: str
    overrides: tuple[str, ...] = ()


VARIANTS = {
    v.name: v
    for v in (
        Variant("grpo", "grpo"),
        Variant("gspo", "grpo", GSPO_LOSS),
        Variant("xrpo", "xrpo"),
        Variant("xrpo_gspo", "xrpo", GSPO_LOSS),
        Variant("xrpo_no_planning", "xrpo", ("algorithm.xrpo.planning.enable=false",)),
        Variant("xrpo_no_seeding", "xrpo", ("algorithm.xrpo.seeding.enable=false",)),
        Variant("xrpo_no_sharpening", "xrpo", ("algorithm.xrpo.sharpening.enable=false",)),
    )
}

VAL_SAMPLES = 4
VALIDATION = (
    "trainer.val_before_train=true",
    f"actor_rollout_ref.rollout.val_kwargs.n={VAL_SAMPLES}",
    "actor_rollout_ref.rollout.val_kwargs.do_sample=true",
    "actor_rollout_ref.rollout.val_kwargs.temperature=1.0",
)
VAL_ACC = f"val-core/reasoning_gym/chain_sum/acc/mean@{VAL_SAMPLES}"


@dataclass(frozen=True)
class Cell:
    variant: Variant
    seed: int
    out: Path

    @property
    def folder(self) -> Path:
        return self.out / "runs" / self.variant.name / f"seed{self.seed}"

    def done(self, steps: int) -> bool:
        summary = self.folder / "summary.json"
        if not summary.is_file():
            return False
        data = json.loads(summary.read_text())
        return data["exit_code"] == 0 and data["steps_done"] >= steps


def seed_model(out: Path, seed: int) -> Path:
    folder = out / "models" / f"seed{seed}"
    if not (folder / REPORT_FILE).is_file():
        build_warm_model_dir(folder, WarmStartSettings(seed=seed))
    return folder


@dataclass(frozen=True)
class Schedule:
    """What every cell of one comparison shares."""

    steps: int
    val_every: int
    val_size: int
    train_size: int
    prompts_per_step: int
    settings: tuple[str, ...] = ()


def train_cell(cell: Cell, schedule: Schedule) -> int:
    if cell.folder.exists():
        shutil.rmtree(cell.folder)  # a half-done cell starts over: no mixed metrics
    cell.folder.mkdir(parents=True)
    run = ToyRun(
        RunPaths(cell.folder),
        steps=schedule.steps,
        estimator=cell.variant.estimator,
        seed=cell.seed,
        prompts_per_step=schedule.prompts_per_step,
        val_size=schedule.val_size,
        train_size=schedule.train_size,
        model_dir=seed_model(cell.out, cell.seed),
    )
    prepare(run)
    extra = [*cell.variant.overrides, *VALIDATION, f"trainer.test_freq={schedule.val_every}"]
    extra += schedule.settings
    summary = train(
        run, extra, echo=lambda line: print(f"[{cell.variant.name} seed {cell.seed}] {line}", flush=True)
    )
    return summary.exit_code


START = "start"  # the warm-started model before any RL: every variant's reference


def start_folder(out: Path, seed: int) -> Path:
    return out / "runs" / START / f"seed{seed}"


def evaluate(model: str | Path, data: Path, samples: int, seed: int, folder: Path, label: str) -> int:
    """Score ``model`` on ``data`` with ``verl_xrpo.eval``: ``eval.json`` and ``eval.log`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "verl_xrpo.eval", str(model), "--data", str(data)]
    command += ["--samples", str(samples), "--k", "1", str(samples // 2), str(samples)]
    command += ["--seed", str(seed), "--reward-file", str(REWARD_FILE), "--out", str(folder / "eval.json")]
    print(f"[{label}] evaluating {model} ({samples} samples per prompt)", flush=True)
    with (folder / "eval.log").open("w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if code:
        print(f"[{label}] evaluation failed (exit {code}); see {folder / 'eval.log'}", flush=True)
    return code


def eval_cell(cell: Cell, samples: int) -> int:
    from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

    label = f"{cell.variant.name} seed {cell.seed}"
    latest = find_latest_ckpt_path(str(cell.folder / "checkpoints"))
    if latest is None:
        print(f"[{label}] no checkpoint to evaluate", flush=True)
        return 1
    return evaluate(latest, RunPaths(cell.folder).val_data, samples, cell.seed, cell.folder, label)


def eval_start(out: Path, seed: int, cells: list[Cell], samples: int) -> int:
    """Scores the seed's warm-started model on the same held-out prompts as its cells."""
    data = [RunPaths(c.folder).val_data for c in cells if c.seed == seed]
    data = [d for d in data if d.is_file()]
    if not data:
        print(f"[{START} seed {seed}] no cell with held-out data to evaluate on", flush=True)
        return 1
    model = out / "models" / f"seed{seed}"
    return evaluate(model, data[0], samples, seed, start_folder(out, seed), f"{START} seed {seed}")


# ---- the report -----------------------------------------------------------------------------------


def cell_rows(cell: Cell) -> list[dict[str, Any]]:
    """One row per logged step of a cell: the metrics the report uses."""
    records, _ = read_metrics(cell.folder / "metrics.jsonl")
    rows = []
    for record in records:
        data = record["data"]
        rows.append(
            {
                "variant": cell.variant.name,
                "seed": cell.seed,
                "step": int(record["step"]),
                "val_acc": data.get(VAL_ACC),
                "train_score": data.get("critic/score/mean"),
                "step_seconds": data.get("timing_s/step"),
                "gen_seconds": data.get("timing_s/gen"),
                "old_log_prob_seconds": data.get("timing_s/old_log_prob"),
                "update_actor_seconds": data.get("timing_s/update_actor"),
                "useful_rollout_share": data.get("xrpo/useful_rollout_share"),
                "zero_variance_share": data.get("xrpo/zero_variance_share/after_planning"),
                "seeded_prompts": data.get("xrpo/seeding/prompts_seeded"),
                "seeded_prompts_solved": data.get("xrpo/seeding/prompts_with_seeded_success"),
                "xrpo_planning_s": data.get("timing_s/xrpo_planning"),
                "xrpo_retrieval_s": data.get("timing_s/xrpo_retrieval"),
                "xrpo_advantage_s": data.get("timing_s/xrpo_advantage"),
                "xrpo_phases_s": data.get("timing_s/xrpo_generation_phases"),
            }
        )
    return rows


def mean_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def final_val_by_seed(rows: list[dict[str, Any]]) -> dict[int, float]:
    """Each seed's last validated accuracy."""
    finals = {}
    for row in sorted(rows, key=lambda r: r["step"]):
        if row["val_acc"] is not None:
            finals[row["seed"]] = row["val_acc"]
    return finals


def summarize_variant(rows: list[dict[str, Any]], evals: list[dict[str, Any]]) -> dict[str, Any]:
    seeds = sorted({r["seed"] for r in rows})
    final_val = list(final_val_by_seed(rows).values())

    def steady_median(key: str) -> float | None:
        values = [r[key] for r in rows if r["step"] > 1 and r[key] is not None]
        return statistics.median(values) if values else None

    summary = {
        "seeds": len(seeds),
        "final_val_acc_mean": mean_or_none(final_val),
        "final_val_acc_sd": statistics.stdev(final_val) if len(final_val) > 1 else None,
        "median_step_seconds": steady_median("step_seconds"),
        "median_gen_seconds": steady_median("gen_seconds"),
        "median_old_log_prob_seconds": steady_median("old_log_prob_seconds"),
        "median_update_actor_seconds": steady_median("update_actor_seconds"),
        "median_xrpo_phases_s": steady_median("xrpo_phases_s"),
        "median_xrpo_planning_s": steady_median("xrpo_planning_s"),
        "median_xrpo_retrieval_s": steady_median("xrpo_retrieval_s"),
        "median_xrpo_advantage_s": steady_median("xrpo_advantage_s"),
        "useful_rollout_share": mean_or_none([r["useful_rollout_share"] for r in rows]),
        "seeded_prompts_solved": sum(r["seeded_prompts_solved"] or 0 for r in rows),
    }
    for key in sorted({k for e in evals for k in e}):
        summary[f"eval_{key}"] = mean_or_none([e.get(key) for e in evals])
    return summary


def steps_to_reach(rows: list[dict[str, Any]], targets: dict[int, float]) -> float | None:
    """Mean over seeds of the first validated training step reaching that seed's target.

    Seeds start from different warm starts, so each has its own target (GRPO's final accuracy on
    that seed). Step 0 (validation before training) does not count: reaching the target without
    training says nothing about the algorithm. None if a seed never reaches it.
    """
    reached = []
    for seed in sorted({r["seed"] for r in rows} & targets.keys()):
        hits = sorted(
            r["step"]
            for r in rows
            if r["seed"] == seed
            and r["step"] >= 1
            and r["val_acc"] is not None
            and r["val_acc"] >= targets[seed]
        )
        if not hits:
            return None
        reached.append(hits[0])
    return statistics.fmean(reached) if reached else None


def report(out: Path, cells: list[Cell], rollouts_per_step: int | None = None) -> dict[str, Any]:
    """Writes steps.csv, summary.json and the plots; returns the per-variant table.

    ``rollouts_per_step`` (the shared budget) turns steps-to-target into rollouts-to-target.
    """
    rows = [row for cell in cells for row in cell_rows(cell)]
    with (out / "steps.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    scores = {cell: read_scores(cell.folder) for cell in cells}
    evaluated = {cell: s for cell, s in scores.items() if s is not None}
    names = [n for n in VARIANTS if any(c.variant.name == n for c in cells)]
    table = {
        n: summarize_variant(
            [r for r in rows if r["variant"] == n], [s for c, s in evaluated.items() if c.variant.name == n]
        )
        for n in names
    }
    add_gains_over_start(out, evaluated, table)
    grpo_finals = final_val_by_seed([r for r in rows if r["variant"] == "grpo"])
    if grpo_finals:
        for n in names:
            steps = steps_to_reach([r for r in rows if r["variant"] == n], grpo_finals)
            table[n]["steps_to_grpo_final"] = steps
            if rollouts_per_step and steps is not None:
                table[n]["rollouts_to_grpo_final"] = steps * rollouts_per_step
    grpo_step = table.get("grpo", {}).get("median_step_seconds")
    for n in names:
        step = table[n]["median_step_seconds"]
        table[n]["step_time_vs_grpo"] = step / grpo_step if step and grpo_step else None
    (out / "summary.json").write_text(json.dumps(table, indent=2))
    plot_accuracy(out, rows, names)
    plot_step_time(out, table)
    return table


def read_scores(folder: Path) -> dict[str, float] | None:
    """The overall scores of ``folder/eval.json`` (written by ``compare eval``), if it exists."""
    path = folder / "eval.json"
    return json.loads(path.read_text())["scores"]["all"] if path.is_file() else None


def add_gains_over_start(
    out: Path, evaluated: dict[Cell, dict[str, float]], table: dict[str, dict[str, Any]]
) -> None:
    """pass@1 of each final checkpoint minus its seed's warm start, on the same prompts (paired)."""
    start = {}
    for seed in sorted({c.seed for c in evaluated}):
        scores = read_scores(start_folder(out, seed))
        if scores is not None:
            start[seed] = scores
    if not start:
        return
    for name in table:
        gains = [
            final["pass@1"] - start[cell.seed]["pass@1"]
            for cell, final in evaluated.items()
            if cell.variant.name == name and cell.seed in start
        ]
        table[name]["eval_pass@1_gain_mean"] = mean_or_none(gains)
        table[name]["eval_pass@1_gain_sd"] = statistics.stdev(gains) if len(gains) > 1 else None
    keys = next(iter(start.values()))
    table[START] = {f"eval_{k}": mean_or_none([scores.get(k) for scores in start.values()]) for k in keys}
    table[START]["seeds"] = len(start)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(out: Path, rows: list[dict[str, Any]], names: list[str]) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in names:
        mine = [r for r in rows if r["variant"] == name and r["val_acc"] is not None]
        steps = sorted({r["step"] for r in mine})
        means = [statistics.fmean(r["val_acc"] for r in mine if r["step"] == s) for s in steps]
        axis.plot(steps, means, marker="o", label=name)
    axis.set_xlabel("training step")
    axis.set_ylabel(f"held-out accuracy (mean@{VAL_SAMPLES}, mean over seeds)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "val_accuracy.png", dpi=120)
    plt.close(figure)


STEP_PARTS = (
    ("generation", "median_gen_seconds"),
    ("old log-probs", "median_old_log_prob_seconds"),
    ("actor update", "median_update_actor_seconds"),
)


def plot_step_time(out: Path, table: dict[str, dict[str, Any]]) -> None:
    """Median step time per variant, split into verl's timed parts and the rest."""
    plt = _pyplot()
    names = [n for n in table if table[n].get("median_step_seconds")]
    figure, axis = plt.subplots(figsize=(9, 4.5))
    bottoms = [0.0] * len(names)
    for label, key in STEP_PARTS:
        heights = [table[n].get(key) or 0.0 for n in names]
        axis.bar(names, heights, bottom=bottoms, label=label)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    # medians of parts need not add up to the median step; what is left is everything else
    rest = [max(table[n]["median_step_seconds"] - b, 0.0) for n, b in zip(names, bottoms, strict=True)]
    axis.bar(names, rest, bottom=bottoms, label="rest (advantage, XRPO, reward, bookkeeping)")
    axis.set_ylabel("median step time (s)")
    axis.tick_params(axis="x", labelrotation=30)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(out / "step_time.png", dpi=120)
    plt.close(figure)


def format_summary(table: dict[str, dict[str, Any]]) -> str:
    columns = [
        "seeds",
        "final_val_acc_mean",
        "final_val_acc_sd",
        "steps_to_grpo_final",
        "rollouts_to_grpo_final",
        "median_step_seconds",
    ]
    columns += ["step_time_vs_grpo", "useful_rollout_share", "seeded_prompts_solved"]
    # every eval score but the prompt count and cons@1 (one sample's vote is pass@1 again)
    hidden = {"eval_prompts", "eval_cons@1"}
    columns += sorted({k for row in table.values() for k in row if k.startswith("eval_")} - hidden)
    lines = ["| variant | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.items():
        cells = [_fmt(row.get(c)) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recipe.xrpo.scale_model.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=["train", "eval", "report"])
    parser.add_argument("--out", type=Path, default=Path("results/toy-compare"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--only", nargs="+", default=None, help="cells as variant:seed (re-run even if done)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--val-every", type=int, default=5)
    parser.add_argument("--val-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument(
        "--prompts-per-step",
        type=int,
        default=32,
        help="prompts per step; each gets rollout.n=8 rollouts' worth of budget (default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        help="verl overrides for every cell, e.g. actor_rollout_ref.actor.optim.lr=3e-4",
    )
    parser.add_argument(
        "--eval-samples", type=int, default=16, help="samples per held-out prompt (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cells = [Cell(VARIANTS[v], s, out) for s in args.seeds for v in args.variants]
    forced = set(args.only or [])
    if forced:
        cells = [c for c in cells if f"{c.variant.name}:{c.seed}" in forced]
    schedule = Schedule(
        args.steps, args.val_every, args.val_size, args.train_size, args.prompts_per_step, tuple(args.set)
    )
    failures = 0
    if args.action == "train":
        for cell in cells:
            if cell.done(args.steps) and not forced:
                continue
            failures += train_cell(cell, schedule) != 0
    elif args.action == "eval":
        for seed in args.seeds:
            if not forced and not (start_folder(out, seed) / "eval.json").is_file():
                failures += eval_start(out, seed, cells, args.eval_samples) != 0
        for cell in cells:
            if not (cell.folder / "eval.json").is_file() or forced:
                failures += eval_cell(cell, args.eval_samples) != 0
    else:
        finished = [c for c in cells if (c.folder / "metrics.jsonl").is_file()]
        table = report(out, finished, args.prompts_per_step * ToyRun.rollouts_per_prompt)
        print(format_summary(table))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
