"""The README's main job, run for real: stock ``verl.trainer.main_ppo`` with XRPO on this machine.

Two invocations of ``python -m recipe.xrpo.scale_model.train``: two training steps with a checkpoint after
each, then a third step resumed from the last checkpoint. Then, in the same run folder, two more that
are killed (SIGKILL of the process group): one while it writes a checkpoint, one in the middle of a
step; the second one is also the rerun that must resume the last complete checkpoint. Everything runs:
verl's FSDP actor, the vLLM rollout, TransferQueue, Ray; on a machine without an accelerator, through
CPU mode.

The run uses 16 prompts per step (the job's default is 8) so that three steps hold enough
rollouts for seeding and sharpening to act with near certainty.

This directory sorts before ``tests/integration``: its runs start their own Ray cluster, and
must do so before the suite's in-process cluster exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from verl_xrpo import preflight
from verl_xrpo.config import SharpeningConfig
from verl_xrpo.core.bank import ExemplarBank
from verl_xrpo.eval.rollout_dump import largest_advantage_difference, read_steps
from verl_xrpo.integration.checkpoint import read_state, resumed_step_folder

# The main job's settings are CPU mode's (one device, vLLM's CPU build); with an accelerator it is off.
pytestmark = pytest.mark.cpu_mode

PROMPTS = 16
ROLLOUTS = 8  # the main job's rollout.n: GRPO's budget per prompt
N_BASE = 4
TIMEOUT_S = 900

XRPO_METRICS = [
    "xrpo/rollouts_per_prompt/mean",
    "xrpo/rollouts_per_prompt/min",
    "xrpo/rollouts_per_prompt/max",
    "xrpo/phases_run",
    "xrpo/generation_calls",
    "xrpo/zero_variance_share/before_planning",
    "xrpo/zero_variance_share/after_planning",
    "xrpo/nonzero_advantage_share",
    "xrpo/seeding/prompts_seeded",
    "xrpo/seeding/seeded_rollouts",
    "xrpo/seeding/prompts_with_seeded_success",
    "xrpo/bank_size",
    "xrpo/bank_refused_leaks",
    "xrpo/budget/mixed_group_rollout_share",
    "xrpo/budget/seeding_rollouts",
    "xrpo/sharpening/share_sharpened",
    "xrpo/sharpening/mean_bonus",
    "timing_s/xrpo_planning",
    "timing_s/xrpo_retrieval",
    "timing_s/xrpo_advantage",
    "timing_s/xrpo_generation_phases",
    "timing_s/xrpo_phase1_first_end",
    "timing_s/xrpo_phase1_75pct_end",
    "timing_s/xrpo_phase1_last_end",
    "xrpo/faults/failed_prompts",
    "xrpo/faults/missing_rollouts",
    "xrpo/budget/rollouts_lost",
]


def main_job_command(run_dir: Path, steps: int, *overrides: str) -> list[str]:
    """The job, with verl's rollout dump on (XRPO adds what each rollout trained on) and ``overrides``."""
    return [
        sys.executable,
        "-m",
        "recipe.xrpo.scale_model.train",
        f"--run-dir={run_dir}",
        f"--steps={steps}",
        f"--prompts-per-step={PROMPTS}",
        "--save-freq=1",
        "--",
        f"trainer.rollout_data_dir={run_dir / 'rollouts'}",
        *overrides,
    ]


def main_job(run_dir: Path, steps: int) -> subprocess.CompletedProcess:
    done = subprocess.run(main_job_command(run_dir, steps), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def steps_of(run_dir: Path) -> dict[int, dict[str, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {int(r["step"]): r["data"] for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("main_job")
    done = main_job(run_dir, steps=2)
    return run_dir, done, steps_of(run_dir)


def test_progress_and_summary_are_shown(two_steps):
    run_dir, done, _ = two_steps
    assert "step 1/2" in done.stdout and "step 2/2" in done.stdout
    assert "xrpo: steps 1-2 of 2" in done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["first_step"], summary["steps_done"], summary["exit_code"]) == (1, 2, 0)
    assert len(summary["step_seconds"]) == 2 and all(s > 0 for s in summary["step_seconds"])


def test_every_step_logs_sane_xrpo_metrics(two_steps):
    _, _, steps = two_steps
    assert sorted(steps) == [1, 2]
    for data in steps.values():
        missing = [key for key in XRPO_METRICS if key not in data]
        assert not missing, missing
        # the budget is GRPO's, spent exactly, and no prompt goes below the base count
        assert data["xrpo/rollouts_per_prompt/mean"] == ROLLOUTS
        assert (
            N_BASE
            <= data["xrpo/rollouts_per_prompt/min"]
            <= data["xrpo/rollouts_per_prompt/max"]
            <= 2 * ROLLOUTS
        )
        assert (
            0
            <= data["xrpo/zero_variance_share/after_planning"]
            <= data["xrpo/zero_variance_share/before_planning"]
            <= 1
        )
        assert 0 <= data["xrpo/sharpening/share_sharpened"] <= 1
        assert data["xrpo/faults/failed_prompts"] == data["xrpo/budget/rollouts_lost"] == 0
        assert 0 <= data["critic/score/mean"] <= 1
        # verl trained on every rollout the planner drew: one prompt group per prompt
        assert data["global_seqlen/mean"] > 0


def test_the_planner_ran_phases_and_gave_uneven_rollouts(two_steps):
    _, _, steps = two_steps
    assert all(data["xrpo/phases_run"] >= 2 for data in steps.values())
    assert any(
        data["xrpo/rollouts_per_prompt/max"] > data["xrpo/rollouts_per_prompt/min"] for data in steps.values()
    )


def test_the_dump_recomputes_to_every_trained_advantage(two_steps):
    run_dir, _, _ = two_steps
    steps = read_steps(run_dir / "rollouts")
    assert [s.step for s in steps] == [1, 2]
    for step in steps:
        assert sum(step.rollouts_per_prompt.values()) == PROMPTS * ROLLOUTS
        assert largest_advantage_difference(step, SharpeningConfig()) < 1e-4


def test_the_bank_learns_from_correct_rollouts(two_steps):
    _, _, steps = two_steps
    assert 0 < steps[1]["xrpo/bank_size"] <= steps[2]["xrpo/bank_size"]


@pytest.fixture(scope="module")
def resumed(two_steps):
    run_dir, _, first_steps = two_steps
    done = main_job(run_dir, steps=3)
    return run_dir, first_steps, done, steps_of(run_dir)


def test_resume_continues_from_the_checkpoint_with_the_bank(resumed):
    run_dir, first_steps, done, steps = resumed
    assert sorted(steps) == [3]  # steps 1 and 2 were not run again
    saved_bank = int(first_steps[2]["xrpo/bank_size"])
    assert f"restored an exemplar bank of {saved_bank} from" in done.stdout
    assert steps[3]["xrpo/bank_size"] >= saved_bank
    assert "resumed from the checkpoint of step 2" in done.stdout
    assert (run_dir / "checkpoints" / "global_step_3" / "xrpo").is_dir()


def test_seeding_and_sharpening_acted_over_the_run(resumed):
    _, first_steps, _, steps = resumed
    every_step = [*first_steps.values(), *steps.values()]
    assert sum(d["xrpo/seeding/seeded_rollouts"] for d in every_step) > 0
    assert any(
        d["xrpo/sharpening/share_sharpened"] > 0 and d["xrpo/sharpening/mean_bonus"] > 0 for d in every_step
    )


# ---- crash and resume ----------------------------------------------------------------------------

CHECKPOINT_TRACKER = "latest_checkpointed_iteration.txt"


def launch(run_dir: Path, steps: int, output: Path) -> subprocess.Popen:
    """The main job in a process group of its own, so that a kill reaches main_ppo too."""
    with output.open("w") as sink:
        return subprocess.Popen(
            main_job_command(run_dir, steps), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_until(condition, child: subprocess.Popen, log: Path, what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, f"the job ended (code {child.returncode}) before {what}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s:\n{tail(log)}"
        time.sleep(0.05)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def kill_job(child: subprocess.Popen) -> None:
    """SIGKILL the job's process group, then any descendant outside it (Ray's daemons start their own
    sessions); every process killed is one this test started, found by its id."""
    family = [psutil.Process(child.pid), *psutil.Process(child.pid).children(recursive=True)]
    os.killpg(child.pid, signal.SIGKILL)
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    _, alive = psutil.wait_procs(family, timeout=60)
    child.wait(timeout=60)
    assert not alive, f"still running after SIGKILL: {alive}"


def metric_steps(run_dir: Path) -> dict[int, dict[str, float]]:
    return steps_of(run_dir) if (run_dir / "metrics.jsonl").is_file() else {}


@dataclass
class Crashes:
    run_dir: Path
    bank_at_step_3: int
    rollouts_by_step_3: int
    half_written: list[str]  # what the killed save of step 4 had written
    tracker_after_first_kill: str
    rerun_log: str  # verl's log of the rerun
    rerun_steps: dict[int, dict[str, float]]
    tracker_after_second_kill: str


@pytest.fixture(scope="module")
def crashes(resumed, tmp_path_factory) -> Crashes:
    run_dir, first_steps, _, third_step = resumed
    checkpoints, log = run_dir / "checkpoints", run_dir / "train.log"
    tracker = checkpoints / CHECKPOINT_TRACKER
    assert tracker.read_text() == "3"
    done_steps = {**first_steps, **third_step}
    output = tmp_path_factory.mktemp("crash") / "stdout.txt"

    # 1. Killed while writing the checkpoint of step 4: verl writes the dataloader's data.pt after
    # XRPO's state and the actor, and only then the tracker. A FIFO in data.pt's place holds the
    # save at exactly that point (opening it for writing blocks until a reader comes, and none does).
    step_4 = checkpoints / "global_step_4"
    step_4.mkdir()
    os.mkfifo(step_4 / "data.pt")
    child = launch(run_dir, steps=5, output=output)
    wait_until(lambda: (step_4 / "xrpo" / "state.json").is_file(), child, log, "XRPO state of step 4")
    time.sleep(2.0)  # the actor's save runs or has finished; the FIFO keeps the save from ending
    kill_job(child)
    half_written = sorted(p.name for p in step_4.iterdir())
    tracker_after_first_kill = tracker.read_text()
    (step_4 / "data.pt").unlink()  # the FIFO would hold the rerun's save of step 4 too

    # 2. The rerun, killed in the middle of step 5, after the checkpoint of step 4.
    log_start = log.stat().st_size
    child = launch(run_dir, steps=5, output=output)
    wait_until(lambda: 4 in metric_steps(run_dir), child, log, "step 4 in the metrics")
    time.sleep(1.0)  # into step 5's generation, seconds before its checkpoint
    kill_job(child)
    with log.open(errors="replace") as handle:
        handle.seek(log_start)
        rerun_log = handle.read()
    return Crashes(
        run_dir,
        bank_at_step_3=int(third_step[3]["xrpo/bank_size"]),
        rollouts_by_step_3=round(
            sum(d["xrpo/rollouts_per_prompt/mean"] * PROMPTS for d in done_steps.values())
        ),
        half_written=half_written,
        tracker_after_first_kill=tracker_after_first_kill,
        rerun_log=rerun_log,
        rerun_steps=metric_steps(run_dir),
        tracker_after_second_kill=tracker.read_text(),
    )


def test_a_kill_while_writing_a_checkpoint_leaves_the_last_complete_one_the_latest(crashes):
    assert "xrpo" in crashes.half_written  # the kill came after XRPO's part of the save
    assert crashes.tracker_after_first_kill == "3"


def test_the_rerun_resumes_the_last_complete_checkpoint_with_its_bank_and_counters(crashes):
    step_3 = crashes.run_dir / "checkpoints" / "global_step_3" / "xrpo"
    restored = (
        f"restored an exemplar bank of {crashes.bank_at_step_3} from {step_3} "
        f"(step 3, {crashes.rollouts_by_step_3} rollouts drawn)"
    )
    assert restored in crashes.rerun_log  # not the half-written step 4, and not a fresh start
    assert min(crashes.rerun_steps) == 4
    assert crashes.rerun_steps[4]["xrpo/bank_size"] >= crashes.bank_at_step_3
    step_4 = crashes.run_dir / "checkpoints" / "global_step_4"
    assert (step_4 / "data.pt").is_file()  # the rerun wrote step 4's checkpoint whole
    saved = read_state(step_4 / "xrpo", 4)
    drawn_in_step_4 = crashes.rerun_steps[4]["xrpo/rollouts_per_prompt/mean"] * PROMPTS
    assert saved.rollouts_drawn == crashes.rollouts_by_step_3 + drawn_in_step_4


def test_a_kill_in_the_middle_of_a_step_keeps_the_checkpoint_before_it(crashes):
    assert 5 not in crashes.rerun_steps and crashes.tracker_after_second_kill == "4"
    checkpoints = crashes.run_dir / "checkpoints"
    assert not (checkpoints / "global_step_5" / "xrpo" / "state.json").exists()
    # what the next run resumes, found and read as the driver's preflight and the trainer do
    config = compose_main_job(crashes.run_dir)
    assert resumed_step_folder(config) == str(checkpoints / "global_step_4")
    assert preflight.problems(config) == []
    bank = ExemplarBank.load(checkpoints / "global_step_4" / "xrpo" / "exemplar_bank.json")
    assert len(bank) == crashes.rerun_steps[4]["xrpo/bank_size"]


def compose_main_job(run_dir: Path):
    from hydra import compose, initialize_config_dir

    from recipe.xrpo.scale_model.train import CONFIG_DIR, CONFIG_NAME, RunPaths, ScaleModelRun

    run = ScaleModelRun(RunPaths(run_dir), steps=5, prompts_per_step=PROMPTS, save_freq=1)
    overrides = [o for o in run.overrides() if not o.startswith("--")]  # the config is chosen here
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=CONFIG_NAME, overrides=overrides)


@pytest.fixture(scope="module")
def submission_mode(two_steps, tmp_path_factory):
    """Two steps in planning.mode 'submission' on 16 training prompts, so that step 2 revisits them
    all; the warm start of ``two_steps`` is reused."""
    run_dir = tmp_path_factory.mktemp("submission_mode")
    command = main_job_command(run_dir, 2, "algorithm.xrpo.planning.mode=submission")
    command[command.index("--") : command.index("--")] = [
        f"--model={two_steps[0] / 'model'}",
        f"--train-size={PROMPTS}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return steps_of(run_dir)


def test_submission_mode_makes_one_generation_call_a_step(submission_mode):
    assert sorted(submission_mode) == [1, 2]
    for data in submission_mode.values():
        assert data["xrpo/generation_calls"] == 1 and data["xrpo/phases_run"] == 1
        assert data["xrpo/rollouts_per_prompt/mean"] == ROLLOUTS  # GRPO's budget


def test_submission_mode_counts_differ_once_the_prompts_have_history(submission_mode):
    first, second = submission_mode[1], submission_mode[2]
    assert first["xrpo/rollouts_per_prompt/min"] == first["xrpo/rollouts_per_prompt/max"] == ROLLOUTS
    assert second["xrpo/rollouts_per_prompt/min"] < second["xrpo/rollouts_per_prompt/max"]


def async_job(run_dir: Path, steps: int, model: Path) -> subprocess.CompletedProcess:
    """The job in verl's colocate_async trainer on 16 training prompts (every step after the first
    revisits them), a checkpoint a step; the warm start of ``two_steps`` is reused."""
    command = main_job_command(run_dir, steps, "trainer.v1.trainer_mode=colocate_async")
    command[command.index("--") : command.index("--")] = [f"--model={model}", f"--train-size={PROMPTS}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def colocate_async(two_steps, tmp_path_factory):
    """Three steps of XRPO in colocate_async, then a resume from the third step's checkpoint to a fourth."""
    run_dir = tmp_path_factory.mktemp("colocate_async")
    model = two_steps[0] / "model"
    first = async_job(run_dir, 3, model)
    before = steps_of(run_dir)
    resumed = async_job(run_dir, 4, model)
    return run_dir, first, before, resumed, steps_of(run_dir)


def test_xrpo_in_colocate_async_plans_each_submission_from_history(colocate_async):
    run_dir, first, before, _, _ = colocate_async
    assert "XRPO is on" in first.stdout and "mode=auto(submission)" in (run_dir / "train.log").read_text()
    assert sorted(before) == [1, 2, 3]
    # the first submissions have no history: GRPO's counts; later ones are planned
    assert before[1]["xrpo/rollouts_per_prompt/min"] == before[1]["xrpo/rollouts_per_prompt/max"] == ROLLOUTS
    assert any(d["xrpo/rollouts_per_prompt/min"] < d["xrpo/rollouts_per_prompt/max"] for d in before.values())
    for data in before.values():
        # every submission asks prompts x rollout.n; what is trained averages close to it
        assert abs(data["xrpo/budget/rollouts_per_trained_prompt/cumulative"] - ROLLOUTS) <= 1.0
        assert data["xrpo/bank_size"] > 0 and data["xrpo/async/unplanned_groups"] == 0
        assert "xrpo/sharpening/share_sharpened" in data


def test_xrpo_in_colocate_async_resumes_with_its_plans_bank_and_history(colocate_async):
    run_dir, _, before, resumed, after = colocate_async
    assert "resumed from the checkpoint of step 3" in resumed.stdout
    log = (run_dir / "train.log").read_text()
    assert "restored the prompt history of 16 prompts" in log and "in-flight prompt plans" in log
    assert 4 in after and after[4]["xrpo/async/unplanned_groups"] == 0  # re-issued groups kept their plans
    assert after[4]["xrpo/bank_size"] >= before[3]["xrpo/bank_size"]
