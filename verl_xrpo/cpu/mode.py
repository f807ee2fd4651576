"""CPU mode: whether this process runs verl on the host CPU, and what that switches on.

The decision is taken once, in the process that starts the run (the driver), before Ray starts:
CPU mode is on when ``VERL_XRPO_DEVICE=cpu``, or when it is ``auto`` (the default) and verl finds
no accelerator. The driver then exports ``VERL_PLATFORM=cpu`` and the other variables below;
Ray's workers inherit them and follow. A Ray worker never decides by itself: on a GPU cluster
its CPU-only actors see no GPU, and must not switch to CPU because of that.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import MutableMapping

DEVICE_SWITCH = "VERL_XRPO_DEVICE"

# Exported in CPU mode (only where not set already), inherited by every Ray worker.
CPU_ENVIRONMENT = {
    "VERL_PLATFORM": "cpu",
    # verl's engine registry has FSDP under "cuda" only; on the CPU platform it runs as-is.
    "VERL_ENGINE_DEVICE": "cuda",
    "VLLM_TARGET_DEVICE": "cpu",
    # vLLM's CPU KV cache, in GiB: the default (4) is more than a small machine wants to pin.
    "VLLM_CPU_KVCACHE_SPACE": "1",
    # Ray would otherwise write an auth token under the home folder.
    "RAY_AUTH_MODE": "disabled",
}

_log = logging.getLogger("verl_xrpo")


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    ACCELERATOR = "accelerator"


class CPUModeError(RuntimeError):
    """The environment cannot run verl in CPU mode; the message says what to install."""


def requested_device(environ: MutableMapping[str, str]) -> Device:
    value = environ.get(DEVICE_SWITCH, "auto").strip().lower() or "auto"
    try:
        return Device(value)
    except ValueError:
        choices = ", ".join(d.value for d in Device)
        raise CPUModeError(f"{DEVICE_SWITCH}={value!r} is not one of: {choices}") from None


def in_ray_worker(environ: MutableMapping[str, str]) -> bool:
    return "RAY_RAYLET_PID" in environ


def accelerator_present() -> bool:
    """True if any of verl's own platforms (CUDA, ROCm, NPU, ...) finds its device on this host."""
    from verl.plugin.platform import PlatformRegistry

    from verl_xrpo.cpu.platform import PLATFORM_NAME

    for name in PlatformRegistry.registered_names():
        platform_cls = PlatformRegistry.get(name)
        if name == PLATFORM_NAME or platform_cls is None:
            continue
        try:
            if platform_cls().is_platform_available(use_smi_check=True):
                return True
        except Exception:  # a vendor probe failing means that vendor is absent
            continue
    return False


def cpu_mode_wanted(environ: MutableMapping[str, str]) -> bool:
    device = requested_device(environ)
    if device is not Device.AUTO:
        return device is Device.CPU
    if environ.get("VERL_PLATFORM"):
        return is_active(environ)
    if in_ray_worker(environ):
        return False
    return not accelerator_present()


def activate(environ: MutableMapping[str, str] | None = None) -> bool:
    """Decide CPU mode for this process and, if on, set it up. Returns whether it is on."""
    environ = os.environ if environ is None else environ
    if not cpu_mode_wanted(environ):
        return False
    # verl first: ``import verl`` loads this plugin, which activates CPU mode itself. Had the
    # platform module been first, its own ``import verl`` would reach the plugin while the
    # platform module is half-imported and not yet registered.
    import verl  # noqa: F401

    import verl_xrpo.cpu.platform  # noqa: F401  (registers the "cpu" platform with verl)
    from verl_xrpo.cpu.patches import apply_patches

    environ["VERL_PLATFORM"] = CPU_ENVIRONMENT["VERL_PLATFORM"]
    for key, value in CPU_ENVIRONMENT.items():
        environ.setdefault(key, value)
    apply_patches()
    _log.debug("verl-xrpo CPU mode is on in this process")
    return True


def is_active(environ: MutableMapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"
