"""XRPO's checkpoint state: whole or refused by name, never half-read (no Ray needed).

The crash itself, through ``main_ppo``, is in tests/e2e/test_main_job.py; here are the files: what
a save leaves when it is cut short, and what a resume says about a damaged or missing file. The
resume check is the one the driver's preflight and the trainer both run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from verl_xrpo import preflight
from verl_xrpo.core import files
from verl_xrpo.core.bank import ExemplarBank
from verl_xrpo.core.history import PromptHistory
from verl_xrpo.integration.checkpoint import (
    BANK_FILE,
    HISTORY_FILE,
    STATE_FILE,
    SavedState,
    XRPOCheckpointError,
    read_state,
    save_state,
)


def bank_of(*questions: str) -> ExemplarBank:
    bank = ExemplarBank(max_size=10)
    for question in questions:
        bank.add(question, f"solution of {question}")
    return bank


@pytest.fixture
def saved(tmp_path) -> Path:
    folder = tmp_path / "global_step_3" / "xrpo"
    save_state(folder, global_steps=3, rollouts_drawn=384, bank=bank_of("What is 2 + 2?", "What is 3 + 5?"))
    return folder


def test_the_state_reads_back_with_its_bank(saved):
    state = read_state(saved, 3)
    assert (state.global_steps, state.rollouts_drawn) == (3, 384) and state.bank_sha256
    assert [e.question for e in ExemplarBank.load(saved / BANK_FILE)] == ["What is 2 + 2?", "What is 3 + 5?"]


def test_without_seeding_there_is_no_bank_to_vouch_for(tmp_path):
    save_state(tmp_path, global_steps=1, rollouts_drawn=8, bank=None)
    assert read_state(tmp_path, 1) == SavedState(1, 8, None)


def test_the_prompt_history_is_saved_vouched_for_and_refused_when_damaged(tmp_path):
    history = PromptHistory()
    history.record("What is 7 * 8?", [0.0, 0.0])
    save_state(tmp_path, global_steps=2, rollouts_drawn=16, bank=None, history=history)
    state = read_state(tmp_path, 2)
    assert state.history_sha256 and state.bank_sha256 is None
    assert PromptHistory.load(tmp_path / HISTORY_FILE).agreed("What is 7 * 8?")
    PromptHistory().save(tmp_path / HISTORY_FILE)  # a whole history, but not the saved one
    with pytest.raises(XRPOCheckpointError, match=f"{HISTORY_FILE} is damaged"):
        read_state(tmp_path, 2)


@pytest.mark.parametrize(
    ("damage", "named", "problem"),
    [
        (lambda f: (f / STATE_FILE).unlink(), STATE_FILE, "is missing"),
        (
            lambda f: (f / STATE_FILE).write_text('{"format": "verl-xrpo-state", "vers'),
            STATE_FILE,
            "is damaged",
        ),
        (lambda f: (f / STATE_FILE).write_text('{"format": "other"}'), STATE_FILE, "is damaged"),
        (
            lambda f: (f / STATE_FILE).write_text(
                json.dumps(
                    {"format": "verl-xrpo-state", "version": 1, "global_steps": 3, "rollouts_drawn": -1}
                )
            ),
            STATE_FILE,
            "is damaged",
        ),
        (lambda f: (f / BANK_FILE).unlink(), BANK_FILE, "is missing"),
        (lambda f: (f / BANK_FILE).write_text((f / BANK_FILE).read_text()[:-20]), BANK_FILE, "is damaged"),
        # a whole bank, but not the one this state was saved with (say, copied from another step)
        (lambda f: bank_of("What is 9 - 1?").save(f / BANK_FILE), BANK_FILE, "is damaged"),
    ],
    ids=[
        "state-missing",
        "state-cut",
        "state-foreign",
        "state-bad-count",
        "bank-missing",
        "bank-cut",
        "bank-other",
    ],
)
def test_a_damaged_or_missing_file_stops_the_resume_naming_it(saved, damage, named, problem):
    damage(saved)
    with pytest.raises(XRPOCheckpointError) as raised:
        read_state(saved, 3)
    message = str(raised.value)
    assert f"{saved / named} {problem}" in message
    assert "trainer.resume_mode=disable" in message and "\n" not in message


def test_the_state_of_another_step_is_refused(saved):
    with pytest.raises(XRPOCheckpointError, match=r"is the state of step 3, not of the checkpoint of step 4"):
        read_state(saved, 4)


@pytest.mark.parametrize("fails_at", ["write", "replace"])
def test_a_save_cut_short_leaves_the_previous_files_whole(saved, monkeypatch, fails_at):
    """A crash while writing: the reader still finds the last complete save, and no stray file."""
    before = {name: (saved / name).read_bytes() for name in (STATE_FILE, BANK_FILE)}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as abrupt as it gets inside Python

    if fails_at == "write":
        monkeypatch.setattr(os, "fsync", crash)  # after part of the text went to the temporary file
    else:
        monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_state(saved, global_steps=3, rollouts_drawn=999, bank=bank_of("A new question?"))
    assert {name: (saved / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in saved.iterdir()) == sorted(before)  # the temporary file is gone
    assert read_state(saved, 3).rollouts_drawn == 384


def test_a_save_cut_between_the_bank_and_the_state_is_refused_not_mixed(saved, monkeypatch):
    """The new bank is in place, the state is still the old one: the pair is refused by name."""
    real_replace, calls = os.replace, []

    def second_replace_crashes(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", second_replace_crashes)
    with pytest.raises(KeyboardInterrupt):
        save_state(saved, global_steps=3, rollouts_drawn=999, bank=bank_of("A new question?"))
    assert [Path(c).name for c in calls] == [BANK_FILE, STATE_FILE]
    with pytest.raises(XRPOCheckpointError, match="it is not the bank"):
        read_state(saved, 3)


def compose_resume(checkpoints: Path, training_file: Path, *overrides: str):
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(
            config_name="ppo_trainer",
            overrides=[
                "algorithm.adv_estimator=xrpo",
                "actor_rollout_ref.rollout.n=8",
                f"data.train_files={training_file}",
                f"trainer.default_local_dir={checkpoints}",
                *overrides,
            ],
        )


def test_the_preflight_reads_the_checkpoint_verl_will_resume(saved, training_file):
    checkpoints = saved.parent.parent
    (checkpoints / "latest_checkpointed_iteration.txt").write_text("3")
    assert preflight.problems(compose_resume(checkpoints, training_file)) == []
    (saved / STATE_FILE).write_text("{")
    [problem] = preflight.problems(compose_resume(checkpoints, training_file))
    assert problem.startswith(f"verl-xrpo: XRPO cannot resume: {saved / STATE_FILE} is damaged")
    disabled = compose_resume(checkpoints, training_file, "trainer.resume_mode=disable")
    assert preflight.problems(disabled) == []
    (checkpoints / "latest_checkpointed_iteration.txt").write_text("")  # cut short while verl wrote it
    [problem] = preflight.problems(compose_resume(checkpoints, training_file))
    assert "latest_checkpointed_iteration.txt does not hold a step number" in problem
