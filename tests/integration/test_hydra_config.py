"""verl's own Hydra config, composed as ``main_ppo`` does, carries ``algorithm.xrpo``."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import verl  # noqa: F401  (decides CPU mode at import, not later inside a test that clears VERL_PLATFORM)
import yaml
from hydra import compose, initialize_config_module
from hydra.core.plugins import Plugins
from hydra.errors import ConfigCompositionException
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

import verl_xrpo
from tests.trees import leaves
from verl_xrpo.config import XRPOConfig
from verl_xrpo.integration.estimator import xrpo_settings
from verl_xrpo.integration.hydra_config import with_xrpo_group


def compose_verl(overrides: list[str], config_name: str = "ppo_trainer"):
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name=config_name, overrides=overrides)


@contextlib.contextmanager
def without_xrpo_search_path():
    registered = Plugins.instance().plugin_type_to_subclass_list[SearchPathPlugin]
    ours = [p for p in registered if p.__module__.startswith("hydra_plugins.verl_xrpo")]
    assert ours, "the verl-xrpo Hydra plugin is not installed"
    for plugin in ours:
        registered.remove(plugin)
    try:
        yield
    finally:
        registered.extend(ours)


def test_plain_overrides_reach_the_xrpo_settings():
    config = compose_verl(
        [
            "algorithm.adv_estimator=xrpo",
            "algorithm.xrpo.planning.n_base=3",
            "algorithm.xrpo.planning.n_max=24",
            "algorithm.xrpo.seeding.enable=false",
            "algorithm.xrpo.sharpening.max_ratio=0.25",
        ]
    )
    settings = xrpo_settings(config.algorithm)
    assert config.algorithm.adv_estimator == "xrpo"
    assert (settings.planning.n_base, settings.planning.n_max) == (3, 24)
    assert not settings.seeding.enable and settings.sharpening.max_ratio == 0.25


def test_megatron_trainer_config_carries_it_too():
    config = compose_verl(["algorithm.xrpo.planning.num_phases=2"], config_name="ppo_megatron_trainer")
    assert config.algorithm.xrpo.planning.num_phases == 2


def test_the_xrpo_estimator_selects_the_xrpo_trainer():
    config = compose_verl(["algorithm.adv_estimator=xrpo"])
    assert config.trainer.v1.trainer_mode == "xrpo"
    explicit = compose_verl(["algorithm.adv_estimator=xrpo", "trainer.v1.trainer_mode=sync"])
    assert explicit.trainer.v1.trainer_mode == "sync"  # the user's word wins


def test_a_misspelt_key_fails_at_composition_naming_it():
    with pytest.raises(ConfigCompositionException) as raised:
        compose_verl(["algorithm.xrpo.planing.n_base=3"])
    assert "algorithm.xrpo.planing.n_base" in str(raised.value)


def test_the_shipped_yaml_declares_exactly_the_defaults():
    shipped = Path(verl_xrpo.__file__).parent / "conf" / "xrpo" / "xrpo.yaml"
    assert yaml.safe_load(shipped.read_text()) == XRPOConfig().to_dict()
    composed = compose_verl([]).algorithm.xrpo
    assert OmegaConf.to_container(composed) == XRPOConfig().to_dict()


# GSPO's loss as overrides of verl's own config, read from the one loss group that defines it
GSPO_GROUP = Path(__file__).resolve().parents[2] / "configs" / "loss" / "gspo.yaml"
GSPO = [f"{key}={value}" for key, value in leaves(yaml.safe_load(GSPO_GROUP.read_text())).items()]


@pytest.mark.parametrize(
    "extra", [[], GSPO, ["trainer.v1.trainer_mode=colocate_async"]], ids=["grpo", "gspo", "grpo-async"]
)
def test_for_other_estimators_nothing_else_in_verls_config_changes(extra, monkeypatch):
    monkeypatch.delenv("VERL_PLATFORM", raising=False)  # as on a GPU machine: no CPU mode
    overrides = ["algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.n=8", *extra]
    ours = OmegaConf.to_container(compose_verl(overrides), resolve=True)
    with without_xrpo_search_path():
        verls = OmegaConf.to_container(compose_verl(overrides), resolve=True)
    assert "xrpo" not in verls["algorithm"]
    del ours["algorithm"]["xrpo"]
    assert ours == verls


def test_cpu_mode_changes_exactly_the_cpu_preset(monkeypatch):
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    overrides = ["algorithm.adv_estimator=grpo", "actor_rollout_ref.rollout.n=8"]
    ours = leaves(OmegaConf.to_container(compose_verl(overrides), resolve=True))
    with without_xrpo_search_path():
        verls = leaves(OmegaConf.to_container(compose_verl(overrides), resolve=True))
    preset = leaves(yaml.safe_load((Path(verl_xrpo.__file__).parent / "conf/xrpo/cpu_mode.yaml").read_text()))
    changed = {key: value for key, value in ours.items() if verls.get(key, "absent") != value}
    changed = {key: value for key, value in changed.items() if not key.startswith("algorithm.xrpo.")}
    followers = {  # verl interpolates these from keys of the preset
        "actor_rollout_ref.ref.strategy": "fsdp2",
        "actor_rollout_ref.actor.use_remove_padding": False,
        "actor_rollout_ref.rollout.n_gpus_per_node": 1,
        # old and ref log-probs, and the critic, follow the actor's token-budgeted micro-batches
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz": True,
        "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": 4096,
        "actor_rollout_ref.ref.log_prob_use_dynamic_bsz": True,
        "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": 4096,
        "critic.use_dynamic_bsz": True,
        # a distillation teacher would generate in the rollout's dtype
        "distillation.teacher_models.teacher_model.inference.dtype": "float32",
    }
    assert changed == {**{k: v for k, v in preset.items() if verls.get(k) != v}, **followers}
    assert ours["actor_rollout_ref.actor.strategy"] == "fsdp2"
    # bf16 matmuls are ~50x slower than fp32 on a CPU without bf16 units: CPU mode computes in fp32
    for role in ("actor", "ref"):
        assert ours[f"actor_rollout_ref.{role}.fsdp_config.mixed_precision.param_dtype"] == "fp32"
    assert ours["actor_rollout_ref.rollout.dtype"] == "float32"
    # the user's word still wins over the preset
    assert compose_verl([*overrides, "trainer.n_gpus_per_node=2"]).trainer.n_gpus_per_node == 2


def test_patch_is_refused_when_verl_changes_shape():
    assert with_xrpo_group("defaults:\n  - a\n  - _self_\nx: 1\n").count("xrpo@algorithm.xrpo") == 1
    with pytest.raises(ValueError, match="_self_"):
        with_xrpo_group("defaults:\n  - a\nx: 1\n")


def test_main_ppo_command_line_accepts_plain_xrpo_keys():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "verl.trainer.main_ppo",
            "algorithm.adv_estimator=xrpo",
            "algorithm.xrpo.planning.n_base=3",
            "--cfg",
            "job",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = yaml.safe_load(done.stdout)
    assert printed["algorithm"]["xrpo"]["planning"]["n_base"] == 3
