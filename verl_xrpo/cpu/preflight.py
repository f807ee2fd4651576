"""Stop a CPU training run whose environment cannot work, with one sentence instead of a Ray trace.

Only the driver of ``python -m verl.trainer.main_ppo`` is checked: every other process that
imports verl (tests, tools, Ray workers) is left alone, and so are ``--cfg``/``--help`` runs,
which print the config and start nothing.
"""

from __future__ import annotations

import sys
from pathlib import PurePath

from verl_xrpo.cpu.environment import problems

_MAIN_MODULE = PurePath("verl", "trainer", "main_ppo.py")
_PRINT_ONLY_FLAGS = ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i")


def is_training_driver(argv: list[str]) -> bool:
    if not argv or PurePath(argv[0]).parts[-3:] != _MAIN_MODULE.parts:
        return False
    return not any(arg in _PRINT_ONLY_FLAGS or arg.startswith("--cfg=") for arg in argv[1:])


def refuse_broken_cpu_run(argv: list[str] | None = None) -> None:
    argv = sys.argv if argv is None else argv
    if not is_training_driver(argv):
        return
    found = problems()
    if found:
        for problem in found:
            print(f"verl-xrpo CPU mode (no accelerator found): {problem}", file=sys.stderr)
        raise SystemExit(2)
