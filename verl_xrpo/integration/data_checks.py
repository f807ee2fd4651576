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

Rows are numbered from 1 in the training data as verl loaded it (after its own filters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from verl_xrpo.integration.phases import question_text


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
    max_length = int(data_config.max_prompt_length)
    measure = (
        tokenizer is not None
        and not data_config.get("filter_overlong_prompts", False)
        and rollout_prompt_length > max_length
    )
    template_kwargs = dict(data_config.get("apply_chat_template_kwargs") or {})
    where = f"of the training data (data.train_files={list(data_config.train_files)}, counted from 1)"
    for number, (messages, reward) in enumerate(zip(prompts, rewards, strict=True), start=1):
        question = question_text(messages) if messages is not None else ""
        if not question.strip():
            raise XRPODataError(
                f"XRPO: row {number} {where} has an empty prompt, so there is no question to plan rollouts "
                f"for; remove the row."
            )
        shown = repr(" ".join(question.split())[:60])
        if rule_based_reward and not _has_ground_truth(reward):
            raise XRPODataError(
                f"XRPO: row {number} {where} ({shown}) has no reward_model.ground_truth, so its rollouts "
                f"cannot be scored and XRPO would plan for it as an unsolved prompt; add the answer, or "
                f"remove the row."
            )
        if measure:
            length = _prompt_tokens(tokenizer, messages, template_kwargs)
            if length > max_length:
                raise XRPODataError(
                    f"XRPO: row {number} {where} ({shown}) is {length} tokens, above "
                    f"data.max_prompt_length={max_length}; with actor_rollout_ref.rollout.prompt_length="
                    f"{rollout_prompt_length} it would reach the rollout whole, where verl cuts it for GRPO. "
                    f"Set data.filter_overlong_prompts=true (verl drops such rows) or raise "
                    f"data.max_prompt_length."
                )
    return len(prompts)


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
