"""Training rows XRPO refuses at start-up, because its planner would read them as hard prompts.

What verl does with each on its own, and why XRPO stops instead (checked in verl 0.9.1):

- No ground truth (``reward_model`` or its ``ground_truth`` missing or null): verl's rule-based
  reward managers read ``reward_model["ground_truth"]`` for every rollout; a missing key makes each
  rollout fail, a null one is handed to the reward function, which often scores it wrong. GRPO then
  gets a zero advantage, but XRPO's planner sees an all-fail group and spends exploration and
  seeding on it, every time the row is drawn. Checked only with rule-based rewards (a reward model scores
  without one).
- An empty prompt: verl's chat template refuses an empty conversation (every rollout fails; with
  ``data.filter_overlong_prompts=true`` verl drops the row) and an empty question is generated as
  is. Either way there is no question to plan for, retrieve with or seed.
- Longer than ``data.max_prompt_length``: verl drops it when ``data.filter_overlong_prompts=true``,
  else its agent loop cuts prompts to ``rollout.prompt_length`` from the left, which for GRPO is
  ``data.max_prompt_length``. XRPO raises ``rollout.prompt_length`` to make room for exemplars, so
  such a row would reach the rollout whole where GRPO's is cut: only then is it refused here.

The driver's preflight checks the training files as they are on disk, before Ray starts, naming
each bad row by file and by its row in that file (``check_training_files``); XRPO's trainer checks
the dataset as verl loaded it, for runs started any other way (``check_training_rows``: rows
counted after verl's own filters). A file that is not local (e.g. on HDFS), or a custom dataset
class, is left to the trainer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from verl_xrpo.integration.prompts import question_text


class XRPODataError(ValueError):
    """A training row XRPO cannot plan for; the message names the row and the fix."""


def check_training_rows(
    dataset: Any, data_config: Any, tokenizer: Any, rollout_prompt_length: int, rule_based_reward: bool
) -> int:
    """Refuse the first bad row of verl's training dataset; returns how many rows were checked.

    ``tokenizer`` None skips the length check (a multimodal processor measures prompts otherwise).
    """
    frame = getattr(dataset, "dataframe", None)
    if frame is None:  # a custom dataset class keeps its rows its own way
        return 0
    columns = list(getattr(frame, "column_names", None) or frame.columns)
    prompt_key = data_config.get("prompt_key", "prompt")
    prompts = list(frame[prompt_key])
    rewards = list(frame["reward_model"]) if "reward_model" in columns else [None] * len(prompts)
    where = f"of the training data as verl loaded it ({', '.join(training_files(data_config))})"
    rows = ((f"row {n} {where}", m, r) for n, (m, r) in enumerate(zip(prompts, rewards, strict=True), 1))
    _check_rows(rows, data_config, tokenizer, rollout_prompt_length, rule_based_reward)
    return len(prompts)


def check_training_files(
    data_config: Any, tokenizer: Any, rollout_prompt_length: int, rule_based_reward: bool
) -> int:
    """Refuse the first bad row of the local training files, by file and row; returns rows checked.

    ``tokenizer`` None skips the length check. A custom dataset class reads the files its own way,
    so nothing is checked here for it.
    """
    if (data_config.get("custom_cls") or {}).get("path"):
        return 0
    checked = 0
    prompt_key = data_config.get("prompt_key", "prompt")
    for path in training_files(data_config):
        local = os.path.expanduser(path)
        if not os.path.isfile(local):
            if "://" in path:  # verl copies remote files to local storage itself
                continue
            raise XRPODataError(
                f"data.train_files: {path} is not a file; name a .parquet, .json or .jsonl file."
            )
        columns = _read_columns(local, [prompt_key, "reward_model"])
        if prompt_key not in columns:
            raise XRPODataError(
                f"{path} has no column {prompt_key!r} (data.prompt_key); name the column that holds the "
                f"prompts with data.prompt_key=..."
            )
        prompts = columns[prompt_key]
        rewards = columns.get("reward_model") or [None] * len(prompts)
        rows = (
            (f"row {n} of {path}", m, r) for n, (m, r) in enumerate(zip(prompts, rewards, strict=True), 1)
        )
        _check_rows(rows, data_config, tokenizer, rollout_prompt_length, rule_based_reward)
        checked += len(prompts)
    return checked


def training_files(data_config: Any) -> list[str]:
    """``data.train_files`` as a list of paths: verl takes one path or a list of them."""
    files = data_config.train_files
    return [str(files)] if isinstance(files, str) else [str(f) for f in files]


def _read_columns(path: str, names: list[str]) -> dict[str, list]:
    """The named columns of a training file that it has, read as verl reads the file's format."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        present = [n for n in names if n in pq.read_schema(path).names]
        return pq.read_table(path, columns=present).to_pydict()
    if path.endswith((".json", ".jsonl")):
        import datasets

        frame = datasets.load_dataset("json", data_files=path)["train"]
        return {n: list(frame[n]) for n in names if n in frame.column_names}
    raise XRPODataError(f"data.train_files: {path} is not .parquet, .json or .jsonl, which verl reads.")


def _check_rows(
    rows: Iterable[tuple[str, Any, Any]],
    data_config: Any,
    tokenizer: Any,
    rollout_prompt_length: int,
    rule_based_reward: bool,
) -> None:
    """Raise ``XRPODataError`` for the first bad row of ``(label, messages, reward_model)``."""
    max_length = int(data_config.max_prompt_length)
    measure = tokenizer is not None and length_check_applies(data_config, rollout_prompt_length)
    verl_filters = data_config.get("filter_overlong_prompts", False)
    template_kwargs = dict(data_config.get("apply_chat_template_kwargs") or {})
    for label, messages, reward in rows:
        if verl_filters and not messages:  # verl's filter drops an empty conversation itself
            continue
        question = question_text(messages) if messages is not None else ""
        if not question.strip():
            raise XRPODataError(
                f"{label} has an empty prompt, so there is no question to plan rollouts for; remove the row."
            )
        shown = repr(" ".join(question.split())[:60])
        if rule_based_reward and not _has_ground_truth(reward):
            raise XRPODataError(
                f"{label} ({shown}) has no reward_model.ground_truth, so its rollouts cannot be scored and "
                f"XRPO would plan for it as an unsolved prompt; add the answer, or remove the row."
            )
        if measure:
            length = _prompt_tokens(tokenizer, messages, template_kwargs)
            if length > max_length:
                raise XRPODataError(
                    f"{label} ({shown}) is {length} tokens, above data.max_prompt_length={max_length}; "
                    f"with actor_rollout_ref.rollout.prompt_length={rollout_prompt_length} it would reach "
                    f"the rollout whole, where verl cuts it for GRPO. Set data.filter_overlong_prompts=true "
                    f"(verl drops such rows) or raise data.max_prompt_length."
                )


def length_check_applies(data_config: Any, rollout_prompt_length: int) -> bool:
    """Whether a prompt's length is XRPO's to check: only where verl neither drops nor cuts it as for GRPO."""
    filtered = data_config.get("filter_overlong_prompts", False)
    return not filtered and rollout_prompt_length > int(data_config.max_prompt_length)


def _has_ground_truth(reward: Any) -> bool:
    if not isinstance(reward, Mapping):
        return False
    truth = reward.get("ground_truth")
    return truth is not None and not (isinstance(truth, str) and not truth.strip())


def _prompt_tokens(tokenizer: Any, messages: Any, template_kwargs: dict) -> int:
    """The prompt's length as verl's overlong filter measures it: chat template, generation prompt."""
    ids = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, tokenize=True, **template_kwargs
    )
    if isinstance(ids, Mapping) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)
