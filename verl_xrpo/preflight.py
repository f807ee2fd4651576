"""The driver's preflight: what would stop a run is found before Ray starts, one line each.

Hydra calls ``Preflight.on_job_start`` in the process that starts the run, after composing the
config and before verl's task function (``verl.trainer.main_ppo.main``) starts Ray: it sees the
config exactly as verl will, and nothing has started yet. XRPO's config adds the callback to verl's
trainer config (``verl_xrpo/conf/xrpo/preflight.yaml``, through the search-path plugin). Hydra does
not call it for ``--cfg`` or ``--help``, which print and start nothing.

Checked: in CPU mode, the Python environment (``verl_xrpo.cpu.environment``); for an XRPO run,
every setting (``verl_xrpo.integration.checks.check_run``, which XRPO's trainer runs again) and
the XRPO state of the checkpoint it would resume (``verl_xrpo.integration.checkpoint``, which the
trainer's resume reads the same way).
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from verl_xrpo.config import XRPOConfigError

EXIT_CODE = 2  # a usage error, as argparse's


class Preflight(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_broken_run(config)


def problems(config: DictConfig) -> list[str]:
    """One line per reason the run cannot work; empty when it can."""
    from verl_xrpo.cpu import environment, mode
    from verl_xrpo.integration.checkpoint import XRPOCheckpointError, check_resume
    from verl_xrpo.integration.checks import check_run, is_xrpo_run

    found = []
    if mode.is_active():
        found += [f"verl-xrpo CPU mode (no accelerator found): {p}" for p in environment.problems()]
    if is_xrpo_run(config):
        try:
            check_run(config)
            check_resume(config)
        except (XRPOConfigError, XRPOCheckpointError) as error:
            found.append(f"verl-xrpo: {error}")
    return found


def refuse_broken_run(config: DictConfig) -> None:
    """Print the problems to stderr and exit with code 2; a user's mistake gets no traceback."""
    found = problems(config)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        raise SystemExit(EXIT_CODE)
