"""The main job's launcher: what it tells verl, and how it reads verl's metrics back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from recipe.xrpo.scale_model import train as train_module
from recipe.xrpo.scale_model.train import (
    CONFIG_DIR,
    CONFIG_ERROR,
    CONFIG_NAME,
    RunPaths,
    ScaleModelRun,
    cpu_model,
    main,
    parse_args,
    read_metrics,
    run_error,
    step_line,
    summarize,
    train,
    xrpo_notices,
)


def test_overrides_are_plain_verl_keys_of_the_scale_model_config(tmp_path):
    from hydra import compose, initialize_config_dir

    run = ScaleModelRun(RunPaths(tmp_path), steps=3)
    options = [o for o in run.overrides() if o.startswith("--")]
    assert options == [f"--config-path={CONFIG_DIR}", f"--config-name={CONFIG_NAME}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        config = compose(config_name=CONFIG_NAME, overrides=[o for o in run.overrides() if o not in options])
    assert config.algorithm.adv_estimator == "xrpo"
    assert config.actor_rollout_ref.rollout.prompt_length == 256  # from configs/scale_model.yaml
    assert config.trainer.total_training_steps == 3 and config.trainer.save_freq == 3
    assert config.actor_rollout_ref.rollout.n * config.data.train_batch_size == 64
    assert config.reward.custom_reward_function.path.endswith("recipe/xrpo/scale_model/reward.py")


def test_metrics_are_read_a_whole_line_at_a_time(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_metrics(path) == ([], 0)
    path.write_text(json.dumps({"step": 1, "data": {"a": 1.0}}) + "\n" + '{"step": 2, "da')
    records, offset = read_metrics(path)
    assert [r["step"] for r in records] == [1] and offset == len(path.read_text().splitlines()[0]) + 1
    with path.open("a") as handle:
        handle.write('ta": {"a": 2.0}}\n')
    records, _ = read_metrics(path, offset)
    assert [r["step"] for r in records] == [2]


XRPO_STEP = {
    "timing_s/step": 2.5,
    "critic/score/mean": 0.4,
    "xrpo/rollouts_per_prompt/mean": 8.0,
    "xrpo/rollouts_per_prompt/min": 4.0,
    "xrpo/rollouts_per_prompt/max": 13.0,
    "xrpo/seeding/prompts_seeded": 2.0,
    "xrpo/seeding/prompts_with_seeded_success": 1.0,
    "xrpo/sharpening/share_sharpened": 0.05,
    "xrpo/bank_size": 12.0,
}


def test_a_step_line_says_what_xrpo_did():
    line = step_line(2, 5, XRPO_STEP)
    assert line.startswith("step 2/5")
    for part in ("2.5 s", "score 0.40", "rollouts/prompt 4-13", "seeded 2", "sharpened 5%", "bank 12"):
        assert part in line
    assert "rollouts/prompt" not in step_line(1, 5, {"timing_s/step": 1.0, "critic/score/mean": 0.1})


def test_the_summary_covers_this_invocations_steps(tmp_path):
    run = ScaleModelRun(RunPaths(tmp_path), steps=4)
    records = [
        {"step": 3, "data": {**XRPO_STEP, "timing_s/step": 15.0, "critic/score/mean": 0.2}},
        {"step": 4, "data": {**XRPO_STEP, "val-core/x/acc/mean@1": 0.5}},
    ]
    summary = summarize(records, run, wall_seconds=40.0, exit_code=0)
    assert (summary.first_step, summary.steps_done) == (3, 4)
    assert summary.step_seconds == [15.0, 2.5]
    assert (summary.score_first, summary.score_last) == (0.2, 0.4)
    assert summary.xrpo["prompts seeded"] == 4 and summary.xrpo["bank size"] == 12
    assert summary.machine == cpu_model()  # the launcher names the machine each run trained on
    text = "\n".join(summary.lines())
    assert "resumed from the checkpoint of step 2" in text and "val-core/x/acc/mean@1: 0.500" in text


def test_xrpo_notices_are_found_among_ray_prefixed_log_lines():
    lines = [
        "\x1b[36m(TaskRunnerV1 pid=1)\x1b[0m INFO:2026-11-25 03:34:09:XRPO: 32 validation questions barred",
        "(TaskRunnerV1 pid=1) XRPO is on (algorithm.adv_estimator=xrpo, budget 8 rollouts per prompt):",
        "(WorkerDict pid=2) unrelated",
    ]
    assert xrpo_notices(lines) == [
        "XRPO: 32 validation questions barred",
        "XRPO is on (algorithm.adv_estimator=xrpo, budget 8 rollouts per prompt):",
    ]


def test_arguments_after_the_separator_go_to_verl():
    args, extra = parse_args(["--steps", "2", "--", "algorithm.xrpo.planning.n_base=3"])
    assert args.steps == 2 and extra == ["algorithm.xrpo.planning.n_base=3"]
    assert args.run_dir == Path("runs/scale-model")


@pytest.mark.parametrize(
    "argv", [["--steps", "0"], ["--estimator", "ppo"], ["--prompts-per-step", "0"], ["--task", "sums"]]
)
def test_bad_arguments_stop_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert "error" in capsys.readouterr().err


def test_validation_before_training_is_not_counted_as_a_step(tmp_path):
    before = {"val-core/x/acc/mean@1": 0.25}
    assert step_line(0, 4, before).startswith("before training") and "val 0.25" in step_line(0, 4, before)
    records = [{"step": 0, "data": before}, {"step": 1, "data": {**XRPO_STEP, "val-core/x/acc/mean@1": 0.3}}]
    summary = summarize(records, ScaleModelRun(RunPaths(tmp_path), steps=1), wall_seconds=9.0, exit_code=0)
    assert (summary.first_step, summary.steps_done, summary.step_seconds) == (1, 1, [2.5])
    assert summary.lines()[0].startswith("xrpo: steps 1-1 of 1")


def bad_training_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.parquet"
    rows = [{"prompt": [{"role": "user", "content": "Add 1 + 2."}], "reward_model": {"ground_truth": None}}]
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.mark.parametrize(
    ("override", "last_line"),
    [
        (
            "algorithm.xrpo.planning.n_bas=4",
            "verl-xrpo: algorithm.xrpo.planning.n_bas is not an XRPO setting. "
            "Did you mean 'planning.n_base'?",
        ),
        ("algorithm.xrpo.planning.n_base=1", "verl-xrpo: algorithm.xrpo.planning.n_base=1 is too small"),
        ("BAD_DATA", "verl-xrpo: row 1 of {bad} ('Add 1 + 2.') has no reward_model.ground_truth"),
    ],
)
def test_a_config_mistake_stops_the_main_job_before_the_warm_start(tmp_path, capsys, override, last_line):
    bad = bad_training_file(tmp_path)
    override = override.replace("BAD_DATA", f"data.train_files={bad}")
    code = main(["--run-dir", str(tmp_path / "run"), "--steps", "1", "--", override])
    assert code == CONFIG_ERROR
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(last_line.format(bad=bad))
    assert not (tmp_path / "run" / "model").exists()  # no warm start was built for a run that cannot start


def test_a_failed_run_prints_its_own_error_last_and_keeps_the_good_summary(tmp_path, monkeypatch, capsys):
    """verl stands in as a child that logs a line, then XRPO's error inside a Ray traceback, and fails."""
    paths = RunPaths(tmp_path)
    paths.summary.write_text('{"good": true}')
    paths.log.write_text("(TaskRunnerV1 pid=1) a line of an earlier run\n")
    script = (
        "import sys; print('(TaskRunnerV1 pid=9) starting'); "
        "print('ray.exceptions.RayTaskError(XRPODataError): ...'); "
        "print('verl_xrpo.integration.data_checks.XRPODataError: row 3 of /d/t.parquet has no prompt'); "
        "print('(raylet) a warning after it'); sys.exit(1)"
    )
    monkeypatch.setattr(train_module, "verl_command", lambda run, extra: [sys.executable, "-c", script])
    lines: list[str] = []
    summary = train(ScaleModelRun(paths, steps=1), [], echo=lines.append)
    assert summary.exit_code == 1
    assert summary.error == "verl-xrpo: row 3 of /d/t.parquet has no prompt"
    assert not any("earlier run" in line for line in lines)  # only this run's part of the log
    assert paths.summary.read_text() == '{"good": true}'
    assert json.loads(paths.failed_summary.read_text())["exit_code"] == 1


def test_the_runs_own_error_is_found_among_the_log_lines():
    lines = [
        "verl-xrpo: algorithm.xrpo.planning.n_base=1 is too small.",
        "XRPO cannot resume: /c/global_step_8/xrpo/state.json is damaged (bad json); start over",
        "INFO unrelated",
    ]
    assert run_error(lines) == lines[1]
    assert run_error(lines[:1]) == lines[0]
    assert run_error(["verl_xrpo.config.XRPOConfigError: algorithm.xrpo.x is not an XRPO setting."]) == (
        "verl-xrpo: algorithm.xrpo.x is not an XRPO setting."
    )
    # without an XRPO error: the last exception line, verl's or Ray's
    verl = [
        "ValueError: Couldn't instantiate the backend tokenizer from one of:",
        "  File ..., line 138, in _call_target",
        "hydra.errors.InstantiationException: Error in call to target 'verl.workers.config.HFModelConfig':",
        "full_key: actor_rollout_ref.model",
    ]
    assert run_error(verl) == verl[2]
    assert run_error(["Traceback (most recent call last):", "nothing else"]) is None
