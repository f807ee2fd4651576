"""The installed package registers ``xrpo`` with verl through the ``verl.plugins`` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest


def test_entry_point_is_installed():
    names = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert names.get("xrpo") == "verl_xrpo.plugin", (
        "pip install -e . (the entry point comes from the install)"
    )


def run_fresh(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


def test_a_fresh_process_sees_xrpo_after_import_verl():
    code = (
        "import verl\n"
        "from verl.trainer.ppo import core_algos\n"
        "fn = core_algos.get_adv_estimator_fn('xrpo')\n"
        "print(fn.__module__)\n"
    )
    done = run_fresh(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("verl_xrpo.integration.estimator")


def test_plugin_can_be_switched_off_with_verls_own_variable():
    code = (
        "import verl\n"
        "from verl.trainer.ppo import core_algos\n"
        "print('xrpo' in core_algos.ADV_ESTIMATOR_REGISTRY)\n"
    )
    done = run_fresh(code, VERL_USE_EXTERNAL_PLUGINS="none")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_registering_twice_is_harmless():
    from verl.trainer.ppo import core_algos

    from verl_xrpo.integration.estimator import compute_xrpo_outcome_advantage, register

    register()
    register()
    assert core_algos.get_adv_estimator_fn("xrpo") is compute_xrpo_outcome_advantage


@pytest.mark.parametrize("name", ["grpo", "grpo_vectorized", "rloo"])
def test_stock_estimators_are_untouched(name):
    from verl.trainer.ppo import core_algos

    assert core_algos.get_adv_estimator_fn(name).__module__ == "verl.trainer.ppo.core_algos"
