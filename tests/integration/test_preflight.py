"""The driver's preflight: verl's composed config is checked before Ray starts, one line per problem.

The checks are the trainer's own (``verl_xrpo.integration.checks.check_run``); here they run on
the config exactly as ``main_ppo`` composes it, and ``main_ppo`` itself is started to see that a
mistake stops it within seconds, before Ray, without a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_module

from verl_xrpo import preflight

XRPO = ["algorithm.adv_estimator=xrpo", "actor_rollout_ref.rollout.n=8"]


def compose_verl(overrides: list[str], return_hydra_config: bool = False):
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(
            config_name="ppo_trainer", overrides=overrides, return_hydra_config=return_hydra_config
        )


def test_a_sound_xrpo_run_and_other_estimators_pass():
    assert preflight.problems(compose_verl(XRPO)) == []
    # other estimators ignore algorithm.xrpo, so its values are not theirs to refuse
    grpo = ["algorithm.adv_estimator=grpo", "algorithm.xrpo.planning.n_base=1", "trainer.use_v1=false"]
    assert preflight.problems(compose_verl(grpo)) == []


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["algorithm.xrpo.planning.n_base=1"],
            "algorithm.xrpo.planning.n_base=1 is too small: the t interval needs 2 samples. Set it to at "
            "least 2 (3 or more is recommended).",
        ),
        (["algorithm.xrpo.planning.alpha=abc"], "algorithm.xrpo.planning.alpha='abc' must be a number; the "),
        (
            ["algorithm.xrpo.planning.n_base=9"],
            "algorithm.xrpo.planning.n_base=9 is above the budget of rollout",
        ),
        (["algorithm.xrpo.planning.n_max=6"], "algorithm.xrpo.planning.n_max=6 is below rollout.n=8"),
        (["algorithm.xrpo.success_key=' '"], "algorithm.xrpo.success_key=' ' is empty."),
        (["actor_rollout_ref.rollout.n=many"], "actor_rollout_ref.rollout.n='many' must be a whole number"),
        (["trainer.use_v1=false"], "trainer.use_v1=False runs verl's legacy trainer"),
        (["trainer.v1.trainer_mode=sync"], "trainer.v1.trainer_mode='sync' runs verl's own trainer"),
        (
            ["algorithm.filter_groups.enable=true"],
            "algorithm.filter_groups.enable=true (DAPO dynamic sampling)",
        ),
        (["reward.reward_model.enable=true"], "reward.reward_model.enable_resource_pool=false: XRPO plans"),
        (
            ["trainer.v1.sampler.sync_refill_failed_groups=true"],
            "trainer.v1.sampler.sync_refill_failed_groups=true would",
        ),
        (
            ["algorithm.xrpo.seeding.preload_path=/no/such.jsonl"],
            "algorithm.xrpo.seeding.preload_path='/no/such.jsonl' is not a file",
        ),
        (
            ["algorithm.xrpo.seeding.retriever=dense"],
            "algorithm.xrpo.seeding.embedding_model=None is required",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_key_value_and_fix(overrides, line):
    [problem] = preflight.problems(compose_verl([*XRPO, *overrides]))
    assert problem.startswith("verl-xrpo: " + line)
    assert "\n" not in problem


def test_a_bad_row_of_the_curated_file_is_named_before_ray_starts(tmp_path):
    path = tmp_path / "curated.jsonl"
    path.write_text('{"question": "What is 2 + 2?", "solution": "4"}\n{"question": "What is 3 + 3?"}\n')
    [problem] = preflight.problems(compose_verl([*XRPO, f"algorithm.xrpo.seeding.preload_path={path}"]))
    assert f"{path}: row 2 (counting from 1) has solution=" in problem


def test_hydra_runs_the_preflight_for_verls_trainer_config():
    callbacks = compose_verl(XRPO, return_hydra_config=True).hydra.callbacks
    assert callbacks.verl_xrpo_preflight._target_ == "verl_xrpo.preflight.Preflight"


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("algorithm.xrpo.planning.n_base=1", "verl-xrpo: algorithm.xrpo.planning.n_base=1 is too small"),
        ("trainer.use_v1=false", "verl-xrpo: trainer.use_v1=False runs verl's legacy trainer"),
    ],
)
def test_main_ppo_stops_within_seconds_before_ray_starts(override, line):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *XRPO, override],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == preflight.EXIT_CODE, done.stderr[-3000:]
    ours = [text for text in done.stderr.splitlines() if text.startswith("verl-xrpo")]
    assert len(ours) == 1 and ours[0].startswith(line)
    assert "Traceback" not in done.stderr and "ray init kwargs" not in done.stdout
    # Ray never started (above); the bound only catches a hang. Most of the time is importing torch
    # and verl: about 10 s here, against 66 s before the checks reached the TaskRunner.
    assert elapsed < 120
