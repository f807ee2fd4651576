"""The embedded main job's model folder and tasks, as verl and vLLM will load them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from transformers import AutoConfig, AutoTokenizer

from recipe.xrpo.scale_model import tasks
from recipe.xrpo.scale_model.model import build_toy_model_dir
from recipe.xrpo.scale_model.reward import compute_score, extract_answer
from recipe.xrpo.scale_model.warmstart import REPORT_FILE, WarmStartSettings, build_warm_model_dir


def test_the_saved_tokenizer_encodes_as_the_trained_one(tmp_path, toy_tokenizer):
    build_toy_model_dir(tmp_path, tokenizer=toy_tokenizer)
    loaded = AutoTokenizer.from_pretrained(tmp_path)  # as verl and vLLM load it: a Qwen2Tokenizer
    text = (
        "<|im_start|>user\nWhat is 71 + 12 - 3?<|im_end|>\n<|im_start|>assistant\nThe answer is 80.<|im_end|>"
    )
    assert (
        loaded(text, add_special_tokens=False).input_ids
        == toy_tokenizer(text, add_special_tokens=False).input_ids
    )
    assert loaded.eos_token == "<|im_end|>"


def test_model_heads_are_large_enough_for_vllm_cpu_attention(tmp_path, toy_tokenizer):
    config = AutoConfig.from_pretrained(build_toy_model_dir(tmp_path, tokenizer=toy_tokenizer))
    assert config.hidden_size // config.num_attention_heads >= 32


def test_rows_follow_verls_layout_and_are_reproducible(tmp_path):
    rows = tasks.generate_rows("train", 50, seed=3)
    assert rows == tasks.generate_rows("train", 50, seed=3)
    assert len(rows) == 50 and len({r["extra_info"]["question"] for r in rows}) > 40
    assert {r["extra_info"]["difficulty"] for r in rows} == {"easy", "medium", "hard"}
    first = rows[0]
    assert first["data_source"] == tasks.DATA_SOURCE
    assert (
        first["prompt"][0]["role"] == "user"
        and first["prompt"][0]["content"] == first["extra_info"]["question"]
    )
    frame = pd.read_parquet(tasks.write_parquet(rows, tmp_path / "train.parquet"))
    assert list(frame["reward_model"].iloc[0].keys()) == ["style", "ground_truth"]


@pytest.mark.parametrize(
    ("response", "truth", "correct"),
    [
        ("The answer is 7.", "7", True),
        ("The answer is -4.", "-4", True),
        ("The answer is 17.", "7", False),
        ("3 + 4 = 7. The answer is 8.", "8", True),  # the number after the prefix counts
        ("7", "7", True),
        ("no number", "7", False),
    ],
)
def test_reward_reads_the_stated_answer(response, truth, correct):
    result = compute_score(tasks.DATA_SOURCE, response, truth)
    assert result == {"score": float(correct), "acc": correct}


def test_extract_answer_prefers_the_answer_prefix():
    assert extract_answer("12 then The answer is 5.") == "5"


def test_warm_start_learns_the_answer_format(tmp_path):
    report = build_warm_model_dir(tmp_path, WarmStartSettings(steps=150))
    assert report.final_loss < 1.0  # from about 6 nats (log of the vocabulary) at random init
    assert 0.0 < report.heldout_accuracy["easy"] <= 1.0
    assert json.loads((tmp_path / REPORT_FILE).read_text())["settings"]["steps"] == 150
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).startswith(
        "<|im_start|>"
    )
