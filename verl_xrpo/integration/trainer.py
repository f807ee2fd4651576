"""XRPO's trainers: what every one adds to verl's (``XRPOTrainerBase``), and XRPO in verl's
synchronous V1 trainer with phased rollouts, seeding and sharpening (``XRPOTrainer``; the
asynchronous trainers are in ``async_trainer.py``).

``XRPOTrainer`` is registered as ``trainer.v1.trainer_mode=xrpo``, which XRPO's Hydra config
selects by itself when ``algorithm.adv_estimator=xrpo``. What the trainers change in verl's, and
what they rely on:

- ``prepare_step`` (synchronous) runs every generation phase of the step (verl calls it before the
  replay buffer samples, while the rollout replicas are awake; ``on_sample_end`` sleeps them).
- ``_compute_advantage`` wraps verl's own advantage step, handing the estimator the step's
  ``old_log_probs`` read from TransferQueue for the same keys, in the same order.
- ``_save_checkpoint`` / ``_load_checkpoint`` also save and restore the exemplar bank and the
  rollout count, inside verl's ``global_step_N`` folder, written before verl marks the checkpoint
  as the latest (``integration/checkpoint.py``).
- ``__init__`` runs the same config checks as the driver's preflight (``integration/checks.py``);
  ``_init_dataloader`` refuses training rows the planner would misread (``data_checks.py``) and
  bars validation questions from the bank.
- ``trainer_mode`` is reported to verl as the mode it runs ("sync", "colocate_async"): verl
  branches on that literal name.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import pandas as pd
import torch
import transfer_queue as tq
from omegaconf import DictConfig, open_dict
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.debug import marked_timer

from verl_xrpo.config import XRPOConfig
from verl_xrpo.core.advantage import AdvantageResult
from verl_xrpo.core.bank import BankFileError, ExemplarBank
from verl_xrpo.core.history import PromptHistory
from verl_xrpo.core.planner import RolloutPlanner
from verl_xrpo.core.retrieval import make_retriever
from verl_xrpo.eval.rollout_dump import is_padding, rollout_fields
from verl_xrpo.integration.checkpoint import (
    BANK_FILE,
    HISTORY_FILE,
    RESUME_FIX,
    STATE_FOLDER,
    SavedState,
    XRPOCheckpointError,
    read_state,
    resumed_step_folder,
    save_state,
    step_of,
)
from verl_xrpo.integration.checks import check_run
from verl_xrpo.integration.data_checks import check_training_rows
from verl_xrpo.integration.estimator import sampling_log_probs
from verl_xrpo.integration.hydra_config import TRAINER_MODE
from verl_xrpo.integration.phases import PhasedRollout, WorkerNews
from verl_xrpo.integration.prompts import question_text
from verl_xrpo.integration.request_keys import MANAGER_PATH

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

# the name _padded_fields gives the log-likelihood the rollouts were sampled with
SAMPLING_LOG_PROBS = "sampling_log_probs"
# where it comes from, first present wins: verl's recomputed log-probs, else the rollout engine's
_SAMPLING_SOURCES = ("old_log_probs", "rollout_log_probs")


def _settings_line(section: Any, **resolved: Any) -> str:
    """A section's settings but ``enable`` as key=value, read from its dataclass fields so that a new
    setting is printed without touching this; ``resolved`` shows what a value came to (n_max=null)."""
    return " ".join(
        f"{f.name}={resolved.get(f.name, getattr(section, f.name))}"
        for f in dataclasses.fields(section)
        if f.name != "enable"
    )


def describe(
    settings: XRPOConfig, planner: RolloutPlanner, config: DictConfig, auto_mode: str = "phases"
) -> str:
    """XRPO's start-up notice: which mechanisms are on, with every setting of verl_xrpo/config.py
    (``planning.mode=auto`` with what it means in this trainer, ``auto_mode``)."""
    p, s, a = settings.planning, settings.seeding, settings.sharpening
    n = config.actor_rollout_ref.rollout.n
    lines = [
        f"XRPO is on (algorithm.adv_estimator=xrpo, budget {n} rollouts per prompt, as GRPO's rollout.n):"
    ]
    if p.enable:
        mode = f"auto({auto_mode})" if p.mode == "auto" else p.mode
        lines.append(f"  planning:   on  {_settings_line(p, n_max=planner.n_max, mode=mode)}")
    else:
        lines.append(f"  planning:   off (every prompt gets rollout.n={n})")
    if s.enable and p.enable:
        lines.append(
            f"  seeding:    on  {_settings_line(s)} "
            f"(prompt budget {config.actor_rollout_ref.rollout.prompt_length} tokens)"
        )
    else:
        lines.append("  seeding:    off" + ("" if s.enable is False else " (needs planning: no later phase)"))
    lines.append(f"  sharpening: on  {_settings_line(a)}" if a.enable else "  sharpening: off")
    # the top-level settings (what counts as a correct rollout), whatever is not a section
    rest = [
        f.name
        for f in dataclasses.fields(settings)
        if not dataclasses.is_dataclass(getattr(settings, f.name))
    ]
    lines.append("  success:    " + " ".join(f"{name}={getattr(settings, name)}" for name in rest))
    return "\n".join(lines)


class XRPOTrainerBase:
    """What every XRPO trainer adds to the verl trainer it is mixed into (listed before it): the
    config checks, the exemplar bank and prompt history, sharpened advantages, the rollout dump's
    fields, and XRPO's state in verl's checkpoints. ``VERL_MODE`` is the trainer mode verl is told
    it runs: verl branches on that literal name (replay buffer, data loader, checkpoints)."""

    VERL_MODE = "sync"
    AUTO_PLANNING_MODE = "phases"  # what planning.mode=auto means in this trainer

    def __init__(self, config: DictConfig):
        # The driver's preflight ran the same checks before Ray started; a trainer built any other
        # way (or a config changed since) is checked here, before any worker starts.
        checked = check_run(config)
        self.xrpo, self.planner = checked.settings, checked.planner
        self.bank = self._new_bank() if self.xrpo.seeding.enable else None
        self.history = self._new_history() if self.xrpo.planning.enable else None
        self.rollouts_drawn = 0
        self.validation_questions: list[str] = []
        self._adapt_config(config)
        super().__init__(config)
        print(describe(self.xrpo, self.planner, config, self.AUTO_PLANNING_MODE), flush=True)

    def _adapt_config(self, config: DictConfig) -> None:
        """What this trainer changes in verl's config once it is checked, before verl reads it."""

    def _new_history(self, path: str | None = None) -> PromptHistory:
        """Each prompt's earlier visits, for planning.mode 'submission' and skip_agreed; read from
        ``path`` when given (ValueError naming it if it is not a history)."""
        decay = self.xrpo.planning.history_decay
        return PromptHistory.load(path, decay=decay) if path else PromptHistory(decay=decay)

    def _new_bank(self) -> ExemplarBank:
        seeding = self.xrpo.seeding
        bank = ExemplarBank(
            max_size=seeding.bank_size, retriever=make_retriever(seeding), min_score=seeding.min_score
        )
        if seeding.preload_path:
            added = bank.preload(seeding.preload_path)
            logger.info("XRPO: preloaded %d curated exemplars from %s", added, seeding.preload_path)
        return bank

    def _build_replay_buffer(self):
        # verl read trainer_mode (XRPO's name for it) just before this; it compares it with literal
        # names, and reads the mode's own settings under that name
        self.trainer_mode = self.VERL_MODE
        mode_settings = self.config.trainer.v1.get(self.VERL_MODE, {})
        self.parameter_sync_step = mode_settings.get("parameter_sync_step", 1)
        return super()._build_replay_buffer()

    def _init_dataloader(self):
        super()._init_dataloader()
        checked = check_training_rows(
            self.train_dataset,
            self.config.data,
            self.tokenizer if self.processor is None else None,
            rollout_prompt_length=int(self.config.actor_rollout_ref.rollout.prompt_length),
            rule_based_reward=not self.config.reward.reward_model.enable,
        )
        logger.info(
            "XRPO: %d training rows have a question, a ground truth and a length it can plan", checked
        )
        if self.bank is not None:
            prompt_key = self.config.data.get("prompt_key", "prompt")
            self.validation_questions = dataset_questions(self.val_dataset, prompt_key)
            self.bank.block_questions(self.validation_questions)
            logger.info(
                "XRPO: %d validation questions barred from the exemplar bank", len(self.validation_questions)
            )

    # ---- advantage ----------------------------------------------------------------------------

    def _compute_advantage(self, batch, metrics: dict):
        start = time.perf_counter()
        log_probs = self._sampling_log_probs(batch) if self.xrpo.sharpening.enable else None
        with sampling_log_probs(log_probs) as call:
            batch = super()._compute_advantage(batch, metrics)
        if call.result is not None:
            # verl pads the batch to its ranks' divisibility with rows of reward 0: not rollouts
            real = torch.tensor([not is_padding(tag) for tag in batch.tags])
            metrics.update(advantage_metrics(call.result, real))
        metrics["timing_s/xrpo_advantage"] = time.perf_counter() - start
        return batch

    def _sampling_log_probs(self, batch) -> torch.Tensor | None:
        """The step's old_log_probs (else the rollout engine's), padded as verl's advantage step pads."""
        padded = self._padded_fields(batch)
        return padded.get(SAMPLING_LOG_PROBS, None)

    def _padded_fields(self, batch, *fields: str) -> dict:
        """``fields`` of the step's rows, padded as verl's advantage step pads them, and the
        log-likelihood sampling used under the name ``SAMPLING_LOG_PROBS``: old_log_probs when
        verl recomputed them, else the rollout engine's."""
        wanted = [*fields, *_SAMPLING_SOURCES]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=wanted)
        source = next((name for name in _SAMPLING_SOURCES if name in data), None)
        padded = data.select(*fields, *([source] if source else [])).to_padded_tensor()
        if source is not None:
            padded[SAMPLING_LOG_PROBS] = padded.pop(source)
        return padded

    # ---- rollout dumps (trainer.rollout_data_dir) -------------------------------------------

    def _log_rollout_data(self, batch, timing_raw: dict, rollout_data_dir: str):
        # verl's dump has each rollout's prompt, response, score and key; XRPO adds, through the
        # one call verl makes to write it, what the actor trained on (see rollout_fields).
        self._dumping_batch = batch
        try:
            super()._log_rollout_data(batch, timing_raw, rollout_data_dir)
        finally:
            self._dumping_batch = None

    def _dump_generations(self, inputs, outputs, gts, scores, reward_extra_infos_dict, dump_path):
        batch = getattr(self, "_dumping_batch", None)
        if batch is not None:  # a training step's dump; validation dumps stay verl's
            keys = reward_extra_infos_dict["uid"]  # verl's name for the rows' keys, in dump order
            reward_extra_infos_dict = {**reward_extra_infos_dict, **self._rollout_fields(batch, keys)}
        super()._dump_generations(inputs, outputs, gts, scores, reward_extra_infos_dict, dump_path)

    def _rollout_fields(self, batch, keys: list[str]) -> dict[str, list]:
        padded = self._padded_fields(batch, "uid", "advantages", "response_mask")
        uids = padded.pop("uid").tolist()  # as verl's _compute_advantage reads it
        fields = rollout_fields(
            padded["advantages"], padded["response_mask"], padded[SAMPLING_LOG_PROBS], uids, batch.tags
        )
        row_of = {key: row for row, key in enumerate(batch.keys)}
        order = [row_of[key] for key in keys]
        return {field: [values[row] for row in order] for field, values in fields.items()}

    # ---- checkpoints --------------------------------------------------------------------------

    def _save_checkpoint(self):
        # Written before verl records this step as the latest checkpoint, so the tracker never
        # points at a checkpoint without XRPO's state (see integration/checkpoint.py).
        step_folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        self.save_xrpo_state(os.path.join(step_folder, STATE_FOLDER))
        super()._save_checkpoint()

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if self.global_steps > 0:
            step_folder = resumed_step_folder(self.config)
            if step_folder is None or step_of(step_folder) != self.global_steps:
                raise RuntimeError(
                    f"XRPO: verl resumed step {self.global_steps} but XRPO finds checkpoint {step_folder}; "
                    f"verl's way of finding the latest checkpoint has changed."
                )
            self.load_xrpo_state(os.path.join(step_folder, STATE_FOLDER))

    def save_xrpo_state(self, folder: str) -> None:
        save_state(folder, self.global_steps, self.rollouts_drawn, self.bank, self.history)

    def load_xrpo_state(self, folder: str) -> None:
        saved = read_state(folder, self.global_steps)
        self.rollouts_drawn = saved.rollouts_drawn
        self._load_history(folder, saved)
        if self.bank is None:
            return
        if saved.bank_sha256 is None:
            logger.info("XRPO: the checkpoint in %s was saved with seeding off; the bank starts anew", folder)
            return
        seeding = self.xrpo.seeding
        bank_path = os.path.join(folder, BANK_FILE)
        try:
            self.bank = ExemplarBank.load(
                bank_path,
                retriever=make_retriever(seeding),
                min_score=seeding.min_score,
                blocked_questions=self.validation_questions,
                max_size=seeding.bank_size,
            )
        except (OSError, BankFileError) as error:
            raise XRPOCheckpointError(f"XRPO cannot resume: {error}; {RESUME_FIX}.") from error
        logger.info(
            "XRPO: restored an exemplar bank of %d from %s (step %d, %d rollouts drawn)",
            len(self.bank),
            folder,
            saved.global_steps,
            saved.rollouts_drawn,
        )

    def _load_history(self, folder: str, saved: SavedState) -> None:
        if self.history is None:
            return
        if saved.history_sha256 is None:
            logger.info("XRPO: the checkpoint in %s has no prompt history; it starts anew", folder)
            return
        try:
            self.history = self._new_history(os.path.join(folder, HISTORY_FILE))
        except ValueError as error:
            raise XRPOCheckpointError(f"XRPO cannot resume: {error}; {RESUME_FIX}.") from error
        logger.info("XRPO: restored the prompt history of %d prompts from %s", len(self.history), folder)


@register_trainer(TRAINER_MODE)
class XRPOTrainer(XRPOTrainerBase, PPOTrainerSync):
    """XRPO in verl's synchronous trainer: every generation phase of a step runs in ``prepare_step``
    (verl calls it before the replay buffer samples, while the rollout replicas are awake)."""

    def __init__(self, config: DictConfig):
        self._news: WorkerNews | None = None  # built with the first step: the workers exist by then
        super().__init__(config)

    def _adapt_config(self, config: DictConfig) -> None:
        # TaskRunnerV1 reads the manager class from this same config object after the trainer is built.
        with open_dict(config):
            config.actor_rollout_ref.rollout.agent.agent_loop_manager_class = MANAGER_PATH

    # ---- generation -------------------------------------------------------------------------

    def _worker_news(self) -> WorkerNews:
        # One for the run: a wait still out at a step's end must hand its news to the next wait.
        if self._news is None:
            self._news = WorkerNews(self.agent_loop_manager)
        return self._news

    def prepare_step(self) -> dict:
        phases = PhasedRollout(
            self.xrpo,
            self.planner,
            self.bank,
            self.tokenizer,
            max_prompt_tokens=int(self.config.actor_rollout_ref.rollout.prompt_length),
            submit=self._submit_batch_to_rollout,
            news=self._worker_news(),
            history=self.history,
        )
        batch = self._next_train_batch()
        with marked_timer("gen", self.timing_raw):
            report = phases.run(batch, step=self.global_steps, rollouts_drawn=self.rollouts_drawn)
        self.rollouts_drawn += report.rollouts
        return report.metrics


def dataset_questions(dataset: Any, prompt_key: str) -> list[str]:
    """The question text of every prompt of a dataset (verl's RLHFDataset keeps its rows in .dataframe)."""
    frame = getattr(dataset, "dataframe", None)
    if frame is None:
        return []
    column = frame[prompt_key] if not isinstance(frame, pd.DataFrame) else frame[prompt_key].tolist()
    return [question_text(messages) for messages in column]


def advantage_metrics(result: AdvantageResult, real: torch.Tensor | None = None) -> dict[str, float]:
    """Shares over the step's rollouts; ``real`` (a row mask) leaves out verl's padding rows."""
    keep = slice(None) if real is None else real.to(torch.bool)
    final = (result.base + result.bonus)[keep]
    sharpened = result.sharpened[keep]
    bonus = result.bonus[keep]
    return {
        "xrpo/nonzero_advantage_share": float((final != 0).float().mean()),
        "xrpo/sharpening/share_sharpened": float(sharpened.float().mean()),
        "xrpo/sharpening/mean_bonus": float(bonus[sharpened].mean()) if bool(sharpened.any()) else 0.0,
    }
