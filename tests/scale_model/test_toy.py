"""The embedded main job's model folder and tasks, as verl and vLLM will load them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from transformers import AutoConfig, AutoTokenizer

from recipe.xrpo.scale_model import tasks
from recipe.xrpo.scale_model.model import build_toy_model_dir
from recipe.xrpo.scale_model.reward import compute_score, extract_answer
from recipe.xrpo.scale_model.warmstart import (
    REPORT_FILE,
    WarmStartSettings,
    build_warm_model_dir,
    main,
    seeded_examples,
)


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
    rows = tasks.generate_rows(tasks.CHAIN, "train", 50, seed=3)
    assert rows == tasks.generate_rows(tasks.CHAIN, "train", 50, seed=3)
    assert len(rows) == 50 and len({r["extra_info"]["question"] for r in rows}) > 40
    assert {r["extra_info"]["difficulty"] for r in rows} == {level.name for level in tasks.CHAIN_LEVELS}
    first = rows[0]
    assert first["data_source"] == tasks.CHAIN_SOURCE
    assert (
        first["prompt"][0]["role"] == "user"
        and first["prompt"][0]["content"] == first["extra_info"]["question"]
    )
    frame = pd.read_parquet(tasks.write_parquet(rows, tmp_path / "train.parquet"))
    assert list(frame["reward_model"].iloc[0].keys()) == ["style", "ground_truth"]


def _right(row: dict) -> bool:
    solution, truth = row["extra_info"]["solution"], row["reward_model"]["ground_truth"]
    return compute_score(row["data_source"], solution, truth)["acc"]


def test_chain_solutions_are_right_except_the_warm_starts_slips():
    assert all(_right(row) for row in tasks.generate_rows(tasks.CHAIN, "val", 200, seed=1))
    warm = tasks.generate_rows(tasks.CHAIN, "sft", 2000, seed=1, warm_start="skill")
    assert all(" = " in r["extra_info"]["solution"] for r in warm)  # every skill chain is stepwise
    right = sum(map(_right, warm)) / len(warm)
    assert 0.6 < right < 0.95  # slips leave headroom, most chains are still right


def test_the_warm_starts_habit_answers_longer_chains_mostly_at_once():
    habit = tasks.generate_rows(tasks.CHAIN, "habit", 4000, seed=1, warm_start="habit")
    for level in tasks.CHAIN_LEVELS:
        rows = [r for r in habit if r["extra_info"]["difficulty"] == level.name]
        stepwise = [r for r in rows if " = " in r["extra_info"]["solution"]]
        assert abs(len(stepwise) / len(rows) - level.stepwise_share) < 0.06, level.name
        assert sum(map(_right, stepwise)) / len(stepwise) > 0.9  # worked step by step: nearly always right
        at_once = [r for r in rows if r not in stepwise]
        assert all(r["extra_info"]["solution"].startswith(tasks.AT_ONCE_PREFIX) for r in at_once)
        off = [
            abs(int(extract_answer(r["extra_info"]["solution"])) - int(r["reward_model"]["ground_truth"]))
            for r in at_once
        ]
        assert max(off) <= level.guess_spread and (level.guess_spread == 0 or max(off) > 0)


def test_an_unknown_warm_start_style_is_refused():
    with pytest.raises(ValueError, match="warm_start"):
        tasks.generate_rows(tasks.CHAIN, "sft", 10, seed=0, warm_start="slips")


def test_the_hard_pool_is_kept_out_of_the_warm_starts_data():
    pool = {f"{a} + {b} +" for a, b in tasks.hard_pool()}
    hard = [
        r
        for r in tasks.generate_rows(tasks.CHAIN, "train", 400, seed=2)
        if r["extra_info"]["difficulty"] == "hard"
    ]
    assert hard and all(any(q in r["extra_info"]["question"] for q in pool) for r in hard)
    for style in tasks.WARM_START_STYLES:
        warm = tasks.generate_rows(tasks.CHAIN, "sft", 2000, seed=2, warm_start=style)
        assert not any(q in r["extra_info"]["question"] for r in warm for q in pool)


@pytest.mark.parametrize(
    ("text", "family", "options"),
    [
        ("chain", "chain", ()),
        ("rg:chain_sum", "rg:chain_sum", ()),
        ("rg:chain_sum:min_terms=2,max_terms=3", "rg:chain_sum", (("min_terms", 2), ("max_terms", 3))),
    ],
)
def test_task_names_parse(text, family, options):
    spec = tasks.TaskSpec.parse(text)
    assert (spec.family, spec.options) == (family, options) and str(spec) == text


@pytest.mark.parametrize("text", ["sums", "rg:", "rg:chain_sum:min_terms"])
def test_bad_task_names_are_refused(text):
    with pytest.raises(ValueError, match="task"):
        tasks.TaskSpec.parse(text)


def test_a_reasoning_gym_task_gives_rows_in_the_same_layout():
    rows = tasks.generate_rows("rg:chain_sum:min_terms=2,max_terms=2", "train", 5, seed=0)
    assert len(rows) == 5 and rows[0]["data_source"] == "reasoning_gym/chain_sum"
    assert rows == tasks.generate_rows("rg:chain_sum:min_terms=2,max_terms=2", "train", 5, seed=0)


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
    result = compute_score(tasks.CHAIN_SOURCE, response, truth)
    assert result == {"score": float(correct), "acc": correct}


def test_extract_answer_prefers_the_answer_prefix():
    assert extract_answer("12 then The answer is 5.") == "5"


def test_warm_start_learns_the_answer_format(tmp_path, capsys):
    settings = WarmStartSettings(
        steps=100, train_examples=500, habit_steps=50, habit_examples=500, log_every=50
    )
    report = build_warm_model_dir(tmp_path, settings)
    progress = capsys.readouterr().out
    # long warm starts say where they are, through both stages; the last step is the final
    # report's, not a progress line
    assert "warm start step 50/150" in progress and "warm start step 100/150" in progress
    assert "step 150/150" not in progress
    assert report.final_loss < 1.5  # from about 6 nats (log of the vocabulary) at random init
    assert set(report.heldout_accuracy) == {"all"} | {level.name for level in tasks.CHAIN_LEVELS}
    assert json.loads((tmp_path / REPORT_FILE).read_text())["settings"]["habit_steps"] == 50
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).startswith(
        "<|im_start|>"
    )


def test_a_skill_model_without_a_habit_stage_is_refused(tmp_path):
    with pytest.raises(ValueError, match="habit_steps"):
        build_warm_model_dir(tmp_path, WarmStartSettings(habit_steps=0), skill_model=tmp_path)


def test_the_command_line_refuses_a_skill_model_in_one_line_before_building(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "out"), "--preset", "demo", "--skill-model", str(tmp_path)])
    assert stopped.value.code == 2
    assert "--skill-model: the 'demo' preset has no habit stage" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_seeded_examples_hold_the_first_step_of_a_hard_chain(toy_tokenizer):
    rows = tasks.generate_rows(tasks.CHAIN, "sft", 400, seed=0, warm_start="skill")
    seeded = seeded_examples(rows, 0.5, toy_tokenizer, 400, seed=0)
    assert 150 <= len(seeded) <= 200
    hard = [r for r in seeded if r["extra_info"]["difficulty"] == "hard"]
    for row in hard:
        first_step = row["extra_info"]["solution"].split(". ")[0].split(" =")[0]  # e.g. "34 + 71"
        context = row["prompt"][-1]["content"]
        assert context.count(first_step) >= 3 and context.endswith(row["extra_info"]["question"])
