"""The dataclasses of verl_xrpo/config.py are the one source of XRPO's settings and defaults.

The README's settings table is checked against them here, the trainer's start-up notice prints
from them, and verl_xrpo/conf/xrpo/xrpo.yaml is checked in tests/integration/test_hydra_config.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import OmegaConf

from tests.trees import leaves
from verl_xrpo.config import XRPOConfig
from verl_xrpo.core.planner import RolloutPlanner
from verl_xrpo.integration.trainer import describe

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Settings (`algorithm.xrpo.*`)"


DEFAULTS = leaves(XRPOConfig().to_dict())


def readme_table() -> dict[str, str]:
    """key -> documented default, from the first table after the README's settings heading."""
    lines = README.read_text().splitlines()
    start = lines.index(SECTION)
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("| key | default |"))
    rows: dict[str, str] = {}
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        key, default = (cell.strip().strip("`") for cell in line.strip("|").split("|")[:2])
        assert key not in rows, f"{key} is in the README's settings table twice"
        rows[key] = default
    return rows


def same(documented: str, default: object) -> bool:
    value = yaml.safe_load(documented)
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    return value == default


def test_the_readme_lists_every_setting_and_no_other():
    documented = readme_table()
    assert sorted(DEFAULTS.keys() - documented.keys()) == [], "settings missing from the README's table"
    assert sorted(documented.keys() - DEFAULTS.keys()) == [], "README rows that are no setting"


def test_the_readme_gives_each_settings_default():
    documented = readme_table()
    wrong = {
        key: (documented[key], value)
        for key, value in DEFAULTS.items()
        if key in documented and not same(documented[key], value)
    }
    assert wrong == {}, "README default vs dataclass default"


def test_the_start_up_notice_prints_every_setting():
    settings = XRPOConfig()
    planner = RolloutPlanner(settings.planning, 8)
    config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"n": 8, "prompt_length": 2048}}})
    lines = describe(settings, planner, config).splitlines()
    printed: dict[str, str] = {}
    for line in lines[1:]:
        label, _, rest = line.strip().partition(":")
        section = "" if label == "success" else f"{label}."
        for pair in rest.split():
            if "=" in pair:
                name, value = pair.split("=", 1)
                printed[section + name] = value
    expected = {key: str(value) for key, value in DEFAULTS.items() if not key.endswith(".enable")}
    assert expected.pop("planning.n_max") == "None" and printed.pop("planning.n_max") == "16"  # 2 x rollout.n
    # planning.mode=auto is printed with what it means in the trainer (the synchronous one: phases)
    assert expected.pop("planning.mode") == "auto" and printed.pop("planning.mode") == "auto(phases)"
    assert printed == expected
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["planning:", "on"],
        ["seeding:", "on"],
        ["sharpening:", "on"],
    ]
