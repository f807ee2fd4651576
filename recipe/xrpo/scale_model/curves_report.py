"""The learning-curve report and the power calculation that chose its seed count.

Run through ``python -m recipe.xrpo.scale_model.curves report|power``; the plan it carries out is
in ``docs/results.md`` (*Learning curves: the analysis plan*).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from recipe.xrpo.scale_model.compare import VAL_SAMPLES
from recipe.xrpo.scale_model.curves import power_table

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
