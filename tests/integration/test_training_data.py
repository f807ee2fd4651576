"""Bad training rows, as verl's own RLHFDataset loads them: what verl does, and what XRPO refuses."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import open_dict
from verl.trainer.ppo.utils import create_rl_dataset

from tests.integration.conftest import training_row as row
from verl_xrpo.integration.data_checks import XRPODataError, check_training_rows

LONG_QUESTION = "What is " + " + ".join(str(i) for i in range(40)) + "?"


def data_config(**changes):
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        data = compose(config_name="ppo_trainer", overrides=["data.max_prompt_length=64"]).data
    with open_dict(data):
        data.update(changes)
    return data


def dataset_of(rows, tmp_path, toy_tokenizer, **changes):
    path = tmp_path / "train.parquet"
    pd.DataFrame(rows).to_parquet(path)
    config = data_config(train_files=[str(path)], **changes)
    return create_rl_dataset([str(path)], config, toy_tokenizer, None, is_train=True), config


def test_what_verl_itself_does_with_each_bad_row(tmp_path, toy_tokenizer):
    rows = [row(), row(truth=None), row(content=""), row(content=None), row(content=LONG_QUESTION)]
    kept, _ = dataset_of(rows, tmp_path, toy_tokenizer, filter_overlong_prompts=True)
    # verl's filter drops the overlong row and the empty conversation (its chat template refuses it)
    # and keeps a row without ground truth and an empty question
    assert [r["prompt"][0]["content"] for r in kept.dataframe] == ["What is 3 + 3?", "What is 3 + 3?", ""]
    everything, _ = dataset_of(rows, tmp_path, toy_tokenizer, filter_overlong_prompts=False)
    assert len(everything) == len(rows)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (row(truth=None), r"row 2 .* \('What is 3 \+ 3\?'\) has no reward_model\.ground_truth"),
        (row(truth=" "), r"row 2 .* has no reward_model\.ground_truth"),
        (row(content=""), r"row 2 .* has an empty prompt"),
        (row(content=None), r"row 2 .* has an empty prompt"),
        (row(content=LONG_QUESTION), r"row 2 .* is \d+ tokens, above data\.max_prompt_length=64; .*"),
    ],
    ids=["null-truth", "blank-truth", "empty-question", "empty-conversation", "overlong"],
)
def test_xrpo_refuses_the_row_by_number_with_the_fix(tmp_path, toy_tokenizer, bad, message):
    dataset, config = dataset_of([row(), bad], tmp_path, toy_tokenizer, filter_overlong_prompts=False)
    with pytest.raises(XRPODataError, match=message) as raised:
        check_training_rows(dataset, config, toy_tokenizer, rollout_prompt_length=192, rule_based_reward=True)
    assert "train.parquet" in str(raised.value) and "\n" not in str(raised.value)


def test_what_verl_handles_as_for_grpo_is_left_to_verl(tmp_path, toy_tokenizer):
    long_row = row(content=LONG_QUESTION)
    dataset, config = dataset_of([row(), long_row], tmp_path, toy_tokenizer, filter_overlong_prompts=False)
    # no room raised above max_prompt_length: verl cuts the long prompt exactly as for GRPO
    assert check_training_rows(dataset, config, toy_tokenizer, 64, rule_based_reward=True) == 2
    filtered, config = dataset_of([row(), long_row], tmp_path, toy_tokenizer, filter_overlong_prompts=True)
    assert check_training_rows(filtered, config, toy_tokenizer, 192, rule_based_reward=True) == 1
    # a reward model scores without a ground truth
    no_truth, config = dataset_of([row(), row(truth=None)], tmp_path, toy_tokenizer)
    assert check_training_rows(no_truth, config, toy_tokenizer, 192, rule_based_reward=False) == 2
