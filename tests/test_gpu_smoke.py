"""scripts/gpu_smoke.sh and its checker (recipe/xrpo/smoke_check.py), on a machine without a GPU.

The script runs for real, with two stand-ins: an ``nvidia-smi`` on PATH, and ``$PYTHON``, a
script that plays the scale-model job and verl's main_ppo (writing what they would leave behind,
in verl's file-logger layout) and hands every other call to this Python. The checker is tested
on run folders written the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.xrpo import smoke_check
from recipe.xrpo.smoke_check import CheckFailed, check_run, pins_of_extra, stack_problems

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_smoke.sh"
PRESETS = ["grpo", "gspo", "xrpo_grpo", "xrpo_gspo"]

XRPO_DATA = {key: 1.0 for key in smoke_check.XRPO_METRICS}

# $PYTHON for the script: plays the two training entry points, passes everything else on.
FAKE_PYTHON = """#!{python}
import json, os, sys
from pathlib import Path

argv = sys.argv[1:]
with open(os.environ["STUB_CALLS"], "a") as calls:
    calls.write(json.dumps({{"argv": argv, "cwd": os.getcwd()}}) + "\\n")

def record(step, xrpo):
    data = {{"timing_s/step": 1.0, "critic/score/mean": 0.5}}
    if xrpo:
        data.update({xrpo_data!r})
    return json.dumps({{"step": step, "data": data}}) + "\\n"

module = argv[1] if argv[:1] == ["-m"] else None
if module == "recipe.xrpo.scale_model.train":
    run = Path(argv[argv.index("--run-dir") + 1])
    steps = int(os.environ.get("STUB_TRAIN_STEPS", argv[argv.index("--steps") + 1]))
    (run / "data").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(record(s, True) for s in range(1, steps + 1)))
    for s in range(1, steps + 1):
        state = run / "checkpoints" / f"global_step_{{s}}" / "xrpo"
        state.mkdir(parents=True)
        (state / "state.json").write_text("{{}}")
    sys.exit(int(os.environ.get("STUB_TRAIN_EXIT", "0")))
if module == "verl.trainer.main_ppo":
    estimator = [a.split("=", 1)[1] for a in argv if a.startswith("algorithm.adv_estimator=")][-1]
    experiment = [a.split("=", 1)[1] for a in argv if a.startswith("trainer.experiment_name=")][-1]
    Path(os.environ["VERL_FILE_LOGGER_PATH"]).write_text(record(1, estimator == "xrpo"))
    sys.exit(1 if experiment.startswith(os.environ.get("STUB_FAIL_PRESET", "-") + "-") else 0)
if module == "recipe.xrpo.smoke_check" and argv[2:] == ["env"]:
    print("ok    the installed stack (stand-in)")
    sys.exit(0)
os.execv({python!r}, [{python!r}, *argv])
"""


def path_without_nvidia_smi() -> str:
    return os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "nvidia-smi").exists()
    )


def fake_nvidia_smi(folder: Path, output: str, code: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {code}\n")
    tool.chmod(0o755)
    return folder


@pytest.fixture
def machine(tmp_path):
    """Runs the script as on a one-GPU machine; returns (completed process, the stand-in's calls)."""
    python = tmp_path / "python-stand-in"
    python.write_text(FAKE_PYTHON.format(python=sys.executable, xrpo_data=XRPO_DATA))
    python.chmod(0o755)
    gpu = fake_nvidia_smi(tmp_path / "bin", "GPU 0: NVIDIA Test GPU (UUID: GPU-0)\n")
    calls_file = tmp_path / "calls.jsonl"
    (tmp_path / "tmp").mkdir()

    def run(**env: str):
        base = {
            key: value
            for key, value in os.environ.items()
            if key not in {"MODEL_PATH", "DATA_DIR", "TRAIN_FILES", "VAL_FILES", "NGPUS"}
        }
        full = {
            **base,
            "PATH": f"{gpu}{os.pathsep}{path_without_nvidia_smi()}",
            "PYTHON": str(python),
            "PYTHONPATH": str(REPO),
            "STUB_CALLS": str(calls_file),
            "TMPDIR": str(tmp_path / "tmp"),
            **env,
        }
        done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=full, timeout=60)
        calls = (
            [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
        )
        return done, calls

    return run


def main_ppo_calls(calls):
    return [c for c in calls if c["argv"][:2] == ["-m", "verl.trainer.main_ppo"]]


def override(call, key):
    values = [a.split("=", 1)[1] for a in call["argv"] if a.startswith(f"{key}=")]
    assert values, f"{key} not passed to main_ppo"
    return values[-1]


# ---- the script ---------------------------------------------------------------------------------


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_scripts_are_shellcheck_clean():
    done = subprocess.run(
        ["shellcheck", str(SCRIPT), str(REPO / "scripts" / "install.sh")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def refusal(done):
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_without_nvidia_smi_it_refuses_in_one_line(tmp_path):
    env = {**os.environ, "PATH": path_without_nvidia_smi(), "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=30)
    assert refusal(done).startswith("FAIL  no NVIDIA GPU found (nvidia-smi is missing or fails)")
    assert list(tmp_path.iterdir()) == []  # refused before making its work folder


@pytest.mark.parametrize(
    ("output", "code"), [("NVIDIA-SMI has failed to communicate with the driver", 9), ("", 0)]
)
def test_with_a_failing_or_empty_nvidia_smi_it_refuses_in_one_line(tmp_path, output, code):
    tools = fake_nvidia_smi(tmp_path / "bin", output, code)
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{path_without_nvidia_smi()}"}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=30)
    assert "no NVIDIA GPU found" in refusal(done)


def test_a_model_path_without_a_model_is_refused_before_anything_runs(machine, tmp_path):
    done, calls = machine(MODEL_PATH=str(tmp_path / "no-model-here"))
    line = refusal(done)
    assert "no-model-here is not a model folder (no config.json)" in line
    assert calls == []


def test_without_a_model_path_it_checks_the_scale_model_and_skips_the_presets(machine):
    done, calls = machine()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ok    GPU 0: NVIDIA Test GPU (UUID: GPU-0) (1 visible)"
    assert lines[1] == "ok    the installed stack (stand-in)"
    assert lines[2].startswith("ok    scale model: main_ppo with XRPO exited 0")
    assert lines[3].startswith("ok    scale model: 2 training step(s) in ")
    assert lines[3].endswith("metrics.jsonl, each with XRPO's metrics")
    assert lines[4].startswith("ok    scale model: checkpoint ") and "global_step_2/xrpo/" in lines[4]
    skipped = [line for line in lines if line.startswith("skip")]
    assert skipped == [lines[5]]
    assert "presets: they need a model folder and none was given" in lines[5] and "MODEL_PATH=" in lines[5]
    assert lines[6].startswith("passed: every check above; logs in ") and len(lines) == 7
    train = [c for c in calls if c["argv"][:2] == ["-m", "recipe.xrpo.scale_model.train"]]
    assert len(train) == 1
    argv = train[0]["argv"]
    assert argv[argv.index("--steps") + 1] == "2" and argv[argv.index("--save-freq") + 1] == "1"
    assert argv[argv.index("--") + 1 :] == ["trainer.n_gpus_per_node=1"]
    assert main_ppo_calls(calls) == []


def test_with_a_model_path_it_runs_one_step_of_each_preset(machine, tmp_path):
    model = tmp_path / "Some-Model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    # a real run's settings left in the environment must not leak into the smoke
    leftovers = {"TOTAL_TRAINING_STEPS": "500", "EXPERIMENT_NAME": "mine", "DRY_RUN": "1"}
    done, calls = machine(MODEL_PATH=str(model), **leftovers)
    assert done.returncode == 0, done.stderr
    runs = main_ppo_calls(calls)
    assert len(runs) == len(PRESETS)
    work = Path(done.stdout.splitlines()[-1].rsplit(" ", 1)[1])
    for algo, call in zip(PRESETS, runs, strict=True):
        assert override(call, "trainer.experiment_name").startswith(f"{algo}-")
        assert override(call, "algorithm.adv_estimator") == ("xrpo" if algo.startswith("xrpo") else "grpo")
        assert override(call, "actor_rollout_ref.model.path") == str(model)
        assert override(call, "trainer.total_training_steps") == "1"
        assert override(call, "trainer.n_gpus_per_node") == "1"
        assert override(call, "actor_rollout_ref.rollout.tensor_model_parallel_size") == "1"
        assert override(call, "trainer.save_freq") == "-1"
        assert override(call, "trainer.default_local_dir").startswith(str(work / "checkpoints"))
        assert override(call, "data.train_files") == str(work / "scale_model" / "data" / "train.parquet")
        assert override(call, "reward.custom_reward_function.path").endswith("scale_model/reward.py")
        assert "--cfg" not in call["argv"]  # DRY_RUN=1 from the environment is overridden
        assert call["cwd"] == str(work)
        expected = "each with XRPO's metrics" if algo.startswith("xrpo") else "no XRPO metrics (baseline)"
        assert any(
            line.startswith(f"ok    preset {algo}: 1 training step(s)") and expected in line
            for line in done.stdout.splitlines()
        )
        assert (
            f"ok    preset {algo}: one step of Some-Model on the scale model's prompts exited 0"
            in done.stdout
        )
    assert "skip" not in done.stdout


def test_a_failing_main_job_stops_the_smoke_with_its_log(machine):
    done, _ = machine(STUB_TRAIN_EXIT="3")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("FAIL  scale model: the main job exited with 3; log: ")
    log = Path(last.split("; log: ")[1].split(" ")[0])
    assert log.is_file()
    assert "passed" not in done.stdout and "scale model: 2 training" not in done.stdout


def test_a_missing_training_step_fails_naming_verls_log(machine):
    done, _ = machine(STUB_TRAIN_STEPS="1")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "FAIL  scale model: " in last and "holds training steps [1], expected [1, 2]" in last
    assert last.endswith("scale_model/train.log")


def test_the_first_failing_preset_stops_the_rest(machine, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    done, calls = machine(MODEL_PATH=str(model), STUB_FAIL_PRESET="gspo")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("FAIL  preset gspo: run_gspo.sh exited with 1; log: ")
    ran = [override(c, "trainer.experiment_name").split("-")[0] for c in main_ppo_calls(calls)]
    assert ran == ["grpo", "gspo"]
    assert "ok    preset grpo: 1 training step(s)" in done.stdout


# ---- the checker ---------------------------------------------------------------------------------


def write_run(folder: Path, steps: dict[int, dict], checkpoint_step: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": step, "data": data}) for step, data in steps.items()]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if checkpoint_step is not None:
        state = folder / "checkpoints" / f"global_step_{checkpoint_step}" / "xrpo"
        state.mkdir(parents=True)
        (state / "exemplar_bank.json").write_text("{}")
    return folder


def step(**extra) -> dict:
    return {"timing_s/step": 2.0, "critic/score/mean": 0.25, **extra}


def test_a_complete_xrpo_run_passes(tmp_path):
    run = write_run(tmp_path, {1: step(**XRPO_DATA), 2: step(**XRPO_DATA)}, checkpoint_step=2)
    lines = list(
        check_run(run / "metrics.jsonl", 2, xrpo=True, checkpoint=run / "checkpoints" / "global_step_2")
    )
    assert lines == [
        f"2 training step(s) in {run / 'metrics.jsonl'}, each with XRPO's metrics",
        f"checkpoint {run / 'checkpoints' / 'global_step_2' / 'xrpo'}/ written",
    ]


def test_validation_before_training_is_not_a_training_step(tmp_path):
    run = write_run(tmp_path, {0: {"val-core/x/acc/mean@1": 0.5}, 1: step(**XRPO_DATA)})
    assert smoke_check.training_steps(smoke_check.read_records(run / "metrics.jsonl")) == {
        1: step(**XRPO_DATA)
    }
    with pytest.raises(CheckFailed, match=r"holds training steps \[1\], expected \[1, 2\]"):
        list(check_run(run / "metrics.jsonl", 2, xrpo=True))


def test_a_step_without_an_xrpo_metric_fails_naming_it(tmp_path):
    partial = {k: v for k, v in XRPO_DATA.items() if k != "xrpo/bank_size"}
    run = write_run(tmp_path, {1: step(**XRPO_DATA), 2: step(**partial)})
    with pytest.raises(CheckFailed, match=r"step 2 .* lacks XRPO's metrics xrpo/bank_size$"):
        list(check_run(run / "metrics.jsonl", 2, xrpo=True))


def test_a_baseline_must_log_no_xrpo_metric(tmp_path):
    clean = write_run(tmp_path / "clean", {1: step()})
    (line,) = check_run(clean / "metrics.jsonl", 1, xrpo=False)
    assert line.endswith("no XRPO metrics (baseline)")
    leaky = write_run(tmp_path / "leaky", {1: step(**{"xrpo/phases_run": 3.0})})
    with pytest.raises(CheckFailed, match="step 1 of a run without XRPO logs xrpo/phases_run"):
        list(check_run(leaky / "metrics.jsonl", 1, xrpo=False))


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_checkpoint_without_xrpo_state_fails(tmp_path, state):
    run = write_run(tmp_path, {1: step(**XRPO_DATA)})
    checkpoint = run / "checkpoints" / "global_step_1"
    (checkpoint / ("xrpo" if state == "empty" else "actor")).mkdir(parents=True)
    with pytest.raises(
        CheckFailed, match=r"no XRPO state in the checkpoint: .*global_step_1/xrpo is missing or empty"
    ):
        list(check_run(run / "metrics.jsonl", 1, xrpo=True, checkpoint=checkpoint))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"step": 1, "data": {}}\n{"step": 2, "data"\n', r"metrics.jsonl:2 is not JSON"),
        (
            '{"step": "1", "data": {}}\n',
            r"metrics.jsonl:1 is not a verl metrics record \(no integer 'step'\)",
        ),
        ('{"step": 1, "data": [1]}\n', r"metrics.jsonl:1 is not a verl metrics record \(no 'data' object\)"),
    ],
)
def test_a_malformed_metrics_file_fails_with_file_and_line(tmp_path, text, problem):
    (tmp_path / "metrics.jsonl").write_text(text)
    with pytest.raises(CheckFailed, match=problem):
        smoke_check.read_records(tmp_path / "metrics.jsonl")


def test_no_metrics_file_fails(tmp_path):
    with pytest.raises(CheckFailed, match=r"no metrics file .*verl logged nothing"):
        list(check_run(tmp_path / "metrics.jsonl", 1, xrpo=True))


def test_the_command_line_prints_ok_lines_or_one_failure_with_the_log(tmp_path, capsys):
    run = write_run(tmp_path, {1: step(**XRPO_DATA)})
    args = ["run", "--name", "preset x", "--metrics", str(run / "metrics.jsonl"), "--log", "/logs/x.log"]
    assert smoke_check.main([*args, "--steps", "1", "--xrpo"]) == 0
    assert capsys.readouterr().out.startswith("ok    preset x: 1 training step(s) in ")
    assert smoke_check.main([*args, "--steps", "3", "--xrpo"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("FAIL  preset x: ") and captured.err.endswith("; log: /logs/x.log\n")


# ---- the installed stack -------------------------------------------------------------------------


def test_pins_of_an_extra_are_its_exact_pins_only():
    requirements = [
        "transformers!=5.6.0,<5.11,>=5.5.3",  # base requirement
        'verl[verl-core]; extra == "vllm"',
        'torch==2.11.0; extra == "vllm"',
        'mbridge; extra == "vllm"',
        'Flash_Attn==2.8.3; extra == "fa"',
        'sglang==0.5.12; extra == "sglang"',
        'triton>=3; extra == "vllm"',
    ]
    assert pins_of_extra(requirements, "vllm") == {"torch": "2.11.0"}
    assert pins_of_extra(requirements, "fa") == {"flash-attn": "2.8.3"}


def test_verls_own_gpu_pins_are_read_from_its_metadata():
    assert smoke_check.verl_stack_pins() == {
        "torch": "2.11.0",
        "torchvision": "0.26.0",
        "torchaudio": "2.11.0",
        "vllm": "0.24.0",
        "transformers": "5.9.0",
        "flash-attn": "2.8.3",
    }


def test_stack_problems_name_missing_and_other_versions():
    pins = {"torch": "2.11.0", "vllm": "0.24.0", "flash-attn": "2.8.3"}
    installed = {"torch": "2.13.0+cpu", "vllm": None, "flash-attn": "2.8.3+cu130torch2.11"}
    assert stack_problems(pins, installed) == [
        "torch 2.13.0+cpu is installed, verl 0.9.1 pins torch==2.11.0",
        "vllm is not installed (verl 0.9.1 pins vllm==0.24.0)",
    ]
    assert stack_problems(pins, {"torch": "2.11.0+cu130", "vllm": "0.24.0", "flash-attn": "2.8.3"}) == []
