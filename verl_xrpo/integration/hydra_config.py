"""verl's trainer configs with XRPO's settings group added (used by the Hydra search-path plugin)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from importlib import resources
from pathlib import Path

from verl_xrpo.core.files import write_text_atomically

logger = logging.getLogger(__name__)

# ppo_megatron_trainer.yaml (deprecated) includes ppo_trainer, so it gets the group through it.
TRAINER_CONFIGS = ("ppo_trainer.yaml",)
SELF_ENTRY = "  - _self_\n"
# The settings group goes before _self_ (verl's own keys win); the trainer choice after it, so that
# it replaces verl's default trainer_mode with one that follows algorithm.adv_estimator; then the
# driver's preflight (a Hydra callback, verl_xrpo/preflight.py).
XRPO_ENTRIES = (
    "  - xrpo@algorithm.xrpo: xrpo\n" + SELF_ENTRY + "  - xrpo/select_trainer\n  - xrpo/preflight\n"
)
# verl_xrpo/conf/xrpo/cpu_mode.yaml, only in CPU mode (verl_xrpo.cpu.mode); after the trainer choice.
CPU_MODE_ENTRY = "  - xrpo/cpu_mode\n"

TRAINER_MODE = "xrpo"
VERL_DEFAULT_TRAINER_MODE = "sync"


def trainer_mode_for(adv_estimator: str) -> str:
    """The resolver behind ``trainer.v1.trainer_mode``: XRPO's trainer for the xrpo estimator."""
    return TRAINER_MODE if adv_estimator == "xrpo" else VERL_DEFAULT_TRAINER_MODE


def register_resolvers() -> None:
    """Needed wherever verl's config is resolved: the Hydra driver and Ray's TaskRunner."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("xrpo_trainer_mode"):
        OmegaConf.register_new_resolver("xrpo_trainer_mode", trainer_mode_for)


def with_xrpo_group(verl_yaml: str, cpu_mode: bool = False) -> str:
    """verl's config text with XRPO's defaults entries around ``_self_`` (and CPU mode's preset)."""
    entries = XRPO_ENTRIES + (CPU_MODE_ENTRY if cpu_mode else "")
    head, sep, tail = verl_yaml.partition(SELF_ENTRY)
    if not sep:
        raise ValueError("no '  - _self_' entry in the defaults list")
    return f"{head}{entries}{tail}"


def trainer_config_dir(cpu_mode: bool | None = None) -> Path | None:
    """A folder holding verl's trainer configs with the XRPO group, made once per verl install.

    ``cpu_mode`` (default: whether this process is in CPU mode) adds the CPU preset.

    Returns None (and logs why) if verl's configs cannot be read or have an unexpected shape; Hydra
    then composes verl's own configs, and ``algorithm.xrpo.*`` overrides need a leading ``+``.
    """
    try:
        source = resources.files("verl.trainer.config")
        texts = {name: (source / name).read_text() for name in TRAINER_CONFIGS}
        if cpu_mode is None:
            from verl_xrpo.cpu.mode import is_active

            cpu_mode = is_active()
        patched = {name: with_xrpo_group(text, cpu_mode) for name, text in texts.items()}
    except (OSError, ModuleNotFoundError, ValueError) as error:
        logger.error("verl-xrpo: cannot add algorithm.xrpo to verl's trainer config (%s)", error)
        return None
    digest = hashlib.sha256("".join(patched[n] for n in TRAINER_CONFIGS).encode()).hexdigest()[:16]
    folder = _cache_root() / f"hydra-{digest}"
    if not all((folder / name).is_file() for name in TRAINER_CONFIGS):
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in patched.items():
            write_text_atomically(folder / name, text)
    return folder


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = Path(base) / "verl_xrpo"
    try:
        root.mkdir(parents=True, exist_ok=True)
        return root
    except OSError:  # a read-only home: fall back to the temp folder
        return Path(tempfile.gettempdir()) / f"verl_xrpo-{os.getuid()}"
