"""Shared fixtures: one Ray cluster with a real TransferQueue, and verl's composed config."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import ray
import transfer_queue as tq
from hydra import compose, initialize_config_module
from omegaconf import open_dict

from recipe.xrpo.scale_model.model import build_toy_model_dir

REPO = Path(__file__).resolve().parents[2]
ROLLOUT_N = 6


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}},
    )
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        tq_conf = compose(config_name="ppo_trainer").transfer_queue
    tq_conf.enable = True
    tq_conf.backend.SimpleStorage.num_data_storage_units = 1
    tq.init(tq_conf)
    yield tmp_path_factory.mktemp("xrpo")
    tq.close()
    ray.shutdown()


@pytest.fixture(scope="session")
def verl_config(cluster):
    model_dir = build_toy_model_dir(cluster / "model")
    loops = cluster / "agent_loops.yaml"
    loops.write_text(
        "- name: scripted\n  _target_: tests.integration.scripted_agent_loop.ScriptedAgentLoop\n"
    )
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        config = compose(
            config_name="ppo_trainer",
            overrides=[
                "algorithm.adv_estimator=xrpo",
                f"actor_rollout_ref.model.path={model_dir}",
                f"actor_rollout_ref.rollout.n={ROLLOUT_N}",
                "actor_rollout_ref.rollout.prompt_length=400",
                "actor_rollout_ref.rollout.agent.num_workers=1",
                "actor_rollout_ref.rollout.name=vllm",
                "actor_rollout_ref.rollout.agent.default_agent_loop=scripted",
                f"actor_rollout_ref.rollout.agent.agent_loop_config_path={loops}",
                "algorithm.xrpo.planning.n_base=3",
                "algorithm.xrpo.planning.ucb_lambda=1.0",
            ],
        )
    with open_dict(config):
        config.actor_rollout_ref.rollout.agent.agent_loop_manager_class = None
    return config


def training_row(content: str | None = "What is 3 + 3?", truth: str | None = "6") -> dict:
    """A row of verl's RL data layout; ``None`` content is an empty conversation."""
    prompt = [] if content is None else [{"role": "user", "content": content}]
    return {"prompt": prompt, "data_source": "toy", "reward_model": {"style": "rule", "ground_truth": truth}}


@pytest.fixture(scope="session")
def training_file(tmp_path_factory) -> Path:
    """A sound training file: the driver's preflight reads data.train_files."""
    path = tmp_path_factory.mktemp("data") / "train.parquet"
    pd.DataFrame([training_row(), training_row("What is 4 + 4?", "8")]).to_parquet(path)
    return path
