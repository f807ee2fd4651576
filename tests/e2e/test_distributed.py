"""The distributed path, run for real on CPU: 2 data-parallel FSDP actor ranks and 2 vLLM replicas.

The main job with ``trainer.n_gpus_per_node=2`` (CPU mode maps each logical GPU to a gloo rank),
verl's ``balance_batch`` on (its default), and XRPO's uneven rollouts per prompt. Planning,
advantages and the bank are computed by the driver on the whole step; the ranks compute
log-probs and updates on their shares of a batch that verl reordered (and may pad). What must
hold: the budget, the grouping by uid and every advantage are what one process computes from the
same rollouts (the step's rollout dump, recomputed here), and the bank holds this run's correct
rollouts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_main_job import N_BASE, PROMPTS, ROLLOUTS, TIMEOUT_S, main_job_command, steps_of
from verl_xrpo.config import SharpeningConfig
from verl_xrpo.core.bank import ExemplarBank
from verl_xrpo.eval.rollout_dump import largest_advantage_difference, read_steps

pytestmark = pytest.mark.cpu_mode

RANKS = 2
STEPS = 2
MICRO = PROMPTS * ROLLOUTS // (2 * RANKS)  # two micro-batches per rank: below the rank's share
DISTRIBUTED = [
    f"trainer.n_gpus_per_node={RANKS}",
    f"ray_kwargs.ray_init.num_gpus={RANKS}",
    "trainer.balance_batch=true",
    f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={MICRO}",
    f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={MICRO}",
    f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={MICRO}",
]


def dumped_run(run_dir: Path, extra: list[str]) -> tuple[str, dict[int, dict[str, float]]]:
    command = main_job_command(run_dir, STEPS, *extra)
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    log = (run_dir / "train.log").read_text(errors="replace") if (run_dir / "train.log").is_file() else ""
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{log[-4000:]}"
    return log, steps_of(run_dir)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two_ranks")
    log, metrics = dumped_run(run_dir, DISTRIBUTED)
    return run_dir, log, metrics


def test_two_rollout_replicas_served_and_verl_balanced_two_actor_ranks(two_ranks):
    run_dir, log, metrics = two_ranks
    assert all(f"replica_rank: {rank}," in log for rank in range(RANKS)), "not two vLLM replicas"
    for step in read_steps(run_dir / "rollouts"):
        # verl's balance logs the mean tokens per rank: the step's tokens over the ranks' count
        tokens = sum(r["sequence_length"] for r in [*step.rows, *step.padding])
        data = metrics[step.step]
        assert tokens / data["global_seqlen/mean"] == pytest.approx(RANKS)
        assert (
            data["global_seqlen/balanced_min"]
            <= data["global_seqlen/mean"]
            <= data["global_seqlen/balanced_max"]
        )


def test_the_budget_and_the_grouping_are_the_planners(two_ranks):
    run_dir, _, metrics = two_ranks
    steps = read_steps(run_dir / "rollouts")
    assert [s.step for s in steps] == list(range(1, STEPS + 1))
    uneven = False
    for step in steps:
        counts = step.rollouts_per_prompt
        assert len(counts) == PROMPTS  # one group per prompt: no group split or merged by rank
        assert sum(counts.values()) == PROMPTS * ROLLOUTS  # GRPO's budget, spent exactly
        assert N_BASE <= min(counts.values()) <= max(counts.values()) <= 2 * ROLLOUTS
        assert metrics[step.step]["xrpo/rollouts_per_prompt/max"] == max(counts.values())
        uneven |= min(counts.values()) < max(counts.values())
    assert uneven, "the planner gave every prompt the same count: the test saw no uneven groups"


def test_every_trained_advantage_is_what_one_process_computes(two_ranks):
    run_dir, _, _ = two_ranks
    signal = 0
    for step in read_steps(run_dir / "rollouts"):
        assert largest_advantage_difference(step, SharpeningConfig()) < 1e-4
        signal += sum(1 for r in step.rows if r["advantage"] != 0)
    assert signal > 0  # the comparison saw real advantages, not only zero-variance groups


def test_the_bank_holds_this_runs_correct_rollouts(two_ranks):
    run_dir, _, metrics = two_ranks
    bank = ExemplarBank.load(run_dir / "checkpoints" / f"global_step_{STEPS}" / "xrpo" / "exemplar_bank.json")
    assert len(bank) == metrics[STEPS]["xrpo/bank_size"] > 0
    correct = [r for s in read_steps(run_dir / "rollouts") for r in s.rows if float(r["score"]) > 0]
    for exemplar in bank:
        assert any(
            exemplar.question in r["input"] and exemplar.response.strip() == r["output"].strip()
            for r in correct
        ), json.dumps({"question": exemplar.question, "response": exemplar.response})
