"""The main job: a short XRPO training with stock verl on the CPU scale model.

It prepares, in the run folder, a warm-started small Qwen2 model and chain-addition data
(``tasks.py``; nothing is downloaded), then runs the ordinary

    python -m verl.trainer.main_ppo --config-path=configs --config-name=scale_model ...

as a child process, with verl's output in ``<run>/train.log``. It prints one line per training
step from verl's metrics (``<run>/metrics.jsonl``) and a summary at the end (also written to
``<run>/summary.json``); both cover the steps of this invocation. Running it again with more
``--steps`` resumes from the last checkpoint, exemplar bank included; ``--fresh`` starts over.
Anything after ``--`` is passed to verl as Hydra overrides, and wins over the defaults here.

The config is checked, as ``main_ppo``'s preflight checks it, before the warm start is built, so a
mistake costs seconds. A run that fails prints its own error last and leaves the summary of the
last good run as it was (its own goes to ``<run>/summary.failed.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from recipe.xrpo.scale_model import tasks
from recipe.xrpo.scale_model.warmstart import PRESETS, REPORT_FILE, build_warm_model_dir
from verl_xrpo.preflight import EXIT_CODE as CONFIG_ERROR  # main_ppo's, for a config mistake

ESTIMATORS = ("xrpo", "grpo")
REWARD_FILE = Path(__file__).with_name("reward.py")
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def train_data(self) -> Path:
        return self.root / "data" / "train.parquet"

    @property
    def val_data(self) -> Path:
        return self.root / "data" / "val.parquet"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def failed_summary(self) -> Path:
        return self.root / "summary.failed.json"


CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
CONFIG_NAME = "scale_model"  # configs/scale_model.yaml: everything that is not one run's choice


@dataclass(frozen=True)
class ScaleModelRun:
    """One run's choices; ``overrides`` renders them as verl Hydra overrides of configs/scale_model.yaml."""

    paths: RunPaths
    steps: int = 8
    estimator: str = "xrpo"
    seed: int = 0
    task: str = tasks.CHAIN
    warm_start: str = "demo"  # a preset of warmstart.PRESETS
    prompts_per_step: int = 8
    rollouts_per_prompt: int = 8  # GRPO's rollout.n, so the step's budget with prompts_per_step
    train_size: int = 256
    val_size: int = 32
    val_seed: int | None = None  # held-out prompts drawn with this seed instead of ``seed``
    save_freq: int = 0  # 0: only at the end
    model_dir: Path | None = None  # an existing model folder instead of the warm-started one

    @property
    def model(self) -> Path:
        return self.model_dir or self.paths.model

    def overrides(self) -> list[str]:
        p = self.paths
        micro = self.prompts_per_step * self.rollouts_per_prompt  # one micro-batch per step
        save_freq = self.save_freq or self.steps
        return [
            f"--config-path={CONFIG_DIR}",
            f"--config-name={CONFIG_NAME}",
            f"algorithm.adv_estimator={self.estimator}",
            f"data.train_files={p.train_data}",
            f"data.val_files={p.val_data}",
            f"data.train_batch_size={self.prompts_per_step}",
            f"data.seed={self.seed}",
            f"actor_rollout_ref.model.path={self.model}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={self.prompts_per_step}",
            f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
            f"actor_rollout_ref.rollout.n={self.rollouts_per_prompt}",
            f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={micro}",
            f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={micro}",
            f"reward.custom_reward_function.path={REWARD_FILE}",
            f"trainer.experiment_name={self.estimator}",
            f"trainer.total_training_steps={self.steps}",
            f"trainer.test_freq={self.steps}",
            f"trainer.save_freq={save_freq}",
            f"trainer.default_local_dir={p.checkpoints}",
        ]


def prepare_data(run: ScaleModelRun) -> str | None:
    """Write the task's data if missing (seconds); returns what was made, for the progress display."""
    if run.paths.train_data.is_file() and run.paths.val_data.is_file():
        return None
    tasks.write_parquet(
        tasks.generate_rows(run.task, "train", run.train_size, seed=run.seed), run.paths.train_data
    )
    val_seed = run.seed if run.val_seed is None else run.val_seed
    tasks.write_parquet(tasks.generate_rows(run.task, "val", run.val_size, seed=val_seed), run.paths.val_data)
    return f"{run.task} data ({run.train_size} train, {run.val_size} validation prompts)"


def prepare_model(run: ScaleModelRun) -> str | None:
    """Warm-start the model if missing (a minute or more); returns what was made."""
    if run.model_dir is not None or (run.paths.model / REPORT_FILE).is_file():
        return None
    settings = replace(PRESETS[run.warm_start], seed=run.seed, task=run.task)
    report = build_warm_model_dir(run.paths.model, settings)
    return (
        f"warm-started model ({report.seconds:.0f} s, greedy accuracy {report.heldout_accuracy['all']:.0%})"
    )


def prepare(run: ScaleModelRun) -> list[str]:
    """Data, then model: what was made of them, for the progress display."""
    return [made for made in (prepare_data(run), prepare_model(run)) if made]


def config_problems(run: ScaleModelRun, extra: Sequence[str]) -> list[str]:
    """What ``main_ppo``'s preflight would refuse, found by ``python -m verl_xrpo.preflight`` in a
    child process (verl's import warnings stay out of the progress display): one line each.

    Checked before the warm start exists, so the prompt-length check, which needs the model's
    tokenizer, is left to ``main_ppo``'s own preflight."""
    command = [sys.executable, "-m", "verl_xrpo.preflight", *run.overrides(), *extra]
    done = subprocess.run(command, capture_output=True, text=True, env=verl_environment(run.paths))
    if done.returncode == 0:
        return []
    if done.returncode == CONFIG_ERROR:
        return done.stdout.strip().splitlines()
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return [f"verl-xrpo: the config check failed (exit code {done.returncode}): {last}"]


# ---- reading verl's metrics ---------------------------------------------------------------------


def read_new_lines(path: Path, start: int = 0) -> tuple[list[str], int]:
    """The complete lines a growing file holds from byte ``start``, and the offset after them."""
    if not path.is_file():
        return [], start
    with path.open("rb") as handle:
        handle.seek(start)
        chunk = handle.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    return complete.decode(errors="replace").splitlines(), start + len(complete)


def read_metrics(path: Path, start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines of verl's file logger from byte ``start``; returns them and the new offset."""
    lines, offset = read_new_lines(path, start)
    return [json.loads(line) for line in lines if line.strip()], offset


def step_line(step: int, total: int, data: dict[str, float]) -> str:
    """One progress line: time, reward, and what XRPO did in the step (when it ran).

    verl logs validation before training (``trainer.val_before_train``) as a record without
    training metrics; it gets a line of its own.
    """
    if "timing_s/step" not in data:
        parts = ["before training"]
    else:
        parts = [f"step {step}/{total}", f"{data['timing_s/step']:6.1f} s"]
        parts.append(f"score {data.get('critic/score/mean', float('nan')):.2f}")
    if "xrpo/rollouts_per_prompt/mean" in data:
        parts.append(
            "rollouts/prompt {:.0f}-{:.0f}".format(
                data["xrpo/rollouts_per_prompt/min"], data["xrpo/rollouts_per_prompt/max"]
            )
        )
        parts.append(f"seeded {data.get('xrpo/seeding/prompts_seeded', 0):.0f}")
        parts.append(f"sharpened {data.get('xrpo/sharpening/share_sharpened', 0):.0%}")
        parts.append(f"bank {data.get('xrpo/bank_size', 0):.0f}")
    validation = {k: v for k, v in data.items() if k.startswith("val-core/")}
    if validation:
        parts.append("val " + ", ".join(f"{v:.2f}" for v in validation.values()))
    return "  ".join(parts)


@dataclass
class Summary:
    estimator: str
    first_step: int
    steps_done: int
    steps_target: int
    wall_seconds: float
    step_seconds: list[float] = field(default_factory=list)
    score_first: float | None = None
    score_last: float | None = None
    validation: dict[str, float] = field(default_factory=dict)
    xrpo: dict[str, float] = field(default_factory=dict)
    checkpoint_dir: str = ""
    exit_code: int = 0
    # Step times compare only between runs on one kind of machine (these differ up to 3-4x).
    machine: str = ""
    # Seconds compare only within one session: this machine's boot, as the kernel names it.
    boot_id: str = ""
    error: str = ""  # a failed run's own error line (XRPO's if it has one)

    def lines(self) -> list[str]:
        ran = f"steps {self.first_step}-{self.steps_done}" if self.first_step else "no step"
        out = [f"{self.estimator}: {ran} of {self.steps_target} in {self.wall_seconds:.0f} s"]
        if self.first_step > 1:
            out[0] += f" (resumed from the checkpoint of step {self.first_step - 1})"
        if self.step_seconds:
            later = self.step_seconds[1:] or self.step_seconds
            out.append(
                f"  step time: first {self.step_seconds[0]:.1f} s (workers warming up), "
                f"median after it {statistics.median(later):.1f} s"
            )
        if self.score_first is not None:
            first, last = self.score_first, self.score_last
            out.append(f"  training score: {first:.2f} at the first step, {last:.2f} at the last")
        for key, value in self.validation.items():
            out.append(f"  {key}: {value:.3f}")
        if self.xrpo:
            out.append("  XRPO: " + ", ".join(f"{k} {v:g}" for k, v in self.xrpo.items()))
        if self.checkpoint_dir:
            out.append(f"  checkpoints: {self.checkpoint_dir}")
        return out


def cpu_model() -> str:
    """The CPU's model name and core count, e.g. "AMD EPYC x2" ("" where it cannot be read)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    names = re.findall(r"^model name\s*:\s*(.+)$", info, flags=re.MULTILINE)
    return f"{names[0].strip()} x{len(names)}" if names else ""


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def summarize(
    records: Iterable[dict[str, Any]], run: ScaleModelRun, wall_seconds: float, exit_code: int
) -> Summary:
    by_step = {int(r["step"]): r["data"] for r in records}
    steps = sorted(s for s in by_step if "timing_s/step" in by_step[s])  # training steps only
    summary = Summary(
        run.estimator,
        min(steps, default=0),
        max(steps, default=0),
        run.steps,
        wall_seconds,
        exit_code=exit_code,
        machine=cpu_model(),
        boot_id=boot_id(),
    )
    summary.step_seconds = [by_step[s]["timing_s/step"] for s in steps]
    scores = [by_step[s]["critic/score/mean"] for s in steps if "critic/score/mean" in by_step[s]]
    if scores:
        summary.score_first, summary.score_last = scores[0], scores[-1]
    for s in sorted(by_step):
        summary.validation.update({k: v for k, v in by_step[s].items() if k.startswith("val-core/")})
    xrpo_steps = [by_step[s] for s in steps if "xrpo/bank_size" in by_step[s]]
    if xrpo_steps:
        summary.xrpo = {
            "max rollouts/prompt": max(d["xrpo/rollouts_per_prompt/max"] for d in xrpo_steps),
            "prompts seeded": sum(d["xrpo/seeding/prompts_seeded"] for d in xrpo_steps),
            "seeded prompts solved": sum(d["xrpo/seeding/prompts_with_seeded_success"] for d in xrpo_steps),
            "bank size": xrpo_steps[-1]["xrpo/bank_size"],
        }
    summary.checkpoint_dir = str(run.paths.checkpoints) if run.paths.checkpoints.is_dir() else ""
    return summary


# ---- running verl ---------------------------------------------------------------------------------

_RAY_PREFIX = re.compile(r"^(\x1b\[[0-9;]*m)?\([^)]*\)(\x1b\[[0-9;]*m)?\s*")
_XRPO_NOTICE = re.compile(r"XRPO( is|:)")


def xrpo_notices(lines: Iterable[str]) -> list[str]:
    """XRPO's own start-up and restore messages among verl's log lines, without Ray's prefixes."""
    notices = []
    for line in lines:
        match = _XRPO_NOTICE.search(line)
        if match:
            notices.append(_RAY_PREFIX.sub("", line[match.start() :].rstrip()))
    return notices


def verl_environment(paths: RunPaths) -> dict[str, str]:
    """verl's environment: this run's metrics file, and no hub, wandb or Ray token."""
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(paths.metrics)}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("WANDB_MODE", "disabled")
    env.setdefault("RAY_AUTH_MODE", "disabled")
    return env


def verl_command(run: ScaleModelRun, extra: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "verl.trainer.main_ppo", *run.overrides(), *extra]


def train(run: ScaleModelRun, extra: Sequence[str], echo=print) -> Summary:
    """Run verl as a child process, echoing progress; returns the summary (also written to disk)."""
    paths = run.paths
    env = verl_environment(paths)
    # verl's file logger starts the file anew; a stale one must not be read as this run's steps
    paths.metrics.unlink(missing_ok=True)
    command = verl_command(run, extra)
    records: list[dict[str, Any]] = []
    metrics_offset = 0
    started = time.monotonic()
    echo(f"starting verl (log: {paths.log}) ...")
    with paths.log.open("a") as log:
        run_start = paths.log.stat().st_size  # where this run's part of the log begins
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
        log.flush()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=paths.root)
        log_offset = paths.log.stat().st_size
        while True:
            finished = child.poll() is not None
            new_records, metrics_offset = read_metrics(paths.metrics, metrics_offset)
            for record in new_records:
                echo(step_line(int(record["step"]), run.steps, record["data"]))
            records += new_records
            new_lines, log_offset = read_new_lines(paths.log, log_offset)
            for notice in xrpo_notices(new_lines):
                echo(notice)
            if finished:
                break
            time.sleep(1.0)
    summary = summarize(records, run, time.monotonic() - started, child.returncode)
    if child.returncode != 0:
        lines = run_log_lines(paths.log, run_start)
        echo(f"verl exited with code {child.returncode}; the end of this run's log ({paths.log}):")
        for line in lines[-LOG_TAIL_LINES:]:
            echo("  | " + line)
        summary.error = run_error(lines) or ""
    # a failed run keeps the last good run's summary
    written = paths.summary if child.returncode == 0 else paths.failed_summary
    written.write_text(json.dumps(asdict(summary), indent=2))
    return summary


# XRPO's own one-line errors: the driver's preflight, a resume it refuses, one raised inside Ray
# (the exception line of Ray's traceback, which names only the exception class before it)
_OWN_ERRORS = (
    re.compile(r"verl-xrpo[^:]*: .*"),
    re.compile(r"XRPO cannot resume: .*"),
    re.compile(r"XRPO\w*Error: (.*)"),
)
# any other exception's line, e.g. "hydra.errors.InstantiationException: Error in call to ..."
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception): .+")


def run_log_lines(path: Path, start: int) -> list[str]:
    """The log's non-empty lines from byte ``start`` (this run's), without Ray's prefixes."""
    lines, _ = read_new_lines(path, start)
    return [_RAY_PREFIX.sub("", line) for line in lines if line.strip()]


def run_error(lines: Sequence[str]) -> str | None:
    """A failed run's own error among its log lines: XRPO's one-line error if there is one, else
    the last exception line (verl's, or Ray's); None if neither."""
    for line in reversed(lines):
        for pattern in _OWN_ERRORS:
            match = pattern.search(line)
            if match:
                return f"verl-xrpo: {match.group(1)}" if match.groups() else match.group(0)
    return next((line.strip() for line in reversed(lines) if _EXCEPTION_LINE.match(line.strip())), None)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    own, sep, extra = list(argv), "--", []
    if sep in own:
        own, extra = own[: own.index(sep)], own[own.index(sep) + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m recipe.xrpo.scale_model.train",
        description=__doc__.split("\n\n")[0],
        epilog="Example: python -m recipe.xrpo.scale_model.train --steps 4 -- "
        "algorithm.xrpo.planning.n_base=3",
    )
    parser.add_argument("--run-dir", type=Path, default=Path("runs/scale-model"), help="default: %(default)s")
    parser.add_argument(
        "--steps", type=int, default=ScaleModelRun.steps, help="total training steps (default: %(default)s)"
    )
    parser.add_argument("--estimator", choices=ESTIMATORS, default="xrpo", help="default: %(default)s")
    parser.add_argument(
        "--seed", type=int, default=0, help="model, data and sampling seed (default: %(default)s)"
    )
    parser.add_argument(
        "--task",
        default=ScaleModelRun.task,
        help="chain, or rg:NAME[:key=value,...] for a reasoning-gym dataset (default: %(default)s)",
    )
    parser.add_argument(
        "--warm-start", choices=sorted(PRESETS), default=ScaleModelRun.warm_start, help="default: %(default)s"
    )
    parser.add_argument(
        "--train-size",
        type=int,
        default=ScaleModelRun.train_size,
        help="training prompts (default: %(default)s)",
    )
    parser.add_argument(
        "--prompts-per-step", type=int, default=ScaleModelRun.prompts_per_step, help="default: %(default)s"
    )
    parser.add_argument(
        "--save-freq", type=int, default=0, help="checkpoint every N steps (default: at the end)"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="a model folder to train instead of warm-starting one"
    )
    parser.add_argument("--fresh", action="store_true", help="delete this run's checkpoints first")
    args = parser.parse_args(own)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.model is not None and not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model} is not a model folder (no config.json)")
    try:
        tasks.TaskSpec.parse(args.task)
    except ValueError as error:
        parser.error(f"--task: {error}")
    if args.train_size < 1:
        parser.error("--train-size must be at least 1")
    if args.prompts_per_step < 1:
        parser.error("--prompts-per-step must be at least 1")
    if args.save_freq < 0:
        parser.error("--save-freq must be 0 (at the end) or positive")
    return args, extra


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    paths = RunPaths(args.run_dir.resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
    run = ScaleModelRun(
        paths,
        steps=args.steps,
        estimator=args.estimator,
        seed=args.seed,
        task=args.task,
        warm_start=args.warm_start,
        prompts_per_step=args.prompts_per_step,
        train_size=args.train_size,
        save_freq=args.save_freq,
        model_dir=args.model.resolve() if args.model else None,
    )
    made = prepare_data(run)
    if made:
        print(f"prepared {made}")
    problems = config_problems(run, extra)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return CONFIG_ERROR
    made = prepare_model(run)
    if made:
        print(f"prepared {made}")
    summary = train(run, extra)
    print("\n".join(summary.lines()))
    if summary.exit_code == 0:
        print(f"summary: {paths.summary}")
        return 0
    print(f"summary of the failed run: {paths.failed_summary}")
    if summary.error:
        print(summary.error, file=sys.stderr)  # last, where a reader looks first
    return summary.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
