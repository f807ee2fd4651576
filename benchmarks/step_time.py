"""XRPO's step time against GRPO's on the main job, with and without CPU mode's token-budgeted
micro-batches: a benchmark (it prints figures and ratios), not a test.

    python -m benchmarks.step_time OUT [--steps 12] [--rounds 1] [--settings ...] [--contenders ...]

Runs the main job (``python -m recipe.xrpo.scale_model.train``) for GRPO and XRPO (and XRPO with
``planning.overlap_share`` 0.5 or 0.75, or ``planning.num_phases=2``), once with the CPU preset as it is and
once with ``actor_rollout_ref.actor.use_dynamic_bsz=false`` (one padded micro-batch per step, the
preset before), interleaved so that the contenders of a round see the same machine; every run trains the
same warm-started model (built once, in OUT/models/warm-start). Medians over steps 2..N (step 1 warms up).
Finished runs are skipped.

The ``spread`` setting checks the generation-time model (``benchmarks.generation``)
through the real pipeline: an untrained model of the same shape (OUT/models/untrained) answers with
random tokens until it happens to emit its end token, so its responses spread from a few tokens to
the 1024-token cut (the lengths it gives: ``docs/benchmarks.md``, run 7), the spread the main job's short
answers lack. Almost every reward is 0 there; generation time, not learning, is what it measures.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from recipe.xrpo.scale_model.compare import allocation_from_table, mean_ci95
from recipe.xrpo.scale_model.train import ScaleModelRun
from recipe.xrpo.scale_model.warmstart import PRESETS, REPORT_FILE, build_warm_model_dir

MIXED_SHARE = "dump/mixed_group_rollout_share"  # computed here from the rollout dump, not logged by verl
# the table's rows: seconds of the step and its main parts, and the tokens the actor processes
PARTS = {
    "step": "timing_s/step",
    "gen": "timing_s/gen",
    "old_log_prob": "timing_s/old_log_prob",
    "update_actor": "timing_s/update_actor",
    "tokens (prompt + response)": "global_seqlen/mean",
    "response length, mean": "response_length/mean",
    "response length, max": "response_length/max",
    # rollouts in groups with mixed outcomes (what GRPO-style advantages learn from), for every
    # contender from verl's rollout dump: the "useful share" of docs/results.md
    "mixed-group share": MIXED_SHARE,
    # seconds from a phase's submission to its first, three-quarter and last rollout end: latency or tail
    **{
        f"phase {k} {end} end (XRPO)": f"timing_s/xrpo_phase{k}_{end}_end"
        for k in (1, 2, 3)
        for end in ("first", "75pct", "last")
    },
}
PAIRED = ("step", "gen")  # the parts whose per-step ratio to GRPO is given with an interval
CONTENDERS = {  # folder part: (estimator, its own overrides); the first is the reference
    "grpo": ("grpo", []),
    "xrpo": ("xrpo", []),
    "xrpo-overlap": ("xrpo", ["algorithm.xrpo.planning.overlap_share=0.5"]),
    "xrpo-overlap-0.75": ("xrpo", ["algorithm.xrpo.planning.overlap_share=0.75"]),
    "xrpo-2phases": ("xrpo", ["algorithm.xrpo.planning.num_phases=2"]),
    "xrpo-submission": ("xrpo", ["algorithm.xrpo.planning.mode=submission"]),
    # verl's asynchronous colocated trainer: training overlaps the next groups' generation
    "grpo-colocate-async": ("grpo", ["trainer.v1.trainer_mode=colocate_async"]),
    "xrpo-colocate-async": ("xrpo", ["trainer.v1.trainer_mode=colocate_async"]),
}
MODELS = {  # model folder under OUT (git ignores models/; rebuilt when missing): its warm start
    "models/warm-start": PRESETS[ScaleModelRun.warm_start],  # the main job's
    "models/untrained": replace(PRESETS[ScaleModelRun.warm_start], steps=0),
}
SETTINGS = {  # folder prefix: (what the table calls it, verl overrides, model folder, launcher options)
    "dynamic": ("dynamic micro-batches (CPU preset)", [], "models/warm-start", []),
    "padded": (
        "one padded micro-batch",
        ["actor_rollout_ref.actor.use_dynamic_bsz=false"],
        "models/warm-start",
        [],
    ),
    "spread": (
        "untrained model, responses up to 1024 tokens",
        ["data.max_response_length=1024"],
        "models/untrained",
        [],
    ),
    # 32 training prompts, 8 a step: each prompt is seen again every 4 steps, so that
    # planning.mode=submission plans from history (on the main job's 256 it would not in 12 steps)
    "revisit": ("main job on 32 training prompts", [], "models/warm-start", ["--train-size=32"]),
}


def run(
    folder: Path, model: Path, estimator: str, steps: int, overrides: list[str], launcher: list[str]
) -> Path:
    metrics = folder / "metrics.jsonl"
    summary = folder / "summary.json"
    if summary.is_file() and json.loads(summary.read_text())["exit_code"] == 0:
        return metrics
    command = [
        sys.executable,
        "-m",
        "recipe.xrpo.scale_model.train",
        f"--run-dir={folder}",
        f"--estimator={estimator}",
        f"--steps={steps}",
        f"--model={model}",
        "--fresh",
        *launcher,
        "--",
        *overrides,
        f"trainer.rollout_data_dir={(folder / 'rollouts').resolve()}",  # verl's cwd is the run folder
    ]
    print("running:", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return metrics


def steady_steps(metrics: Path) -> dict[int, dict[str, float]]:
    """Each step's metrics from step 2 on (step 1 warms up), by step, with the step's mixed-group
    share from the rollout dump beside them."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    steps = {r["step"]: r["data"] for r in rows if "timing_s/step" in r["data"] and r["step"] >= 2}
    for step, share in mixed_group_shares(metrics.parent).items():
        if step in steps:
            steps[step][MIXED_SHARE] = share
    return steps


def mixed_group_shares(folder: Path) -> dict[int, float]:
    """Per step, the share of rollouts in groups with both outcomes, from verl's rollout dump."""
    steps = allocation_from_table(folder / "rollouts", folder / "rollouts.parquet")
    return {step: allocation["useful_rollout_share"] for step, allocation in steps.items()}


def medians(steps: dict[int, dict[str, float]]) -> dict[str, float]:
    """Each part's median over the steps that log it (a phase that got no rollouts logs no end)."""
    values = {part: [d[key] for d in steps.values() if key in d] for part, key in PARTS.items()}
    return {part: statistics.median(v) if v else math.nan for part, v in values.items()}


def paired_ratio(pairs: list[tuple[float, float]]) -> str:
    """Geometric mean of per-step ratios (contender / GRPO, same seed and prompts) with its 95% interval."""
    mean, interval = mean_ci95([math.log(x / g) for g, x in pairs])
    if mean is None:
        return "n/a"
    low, high = (math.exp(b) for b in interval) if interval else (math.nan, math.nan)
    return f"{math.exp(mean):.2f} ({low:.2f}-{high:.2f})"


def ratio(value: float, reference: float) -> str:
    """value / reference, or n/a where the reference is 0 (a share no GRPO group reached)."""
    return f"{value / reference:.2f}" if reference else "n/a"


def paired_difference(pairs: list[tuple[float, float]]) -> str:
    """Mean per-step difference (contender - GRPO) in points, with its 95% interval."""
    mean, interval = mean_ci95([100 * (x - g) for g, x in pairs])
    if mean is None:
        return "n/a"
    low, high = interval if interval else (math.nan, math.nan)
    return f"{mean:+.1f} ({low:+.1f} to {high:+.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=1, help="repeat each pair (new folders)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["dynamic", "padded"])
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=list(CONTENDERS),
        default=["grpo", "xrpo"],
        help="grpo is always run",
    )
    args = parser.parse_args(argv)
    contenders = ["grpo", *(c for c in args.contenders if c != "grpo")]
    table: dict[str, dict[str, list[dict[int, dict[str, float]]]]] = {}  # label -> contender -> rounds
    for round_ in range(args.rounds):
        for slug in args.settings:
            label, overrides, model_folder, launcher = SETTINGS[slug]
            model = args.out / model_folder
            if not (model / REPORT_FILE).is_file():
                build_warm_model_dir(model, MODELS[model_folder])
            for name in contenders:
                estimator, own = CONTENDERS[name]
                folder = args.out / f"{slug}-{name}-r{round_}"
                table.setdefault(label, {}).setdefault(name, []).append(
                    steady_steps(run(folder, model, estimator, args.steps, [*overrides, *own], launcher))
                )
    others = contenders[1:]
    print(f"\nmedians of steps 2-{args.steps}, seconds or tokens (one value per round)")
    print(
        "| setting | part | "
        + " | ".join(contenders)
        + " | "
        + " | ".join(f"{c} / grpo" for c in others)
        + " |"
    )
    print("| --- | --- |" + " --- |" * (len(contenders) + len(others)))
    for label, by_name in table.items():
        rounds = {c: [medians(r) for r in by_name[c]] for c in contenders}
        for part in PARTS:
            values = {c: [r[part] for r in rounds[c]] for c in contenders}
            cells = [", ".join(f"{v:.2f}" for v in values[c]) for c in contenders]
            ratios = [
                ", ".join(ratio(x, g) for g, x in zip(values["grpo"], values[c], strict=True)) for c in others
            ]
            print(f"| {label} | {part} | " + " | ".join(cells + ratios) + " |")
    # each contender against GRPO, and an XRPO contender also against GRPO with the same overrides
    # (XRPO's own cost within one trainer mode)
    comparisons = [(c, "grpo") for c in others] + [
        (c, g)
        for c in others
        for g in others
        if CONTENDERS[c][0] == "xrpo" and CONTENDERS[g] == ("grpo", CONTENDERS[c][1])
    ]
    print(
        "\nper step, paired by step over all rounds: ratio as a geometric mean, share as a"
        " difference in points (95% interval)"
    )
    print(
        "| setting | contender | against | pairs | "
        + " | ".join(f"{p} ratio" for p in PAIRED)
        + " | mixed-group share difference |"
    )
    print("| --- | --- | --- | --- |" + " --- |" * (len(PAIRED) + 1))
    for label, by_name in table.items():
        for c, reference in comparisons:
            pairs = {
                part: [
                    (ref[step][key], mine[step][key])
                    for ref, mine in zip(by_name[reference], by_name[c], strict=True)
                    for step in sorted(ref.keys() & mine.keys())
                    if key in ref[step] and key in mine[step]
                ]
                for part, key in [*((p, PARTS[p]) for p in PAIRED), ("share", MIXED_SHARE)]
            }
            cells = [paired_ratio(pairs[part]) for part in PAIRED] + [paired_difference(pairs["share"])]
            print(f"| {label} | {c} | {reference} | {len(pairs['step'])} | " + " | ".join(cells) + " |")
    print(f"\nwall-clock of steps 2-{args.steps} (the sum of their step seconds), one value per round")
    print("| setting | " + " | ".join(contenders) + " | " + " | ".join(f"{c} / grpo" for c in others) + " |")
    print("| --- |" + " --- |" * (len(contenders) + len(others)))
    for label, by_name in table.items():
        totals = {c: [sum(d[PARTS["step"]] for d in r.values()) for r in by_name[c]] for c in contenders}
        cells = [", ".join(f"{v:.1f}" for v in totals[c]) for c in contenders]
        ratios = [
            ", ".join(ratio(x, g) for g, x in zip(totals["grpo"], totals[c], strict=True)) for c in others
        ]
        print(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
