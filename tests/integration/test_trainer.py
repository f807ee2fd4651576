"""XRPO's trainer against verl's real config, TransferQueue and Ray (no workers or model started)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import ray
import torch
import transfer_queue as tq
from omegaconf import open_dict
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from verl_xrpo.config import XRPOConfigError
from verl_xrpo.core.advantage import compute_advantage
from verl_xrpo.integration.checkpoint import STATE_FILE, XRPOCheckpointError
from verl_xrpo.integration.request_keys import MANAGER_PATH
from verl_xrpo.integration.trainer import XRPOTrainer

from .conftest import ROLLOUT_N


def trainer_config(verl_config, **changes):
    config = copy.deepcopy(verl_config)
    with open_dict(config):
        config.trainer.v1.trainer_mode = "xrpo"
        for dotted, value in changes.items():
            node = config
            *parents, leaf = dotted.split(".")
            for parent in parents:
                node = node[parent]
            node[leaf] = value
    return config


def test_builds_and_says_what_is_on(verl_config, capsys):
    config = trainer_config(verl_config)
    trainer = XRPOTrainer(config)
    printed = capsys.readouterr().out
    assert (
        "planning:   on  mode=auto(phases) n_base=3" in printed
        and "seeding:    on" in printed
        and "sharpening: on" in printed
    )
    assert trainer.trainer_mode == "sync"  # what verl's own branches expect
    # verl's TaskRunner builds the agent-loop manager from this same config object afterwards.
    assert config.actor_rollout_ref.rollout.agent.agent_loop_manager_class == MANAGER_PATH
    assert trainer.planner.step_budget(4) == 4 * ROLLOUT_N


def test_verl_async_mode_names_build_xrpos_trainer_for_xrpo_and_verls_for_grpo(verl_config, capsys):
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.trainer.ppo.v1.trainer_colocate_async import PPOTrainerColocateAsync

    from verl_xrpo.integration.async_trainer import XRPOColocateAsyncTrainer

    config = trainer_config(verl_config, **{"trainer.v1.trainer_mode": "colocate_async"})
    trainer = get_trainer_cls("colocate_async")(config=config)
    assert type(trainer) is XRPOColocateAsyncTrainer
    assert trainer.trainer_mode == "colocate_async"  # what verl's own branches expect
    assert "planning:   on  mode=auto(submission)" in capsys.readouterr().out
    # one submission per prompt, sessions from 0: verl's own agent-loop manager does
    assert config.actor_rollout_ref.rollout.agent.agent_loop_manager_class != MANAGER_PATH

    grpo = trainer_config(verl_config, **{"trainer.v1.trainer_mode": "colocate_async"})
    with open_dict(grpo):
        grpo.algorithm.adv_estimator = "grpo"
    assert type(get_trainer_cls("colocate_async")(config=grpo)) is PPOTrainerColocateAsync


def separate_async_config(verl_config, **changes):
    """A config separate_async accepts: rollout GPUs of its own, a weight-sync backend across
    processes, and a step of parameter_sync_step mini-batches."""
    sync_step = verl_config.trainer.v1.separate_async.parameter_sync_step
    mini_batch = verl_config.actor_rollout_ref.actor.ppo_mini_batch_size
    return trainer_config(
        verl_config,
        **{
            "trainer.v1.trainer_mode": "separate_async",
            "actor_rollout_ref.rollout.checkpoint_engine.backend": "nccl",
            "actor_rollout_ref.rollout.nnodes": 1,
            "actor_rollout_ref.rollout.n_gpus_per_node": 1,
            "data.train_batch_size": sync_step * mini_batch,
            **changes,
        },
    )


def test_separate_async_builds_xrpos_trainer_off_the_cpu_and_is_refused_on_it(verl_config, monkeypatch):
    from verl.trainer.ppo.v1 import get_trainer_cls

    from verl_xrpo.integration.async_trainer import XRPOSeparateAsyncTrainer

    monkeypatch.delenv("VERL_PLATFORM", raising=False)  # as on a GPU machine: no CPU mode
    trainer = get_trainer_cls("separate_async")(config=separate_async_config(verl_config))
    assert type(trainer) is XRPOSeparateAsyncTrainer
    assert trainer.trainer_mode == "separate_async" and trainer.parameter_sync_step == 4
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    with pytest.raises(XRPOConfigError, match=r"use trainer\.v1\.trainer_mode=colocate_async on the CPU"):
        get_trainer_cls("separate_async")(config=separate_async_config(verl_config))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"actor_rollout_ref.rollout.n_gpus_per_node": 0}, r"rollout\.n_gpus_per_node=0: .* rollout GPUs"),
        ({"actor_rollout_ref.rollout.checkpoint_engine.backend": "naive"}, "backend=naive .* set it to nccl"),
        ({"data.train_batch_size": 3}, r"size=3: .*parameter_sync_step=4 .* set data\.train_batch_size"),
    ],
)
def test_what_verls_separate_async_asserts_is_one_line_before_ray(verl_config, monkeypatch, changes, message):
    from verl_xrpo.integration.checks import check_run

    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    check_run(separate_async_config(verl_config))
    with pytest.raises(XRPOConfigError, match=message):
        check_run(separate_async_config(verl_config, **changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"algorithm.xrpo.planning.n_base": 7}, r"planning\.n_base=7 is above the budget of rollout\.n=6"),
        ({"algorithm.xrpo.planning.n_max": 5}, r"planning\.n_max=5 is below rollout\.n=6"),
        ({"algorithm.xrpo.sharpening.max_ratio": -1}, r"sharpening\.max_ratio=-1\.0"),
        ({"algorithm.filter_groups.enable": True}, "DAPO dynamic sampling"),
        ({"reward.reward_model.enable": True}, "enable_resource_pool=true"),
        ({"algorithm.adv_estimator": "grpo"}, "needs algorithm.adv_estimator=xrpo"),
        ({"actor_rollout_ref.rollout.agent.agent_loop_manager_class": "my.Manager"}, "needs its own manager"),
        (
            {"algorithm.xrpo.seeding.preload_path": "/no/such/file.parquet"},
            "preload_path='/no/such/file.parquet'",
        ),
    ],
)
def test_impossible_settings_stop_before_any_worker_starts(verl_config, changes, message):
    with pytest.raises(XRPOConfigError, match=message):
        XRPOTrainer(trainer_config(verl_config, **changes))


def put_trajectories(step: int, group_sizes: list[int], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    keys, fields = [], []
    for g, size in enumerate(group_sizes):
        for session in range(size):
            length = int(torch.randint(2, 9, (1,), generator=gen))
            correct = float(torch.rand(1, generator=gen) < 0.5)
            rm = torch.zeros(length)
            rm[-1] = correct
            keys.append(f"adv{step}g{g}_{session}_0")
            fields.append(
                {
                    "uid": f"adv{step}g{g}",
                    "response_mask": torch.ones(length, dtype=torch.int64),
                    "rm_scores": rm,
                    "old_log_probs": -torch.rand(length, generator=gen) * 3,
                }
            )
    tq.kv_batch_put(
        keys=keys,
        partition_id="train",
        fields=list_of_dict_to_tensordict(fields),
        tags=[{"status": "success"}] * len(keys),
    )
    return keys, fields


def test_advantage_step_uses_old_log_probs_and_reports(verl_config):
    trainer = XRPOTrainer(trainer_config(verl_config))
    keys, fields = put_trajectories(step=1, group_sizes=[4, 6, 1, 5])
    metrics: dict = {}
    batch = tq.KVBatchMeta(keys=keys, tags=[{"status": "success"}] * len(keys), partition_id="train")
    trainer._compute_advantage(batch, metrics)

    stored = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])
    got = [row for row in stored["advantages"].unbind()]
    width = max(len(f["rm_scores"]) for f in fields)
    pad = lambda t: torch.nn.functional.pad(t, (0, width - len(t)))  # noqa: E731
    expected = compute_advantage(
        torch.stack([pad(f["rm_scores"]) for f in fields]),
        torch.stack([pad(f["response_mask"]) for f in fields]),
        np.array([f["uid"] for f in fields], dtype=object),
        torch.stack([pad(f["old_log_probs"]) for f in fields]),
    )
    for row, (values, f) in enumerate(zip(got, fields, strict=True)):
        torch.testing.assert_close(values, expected.advantages[row, : len(f["rm_scores"])])
    assert bool(expected.sharpened.any())  # the check above covered sharpened rows
    for name in (
        "xrpo/nonzero_advantage_share",
        "xrpo/sharpening/share_sharpened",
        "xrpo/sharpening/mean_bonus",
        "timing_s/xrpo_advantage",
    ):
        assert name in metrics
    assert 0 < metrics["xrpo/sharpening/share_sharpened"] <= metrics["xrpo/nonzero_advantage_share"] <= 1
    tq.kv_clear(keys=keys, partition_id="train")


def test_verls_padding_rows_are_neither_rollouts_nor_lost_in_the_dump(verl_config):
    """With several ranks verl pads a batch to a multiple of them (reward 0, a uid of its own):
    those rows must not count in XRPO's shares, and the dump must still recompute exactly."""
    trainer = XRPOTrainer(trainer_config(verl_config))
    keys, fields = put_trajectories(step=2, group_sizes=[4, 3], seed=3)
    batch = tq.KVBatchMeta(keys=keys, tags=[{"status": "success"}] * len(keys), partition_id="train")
    batch = upsample_batch_to_divisible_size(batch, 4, eos_token_id=0)  # verl's own padding
    assert len(batch) == 8 and sum(tag.get("is_padding", False) for tag in batch.tags) == 1
    metrics: dict = {}
    trainer._compute_advantage(batch, metrics)

    real = compute_advantage(
        torch.stack([torch.nn.functional.pad(f["rm_scores"], (0, 8 - len(f["rm_scores"]))) for f in fields]),
        torch.stack(
            [torch.nn.functional.pad(f["response_mask"], (0, 8 - len(f["rm_scores"]))) for f in fields]
        ),
        np.array([f["uid"] for f in fields], dtype=object),
        torch.stack(
            [torch.nn.functional.pad(f["old_log_probs"], (0, 8 - len(f["rm_scores"]))) for f in fields]
        ),
    )
    assert metrics["xrpo/nonzero_advantage_share"] == pytest.approx(
        float((real.advantages.sum(-1) != 0).float().mean())
    )

    dump_order = sorted(batch.keys)  # verl's dump sorts rows by key
    rows = trainer._rollout_fields(batch, dump_order)
    assert rows["is_padding"] == [key.startswith("pad") for key in dump_order]
    expected = dict(zip(keys, (real.base + real.bonus).tolist(), strict=True))
    for key, advantage, padding in zip(dump_order, rows["advantage"], rows["is_padding"], strict=True):
        assert advantage == pytest.approx(0.0 if padding else expected[key], abs=1e-6)
    tq.kv_clear(keys=batch.keys, partition_id="train")


def test_state_round_trips_through_a_checkpoint_folder(verl_config, tmp_path):
    trainer = XRPOTrainer(trainer_config(verl_config))
    trainer.global_steps, trainer.rollouts_drawn = 7, 1234
    trainer.bank.add("What is 6 times 7?", "6 * 7 = 42")
    trainer.bank.add("A validation question?", "leak")
    trainer.save_xrpo_state(str(tmp_path / "xrpo"))
    assert json.loads((tmp_path / "xrpo" / STATE_FILE).read_text())["rollouts_drawn"] == 1234

    resumed = XRPOTrainer(trainer_config(verl_config))
    resumed.global_steps = 7  # what verl's _load_checkpoint sets before XRPO's state is read
    resumed.validation_questions = ["a validation question?"]
    resumed.load_xrpo_state(str(tmp_path / "xrpo"))
    assert resumed.rollouts_drawn == 1234
    assert [e.question for e in resumed.bank] == ["What is 6 times 7?"]  # the leakage guard re-applied
    with pytest.raises(XRPOCheckpointError, match=r"elsewhere/state\.json is missing"):
        resumed.load_xrpo_state(str(tmp_path / "elsewhere"))


@ray.remote
def registered_in_a_ray_worker() -> tuple[str, str]:
    import verl  # noqa: F401  (verl imports its plugins, ours among them)
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.v1 import get_trainer_cls

    return core_algos.get_adv_estimator_fn("xrpo").__module__, get_trainer_cls("xrpo").__name__


def test_plugin_registers_inside_a_ray_worker(cluster):
    assert ray.get(registered_in_a_ray_worker.remote()) == ("verl_xrpo.integration.estimator", "XRPOTrainer")


def test_validation_questions_come_from_verls_dataset(verl_config, toy_tokenizer, tmp_path):
    from verl.trainer.ppo.utils import create_rl_dataset

    from verl_xrpo.integration.trainer import dataset_questions

    questions = ["What is 2 + 2?", "Name a prime above 10."]
    path = tmp_path / "val.parquet"
    rows = [
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}],
            "data_source": "toy",
            "reward_model": {"ground_truth": "4"},
        }
        for q in questions
    ]
    pd.DataFrame(rows).to_parquet(path)
    dataset = create_rl_dataset([str(path)], verl_config.data, toy_tokenizer, None, is_train=False)
    assert dataset_questions(dataset, verl_config.data.prompt_key) == questions


def test_manager_path_names_the_xrpo_agent_loop_manager():
    from verl.utils.import_utils import load_class_from_fqn

    from verl_xrpo.integration.rollout import XRPOAgentLoopManager

    assert load_class_from_fqn(MANAGER_PATH) is XRPOAgentLoopManager
