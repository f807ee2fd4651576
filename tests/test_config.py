"""XRPO settings: defaults, nesting, and errors that name the key a user typed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from verl_xrpo import config as config_module
from verl_xrpo.config import PlanningConfig, XRPOConfig, XRPOConfigError, default_of
from verl_xrpo.integration.estimator import xrpo_settings


def test_defaults_follow_the_design():
    config = XRPOConfig()
    assert (config.planning.n_base, config.planning.num_phases, config.planning.alpha) == (4, 3, 0.05)
    assert config.planning.ucb_lambda == 0.01 and config.planning.time_mode == "step"
    assert (config.seeding.num_exemplars, config.seeding.retriever) == (2, "bm25")
    assert (config.sharpening.novelty_weight, config.sharpening.max_ratio) == (2.5, 0.5)
    assert config.success_key == "acc"


def test_every_mechanism_switches_off_on_its_own():
    for name in ("planning", "seeding", "sharpening"):
        config = XRPOConfig.from_mapping({name: {"enable": False}})
        for other in {"planning", "seeding", "sharpening"} - {name}:
            assert getattr(config, other).enable
        assert not getattr(config, name).enable


def test_reads_an_omegaconf_algorithm_node():
    algorithm = OmegaConf.create({"xrpo": {"planning": {"n_base": 3, "n_max": 20}, "success_key": "correct"}})
    config = xrpo_settings(algorithm)
    assert config.planning.n_base == 3 and config.planning.n_max == 20 and config.success_key == "correct"
    assert xrpo_settings(OmegaConf.create({})) == XRPOConfig()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"planing": {}}, r"algorithm\.xrpo\.planing is not an XRPO setting\. Did you mean 'planning'\?"),
        (
            {"planning": {"nbase": 3}},
            r"algorithm\.xrpo\.planning\.nbase is not an XRPO setting\. "
            r"Did you mean 'planning\.n_base'\?",
        ),
        (
            {"planning": {"n_base": "four"}},
            r"algorithm\.xrpo\.planning\.n_base='four' must be a whole number",
        ),
        ({"planning": {"enable": "yes"}}, r"planning\.enable='yes' must be true or false"),
        ({"planning": {"alpha": None}}, r"planning\.alpha cannot be null"),
        ({"sharpening": 3}, r"algorithm\.xrpo\.sharpening must be a group of settings"),
        ({"sharpening": {"max_ratio": -1}}, r"sharpening\.max_ratio=-1\.0 must be finite and non-negative"),
        (
            {"seeding": {"retriever": "dense"}},
            r"seeding\.embedding_model=None is required by retriever='dense'",
        ),
        ({"seeding": {"num_exemplars": 0}}, r"seeding\.num_exemplars=0 must be at least 1"),
        ({"planning": {"mode": "async"}}, r"planning\.mode='async' is unknown"),
        (
            {"planning": {"mode": "submission", "num_phases": 2}},
            r"planning\.num_phases=2 sets the in-step phases, which planning\.mode='submission' "
            r"does not have",
        ),
        (
            {"planning": {"mode": "submission", "overlap_share": 0.75}},
            r"planning\.overlap_share=0\.75 sets the in-step phases",
        ),
        ({"planning": {"history_decay": 1.5}}, r"planning\.history_decay=1\.5 is not in \[0, 1\]"),
    ],
)
def test_bad_settings_name_the_key(values, message):
    with pytest.raises(XRPOConfigError, match=message):
        XRPOConfig.from_mapping(values)


def test_integers_are_accepted_where_floats_are_expected():
    assert XRPOConfig.from_mapping({"planning": {"ucb_lambda": 1}}).planning.ucb_lambda == 1.0


# Every check whose message names the default: the value quoted must be the dataclass's.
DEFAULT_QUOTING_CASES = [
    ("planning.ucb_lambda", {"planning": {"ucb_lambda": -1.0}}),
    ("planning.skip_agreed_base", {"planning": {"skip_agreed_base": 9}}),
    ("phase_timeout_seconds", {"phase_timeout_seconds": 0.0}),
    ("planning.history_decay", {"planning": {"history_decay": -1.0}}),
    ("planning.n_base", {"planning": {"n_base": "four"}}),
    ("planning.alpha", {"planning": {"alpha": None}}),
    ("seeding.retriever", {"seeding": {"retriever": 3}}),
    ("sharpening.enable", {"sharpening": {"enable": "yes"}}),
]


@pytest.mark.parametrize(("key", "values"), DEFAULT_QUOTING_CASES)
def test_messages_quote_the_default_from_the_dataclass(key, values):
    with pytest.raises(XRPOConfigError) as error:
        XRPOConfig.from_mapping(values)
    quoted = re.search(
        r"[Dd]efault is ([^.;,\s]+(?:\.\d+)?)|Use e\.g\. (\S+) \(the default\)", str(error.value)
    )
    assert quoted, f"no default quoted in: {error.value}"
    assert (quoted.group(1) or quoted.group(2)) == default_of(key)


def test_no_default_is_typed_by_hand_in_a_message():
    """A default named in a message is read from the dataclass (``{default}``), never written out."""
    source = Path(config_module.__file__).read_text()
    by_hand = re.findall(r"default is \d|\d \(the default\)|default \(\d", source)
    assert not by_hand, by_hand


def test_default_of_reads_nested_and_top_level_keys():
    assert default_of("planning.ucb_lambda") == str(PlanningConfig().ucb_lambda)
    assert default_of("planning.n_max") == "null" and default_of("seeding.enable") == "true"
    assert default_of("success_key") == "'acc'"
