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
   caller passes its own interval.
4. Without padding-free attention (it needs FlashAttention), every micro-batch is padded to its
   longest row, so a few long prompts (seeded ones carry exemplars) make every row cost as much
   as they do. CPU mode turns on verl's token-budgeted micro-batches (``use_dynamic_bsz``, in
   ``conf/xrpo/cpu_mode.yaml``) and has verl cut them from rows of similar length instead of
   balanced mixes, so a micro-batch's padding follows its own rows. The gradient does not
   change: verl normalises each micro-batch's loss by the whole mini-batch's token count.
   The split of a batch between data-parallel ranks stays verl's own.
5. verl's asynchronous trainers abort in-flight requests before each update with
   ``AsyncLLM.pause_generation(wait_for_inflight_requests=False)``; vLLM 0.32 (the CPU build
   installed here) replaced that keyword with ``mode``, and the call fails. The wrapper maps it as
   vLLM's own deprecation did (``False`` -> ``mode="abort"``, ``True`` -> ``mode="wait"``): abort
   the requests, return their partial outputs, pause. verl resumes each aborted request from its
   partial tokens after the update, as it does on GPUs.
Patches 2 and 5 belong in vLLM's processes, which ``verl_xrpo.cpu.vllm_plugin`` reaches through
vLLM's own plugin hook. (A GPU run never loads this file.)
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any

import numpy as np
import torch.distributed

_DUPLICATED_CPU_BACKEND = "cpu:gloo,cpu:gloo"
_PATCHED = "__xrpo_cpu_patch__"
CPU_REPLAY_POLL_SECONDS = 0.05


def apply_patches() -> None:
    _single_gloo_backend()
    _quick_replay_poll()
    _similar_length_micro_batches()
    if "vllm" in sys.modules:  # only the vLLM engine's own processes; never import vLLM elsewhere
        apply_vllm_patches()


def apply_vllm_patches() -> None:
    _live_weight_linear()
    _pause_generation_keyword()


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


def _pause_generation_keyword() -> None:
    from vllm.v1.engine.async_llm import AsyncLLM

    original = AsyncLLM.pause_generation
    if getattr(original, _PATCHED, False):
        return
    if "wait_for_inflight_requests" in inspect.signature(original).parameters:
        return  # a vLLM that still takes the keyword needs nothing

    @functools.wraps(original)
    async def pause_generation(
        self: AsyncLLM, *, wait_for_inflight_requests: bool | None = None, **kwargs: Any
    ) -> Any:
        if wait_for_inflight_requests is not None:
            if "mode" in kwargs:
                raise TypeError("pause_generation takes mode or wait_for_inflight_requests, not both")
            kwargs["mode"] = "wait" if wait_for_inflight_requests else "abort"
        return await original(self, **kwargs)

    setattr(pause_generation, _PATCHED, True)
    AsyncLLM.pause_generation = pause_generation


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


def similar_length_partitions(workloads: list[int], k_partitions: int) -> list[list[int]]:
    """``k_partitions`` non-empty groups of row indices, cut from the rows sorted longest first so
    that the padded cost (each group's size times its longest row's workload) is least.

    An exact dynamic programme over the cut points, O(k n^2): about 60 ms for 512 rows in 8.
    """
    order = sorted(range(len(workloads)), key=lambda i: (-workloads[i], i))
    w = np.asarray([workloads[i] for i in order], dtype=np.float64)
    n = len(w)
    # best[j]: least cost of rows 0..j-1 in the partitions so far; cuts[p][j] (start_of in partition
    # p's pass): where the last of those partitions starts
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cuts = []
    ends = np.arange(n + 1)
    for _ in range(k_partitions):
        new = np.full(n + 1, np.inf)
        start_of = np.zeros(n + 1, dtype=np.int64)
        for j in range(1, n + 1):
            starts = ends[:j]
            costs = best[:j] + (j - starts) * w[:j]  # rows start..j-1 padded to row start's workload
            start_of[j] = int(np.argmin(costs))
            new[j] = costs[start_of[j]]
        best = new
        cuts.append(start_of)
    parts, end = [], n
    for start_of in reversed(cuts):
        start = int(start_of[end])
        parts.append([order[i] for i in range(start, end)])
        end = start
    return parts[::-1]


def _similar_length_micro_batches() -> None:
    from verl.utils import seqlen_balancing

    original = seqlen_balancing.get_seqlen_balanced_partitions
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def partitions(seqlen_list: list[int], k_partitions: int, equal_size: bool) -> list[list[int]]:
        if equal_size:  # shares of data-parallel ranks (equal row counts): verl's balance
            return original(seqlen_list, k_partitions, equal_size)
        return similar_length_partitions(list(seqlen_list), k_partitions)  # micro-batches

    setattr(partitions, _PATCHED, True)
    seqlen_balancing.get_seqlen_balanced_partitions = partitions
