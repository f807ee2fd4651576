"""``python -m verl_xrpo.eval`` on a real model folder with vLLM, and its refusals of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.xrpo.scale_model import tasks
from recipe.xrpo.scale_model.train import REWARD_FILE
from recipe.xrpo.scale_model.warmstart import WarmStartSettings, build_warm_model_dir


def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "verl_xrpo.eval", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval") / "model"
    build_warm_model_dir(folder, WarmStartSettings(steps=300))
    return folder


def test_scores_a_model_folder_with_vllm(tmp_path, model):
    # the comparison's size: 2048 sequences, more than vLLM schedules at once, so it splits them
    # (per-request seeds broke vLLM's CPU sampler exactly there)
    data = tasks.write_parquet(tasks.generate_rows(tasks.CHAIN, "val", 128, seed=5), tmp_path / "val.parquet")
    out = tmp_path / "scores.json"
    done = run_eval(
        str(model),
        *("--data", str(data), "--samples", "16", "--k", "1", "8", "16", "--out", str(out)),
        *("--reward-file", str(REWARD_FILE)),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    scores = report["scores"]["all"]
    assert scores["prompts"] == 128
    per_prompt = report["successes_per_prompt"]
    assert len(per_prompt) == 128 and all(0 <= c <= 16 for c in per_prompt)
    assert abs(sum(per_prompt) / (128 * 16) - scores["pass@1"]) < 1e-9
    assert 0.0 <= scores["pass@1"] <= scores["pass@8"] <= scores["pass@16"] <= 1.0
    assert scores["pass@16"] > 0  # a warm-started model solves some easy sums
    assert set(report["scores"]) == {tasks.CHAIN_SOURCE, "all"}
    assert "cons@16" in done.stdout


def test_a_folder_that_is_no_model_is_refused_in_one_line(tmp_path):
    data = tasks.write_parquet(tasks.generate_rows(tasks.CHAIN, "val", 2, seed=5), tmp_path / "val.parquet")
    done = run_eval(str(tmp_path), "--data", str(data))
    assert done.returncode == 2
    assert "neither a model folder" in done.stderr and "Traceback" not in done.stderr


def test_k_above_the_sample_count_is_a_usage_error(tmp_path):
    done = run_eval(str(tmp_path), "--data", "x.parquet", "--samples", "4", "--k", "8")
    assert done.returncode == 2 and "--k" in done.stderr


def scrambled_copy(model, folder):
    """The model with every weight matrix replaced by noise: it can no longer add."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, folder)
    weights = load_file(folder / "model.safetensors")
    noise = {k: torch.randn_like(v) if v.dim() == 2 else v for k, v in weights.items()}
    save_file(noise, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


# the comparisons' warm start (committed): it adds well enough for a score to tell models apart
WARM_START = Path(__file__).resolve().parents[2] / "results" / "scale-compare" / "models" / "warm_start"


def test_several_models_are_scored_in_turn_by_one_engine(tmp_path):
    # a learning curve's checkpoints: each later model's weights go into the running engine, so a
    # model that cannot add must score near zero between two scorings of the trained one
    model = WARM_START
    noise = scrambled_copy(model, tmp_path / "noise")
    data = tasks.write_parquet(tasks.generate_rows(tasks.CHAIN, "val", 64, seed=5), tmp_path / "val.parquet")
    out = tmp_path / "curve.json"
    done = run_eval(
        str(model), str(noise), str(model),
        *("--data", str(data), "--samples", "8", "--max-tokens", "48", "--out", str(out)),
        *("--reward-file", str(REWARD_FILE)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    points = json.loads(out.read_text())["points"]
    assert [p["model"] for p in points] == [str(model), str(noise), str(model)]
    first, scrambled, again = (p["scores"]["all"]["pass@1"] for p in points)
    assert first > 0.15 and again > 0.15 and scrambled < 0.05
    assert abs(first - again) < 0.1  # the same weights, sampled anew


def test_models_of_another_architecture_are_refused_in_one_line(tmp_path, model):
    other = tmp_path / "other"
    shutil.copytree(model, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(
        json.dumps(config | {"num_hidden_layers": config["num_hidden_layers"] + 1})
    )
    data = tasks.write_parquet(tasks.generate_rows(tasks.CHAIN, "val", 2, seed=5), tmp_path / "val.parquet")
    done = run_eval(str(model), str(other), "--data", str(data), "--reward-file", str(REWARD_FILE))
    assert done.returncode == 2
    assert "not the architecture of" in done.stderr and "Traceback" not in done.stderr
