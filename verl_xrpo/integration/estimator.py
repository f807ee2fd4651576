"""``algorithm.adv_estimator=xrpo``: XRPO's advantage in verl's estimator registry.

verl calls a registered estimator with ``token_level_rewards``, ``response_mask``, ``index`` (the
prompt uid) and ``config`` (= ``config.algorithm``) only. XRPO's trainer adapter passes the step's
``old_log_probs`` as well; called without them (verl's generic path), the estimator returns the
unsharpened advantage and says so once in the log.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from verl_xrpo.config import XRPOConfig
from verl_xrpo.core.advantage import AdvantageResult, compute_advantage

ESTIMATOR_NAME = "xrpo"
logger = logging.getLogger(__name__)
_warned_no_log_probs = False
_warned_outside_trainer = False


@dataclass
class AdvantageCall:
    """What XRPO's trainer hands the estimator around verl's advantage step, and gets back."""

    log_probs: torch.Tensor | None
    result: AdvantageResult | None = None


_current_call: ContextVar[AdvantageCall | None] = ContextVar("xrpo_advantage_call", default=None)


@contextlib.contextmanager
def sampling_log_probs(log_probs: torch.Tensor | None) -> Iterator[AdvantageCall]:
    """Make the step's log-probs (rows in the order verl passes to the estimator) visible to it.

    verl calls estimators with rewards, mask and uid only; XRPO's trainer wraps verl's own
    advantage step in this context instead of re-implementing that step.
    """
    call = AdvantageCall(log_probs)
    token = _current_call.set(call)
    try:
        yield call
    finally:
        _current_call.reset(token)


def xrpo_settings(algorithm_config: Any) -> XRPOConfig:
    """The ``algorithm.xrpo`` group of verl's algorithm config (a DictConfig, a dict or None)."""
    node = None if algorithm_config is None else _get(algorithm_config, "xrpo")
    if node is not None and not isinstance(node, Mapping):
        from omegaconf import OmegaConf  # a DictConfig node

        node = OmegaConf.to_container(node, resolve=True)
    return XRPOConfig.from_mapping(node)


def compute_xrpo_result(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config: Any = None,
    old_log_probs: torch.Tensor | None = None,
    rollout_log_probs: torch.Tensor | None = None,
    epsilon: float = 1e-6,
) -> AdvantageResult:
    """The advantage with its parts, for callers that also report metrics."""
    settings = xrpo_settings(config)
    # The sampling policy's log-probs: the actor's recomputed ones, else the rollout engine's.
    log_probs = old_log_probs if old_log_probs is not None else rollout_log_probs
    if settings.sharpening.enable and log_probs is None:
        _warn_once_without_log_probs()
    norm_by_std = True if config is None else bool(_get(config, "norm_adv_by_std_in_grpo", True))
    return compute_advantage(
        token_level_rewards,
        response_mask,
        index,
        log_probs,
        sharpen=settings.sharpening.enable,
        novelty_weight=settings.sharpening.novelty_weight,
        max_ratio=settings.sharpening.max_ratio,
        epsilon=epsilon,
        norm_by_std=norm_by_std,
    )


def compute_xrpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config: Any = None,
    old_log_probs: torch.Tensor | None = None,
    rollout_log_probs: torch.Tensor | None = None,
    epsilon: float = 1e-6,
    **_: Any,  # e.g. reward_baselines, which XRPO does not use
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl estimator signature: returns (advantages, returns), both (N, T)."""
    call = _current_call.get()
    if call is None:
        _warn_once_outside_xrpo_trainer(config)
    if old_log_probs is None and call is not None and call.log_probs is not None:
        if call.log_probs.shape != token_level_rewards.shape:
            raise RuntimeError(
                f"XRPO: the step's log-probs {tuple(call.log_probs.shape)} do not line up with verl's "
                f"advantage "
                f"batch {tuple(token_level_rewards.shape)}; verl's _compute_advantage has changed shape."
            )
        old_log_probs = call.log_probs
    result = compute_xrpo_result(
        token_level_rewards, response_mask, index, config, old_log_probs, rollout_log_probs, epsilon
    )
    if call is not None:
        call.result = result
    return result.advantages, result.advantages


def register() -> None:
    """Put ``xrpo`` in verl's registry; safe to call any number of times, in any process."""
    from verl.trainer.ppo import core_algos

    existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(ESTIMATOR_NAME)
    # The same function reached under another module path is still ours, not a name clash.
    if (
        existing is not None
        and existing.__qualname__ == compute_xrpo_outcome_advantage.__qualname__
        and existing.__module__.endswith("integration.estimator")
    ):
        return
    core_algos.register_adv_est(ESTIMATOR_NAME)(compute_xrpo_outcome_advantage)


def _get(config: Any, key: str, default: Any = None) -> Any:
    getter = getattr(config, "get", None)
    return getter(key, default) if getter is not None else getattr(config, key, default)


def _warn_once_outside_xrpo_trainer(config: Any) -> None:
    global _warned_outside_trainer
    if _warned_outside_trainer:
        return
    settings = xrpo_settings(config)
    if settings.planning.enable or settings.seeding.enable:
        logger.warning(
            "XRPO: the xrpo estimator is running outside XRPO's trainer (was trainer.v1.trainer_mode set by "
            "hand?), so rollout planning and seeding are not happening; only the advantage is XRPO's. "
            "Leave trainer.v1.trainer_mode unset (it follows algorithm.adv_estimator)."
        )
        _warned_outside_trainer = True


def _warn_once_without_log_probs() -> None:
    global _warned_no_log_probs
    if not _warned_no_log_probs:
        logger.warning(
            "XRPO: the advantage estimator got no log-probs, so novelty sharpening is skipped "
            "(plain group-relative advantages). XRPO's trainer passes old_log_probs; verl's generic "
            "estimator path does not."
        )
        _warned_no_log_probs = True
