"""The driver's preflight: what would stop a run is found before Ray starts, one line each.

Hydra calls ``Preflight.on_job_start`` in the process that starts the run, after composing the
config and before verl's task function (``verl.trainer.main_ppo.main``) starts Ray: it sees the
config exactly as verl will, and nothing has started yet. XRPO's config adds the callback to verl's
trainer config (``verl_xrpo/conf/xrpo/preflight.yaml``, through the search-path plugin). Hydra does
not call it for ``--cfg`` or ``--help``, which print and start nothing.

Checked: in CPU mode, the Python environment (``verl_xrpo.cpu.environment``); for an XRPO run,
every setting (``verl_xrpo.integration.checks.check_run``, which XRPO's trainer runs again), the
training files' rows (``verl_xrpo.integration.data_checks``, which the trainer runs again on the
dataset as verl loads it) and the XRPO state of the checkpoint it would resume
(``verl_xrpo.integration.checkpoint``, which the trainer's resume reads the same way).

Before any of that, Hydra itself refuses an override of a key its config does not declare, with
advice to append it with ``+``. For a mistyped ``algorithm.xrpo.*`` key that advice is wrong, so
XRPO's search-path plugin, which Hydra runs before it composes, checks those keys on the command
line first (``refuse_mistyped_keys``) and names the nearest setting instead.

The same checks run without starting anything, one line per problem and exit code 2:

    python -m verl_xrpo.preflight [--config-path DIR --config-name NAME] OVERRIDE ...
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from verl_xrpo.config import CONFIG_ROOT, XRPOConfigError, check_key

EXIT_CODE = 2  # a usage error, as argparse's


class Preflight(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_broken_run(config)


def problems(config: DictConfig) -> list[str]:
    """One line per reason the run cannot work; empty when it can."""
    from verl_xrpo.cpu import environment, mode
    from verl_xrpo.integration.checkpoint import XRPOCheckpointError, check_resume
    from verl_xrpo.integration.checks import check_run, is_xrpo_run
    from verl_xrpo.integration.data_checks import XRPODataError

    found = []
    if mode.is_active():
        found += [f"verl-xrpo CPU mode (no accelerator found): {p}" for p in environment.problems()]
    if is_xrpo_run(config):
        try:
            check_run(config)
            check_training_data(config)
            check_resume(config)
        except (XRPOConfigError, XRPODataError, XRPOCheckpointError) as error:
            found.append(f"verl-xrpo: {error}")
    return found


def check_training_data(config: DictConfig) -> int:
    """The training files' rows, as the trainer checks verl's dataset; the prompt-length check needs the
    model's tokenizer, and is left to the trainer where it cannot be loaded here."""
    from verl_xrpo.integration.data_checks import check_training_files, length_check_applies

    rollout_length = int(config.actor_rollout_ref.rollout.prompt_length)
    tokenizer = None
    if length_check_applies(config.data, rollout_length):
        tokenizer = _local_tokenizer(
            config.actor_rollout_ref.model.path, config.data.get("trust_remote_code")
        )
    rule_based = not config.reward.reward_model.enable
    return check_training_files(config.data, tokenizer, rollout_length, rule_based_reward=rule_based)


def _local_tokenizer(model_path: str, trust_remote_code: bool | None) -> Any:
    """The model folder's tokenizer; None for a remote path, a multimodal model (its processor
    measures prompts), or a folder it cannot be read from (verl then says why itself)."""
    if not os.path.isdir(model_path) or os.path.isfile(os.path.join(model_path, "preprocessor_config.json")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path, trust_remote_code=bool(trust_remote_code))
    except (OSError, ValueError):
        return None


def mistyped_keys(overrides: Sequence[str]) -> list[str]:
    """One line per command-line override of an ``algorithm.xrpo`` key that is not a setting.

    Only plain overrides (``key=value``): Hydra accepts ``+key`` and ``++key`` as they are, and the
    settings check then names an unknown key the same way."""
    found = []
    prefix = CONFIG_ROOT + "."
    for override in overrides:
        key, sep, _ = override.partition("=")
        if sep and key.startswith(prefix):
            try:
                check_key(key[len(prefix) :])
            except XRPOConfigError as error:
                found.append(f"verl-xrpo: {error}")
    return found


def refuse_mistyped_keys(overrides: Sequence[str]) -> None:
    """Print each mistyped ``algorithm.xrpo`` key and exit with code 2, before Hydra composes."""
    _refuse(mistyped_keys(overrides))


def refuse_broken_run(config: DictConfig) -> None:
    """Print the problems to stderr and exit with code 2; a user's mistake gets no traceback."""
    _refuse(problems(config))


def _refuse(found: list[str]) -> None:
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        raise SystemExit(EXIT_CODE)


def config_problems(
    overrides: Sequence[str], config_dir: str | None = None, config_name: str = "ppo_trainer"
) -> list[str]:
    """What ``main_ppo`` would refuse for these overrides, found without starting it: one line each.
    ``config_dir`` None composes verl's own trainer config, as ``main_ppo`` does by default."""
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.errors import HydraException

    found = mistyped_keys(overrides)
    if found:
        return found
    if config_dir is None:
        context = initialize_config_module(config_module="verl.trainer.config", version_base=None)
    else:
        context = initialize_config_dir(config_dir=os.path.abspath(config_dir), version_base=None)
    try:
        with context:
            config = compose(config_name=config_name, overrides=list(overrides))
    except HydraException as error:
        return [f"verl config: {' '.join(str(error).split())}"]
    return problems(config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_xrpo.preflight",
        description="Check a main_ppo command's config as its preflight would, without starting it.",
    )
    parser.add_argument("--config-path", default=None, help="a config folder (default: verl's own)")
    parser.add_argument("--config-name", default="ppo_trainer", help="default: %(default)s")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as given to main_ppo")
    args = parser.parse_args(argv)
    found = config_problems(args.overrides, args.config_path, args.config_name)
    for problem in found:
        print(problem)
    return EXIT_CODE if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
