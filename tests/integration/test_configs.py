"""Every config in configs/ composes with verl's own Hydra machinery and passes verl's own checks.

Compositions run in this process with Hydra's compose API and the installed plugin, as main_ppo
composes (one test runs main_ppo itself and compares). The GPU configs are composed as on a GPU
machine, without CPU mode's preset. The checks are those main_ppo runs before Ray starts
(``validate_config``), the rollout config verl's workers build, and XRPO's own start-up checks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import verl  # noqa: F401  (decides CPU mode at import, before a test clears VERL_PLATFORM)
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from omegaconf import OmegaConf
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config

from recipe.xrpo.scale_model.train import RunPaths, ScaleModelRun
from tests.trees import leaves as flat_leaves
from verl_xrpo.config import XRPOConfig
from verl_xrpo.integration.checks import check_run

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
RECIPE = REPO / "recipe" / "xrpo"
TOP_LEVEL = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
PRESETS = sorted(p.stem for p in (CONFIGS / "preset").glob("*.yaml"))
LOSSES = sorted(p.stem for p in (CONFIGS / "loss").glob("*.yaml"))
ALGOS = sorted(p.stem.removeprefix("run_") for p in RECIPE.glob("run_*.sh") if p.stem != "run_all")
GPU_CONFIG = "math_comparison"
# what the comparison's runs set differently, besides the loss (interpolations that follow them aside)
PER_ALGORITHM = {"algorithm.adv_estimator", "trainer.experiment_name"}


def test_the_shipped_configs_are_found():
    assert {"xrpo_trainer", GPU_CONFIG, "scale_model"} <= set(TOP_LEVEL)
    assert {"qwen3_1_7b", "qwen2_5_7b_instruct"} <= set(PRESETS)
    assert {"grpo", "gspo"} <= set(LOSSES)
    assert ALGOS == ["grpo", "gspo", "xrpo_grpo", "xrpo_gspo"]


@pytest.fixture
def gpu_machine(monkeypatch):
    """The plugin adds CPU mode's preset only while VERL_PLATFORM=cpu: compose as on a GPU machine."""
    monkeypatch.delenv("VERL_PLATFORM", raising=False)


def compose_config(name: str, overrides: list[str], config_dir: Path = CONFIGS):
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name=name, overrides=overrides)


def run_checks(config) -> None:
    """verl's checks before Ray starts (main_ppo's), verl's rollout config, XRPO's start-up checks."""
    validate_config(
        config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
    )
    omega_conf_to_dataclass(config.actor_rollout_ref.rollout)
    if config.algorithm.adv_estimator == "xrpo":
        check_run(config)  # the same checks the driver's preflight and XRPO's trainer run
    # XRPO's settings are its defaults (verl_xrpo/config.py); no shipped config restates them
    assert OmegaConf.to_container(config.algorithm.xrpo) == XRPOConfig().to_dict()


def leaves(tree: dict) -> dict[str, object]:
    return flat_leaves(tree, keep_empty=True)


def settings_of(path: Path) -> dict[str, object]:
    """The keys a config file sets, as full dotted keys (every file here is global)."""
    tree = yaml.safe_load(path.read_text()) or {}
    tree.pop("defaults", None)
    return leaves(tree)


# ---- every key is one that verl or XRPO declares -------------------------------------------------


@pytest.fixture(scope="module")
def declared() -> set[str]:
    """Every key of verl's trainer config with the plugin's algorithm.xrpo group."""
    return set(leaves(OmegaConf.to_container(compose_config("ppo_trainer", []), resolve=False)))


def undeclared(path: Path, declared: set[str]) -> list[str]:
    # Hydra adds keys a config file brings without complaint: a misspelt one would do nothing
    return [key for key in settings_of(path) if key not in declared]


CONFIG_FILES = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml"))


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_key_a_config_sets_is_declared_by_verl_or_xrpo(name, declared):
    path = CONFIGS / name
    assert undeclared(path, declared) == [], f"{name} sets keys verl does not declare"
    if "/" in name:  # a group option: its keys are full keys only in the global package
        assert path.read_text().startswith("# @package _global_\n"), f"{name} lacks '# @package _global_'"


def test_a_misspelt_key_in_a_preset_fails(tmp_path, declared, gpu_machine):
    copy = tmp_path / "configs"
    shutil.copytree(CONFIGS, copy)
    preset = copy / "preset" / "qwen3_1_7b.yaml"
    text = preset.read_text()
    for right, wrong in [("max_response_length", "max_respone_length"), ("ppo_max_token", "ppo_max_tokens")]:
        assert right in text
        text = text.replace(right, wrong)
    preset.write_text(text)
    assert undeclared(preset, declared) == [
        "data.max_respone_length",
        "actor_rollout_ref.actor.ppo_max_tokens_len_per_gpu",
    ]
    config = compose_config(GPU_CONFIG, [], config_dir=copy)  # Hydra itself lets both through
    with pytest.raises(InstantiationException, match="ppo_max_tokens_len_per_gpu"):
        run_checks(config)  # verl's actor config refuses the one in its section


# ---- the configs compose and pass the checks -----------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_the_xrpo_trainer_composes_with_each_loss(loss, gpu_machine):
    # what every GRPO-style run adds besides data and model: group size, rollout engine, batch sizes
    config = compose_config(
        "xrpo_trainer",
        [
            f"loss={loss}",
            "actor_rollout_ref.rollout.n=8",
            "actor_rollout_ref.rollout.name=vllm",
            "actor_rollout_ref.actor.use_dynamic_bsz=true",
        ],
    )
    assert config.algorithm.adv_estimator == "xrpo" and config.trainer.v1.trainer_mode == "xrpo"
    assert (
        settings_of(CONFIGS / "loss" / f"{loss}.yaml").items()
        <= leaves(OmegaConf.to_container(config)).items()
    )
    run_checks(config)


@pytest.mark.parametrize("estimator", ["xrpo", "grpo"])
def test_the_scale_model_composes_with_its_launchers_overrides(tmp_path, estimator):
    run = ScaleModelRun(RunPaths(tmp_path), steps=3, estimator=estimator)  # on its CPU machine
    config = compose_config("scale_model", [o for o in run.overrides() if not o.startswith("--")])
    run_checks(config)


def recipe_calls(tmp_path: Path, script: str, *args: str, **env: str) -> list[list[str]]:
    """The main_ppo command lines a recipe script runs with DRY_RUN=1 (a stand-in $PYTHON records them)."""
    calls = tmp_path / "calls.jsonl"
    python = tmp_path / "python"
    python.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    python.chmod(0o755)
    machine = {"MODEL_PATH": "/models/model", "DATA_DIR": "/data/math", "CKPT_ROOT": "/ckpt", "NGPUS": "8"}
    inherited = {k: v for k, v in os.environ.items() if k not in {"TRAIN_FILES", "VAL_FILES", "NNODES"}}
    full = {**inherited, **machine, "PYTHON": str(python), "DRY_RUN": "1", **env}
    done = subprocess.run(["bash", str(RECIPE / script), *args], capture_output=True, text=True, env=full)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def compose_call(argv: list[str]):
    """Composes a recorded main_ppo command line, as main_ppo would."""
    assert argv[:2] == ["-m", "verl.trainer.main_ppo"] and argv[-2:] == ["--cfg", "job"]
    options = dict(a[2:].split("=", 1) for a in argv[2:-2] if a.startswith("--"))
    overrides = [a for a in argv[2:-2] if not a.startswith("--")]
    return compose_config(options["config-name"], overrides, config_dir=Path(options["config-path"]))


@pytest.fixture(scope="module")
def recipe_configs(tmp_path_factory) -> dict[tuple[str, str], tuple[dict, dict]]:
    """(preset, algorithm) -> the config that run_<algorithm>.sh preset=<preset> composes: as composed
    (interpolations kept) and resolved."""
    platform = os.environ.pop("VERL_PLATFORM", None)  # as on a GPU machine; restored below
    try:
        configs = {}
        for preset in PRESETS:
            for algo in ALGOS:
                (call,) = recipe_calls(tmp_path_factory.mktemp(algo), f"run_{algo}.sh", f"preset={preset}")
                config = compose_call(call)
                run_checks(config)
                configs[preset, algo] = (
                    OmegaConf.to_container(config, resolve=False),
                    OmegaConf.to_container(config, resolve=True),
                )
    finally:
        if platform is not None:
            os.environ["VERL_PLATFORM"] = platform
    return configs


@pytest.mark.parametrize("preset", PRESETS)
def test_each_recipe_script_composes_and_passes_verls_checks(recipe_configs, preset):
    runs = {algo: recipe_configs[preset, algo][1] for algo in ALGOS}
    for algo, config in runs.items():
        estimator, loss = ("xrpo", algo.removeprefix("xrpo_")) if algo.startswith("xrpo_") else ("grpo", algo)
        assert config["algorithm"]["adv_estimator"] == estimator, f"run_{algo}.sh"
        loss_settings = settings_of(CONFIGS / "loss" / f"{loss}.yaml").items()
        assert loss_settings <= leaves(config).items(), f"run_{algo}.sh does not compose loss={loss}"
        trainer = config["trainer"]
        assert trainer["experiment_name"] == f"{algo}-seed1"
        assert trainer["default_local_dir"] == f"/ckpt/{trainer['project_name']}/{algo}-seed1"
        assert config["actor_rollout_ref"]["model"]["path"] == "/models/model"
        assert config["data"]["train_files"] == "/data/math/train.parquet"
        assert (trainer["nnodes"], trainer["n_gpus_per_node"]) == (1, 8)


@pytest.mark.parametrize("preset", PRESETS)
def test_the_four_runs_differ_only_in_estimator_loss_and_names(recipe_configs, preset):
    loss_keys = set().union(*(settings_of(CONFIGS / "loss" / f"{loss}.yaml") for loss in LOSSES))
    composed = {algo: leaves(recipe_configs[preset, algo][0]) for algo in ALGOS}
    keys = set().union(*composed.values())
    differ = {key for key in keys if len({repr(c.get(key, "absent")) for c in composed.values()}) > 1}
    assert differ <= PER_ALGORITHM | loss_keys, sorted(differ - PER_ALGORITHM - loss_keys)
    resolved = [leaves(recipe_configs[preset, algo][1]) for algo in ALGOS]
    budgets = {r["data.train_batch_size"] * r["actor_rollout_ref.rollout.n"] for r in resolved}
    assert len(budgets) == 1


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_fits_its_sequences_and_batches(recipe_configs, preset):
    config = leaves(recipe_configs[preset, "xrpo_grpo"][1])
    prompt = config["actor_rollout_ref.rollout.prompt_length"]
    assert prompt >= config["data.max_prompt_length"], "seeded prompts get less room than the data's"
    full_sequence = prompt + config["data.max_response_length"]
    assert config["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"] >= full_sequence
    assert config["data.train_batch_size"] % config["actor_rollout_ref.actor.ppo_mini_batch_size"] == 0
    gpus = config["trainer.nnodes"] * config["trainer.n_gpus_per_node"]
    assert gpus % config["actor_rollout_ref.rollout.tensor_model_parallel_size"] == 0


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_sets_nothing_the_comparison_sets(preset):
    # math_comparison.yaml is applied after its preset: a key in both would ignore the preset's value
    shared = settings_of(CONFIGS / f"{GPU_CONFIG}.yaml")
    assert sorted(settings_of(CONFIGS / "preset" / f"{preset}.yaml").keys() & shared.keys()) == []


def test_run_all_passes_each_seed_and_its_arguments(tmp_path):
    calls = recipe_calls(tmp_path, "run_all.sh", "trainer.test_freq=10", SEEDS="1 2", ALGOS="gspo xrpo_grpo")
    assert len(calls) == 4
    seeds = [[a for a in call if a.startswith("data.seed=")] for call in calls]
    assert seeds == [["data.seed=1"]] * 2 + [["data.seed=2"]] * 2
    assert all(call[-3] == "trainer.test_freq=10" for call in calls)  # last, before --cfg job


@pytest.mark.parametrize("argument", ["trainer.experiment_name=x", "data.seed=3"])
def test_run_all_refuses_what_would_make_its_runs_collide(tmp_path, argument):
    env = {**os.environ, "SEEDS": "1 2", "PYTHON": "false"}
    done = subprocess.run(
        ["bash", str(RECIPE / "run_all.sh"), argument], capture_output=True, text=True, env=env
    )
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: ")


def test_main_ppo_composes_a_recipe_script_as_these_tests_do(tmp_path, gpu_machine):
    """The same command line through main_ppo itself (DRY_RUN=1, a subprocess) prints the same config."""
    (call,) = recipe_calls(tmp_path, "run_xrpo_gspo.sh", "preset=qwen2_5_7b_instruct")
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    env["VERL_XRPO_DEVICE"] = "accelerator"  # a GPU machine's composition, on this CPU-only one
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, *call], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = yaml.safe_load(done.stdout)
    assert printed == OmegaConf.to_container(compose_call(call), resolve=False)
    assert printed["actor_rollout_ref"]["rollout"]["tensor_model_parallel_size"] == 2  # no CPU preset


# ---- the recipe README's tables are what the configs compose to ----------------------------------

README = RECIPE / "README.md"
KEY = re.compile(r"`((?:data|actor_rollout_ref|trainer|algorithm|reward|critic)(?:\.[a-z0-9_]+)+)`")


def readme_table(header_start: str) -> tuple[list[str], list[list[str]]]:
    """The columns and rows of the README table whose header row starts with header_start."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    columns = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return columns, rows


def same(documented: str, composed: object) -> bool:
    value = yaml.safe_load(documented.strip("`"))
    if isinstance(value, bool) or isinstance(composed, bool):
        return value is composed
    return value == composed


def check_table(header_start: str, compose_column) -> None:
    columns, rows = readme_table(header_start)
    wrong = []
    for row in rows:
        keys = KEY.findall(row[1])
        assert keys, f"no key in the README row {row}"
        for column, cell in zip(columns[2:], row[2:], strict=True):
            if not cell.startswith("`"):
                continue  # e.g. "(no KL)"
            config = compose_column(column)
            wrong += [
                f"{key} ({column}): {cell} documented, {OmegaConf.select(config, key)!r} composed"
                for key in keys
                if not same(cell, OmegaConf.select(config, key))
            ]
    assert wrong == []


def test_the_readmes_settings_table_matches_each_preset(gpu_machine):
    columns, _ = readme_table("| was | key | qwen3")
    assert sorted(columns[2:]) == PRESETS
    composed = {
        p: compose_config(GPU_CONFIG, [f"preset={p}", "algorithm.adv_estimator=grpo"]) for p in PRESETS
    }
    check_table("| was | key | qwen3", composed.__getitem__)


def test_the_readmes_loss_table_matches_each_loss(gpu_machine):
    columns, _ = readme_table("| was | key | loss=")
    assert sorted(c.removeprefix("loss=") for c in columns[2:]) == LOSSES
    composed = {c: compose_config(GPU_CONFIG, [c]) for c in columns[2:]}
    check_table("| was | key | loss=", composed.__getitem__)


def test_the_readmes_xrpo_keys_are_xrpo_settings():
    documented = re.findall(r"`algorithm\.xrpo\.([a-z_.]+)`", README.read_text())
    known = set(leaves(XRPOConfig().to_dict()))
    assert documented and set(documented) <= known, sorted(set(documented) - known)
