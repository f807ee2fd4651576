"""The changes stock verl and vLLM need at run time on the CPU, kept in one place.

1. verl opens its process groups with ``f"cpu:gloo,{device}:{backend}"``; on the CPU platform
   that is ``"cpu:gloo,cpu:gloo"``, which torch refuses (one backend per device type). The
   wrapper rewrites exactly that string to plain ``"gloo"`` and leaves every other call alone.
2. vLLM's CPU build repacks each linear layer's weight into a kernel-specific copy after loading
   and drops the original parameter. RL reloads weights into the running engine after every
   step, which then fails (``'Parameter' object has no attribute 'weight_loader'``) or, worse,
   would keep generating with the packed first weights. In CPU mode the vLLM worker keeps plain
   ``torch.nn.functional.linear`` on the live weights instead.
3. verl's replay buffer checks for finished rollouts every 2 s, a fixed constructor default. With
   a small model on the CPU a step's generation takes less than that, so the poll, not the work,
   would set every generation time measured here. In CPU mode it polls every 0.05 s, unless the
   caller passes its own interval. (A GPU run never loads this file.)
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any

import torch.distributed

_DUPLICATED_CPU_BACKEND = "cpu:gloo,cpu:gloo"
_PATCHED = "__xrpo_cpu_patch__"
CPU_REPLAY_POLL_SECONDS = 0.05


def apply_patches() -> None:
    _single_gloo_backend()
    _quick_replay_poll()
    if "vllm" in sys.modules:  # only the vLLM engine's own processes; never import vLLM elsewhere
        _live_weight_linear()


def _single_gloo_backend() -> None:
    original = torch.distributed.init_process_group
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("backend") == _DUPLICATED_CPU_BACKEND:
            kwargs["backend"] = "gloo"
        elif args and args[0] == _DUPLICATED_CPU_BACKEND:
            args = ("gloo", *args[1:])
        return original(*args, **kwargs)

    setattr(init_process_group, _PATCHED, True)
    torch.distributed.init_process_group = init_process_group


def _live_weight_linear() -> None:
    from vllm.model_executor.layers import utils as layer_utils

    if getattr(layer_utils.dispatch_cpu_unquantized_gemm, _PATCHED, False):
        return

    def keep_live_weights(layer: torch.nn.Module, remove_weight: bool) -> None:
        layer.cpu_linear = torch.nn.functional.linear

    setattr(keep_live_weights, _PATCHED, True)
    layer_utils.dispatch_cpu_unquantized_gemm = keep_live_weights


def _quick_replay_poll() -> None:
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    original = ReplayBuffer.__init__
    if getattr(original, _PATCHED, False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self: ReplayBuffer, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if "poll_interval" not in signature.bind(self, *args, **kwargs).arguments:
            self.poll_interval = CPU_REPLAY_POLL_SECONDS

    setattr(__init__, _PATCHED, True)
    ReplayBuffer.__init__ = __init__
