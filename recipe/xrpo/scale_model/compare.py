"""The scale-model comparison: GRPO, GSPO, XRPO and its ablations at one rollout budget, on CPU.

    python -m recipe.xrpo.scale_model.compare train  --out results/scale-compare   # every cell
    python -m recipe.xrpo.scale_model.compare eval   --out results/scale-compare   # pass@k, cons@k
    python -m recipe.xrpo.scale_model.compare report --out results/scale-compare   # tables, plots

Every cell (variant x seed) is one run of the main job's launcher (``train.py``) through stock
``main_ppo``: the same warm-started model for every cell (built once), each seed's own training and
held-out prompts and data order shared by all variants, the same ``prompts x rollout.n`` rollouts
per step, held-out validation every few steps. Every rollout is dumped (verl's
``trainer.rollout_data_dir``) and boiled down to one table row per prompt group and step
(``rollouts.parquet``, the committed form; the dumps are not committed), so the useful-rollout
share is computed the same way for every variant, GRPO included. ``train`` skips finished cells
(``--only variant:seed`` re-runs one); ``--task`` runs the same comparison on another task family.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import hashlib
import json
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

from recipe.xrpo.scale_model import tasks
from recipe.xrpo.scale_model.train import (
    REWARD_FILE,
    RunPaths,
    ScaleModelRun,
    prepare,
    read_metrics,
    train,
)
from recipe.xrpo.scale_model.warmstart import PRESETS, REPORT_FILE, build_warm_model_dir
from verl_xrpo.core.seeding import FOOTER, HEADER

GSPO = "loss=gspo"  # configs/loss/gspo.yaml


@dataclass(frozen=True)
class Variant:
    name: str
    estimator: str
    overrides: tuple[str, ...] = ()
    ranked: bool = True  # False: a measurement cell, not a contender


VARIANTS = {
    v.name: v
    for v in (
        Variant("grpo", "grpo"),
        Variant("gspo", "grpo", (GSPO,)),
        Variant("xrpo", "xrpo"),
        Variant("xrpo_gspo", "xrpo", (GSPO,)),
        Variant("xrpo_no_planning", "xrpo", ("algorithm.xrpo.planning.enable=false",)),
        Variant("xrpo_no_seeding", "xrpo", ("algorithm.xrpo.seeding.enable=false",)),
        Variant("xrpo_no_sharpening", "xrpo", ("algorithm.xrpo.sharpening.enable=false",)),
        # half the prompts that qualify for seeding stay unseeded: seeding's lift, measured
        Variant("xrpo_seeding_control", "xrpo", ("algorithm.xrpo.seeding.control_share=0.5",), ranked=False),
        # prompts that agreed on their previous visit get 2 rollouts: needs a multi-epoch schedule
        Variant("xrpo_skip_agreed", "xrpo", ("algorithm.xrpo.planning.skip_agreed=true",), ranked=False),
        # every count decided before the step generates, from history: needs a multi-epoch schedule
        Variant("xrpo_submission", "xrpo", ("algorithm.xrpo.planning.mode=submission",), ranked=False),
    )
}
DEFAULT_VARIANTS = [name for name, v in VARIANTS.items() if v.ranked]

VAL_SAMPLES = 4
VALIDATION = (
    "trainer.val_before_train=true",
    f"actor_rollout_ref.rollout.val_kwargs.n={VAL_SAMPLES}",
    "actor_rollout_ref.rollout.val_kwargs.do_sample=true",
    "actor_rollout_ref.rollout.val_kwargs.temperature=1.0",
)
HISTOGRAM_SAMPLES = 8  # per training prompt at the warm start: the regime XRPO is for


@dataclass(frozen=True)
class Schedule:
    """What every cell of one comparison shares."""

    steps: int
    val_every: int
    val_size: int
    train_size: int
    prompts_per_step: int
    task: str
    warm_start: str
    settings: tuple[str, ...] = ()
    warm_model_dir: Path | None = None  # a built warm start to share (another comparison's)
    heldout_seed: int | None = None  # one held-out set for every seed (else each seed's own)
    save_every: int = 0  # checkpoint every N steps (0: at the end), for curves evaluated afterwards

    def heldout_rows(self, seed: int) -> list[dict[str, Any]]:
        held_seed = seed if self.heldout_seed is None else self.heldout_seed
        return tasks.generate_rows(self.task, "val", self.val_size, held_seed)

    @property
    def val_key(self) -> str:
        return f"val-core/{tasks.TaskSpec.parse(self.task).data_source}/acc/mean@{VAL_SAMPLES}"

    @property
    def rollouts_per_step(self) -> int:
        return self.prompts_per_step * ScaleModelRun.rollouts_per_prompt


@dataclass(frozen=True)
class Cell:
    variant: Variant
    seed: int
    out: Path

    @property
    def folder(self) -> Path:
        return self.out / "runs" / self.variant.name / f"seed{self.seed}"

    @property
    def rollouts(self) -> Path:
        return self.folder / "rollouts"

    @property
    def rollout_table(self) -> Path:
        return self.folder / "rollouts.parquet"

    def done(self, steps: int) -> bool:
        summary = self.folder / "summary.json"
        if not summary.is_file():
            return False
        data = json.loads(summary.read_text())
        return data["exit_code"] == 0 and data["steps_done"] >= steps


START = "start"  # the warm-started model before any RL: every variant's reference


def warm_model(out: Path, schedule: Schedule) -> Path:
    """The one warm start of the comparison (its seed is 0; cells differ by data and sampling)."""
    if schedule.warm_model_dir is not None:
        return schedule.warm_model_dir
    folder = out / "models" / "warm_start"
    if not (folder / REPORT_FILE).is_file():
        build_warm_model_dir(folder, replace(PRESETS[schedule.warm_start], task=schedule.task))
    return folder


def cell_run(cell: Cell, schedule: Schedule) -> ScaleModelRun:
    return ScaleModelRun(
        RunPaths(cell.folder),
        steps=schedule.steps,
        estimator=cell.variant.estimator,
        seed=cell.seed,
        task=schedule.task,
        prompts_per_step=schedule.prompts_per_step,
        val_size=schedule.val_size,
        val_seed=schedule.heldout_seed,
        train_size=schedule.train_size,
        save_freq=schedule.save_every,
        model_dir=warm_model(cell.out, schedule),
    )


@contextmanager
def claimed(cell: Cell) -> Iterator[bool]:
    """True while this process holds the cell's lock: a second ``compare train`` running the same
    grid skips a cell in training instead of wiping it. The lock ends with the process."""
    lock = cell.folder.parent / f"{cell.folder.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def train_cell(cell: Cell, schedule: Schedule) -> int:
    if cell.folder.exists():
        shutil.rmtree(cell.folder)  # a half-done cell starts over: no mixed metrics
    cell.folder.mkdir(parents=True)
    run = cell_run(cell, schedule)
    prepare(run)
    extra = [*cell.variant.overrides, *validation(schedule.val_every)]
    extra += [f"trainer.rollout_data_dir={cell.rollouts}", *schedule.settings]
    label = f"[{cell.variant.name} seed {cell.seed}]"
    summary = train(run, extra, echo=lambda line: print(f"{label} {line}", flush=True))
    if summary.exit_code == 0:
        write_rollout_table(cell.rollouts, cell.rollout_table)
    return summary.exit_code


def validation(every: int) -> list[str]:
    """verl's own validation every ``every`` steps; 0 turns it off (curves evaluate checkpoints)."""
    if every == 0:
        return ["trainer.val_before_train=false", "trainer.test_freq=-1"]
    return [*VALIDATION, f"trainer.test_freq={every}"]


def start_folder(out: Path, seed: int) -> Path:
    return out / "runs" / START / f"seed{seed}"


def evaluate(model: Path, data: Path, samples: int, seed: int, out: Path, label: str) -> int:
    """Score ``model`` on ``data`` with ``verl_xrpo.eval``, writing ``out`` (JSON) and a log beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "verl_xrpo.eval", str(model), "--data", str(data)]
    command += ["--samples", str(samples), "--k", "1", str(samples // 2), str(samples)]
    command += ["--max-tokens", "48", "--seed", str(seed), "--reward-file", str(REWARD_FILE)]
    command += ["--out", str(out)]
    print(f"[{label}] evaluating {model} on {data.name} ({samples} samples per prompt)", flush=True)
    with out.with_suffix(".log").open("w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if code:
        print(f"[{label}] evaluation failed (exit {code}); see {out.with_suffix('.log')}", flush=True)
    return code


def eval_cell(cell: Cell, samples: int) -> int:
    from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

    label = f"{cell.variant.name} seed {cell.seed}"
    latest = find_latest_ckpt_path(str(cell.folder / "checkpoints"))
    if latest is None:
        print(f"[{label}] no checkpoint to evaluate", flush=True)
        return 1
    return evaluate(
        Path(latest), RunPaths(cell.folder).val_data, samples, cell.seed, cell.folder / "eval.json", label
    )


def eval_start(out: Path, seed: int, schedule: Schedule, samples: int) -> int:
    """The warm start on the seed's held-out prompts, and its per-prompt success on training prompts."""
    paths = RunPaths(start_folder(out, seed))
    prepare(replace(cell_run(Cell(VARIANTS["grpo"], seed, out), schedule), paths=paths))
    model, label, failures = warm_model(out, schedule), f"{START} seed {seed}", 0
    if not (paths.root / "eval.json").is_file():
        failures += evaluate(model, paths.val_data, samples, seed, paths.root / "eval.json", label) != 0
    if not (paths.root / "train_eval.json").is_file():
        histogram = paths.root / "train_eval.json"
        failures += evaluate(model, paths.train_data, HISTOGRAM_SAMPLES, seed, histogram, label) != 0
    return failures


# ---- the report -----------------------------------------------------------------------------------


ROLLOUT_TABLE_SCHEMA = pa.schema(
    [
        ("step", pa.int32()),
        ("prompt_key", pa.string()),
        ("level", pa.string()),
        ("rollouts", pa.int32()),
        ("successes", pa.int32()),
        ("seeded_rollouts", pa.int32()),
        ("seeded_successes", pa.int32()),
        ("response_tokens", pa.int64()),
    ]
)
CHAIN_QUESTION = re.compile(r"Add (\d+(?: \+ \d+)+) step by step\.")


def unseeded_input(text: str) -> str:
    """The prompt as drawn, without the exemplars seeding put in front of its question."""
    if HEADER not in text:
        return text
    return text[: text.index(HEADER)] + text[text.rindex(FOOTER) + len(FOOTER) :]


def prompt_key(text: str) -> str:
    """A prompt's name across steps, epochs and cells: verl's uid is drawn afresh at every fetch."""
    return hashlib.sha1(unseeded_input(text).encode()).hexdigest()[:16]


def chain_level(text: str) -> str | None:
    """The chain task's difficulty level read off the question (None for other task families)."""
    match = CHAIN_QUESTION.search(unseeded_input(text))
    if match is None:
        return None
    terms = [int(t) for t in match.group(1).split(" + ")]
    for level in tasks.CHAIN_LEVELS:  # single-digit terms, except the hard level's first pair
        if level.terms == len(terms) and level.two_digit_start == (terms[0] >= 10):
            return level.name
    return None


def write_rollout_table(dumps: Path, table: Path) -> Path | None:
    """One row per prompt group and step of verl's rollout dumps (``<step>.jsonl``), sorted.

    A step can hold the same prompt text twice (the training data repeats questions, two-term
    chains most), so a row is one group (one uid), not one ``(step, prompt_key)``. A rollout is
    seeded when its input carries seeding's exemplars; ``response_tokens`` only where the dump
    counts them (XRPO's trainer does, a plain verl dump does not). None: nothing to convert."""
    paths = sorted(dumps.glob("*.jsonl")) if dumps.is_dir() else []
    if not paths:
        return None
    rows = []
    for path in paths:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        # one record a "\n": str.splitlines would also cut at the line separators an untrained
        # model's responses hold raw (verl writes them with ensure_ascii=False)
        for line in filter(None, path.read_text().split("\n")):
            record = json.loads(line)
            # verl's filler rows (reward 0, uid "pad<hex>"; XRPO's dump also marks them): not rollouts
            if record.get("is_padding") or record["uid"].startswith("pad"):
                continue
            groups[record["uid"].rsplit("_", 2)[0]].append(record)
        for group in groups.values():
            seeded = [r for r in group if HEADER in r["input"]]
            lengths = [r.get("response_length") for r in group]
            rows.append(
                {
                    "step": int(path.stem),
                    "prompt_key": prompt_key(group[0]["input"]),
                    "level": chain_level(group[0]["input"]),
                    "rollouts": len(group),
                    "successes": sum(float(r["score"]) > 0 for r in group),
                    "seeded_rollouts": len(seeded),
                    "seeded_successes": sum(float(r["score"]) > 0 for r in seeded),
                    "response_tokens": None if None in lengths else sum(lengths),
                }
            )
    rows.sort(key=lambda r: tuple((v is not None, v) for v in r.values()))
    table.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ROLLOUT_TABLE_SCHEMA), table, compression="zstd")
    return table


def allocation_by_step(cell: Cell) -> dict[int, dict[str, float]]:
    """Per step, from every rollout's score: where the budget went and what carried signal."""
    return allocation_from_table(cell.rollouts, cell.rollout_table)


def allocation_from_table(dumps: Path, table: Path) -> dict[int, dict[str, float]]:
    """``allocation_by_step`` for any run: read from its rollout table, written first from verl's
    dumps where only they exist."""
    if not table.is_file() and write_rollout_table(dumps, table) is None:
        return {}
    groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for row in pq.read_table(table, columns=["step", "rollouts", "successes"]).to_pylist():
        groups[row["step"]].append((row["rollouts"], row["successes"]))
    steps = {}
    for step, sizes in sorted(groups.items()):
        mixed = [n for n, k in sizes if 0 < k < n]
        steps[step] = {
            "rollouts": sum(n for n, _ in sizes),
            "useful_rollout_share": sum(mixed) / sum(n for n, _ in sizes),
            "zero_variance_share": 1 - len(mixed) / len(sizes),
        }
    return steps


def cell_rows(cell: Cell, val_key: str) -> list[dict[str, Any]]:
    """One row per logged step of a cell: the metrics the report uses."""
    records, _ = read_metrics(cell.folder / "metrics.jsonl")
    allocation = allocation_by_step(cell)
    rows = []
    for record in records:
        data, step = record["data"], int(record["step"])
        rollouts = allocation.get(step, {})
        rows.append(
            {
                "variant": cell.variant.name,
                "seed": cell.seed,
                "step": step,
                "val_acc": data.get(val_key),
                "train_score": data.get("critic/score/mean"),
                "rollouts": rollouts.get("rollouts"),
                "response_tokens": _tokens(data, rollouts.get("rollouts")),
                "useful_rollout_share": rollouts.get("useful_rollout_share"),
                "zero_variance_share": rollouts.get("zero_variance_share"),
                "step_seconds": data.get("timing_s/step"),
                "gen_seconds": data.get("timing_s/gen"),
                "old_log_prob_seconds": data.get("timing_s/old_log_prob"),
                "update_actor_seconds": data.get("timing_s/update_actor"),
                "seeded_prompts": data.get("xrpo/seeding/prompts_seeded"),
                "seeded_prompts_solved": data.get("xrpo/seeding/prompts_with_seeded_success"),
                **{f"seeding_{k}": data.get(f"xrpo/seeding/{k}") for k in LIFT_KEYS},
                "xrpo_planning_s": data.get("timing_s/xrpo_planning"),
                "xrpo_retrieval_s": data.get("timing_s/xrpo_retrieval"),
                "xrpo_advantage_s": data.get("timing_s/xrpo_advantage"),
            }
        )
    return rows


LIFT_KEYS = ("treated_rollouts", "treated_successes", "control_rollouts", "control_successes")


def _tokens(data: dict[str, float], rollouts: float | None) -> float | None:
    mean = data.get("response_length/mean")
    return mean * rollouts if mean is not None and rollouts else None


def mean_ci95(values: Sequence[float]) -> tuple[float | None, list[float] | None]:
    """Mean and a 95% Student-t interval across seeds (None with fewer than two)."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, [mean - half, mean + half]


def proportion_ci95(successes: float, trials: float) -> list[float] | None:
    """Wilson 95% interval of a success rate."""
    if trials <= 0:
        return None
    z, p = 1.959964, successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * ((p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5) / (1 + z * z / trials)
    return [centre - half, centre + half]


def final_val_by_seed(rows: list[dict[str, Any]]) -> dict[int, float]:
    """Each seed's last validated accuracy."""
    finals = {}
    for row in sorted(rows, key=lambda r: r["step"]):
        if row["val_acc"] is not None:
            finals[row["seed"]] = row["val_acc"]
    return finals


def steps_to_reach(rows: list[dict[str, Any]], targets: dict[int, float]) -> float | None:
    """Mean over seeds of the first validated training step reaching that seed's target.

    Each seed has its own target (GRPO's final validated accuracy on that seed's prompts).
    Validation before training (step 0) does not count. None if a seed never reaches it.
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


def tokens_until(rows: list[dict[str, Any]], step: float | None) -> float | None:
    """Mean over seeds of the response tokens generated up to ``step`` (rounded up)."""
    if step is None:
        return None
    totals = defaultdict(float)
    for row in rows:
        if 1 <= row["step"] <= step and row["response_tokens"]:
            totals[row["seed"]] += row["response_tokens"]
    return statistics.fmean(totals.values()) if totals else None


def read_scores(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def steady_median(rows: list[dict[str, Any]], key: str) -> float | None:
    """Median of ``key`` over the rows' steps after the first (the first warms the workers up)."""
    values = [r[key] for r in rows if r["step"] > 1 and r[key] is not None]
    return statistics.median(values) if values else None


def summarize_variant(
    name: str,
    rows: list[dict[str, Any]],
    finals: dict[int, dict],
    starts: dict[int, dict],
    grpo: dict[int, dict],
) -> dict[str, Any]:
    seeds = sorted(finals)
    gains = [finals[s]["pass@1"] - starts[s]["pass@1"] for s in seeds if s in starts]
    gain_mean, gain_ci = mean_ci95(gains)
    summary: dict[str, Any] = {
        "seeds": len({r["seed"] for r in rows}),
        "evaluated_seeds": seeds,
        "pass1_mean": _mean([finals[s]["pass@1"] for s in seeds]),
        "pass1_gain_mean": gain_mean,
        "pass1_gain_ci95": gain_ci,
        "useful_rollout_share": _mean([r["useful_rollout_share"] for r in rows if r["step"] >= 1]),
        "zero_variance_share": _mean([r["zero_variance_share"] for r in rows if r["step"] >= 1]),
        "train_score_first": _mean([r["train_score"] for r in rows if r["step"] == 1]),
        "train_score_last": _mean(
            [r["train_score"] for r in rows if r["step"] == max(x["step"] for x in rows)]
        ),
        "median_step_seconds": steady_median(rows, "step_seconds"),
        "median_gen_seconds": steady_median(rows, "gen_seconds"),
        "median_old_log_prob_seconds": steady_median(rows, "old_log_prob_seconds"),
        "median_update_actor_seconds": steady_median(rows, "update_actor_seconds"),
        "median_xrpo_planning_s": steady_median(rows, "xrpo_planning_s"),
        "median_xrpo_retrieval_s": steady_median(rows, "xrpo_retrieval_s"),
        "median_xrpo_advantage_s": steady_median(rows, "xrpo_advantage_s"),
    }
    for key in sorted({k for f in finals.values() for k in f} - {"prompts"}):
        summary[key] = _mean([f.get(key) for f in finals.values()])
    if name != "grpo":
        paired = [finals[s]["pass@1"] - grpo[s]["pass@1"] for s in seeds if s in grpo]
        summary["diff_vs_grpo_mean"], summary["diff_vs_grpo_ci95"] = mean_ci95(paired)
    lift = {k: sum(r[f"seeding_{k}"] or 0 for r in rows) for k in LIFT_KEYS}
    if lift["control_rollouts"]:
        summary["seeding_lift"] = {
            "treated_rate": lift["treated_successes"] / max(lift["treated_rollouts"], 1),
            "treated_ci95": proportion_ci95(lift["treated_successes"], lift["treated_rollouts"]),
            "control_rate": lift["control_successes"] / lift["control_rollouts"],
            "control_ci95": proportion_ci95(lift["control_successes"], lift["control_rollouts"]),
            **lift,
        }
    return summary


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def success_histogram(out: Path, seeds: Sequence[int]) -> dict[str, Any] | None:
    """Per-prompt successes of the warm start on the training prompts (all seeds pooled)."""
    counts = []
    for seed in seeds:
        report = read_scores(start_folder(out, seed) / "train_eval.json")
        if report is not None:
            counts += report["successes_per_prompt"]
    if not counts:
        return None
    histogram = [counts.count(k) for k in range(HISTOGRAM_SAMPLES + 1)]
    return {
        "samples_per_prompt": HISTOGRAM_SAMPLES,
        "prompts": len(counts),
        "histogram": histogram,
        "all_fail_share": histogram[0] / len(counts),
        "all_pass_share": histogram[-1] / len(counts),
    }


def pass1_by_level(scores: dict[str, Any], levels: Sequence[str]) -> dict[str, float] | None:
    """Held-out pass@1 per difficulty level, from an evaluation's per-prompt successes.

    ``levels``: each held-out prompt's difficulty, in the evaluation's order. None when the
    evaluation has no per-prompt successes or covers other prompts.
    """
    successes = scores.get("successes_per_prompt")
    if successes is None or len(successes) != len(levels):
        return None
    rates: dict[str, list[float]] = defaultdict(list)
    for level, count in zip(levels, successes, strict=True):
        rates[level].append(count / scores["samples"])
    return {level: statistics.fmean(values) for level, values in rates.items()}  # in the prompts' order


def mean_by_level(per_seed: Sequence[dict[str, float] | None]) -> dict[str, float] | None:
    present = [p for p in per_seed if p is not None]
    if not present:
        return None
    return {
        level: _mean([p.get(level) for p in present]) for level in sorted({k for p in present for k in p})
    }


def cell_machine(cell: Cell) -> str:
    """The machine a cell trained on, as its summary recorded it ("" for cells from before)."""
    path = cell.folder / "summary.json"
    return json.loads(path.read_text()).get("machine", "") if path.is_file() else ""


def step_time_ratios(
    rows: list[dict[str, Any]], grpo_rows: list[dict[str, Any]], machines: dict[tuple[str, int], str]
) -> list[float]:
    """Per seed, the cell's median step time over GRPO's, only where both cells recorded the same
    machine: cells from different sessions ran on machines up to 3-4x apart in speed."""

    name = rows[0]["variant"]
    ratios = []
    for seed in sorted({r["seed"] for r in rows}):
        machine = machines.get((name, seed))
        if not machine or machine != machines.get(("grpo", seed)):
            continue
        mine = steady_median([r for r in rows if r["seed"] == seed], "step_seconds")
        theirs = steady_median([r for r in grpo_rows if r["seed"] == seed], "step_seconds")
        if mine and theirs:
            ratios.append(mine / theirs)
    return ratios


def report(out: Path, cells: list[Cell], schedule: Schedule) -> dict[str, Any]:
    """Writes steps.csv, summary.json and the plots; returns the summary."""
    rows = [row for cell in cells for row in cell_rows(cell, schedule.val_key)]
    with (out / "steps.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    seeds = sorted({c.seed for c in cells})
    start_scores = {s: r for s in seeds if (r := read_scores(start_folder(out, s) / "eval.json"))}
    starts = {s: r["scores"]["all"] for s, r in start_scores.items()}
    finals: dict[str, dict[int, dict]] = defaultdict(dict)
    levels: dict[str, dict[int, dict[str, float] | None]] = defaultdict(dict)
    val_levels = {s: [row["extra_info"]["difficulty"] for row in schedule.heldout_rows(s)] for s in seeds}
    levels[START] = {s: pass1_by_level(r, val_levels[s]) for s, r in start_scores.items()}
    for cell in cells:
        scores = read_scores(cell.folder / "eval.json")
        if scores is not None:
            finals[cell.variant.name][cell.seed] = scores["scores"]["all"]
            levels[cell.variant.name][cell.seed] = pass1_by_level(scores, val_levels[cell.seed])
    names = [n for n in VARIANTS if any(c.variant.name == n for c in cells)]
    by_variant = {n: [r for r in rows if r["variant"] == n] for n in names}
    table = {n: summarize_variant(n, by_variant[n], finals[n], starts, finals.get("grpo", {})) for n in names}
    grpo_targets = final_val_by_seed(by_variant.get("grpo", []))
    machines = {(c.variant.name, c.seed): cell_machine(c) for c in cells}
    for n in names:
        steps = steps_to_reach(by_variant[n], grpo_targets) if grpo_targets else None
        table[n]["steps_to_grpo_final"] = steps
        table[n]["rollouts_to_grpo_final"] = steps * schedule.rollouts_per_step if steps else None
        table[n]["tokens_to_grpo_final"] = tokens_until(by_variant[n], steps)
        table[n]["machines"] = sorted({m or "unrecorded" for (v, _), m in machines.items() if v == n})
        ratios = step_time_ratios(by_variant[n], by_variant.get("grpo", []), machines)
        table[n]["step_time_vs_grpo"] = statistics.median(ratios) if ratios else None
        table[n]["step_time_pairs"] = len(ratios)
        table[n]["pass1_by_level"] = mean_by_level(list(levels[n].values()))
    summary = {
        "schedule": {
            "task": schedule.task,
            "warm_start": schedule.warm_start,
            "steps": schedule.steps,
            "prompts_per_step": schedule.prompts_per_step,
            "rollouts_per_step": schedule.rollouts_per_step,
        },
        START: {k: _mean([s.get(k) for s in starts.values()]) for k in next(iter(starts.values()), {})},
        "warm_start_success_histogram": success_histogram(out, seeds),
        **table,
    }
    if starts:
        summary[START]["pass1_by_level"] = mean_by_level(list(levels[START].values()))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_curves(out, rows, names, schedule)
    plot_step_time(out, table)
    return summary


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(out: Path, rows: list[dict[str, Any]], names: list[str], schedule: Schedule) -> None:
    """Held-out accuracy against steps (= rollouts, equal for all) and against generated tokens."""
    plt = _pyplot()
    figure, (by_step, by_tokens) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in names:
        mine = [r for r in rows if r["variant"] == name and r["val_acc"] is not None]
        steps = sorted({r["step"] for r in mine})
        means = [statistics.fmean(r["val_acc"] for r in mine if r["step"] == s) for s in steps]
        by_step.plot([s * schedule.rollouts_per_step for s in steps], means, marker="o", label=name)
        tokens = [tokens_until([r for r in rows if r["variant"] == name], s) or 0.0 for s in steps]
        by_tokens.plot(tokens, means, marker="o", label=name)
    by_step.set_xlabel(f"rollouts ({schedule.rollouts_per_step} per step, every variant)")
    by_tokens.set_xlabel("response tokens generated")
    for axis in (by_step, by_tokens):
        axis.set_ylabel(f"held-out accuracy (mean@{VAL_SAMPLES}, mean over seeds)")
        axis.grid(alpha=0.3)
    by_tokens.legend(fontsize=8)
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


TABLE_COLUMNS = (
    ("pass@1", "pass@1"),
    ("gain over start [95% CI]", "pass1_gain"),
    ("vs GRPO [95% CI]", "diff_vs_grpo"),
    ("cons@16", "cons@16"),
    ("pass@16", "pass@16"),
    ("useful share", "useful_rollout_share"),
    ("zero-var groups", "zero_variance_share"),
    ("steps to GRPO's final", "steps_to_grpo_final"),
    ("step (s)", "median_step_seconds"),
    ("vs GRPO time, same machine", "step_time_vs_grpo"),
)


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        "| variant | seeds | " + " | ".join(label for label, _ in TABLE_COLUMNS) + " |",
        "|---" * (len(TABLE_COLUMNS) + 2) + "|",
    ]
    start = summary.get(START) or {}
    if start:
        cells = [_fmt(start.get(key)) if key in start else "-" for _, key in TABLE_COLUMNS]
        lines.append("| warm start | - | " + " | ".join(cells) + " |")
    for name in VARIANTS:
        row = summary.get(name)
        if row is None:
            continue
        cells = []
        for _, key in TABLE_COLUMNS:
            if key in ("pass1_gain", "diff_vs_grpo"):
                cells.append(_with_ci(row.get(f"{key}_mean"), row.get(f"{key}_ci95")))
            else:
                cells.append(_fmt(row.get(key)))
        lines.append(f"| {name} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + level_table(summary))


def level_table(summary: dict[str, Any]) -> list[str]:
    """Held-out pass@1 per difficulty level, one row per variant (empty without per-prompt data)."""
    rows = {START: summary.get(START) or {}} | {n: summary[n] for n in VARIANTS if n in summary}
    rows = {name: row["pass1_by_level"] for name, row in rows.items() if row.get("pass1_by_level")}
    if not rows:
        return []
    known = [level.name for level in tasks.CHAIN_LEVELS]  # easiest first; other task families: by name
    levels = sorted(
        {level for by_level in rows.values() for level in by_level},
        key=lambda level: (known.index(level) if level in known else len(known), level),
    )
    lines = ["", "held-out pass@1 by level (mean over evaluated seeds):", ""]
    lines += ["| variant | " + " | ".join(levels) + " |", "|---" * (len(levels) + 1) + "|"]
    for name, by_level in rows.items():
        label = "warm start" if name == START else name
        lines.append(f"| {label} | " + " | ".join(_fmt(by_level.get(level)) for level in levels) + " |")
    return lines


def _with_ci(mean: float | None, ci: list[float] | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m recipe.xrpo.scale_model.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=["train", "eval", "report"])
    parser.add_argument("--out", type=Path, default=Path("results/scale-compare"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    parser.add_argument("--only", nargs="+", default=None, help="cells as variant:seed (re-run even if done)")
    parser.add_argument(
        "--task", default=tasks.CHAIN, help="chain, or rg:NAME[:key=value,...] (default: %(default)s)"
    )
    parser.add_argument("--warm-start", choices=sorted(PRESETS), default="scale")
    parser.add_argument(
        "--warm-model",
        type=Path,
        default=None,
        help="a built warm-start folder to use instead of OUT/models/warm_start (e.g. another comparison's)",
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--val-every", type=int, default=10)
    parser.add_argument("--val-size", type=int, default=256)
    parser.add_argument("--train-size", type=int, default=1024)
    parser.add_argument(
        "--prompts-per-step",
        type=int,
        default=32,
        help=f"prompts per step, each worth rollout.n={ScaleModelRun.rollouts_per_prompt} rollouts of budget",
    )
    parser.add_argument("--set", nargs="+", default=[], help="verl overrides for every cell (key=value)")
    parser.add_argument("--eval-samples", type=int, default=16, help="samples per held-out prompt")
    args = parser.parse_args(argv)
    try:
        tasks.TaskSpec.parse(args.task)
    except ValueError as error:
        parser.error(f"--task: {error}")
    if args.warm_model is not None and not (args.warm_model / REPORT_FILE).is_file():
        parser.error(f"--warm-model: {args.warm_model} has no {REPORT_FILE}; give a built warm-start folder")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cells = [Cell(VARIANTS[v], s, out) for s in args.seeds for v in args.variants]
    forced = set(args.only or [])
    if forced:
        cells = [c for c in cells if f"{c.variant.name}:{c.seed}" in forced]
    schedule = Schedule(
        args.steps,
        args.val_every,
        args.val_size,
        args.train_size,
        args.prompts_per_step,
        args.task,
        args.warm_start,
        tuple(args.set),
        args.warm_model.resolve() if args.warm_model else None,
    )
    failures = 0
    if args.action == "train":
        for cell in cells:
            with claimed(cell) as mine:
                if not mine:
                    print(f"[{cell.variant.name} seed {cell.seed}] another process is training it: skipped")
                    continue
                if cell.done(args.steps) and not forced:
                    continue
                failures += train_cell(cell, schedule) != 0
    elif args.action == "eval":
        for seed in args.seeds:
            failures += eval_start(out, seed, schedule, args.eval_samples)
        for cell in cells:
            if cell.done(args.steps) and (forced or not (cell.folder / "eval.json").is_file()):
                failures += eval_cell(cell, args.eval_samples) != 0
    else:
        finished = [c for c in cells if c.done(args.steps)]  # a cell still training would skew the means
        if not finished:
            print(f"no finished cell in {out} for these variants and seeds (--steps {args.steps})")
            return 1
        summary = report(out, finished, schedule)
        table = format_summary(summary)
        (out / "table.md").write_text(table + "\n")
        print(table)
        histogram = summary.get("warm_start_success_histogram")
        if histogram:
            print(
                f"warm start, successes of {HISTOGRAM_SAMPLES} per training prompt: {histogram['histogram']}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
