"""Every check of a run's config that XRPO needs, in one place.

``check_run`` runs twice on the same composed config: in the Hydra driver before Ray starts
(``verl_xrpo.preflight``), so that a mistake stops ``main_ppo`` within seconds with one line, and
in XRPO's trainer, which is what any other way of starting XRPO goes through. Each failure is an
``XRPOConfigError`` whose message names the key, the value and the fix.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from verl_xrpo.config import XRPOConfig, XRPOConfigError, default_of
from verl_xrpo.core.bank import BankFileError, read_curated_pairs
from verl_xrpo.core.planner import RolloutPlanner
from verl_xrpo.integration.estimator import ESTIMATOR_NAME, xrpo_settings
from verl_xrpo.integration.hydra_config import TRAINER_MODE
from verl_xrpo.integration.request_keys import MANAGER_PATH

# verl's asynchronous trainers, which XRPO runs in by their own names (integration/async_trainer.py)
ASYNC_TRAINER_MODES = ("colocate_async", "separate_async")


@dataclass(frozen=True)
class CheckedRun:
    """What the checks built on the way, so the trainer does not build it twice."""

    settings: XRPOConfig
    planner: RolloutPlanner


def is_xrpo_run(config: Any) -> bool:
    """True when the config asks for XRPO, through the estimator or the trainer."""
    trainer_mode = config.trainer.get("v1", {}).get("trainer_mode")
    return config.algorithm.adv_estimator == ESTIMATOR_NAME or trainer_mode == TRAINER_MODE


def check_run(config: Any) -> CheckedRun:
    """Check an XRPO run's config (verl's DictConfig); raises ``XRPOConfigError`` on the first problem."""
    check_trainer_choice(config)
    settings = xrpo_settings(config.algorithm)
    if config.trainer.v1.trainer_mode in ASYNC_TRAINER_MODES:
        check_async_planning(settings, config.trainer.v1.trainer_mode)
    rollout = config.actor_rollout_ref.rollout
    rollout_n = verl_int(rollout.n, "actor_rollout_ref.rollout.n", minimum=1)
    # The planner's own checks: n_base and n_max against rollout.n, one phase with room left over.
    planner = RolloutPlanner(settings.planning, rollout_n)
    verl_int(rollout.prompt_length, "actor_rollout_ref.rollout.prompt_length", minimum=1)
    check_verl_settings(config)
    check_seeding_inputs(settings)
    return CheckedRun(settings, planner)


def check_trainer_choice(config: Any) -> None:
    """XRPO runs in its own synchronous trainer (``xrpo``, chosen by the estimator) or in verl's
    asynchronous ones by their names; any other trainer would train plain GRPO."""
    estimator = config.algorithm.adv_estimator
    trainer_mode = config.trainer.v1.trainer_mode
    if trainer_mode == TRAINER_MODE and estimator != ESTIMATOR_NAME:
        raise XRPOConfigError(
            f"trainer.v1.trainer_mode={TRAINER_MODE} needs algorithm.adv_estimator={ESTIMATOR_NAME}, "
            f"got {estimator!r}. Drop the trainer_mode override to run {estimator} with verl's trainer."
        )
    if not config.trainer.use_v1:
        raise XRPOConfigError(
            f"trainer.use_v1={config.trainer.use_v1} runs verl's legacy trainer, which has none of XRPO's "
            f"rollout phases: set trainer.use_v1=true (verl's default) to train with "
            f"algorithm.adv_estimator={ESTIMATOR_NAME}."
        )
    if trainer_mode == "separate_async" and is_cpu_mode():
        raise XRPOConfigError(
            "trainer.v1.trainer_mode=separate_async syncs weights to dedicated rollout GPUs over an "
            "NCCL-class backend, which CPU mode does not have: use trainer.v1.trainer_mode=colocate_async "
            "on the CPU."
        )
    if trainer_mode == "separate_async":
        check_separate_async(config)
    if trainer_mode != TRAINER_MODE and trainer_mode not in ASYNC_TRAINER_MODES:
        raise XRPOConfigError(
            f"trainer.v1.trainer_mode={trainer_mode!r} runs verl's own trainer, which has none of XRPO's "
            f"rollout planning: drop the override (with algorithm.adv_estimator={ESTIMATOR_NAME} it selects "
            f"XRPO's trainer, {TRAINER_MODE!r}) or use one of {', '.join(ASYNC_TRAINER_MODES)}."
        )


def check_separate_async(config: Any) -> None:
    """What verl's separate_async trainer asserts in its constructor, after Ray and TransferQueue
    have started, checked first so that a mistake costs one line instead of a traceback."""
    rollout = config.actor_rollout_ref.rollout
    for key in ("nnodes", "n_gpus_per_node"):
        if verl_int(rollout[key], f"actor_rollout_ref.rollout.{key}", minimum=0) == 0:
            raise XRPOConfigError(
                f"actor_rollout_ref.rollout.{key}=0: trainer.v1.trainer_mode=separate_async generates on "
                f"rollout GPUs of its own; set actor_rollout_ref.rollout.nnodes and n_gpus_per_node to them."
            )
    backend = rollout.checkpoint_engine.backend
    if backend == "naive":
        raise XRPOConfigError(
            f"actor_rollout_ref.rollout.checkpoint_engine.backend={backend} copies weights within one "
            f"process; trainer.v1.trainer_mode=separate_async sends them to other GPUs: set it to nccl "
            f"(or nixl, mooncake)."
        )
    sync_step = config.trainer.v1.separate_async.parameter_sync_step
    mini_batch = config.actor_rollout_ref.actor.ppo_mini_batch_size
    if config.data.train_batch_size != sync_step * mini_batch:
        raise XRPOConfigError(
            f"data.train_batch_size={config.data.train_batch_size}: trainer.v1.trainer_mode=separate_async "
            f"trains a step in trainer.v1.separate_async.parameter_sync_step={sync_step} updates of "
            f"actor_rollout_ref.actor.ppo_mini_batch_size={mini_batch} prompts; set data.train_batch_size="
            f"{sync_step * mini_batch}, or change one of those two."
        )


def check_async_planning(settings: XRPOConfig, trainer_mode: str) -> None:
    """verl's asynchronous trainers train a group as soon as its rollouts are done: a prompt's count
    is decided once, at submission, and the in-step phases' settings would do nothing."""
    planning = settings.planning
    if planning.enable and planning.mode == "phases":
        raise XRPOConfigError(
            f"algorithm.xrpo.planning.mode=phases needs XRPO's synchronous trainer: "
            f"trainer.v1.trainer_mode={trainer_mode} trains each group once its one submission is done. "
            f"Use planning.mode=submission (or auto, the default), or drop the trainer_mode override."
        )
    changed = planning.changed_in_step_settings()
    if changed:
        name = changed[0]
        raise XRPOConfigError(
            f"algorithm.xrpo.planning.{name}={getattr(planning, name)} sets the in-step phases, which "
            f"trainer.v1.trainer_mode={trainer_mode} does not have: drop it (default "
            f"{default_of(f'planning.{name}')})."
        )


def is_cpu_mode() -> bool:
    from verl_xrpo.cpu.mode import is_active

    return is_active()


def check_verl_settings(config: Any) -> None:
    """verl settings XRPO cannot run with."""
    reward_model = config.reward.reward_model
    if reward_model.enable and not reward_model.enable_resource_pool:
        raise XRPOConfigError(
            "reward.reward_model.enable_resource_pool=false: XRPO plans rollouts from rewards computed while "
            "generating, which verl does only for rule-based rewards or a reward model in its own pool. "
            "Set reward.reward_model.enable_resource_pool=true."
        )
    filter_groups = config.algorithm.get("filter_groups") or {}
    if filter_groups.get("enable", False):
        raise XRPOConfigError(
            "algorithm.filter_groups.enable=true (DAPO dynamic sampling) and XRPO both decide which rollouts "
            "are drawn; set it to false, or use another algorithm.adv_estimator."
        )
    if config.trainer.v1.sampler.get("sync_refill_failed_groups", False):
        raise XRPOConfigError(
            "trainer.v1.sampler.sync_refill_failed_groups=true would refill failed prompts outside XRPO's "
            "budget; set it to false (XRPO reports failed prompts in xrpo/faults/*)."
        )
    manager = config.actor_rollout_ref.rollout.get("agent", {}).get("agent_loop_manager_class")
    if manager not in (None, MANAGER_PATH):
        raise XRPOConfigError(
            f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager!r}: XRPO needs its own "
            f"manager ({MANAGER_PATH}), which gives later phases their own session ids. Remove the override."
        )


def check_seeding_inputs(settings: XRPOConfig) -> None:
    """Files and optional packages seeding will read, checked before any worker starts."""
    seeding = settings.seeding
    if not seeding.enable:
        return
    if seeding.preload_path:
        if not os.path.isfile(seeding.preload_path):
            raise XRPOConfigError(
                f"algorithm.xrpo.seeding.preload_path={seeding.preload_path!r} is not a file: name a curated "
                f".parquet, .jsonl or .json file, or set it to null."
            )
        try:
            read_curated_pairs(seeding.preload_path)
        except (OSError, BankFileError) as error:
            raise XRPOConfigError(f"algorithm.xrpo.seeding.preload_path: {error}") from error
    if seeding.retriever == "dense":
        if importlib.util.find_spec("sentence_transformers") is None:
            raise XRPOConfigError(
                "algorithm.xrpo.seeding.retriever='dense' needs sentence-transformers, which is not "
                "installed: pip install 'verl-xrpo[dense]', or use retriever=bm25."
            )
        if not os.path.isdir(str(seeding.embedding_model)):
            raise XRPOConfigError(
                f"algorithm.xrpo.seeding.embedding_model={seeding.embedding_model!r} is not a folder: name "
                f"a local sentence-transformers model folder, or use retriever=bm25."
            )


def verl_int(value: Any, key: str, minimum: int) -> int:
    """A verl setting XRPO computes with, as an int (a mistyped value would fail much later)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise XRPOConfigError(f"{key}={value!r} must be a whole number of at least {minimum}.")
    return value
