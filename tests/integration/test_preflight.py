"""The driver's preflight: verl's composed config is checked before Ray starts, one line per problem.

The checks are the trainer's own (``verl_xrpo.integration.checks.check_run``); here they run on
the config exactly as ``main_ppo`` composes it, and ``main_ppo`` itself is started to see that a
mistake stops it within seconds, before Ray, without a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from tests.integration.conftest import training_row
from verl_xrpo import preflight


@pytest.fixture(scope="module")
def xrpo(training_file):
    """An XRPO run's overrides, with a sound training file (the preflight reads it)."""
    return [
        "algorithm.adv_estimator=xrpo",
        "actor_rollout_ref.rollout.n=8",
        f"data.train_files={training_file}",
    ]


def compose_verl(overrides: list[str], return_hydra_config: bool = False):
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(
            config_name="ppo_trainer", overrides=overrides, return_hydra_config=return_hydra_config
        )


def test_a_sound_xrpo_run_and_other_estimators_pass(xrpo):
    assert preflight.problems(compose_verl(xrpo)) == []
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
def test_each_mistake_is_one_line_naming_key_value_and_fix(xrpo, overrides, line):
    [problem] = preflight.problems(compose_verl([*xrpo, *overrides]))
    assert problem.startswith("verl-xrpo: " + line)
    assert "\n" not in problem


def test_a_bad_row_of_the_curated_file_is_named_before_ray_starts(xrpo, tmp_path):
    path = tmp_path / "curated.jsonl"
    path.write_text('{"question": "What is 2 + 2?", "solution": "4"}\n{"question": "What is 3 + 3?"}\n')
    [problem] = preflight.problems(compose_verl([*xrpo, f"algorithm.xrpo.seeding.preload_path={path}"]))
    assert f"{path}: row 2 (counting from 1) has solution=" in problem


def test_hydra_runs_the_preflight_for_verls_trainer_config(xrpo):
    callbacks = compose_verl(xrpo, return_hydra_config=True).hydra.callbacks
    assert callbacks.verl_xrpo_preflight._target_ == "verl_xrpo.preflight.Preflight"


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("algorithm.xrpo.planning.n_base=1", "verl-xrpo: algorithm.xrpo.planning.n_base=1 is too small"),
        ("trainer.use_v1=false", "verl-xrpo: trainer.use_v1=False runs verl's legacy trainer"),
        # Hydra would refuse the typo first, advising to append the key with "+"
        (
            "algorithm.xrpo.planning.n_bas=4",
            "verl-xrpo: algorithm.xrpo.planning.n_bas is not an XRPO setting. "
            "Did you mean 'planning.n_base'?",
        ),
        ("BAD_DATA", "verl-xrpo: row 2 of "),
    ],
)
def test_main_ppo_stops_within_seconds_before_ray_starts(xrpo, tmp_path, override, line):
    if override == "BAD_DATA":  # a training row without a ground truth, found in the driver
        path = tmp_path / "train.parquet"
        pd.DataFrame([training_row(), training_row(truth=None)]).to_parquet(path)
        override = f"data.train_files={path}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *xrpo, override],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == preflight.EXIT_CODE, done.stderr[-3000:]
    ours = [text for text in done.stderr.splitlines() if text.startswith("verl-xrpo")]
    assert len(ours) == 1 and ours[0].startswith(line)
    assert done.stderr.splitlines()[-1] == ours[0]  # the last line a user sees
    assert "+algorithm" not in done.stderr  # not Hydra's advice to append the key
    assert "Traceback" not in done.stderr and "ray init kwargs" not in done.stdout
    # Ray never started (above); the bound only catches a hang. Most of the time is importing torch
    # and verl: about 10 s here, against 66 s before the checks reached the TaskRunner.
    assert elapsed < 120


@pytest.mark.parametrize(
    ("rows", "line"),
    [
        (
            [training_row(), training_row(truth=None)],
            "row 2 of {path} ('What is 3 + 3?') has no reward_model.ground_truth",
        ),
        ([training_row(), training_row(content=" ")], "row 2 of {path} has an empty prompt"),
    ],
)
def test_a_bad_training_row_is_named_by_file_and_row_before_ray_starts(xrpo, tmp_path, rows, line):
    path = tmp_path / "train.parquet"
    pd.DataFrame(rows).to_parquet(path)
    # one path, as a string: verl takes that as well as a list
    [problem] = preflight.problems(compose_verl([*xrpo, f"data.train_files={path}"]))
    assert problem.startswith("verl-xrpo: " + line.format(path=path))


def test_a_missing_training_file_is_named(xrpo, tmp_path):
    missing = tmp_path / "nope.parquet"
    [problem] = preflight.problems(compose_verl([*xrpo, f"data.train_files=[{missing}]"]))
    assert (
        problem
        == f"verl-xrpo: data.train_files: {missing} is not a file; name a .parquet, .json or .jsonl file."
    )


def test_a_mistyped_xrpo_key_names_the_nearest_setting():
    [line] = preflight.mistyped_keys(
        ["trainer.x=1", "algorithm.xrpo.seeding.bank_sise=9", "+algorithm.xrpo.y=1"]
    )
    assert line.startswith("verl-xrpo: algorithm.xrpo.seeding.bank_sise is not an XRPO setting. ")
    assert "Did you mean 'seeding.bank_size'?" in line
    assert preflight.mistyped_keys(["algorithm.xrpo.planning.n_base=3", "algorithm.xrpo.planning=null"]) == []
    [line] = preflight.mistyped_keys(["algorithm.xrpo.success_key.x=1"])
    assert line == "verl-xrpo: algorithm.xrpo.success_key is a setting, not a group of settings."


def test_the_check_runs_on_its_own_without_starting_anything(xrpo, capsys):
    assert preflight.main(xrpo) == 0
    assert preflight.main([*xrpo, "algorithm.xrpo.planning.n_base=1"]) == preflight.EXIT_CODE
    [line] = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("verl-xrpo: algorithm.xrpo.planning.n_base=1 is too small")
    assert preflight.main([*xrpo, "trainer.nope=1"]) == preflight.EXIT_CODE
    assert capsys.readouterr().out.startswith("verl config: Could not override 'trainer.nope'.")
