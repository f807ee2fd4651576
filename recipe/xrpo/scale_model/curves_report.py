"""The learning-curve report and the power calculation that chose its seed count.

Run through ``python -m recipe.xrpo.scale_model.curves report|power``; the plan it carries out is
in ``docs/results.md`` (*Learning curves: the analysis plan*).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recipe.xrpo.scale_model.compare import VAL_SAMPLES, VARIANTS, Cell, allocation_by_step, mean_ci95
from recipe.xrpo.scale_model.curves import (
    CENSORED_AT,
    CURVE_STEPS,
    STEPS,
    THRESHOLD_SHARE,
    Curve,
    crossing,
    load_curve,
    median_censored,
    power_table,
)

POWER_SEEDS = (4, 6, 8, 10, 12)
PLANNED_SAMPLES = 16  # the curves' samples per prompt and point
PLANNED_POINTS = 11


def validation_curves(runs: Path) -> dict[str, dict[int, dict[int, float]]]:
    """variant -> seed -> step -> verl's validation accuracy, from a comparison's cells."""
    curves: dict[str, dict[int, dict[int, float]]] = {}
    for metrics in sorted(runs.glob("runs/*/seed*/metrics.jsonl")):
        variant, seed = metrics.parent.parent.name, int(metrics.parent.name.removeprefix("seed"))
        points = {}
        for line in metrics.read_text().splitlines():
            record = json.loads(line)
            for key, value in record["data"].items():
                if key.startswith("val-core/") and key.endswith(f"/acc/mean@{VAL_SAMPLES}"):
                    points[int(record["step"])] = value
        if points:
            curves.setdefault(variant, {})[seed] = points
    return curves


def sampling_variance(runs: Path, samples: int, prompts: int) -> float:
    """One point's sampling variance with ``samples`` per prompt: mean p(1-p) / (prompts x samples),
    p the per-prompt success rates of the comparison's final checkpoints (16 samples each)."""
    spreads = []
    for path in runs.glob("runs/*/seed*/eval.json"):
        report = json.loads(path.read_text())
        n = report["samples"]
        spreads += [(c / n) * (1 - c / n) for c in report["successes_per_prompt"]]
    return statistics.fmean(spreads) / (prompts * samples)


def power(runs: Path) -> int:
    curves = validation_curves(runs)
    grpo = curves.get("grpo")
    if not grpo:
        print(f"no GRPO cells with validation curves under {runs}/runs")
        return 1
    residuals, groups = [], 0
    for variant, by_seed in sorted(curves.items()):
        if variant in ("grpo", "start"):
            continue
        diffs = []
        for seed, points in by_seed.items():
            steps = sorted(s for s in points if s > 0 and s in grpo.get(seed, {}))
            if steps:
                diffs.append(statistics.fmean(points[s] - grpo[seed][s] for s in steps))
        if len(diffs) >= 2:
            groups += 1
            mean = statistics.fmean(diffs)
            residuals += [d - mean for d in diffs]
            print(f"{variant}: paired area differences {', '.join(f'{d:+.4f}' for d in diffs)}")
    if not groups:
        print("no variant with two seeds paired against GRPO")
        return 1
    observed = (sum(r * r for r in residuals) / (len(residuals) - groups)) ** 0.5
    points = len([s for s in next(iter(grpo.values())) if s > 0])
    then = 2 * sampling_variance(runs, VAL_SAMPLES, 256) / points
    training = max(observed**2 - then, 0.0) ** 0.5
    planned = (training**2 + 2 * sampling_variance(runs, PLANNED_SAMPLES, 256) / PLANNED_POINTS) ** 0.5
    print(
        f"pooled SD of the paired area difference: {observed:.4f} ({len(residuals)} pairs, {groups} variants)"
    )
    print(
        f"  of it the evaluation (mean@{VAL_SAMPLES}, {points} points): {then**0.5:.4f}; "
        f"training: {training:.4f}"
    )
    print(
        f"  expected with the plan's evaluation ({PLANNED_SAMPLES} samples, {PLANNED_POINTS} points): "
        f"{planned:.4f}"
    )
    print("seeds  95% CI half-width  smallest difference seen with 80% power")
    for row in power_table(planned, POWER_SEEDS):
        print(f"{row['seeds']:>5}  {row['ci_half']:>18.4f}  {row['mde80']:>39.4f}")
    return 0


# ---- the report -----------------------------------------------------------------------------------


def report(out: Path, variants: Sequence[str], seeds: Sequence[int]) -> int:
    """Writes summary.json, table.md and curves.png under ``out``; prints the table."""
    curves = {v: {s: c for s in seeds if (c := load_curve(out, v, s))} for v in variants}
    curves = {v: by_seed for v, by_seed in curves.items() if by_seed}
    finished = len(curves.get("grpo", {}))
    if finished < 2:
        print(f"the report needs at least two finished GRPO cells under {out}/runs (has {finished})")
        return 1
    useful = {v: {s: useful_share(out, v, s) for s in by_seed} for v, by_seed in curves.items()}
    summary = summarize(curves, useful)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = format_table(summary)
    (out / "table.md").write_text(table + "\n")
    plot(out / "curves.png", curves, summary)
    print(table)
    return 0


def useful_share(out: Path, variant: str, seed: int, first_step: int = 9) -> float | None:
    """Share of the rollouts of steps >= ``first_step`` (epochs 2-5) in groups with mixed outcomes."""
    steps = allocation_by_step(Cell(VARIANTS[variant], seed, out))
    later = [a for step, a in steps.items() if step >= first_step]
    total = sum(a["rollouts"] for a in later)
    return sum(a["rollouts"] * a["useful_rollout_share"] for a in later) / total if total else None


def summarize(
    curves: dict[str, dict[int, Curve]], useful: dict[str, dict[int, float | None]]
) -> dict[str, Any]:
    grpo = curves["grpo"]
    starts = {s: c.accuracy[0] for s, c in grpo.items()}  # one model and prompt set, sampled per seed
    start = statistics.fmean(starts.values())
    grpo_final = statistics.fmean(c.final for c in grpo.values())
    threshold = start + THRESHOLD_SHARE * (grpo_final - start)
    summary: dict[str, Any] = {
        "plan": "docs/results.md, Learning curves: the analysis plan",
        "curve_steps": [0, *CURVE_STEPS],
        "warm_start_pass1": start,
        # the same checkpoint scored once per seed with a different sampling seed: the evaluation's own noise
        "warm_start_pass1_sd_over_sampling_seeds": statistics.stdev(starts.values())
        if len(starts) > 1
        else None,
        "threshold": threshold,
        "threshold_rule": f"warm start + {THRESHOLD_SHARE} x GRPO's mean final gain",
        "variants": {},
    }
    for variant, by_seed in curves.items():
        summary["variants"][variant] = summarize_variant(
            by_seed, grpo, threshold, start, useful[variant], useful["grpo"]
        )
    return summary


def summarize_variant(
    mine: dict[int, Curve],
    grpo: dict[int, Curve],
    threshold: float,
    start: float,
    useful: dict[int, float | None],
    grpo_useful: dict[int, float | None],
) -> dict[str, Any]:
    seeds = sorted(mine)
    row: dict[str, Any] = {"seeds": seeds}
    row["auc_mean"], row["auc_ci95"] = mean_ci95([mine[s].auc for s in seeds])
    row["final_pass1_mean"], row["final_pass1_ci95"] = mean_ci95([mine[s].final for s in seeds])
    row["gain_over_start_mean"], row["gain_over_start_ci95"] = mean_ci95(
        [mine[s].final - start for s in seeds]
    )
    shares = [useful[s] for s in seeds if useful.get(s) is not None]
    row["useful_share_epochs_2_5"] = statistics.fmean(shares) if shares else None
    paired = [s for s in seeds if s in grpo]
    same_boot = [s for s in paired if mine[s].timed_beside(grpo[s])]
    for name in AXES:
        reached = {s: crossing(mine[s], threshold, axis_of(mine[s], name)) for s in seeds}
        row[f"{name}_to_threshold"] = {str(s): v for s, v in reached.items()}
        row[f"{name}_to_threshold_median"] = median_censored(list(reached.values()))
        row[f"{name}_to_threshold_censored"] = sum(v is None for v in reached.values())
        if mine is grpo:
            continue
        pairs = same_boot if name == "seconds" else paired
        diffs = []
        for s in pairs:
            theirs = crossing(grpo[s], threshold, axis_of(grpo[s], name))
            diffs.append(
                censored_value(mine[s], reached[s], axis_of(mine[s], name))
                - censored_value(grpo[s], theirs, axis_of(grpo[s], name))
            )
        row[f"{name}_to_threshold_diff_vs_grpo_mean"], row[f"{name}_to_threshold_diff_vs_grpo_ci95"] = (
            mean_ci95(diffs)
        )
        row[f"{name}_to_threshold_pairs"] = len(pairs)
    if mine is not grpo:
        row["auc_diff_vs_grpo_mean"], row["auc_diff_vs_grpo_ci95"] = mean_ci95(
            [mine[s].auc - grpo[s].auc for s in paired]
        )
        row["final_diff_vs_grpo_mean"], row["final_diff_vs_grpo_ci95"] = mean_ci95(
            [mine[s].final - grpo[s].final for s in paired]
        )
        both = [s for s in paired if useful.get(s) is not None and grpo_useful.get(s) is not None]
        row["useful_share_diff_vs_grpo_mean"], row["useful_share_diff_vs_grpo_ci95"] = mean_ci95(
            [useful[s] - grpo_useful[s] for s in both]
        )
        ratios = [mine[s].seconds[STEPS] / grpo[s].seconds[STEPS] for s in same_boot]
        row["training_seconds_vs_grpo_mean"], row["training_seconds_vs_grpo_ci95"] = mean_ci95(ratios)
    return row


AXES = ("steps", "tokens", "seconds")


def axis_of(curve: Curve, name: str) -> dict[int, float] | None:
    """The positions of a curve's steps on one of ``AXES`` (None: the steps themselves)."""
    return {"steps": None, "tokens": curve.tokens, "seconds": curve.seconds}[name]


def censored_value(curve: Curve, reached: float | None, axis: dict[int, float] | None) -> float:
    """A crossing for paired differences: a censored one counts as reached at ``CENSORED_AT`` steps
    (tokens and seconds: the run's per-step mean times ``CENSORED_AT``)."""
    if reached is not None:
        return reached
    if axis is None:
        return float(CENSORED_AT)
    return axis[STEPS] * CENSORED_AT / STEPS


COLUMNS = (
    ("seeds", lambda r: str(len(r["seeds"]))),
    ("area [95% CI]", lambda r: _ci(r["auc_mean"], r["auc_ci95"])),
    (
        "area vs GRPO [95% CI]",
        lambda r: _ci(r.get("auc_diff_vs_grpo_mean"), r.get("auc_diff_vs_grpo_ci95"), "+"),
    ),
    ("steps to threshold, median (censored)", lambda r: _median(r, "steps")),
    (
        "vs GRPO [95% CI]",
        lambda r: _ci(
            r.get("steps_to_threshold_diff_vs_grpo_mean"),
            r.get("steps_to_threshold_diff_vs_grpo_ci95"),
            "+",
            1,
        ),
    ),
    (
        "tokens to threshold vs GRPO [95% CI]",
        lambda r: _ci(
            r.get("tokens_to_threshold_diff_vs_grpo_mean"),
            r.get("tokens_to_threshold_diff_vs_grpo_ci95"),
            "+",
            0,
        ),
    ),
    ("seconds to threshold vs GRPO [95% CI] (pairs)", lambda r: _seconds(r)),
    (
        "training seconds / GRPO's",
        lambda r: _ci(r.get("training_seconds_vs_grpo_mean"), r.get("training_seconds_vs_grpo_ci95")),
    ),
    ("final pass@1", lambda r: _ci(r["final_pass1_mean"], None)),
    ("gain over start [95% CI]", lambda r: _ci(r["gain_over_start_mean"], r["gain_over_start_ci95"], "+")),
    ("useful share, epochs 2-5", lambda r: _ci(r["useful_share_epochs_2_5"], None)),
)


def format_table(summary: dict[str, Any]) -> str:
    lines = [
        "| variant | " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for variant, row in summary["variants"].items():
        lines.append(f"| {variant} | " + " | ".join(cell(row) for _, cell in COLUMNS) + " |")
    noise = summary["warm_start_pass1_sd_over_sampling_seeds"]
    lines += [
        "",
        f"threshold {summary['threshold']:.3f} ({summary['threshold_rule']}; warm start "
        f"{summary['warm_start_pass1']:.3f}); one evaluation's sampling noise, the warm start scored "
        f"with different sampling seeds: SD {_fmt(noise, 4)}",
    ]
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign}.{digits}f}"


def _ci(mean: float | None, ci: list[float] | None, sign: str = "", digits: int = 3) -> str:
    if ci is None:
        return _fmt(mean, digits, sign)
    return f"{_fmt(mean, digits, sign)} [{_fmt(ci[0], digits, sign)}, {_fmt(ci[1], digits, sign)}]"


def _median(row: dict[str, Any], axis: str) -> str:
    median = row[f"{axis}_to_threshold_median"]
    return f"{_fmt(median, 1) if median is not None else '> run'} ({row[f'{axis}_to_threshold_censored']})"


def _seconds(row: dict[str, Any]) -> str:
    if "seconds_to_threshold_pairs" not in row:
        return "-"
    mean, ci = row["seconds_to_threshold_diff_vs_grpo_mean"], row["seconds_to_threshold_diff_vs_grpo_ci95"]
    return f"{_ci(mean, ci, '+', 0)} ({row['seconds_to_threshold_pairs']})"


def plot(path: Path, curves: dict[str, dict[int, Curve]], summary: dict[str, Any]) -> None:
    """Mean held-out accuracy with 95% bands over seeds, against steps and against training seconds
    (the seconds panel uses only cells whose GRPO pair ran in the same boot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, by_seconds) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = [0, *CURVE_STEPS]
    for variant, by_seed in curves.items():
        means, lows, highs = _band([[c.accuracy[s] for c in by_seed.values()] for s in steps])
        by_step.plot(steps, means, marker="o", markersize=3, label=f"{variant} ({len(by_seed)} seeds)")
        by_step.fill_between(steps, lows, highs, alpha=0.2)
        grpo = curves["grpo"]
        timed = [c for s, c in by_seed.items() if s in grpo and c.timed_beside(grpo[s])]
        if timed:
            seconds = [statistics.fmean(c.seconds[s] for c in timed) for s in steps]
            means, lows, highs = _band([[c.accuracy[s] for c in timed] for s in steps])
            by_seconds.plot(seconds, means, marker="o", markersize=3, label=f"{variant} ({len(timed)} seeds)")
            by_seconds.fill_between(seconds, lows, highs, alpha=0.2)
    for axis in (by_step, by_seconds):
        axis.axhline(summary["threshold"], color="grey", linestyle="--", linewidth=1)
        axis.set_ylabel("held-out pass@1 (mean over seeds, 95% band)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    by_step.set_xlabel("training step (256 rollouts each, every variant)")
    by_seconds.set_xlabel("training seconds (cells paired with GRPO in one session)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _band(values_by_point: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    means, lows, highs = [], [], []
    for values in values_by_point:
        mean, ci = mean_ci95(values)
        means.append(mean)
        lows.append(ci[0] if ci else mean)
        highs.append(ci[1] if ci else mean)
    return means, lows, highs
