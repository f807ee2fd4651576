"""``python -m verl_xrpo.eval`` on a real model folder with vLLM, and its refusals of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from recipe.xrpo.scale_model import tasks
from recipe.xrpo.scale_model.train import REWARD_FILE
from recipe.xrpo.scale_model.warmstart import WarmStartSettings, build_warm_model_dir


def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "verl_xrpo.eval", *args], capture_output=True, text=True, timeout=600
    )


def test_scores_a_model_folder_with_vllm(tmp_path):
    # the comparison's size: 2048 sequences, more than vLLM schedules at once, so it splits them
    # (per-request seeds broke vLLM's CPU sampler exactly there)
    model = tmp_path / "model"
    build_warm_model_dir(model, WarmStartSettings(steps=300))
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
