"""The README's main job, run for real: stock ``verl.trainer.main_ppo`` with XRPO on this machine.

Two invocations of ``python -m recipe.xrpo.scale_model.train``: two training steps with a checkpoint after
each, then a third step resumed from the last checkpoint. Everything runs: verl's FSDP actor, the
vLLM rollout, TransferQueue, Ray; on a machine without an accelerator, through CPU mode.

The run uses 16 prompts per step (the job's default is 8) so that three steps hold enough
rollouts for seeding and sharpening to act with near certainty.

This directory sorts before ``tests/integration``: its runs start their own Ray cluster, and
must do so before the suite's in-process cluster exists.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    "xrpo/zero_variance_share/before_planning",
    "xrpo/zero_variance_share/after_planning",
    "xrpo/useful_rollout_share",
    "xrpo/seeding/prompts_seeded",
    "xrpo/seeding/seeded_rollouts",
    "xrpo/seeding/prompts_with_seeded_success",
    "xrpo/bank_size",
    "xrpo/sharpening/share_sharpened",
    "xrpo/sharpening/mean_bonus",
    "timing_s/xrpo_planning",
    "timing_s/xrpo_retrieval",
    "timing_s/xrpo_advantage",
    "timing_s/xrpo_generation_phases",
]


def main_job(run_dir: Path, steps: int) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "recipe.xrpo.scale_model.train",
        f"--run-dir={run_dir}",
        f"--steps={steps}",
        f"--prompts-per-step={PROMPTS}",
        "--save-freq=1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
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
        assert 0 <= data["critic/score/mean"] <= 1
        # verl trained on every rollout the planner drew: one prompt group per prompt
        assert data["global_seqlen/mean"] > 0


def test_the_planner_ran_phases_and_gave_uneven_rollouts(two_steps):
    _, _, steps = two_steps
    assert all(data["xrpo/phases_run"] >= 2 for data in steps.values())
    assert any(
        data["xrpo/rollouts_per_prompt/max"] > data["xrpo/rollouts_per_prompt/min"] for data in steps.values()
    )


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
