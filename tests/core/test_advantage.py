"""XRPO advantages against verl's own estimators and the sharpening bounds."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from verl.trainer.ppo import core_algos

from verl_xrpo.core.advantage import compute_advantage
from verl_xrpo.integration import estimator


def make_batch(group_sizes, tokens=7, seed=0, mask_dtype=torch.int64, reward_values=(0.0, 1.0)):
    gen = torch.Generator().manual_seed(seed)
    n = sum(group_sizes)
    lengths = torch.randint(1, tokens + 1, (n,), generator=gen)
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).to(mask_dtype)
    values = torch.tensor(reward_values)
    scores = values[torch.randint(0, len(values), (n,), generator=gen)]
    rewards = torch.zeros(n, tokens)
    rewards[torch.arange(n), lengths - 1] = scores
    uid = np.array([f"uid-{g}" for g, size in enumerate(group_sizes) for _ in range(size)], dtype=object)
    order = torch.randperm(n, generator=gen)  # verl's batches are not sorted by group
    log_probs = -3.0 * torch.rand(n, tokens, generator=gen)
    return rewards[order], mask[order], uid[order.numpy()], log_probs[order]


def algorithm_config(**xrpo):
    return OmegaConf.create({"adv_estimator": "xrpo", "norm_adv_by_std_in_grpo": True, "xrpo": xrpo})


group_sizes = st.lists(st.integers(1, 9), min_size=1, max_size=10)


@settings(max_examples=100, deadline=None)
@given(
    sizes=group_sizes,
    seed=st.integers(0, 10_000),
    norm=st.booleans(),
    values=st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 0.3, 0.7, 2.5)]),
)
def test_without_sharpening_equals_verl_grpo(sizes, seed, norm, values):
    rewards, mask, uid, log_probs = make_batch(sizes, seed=seed, reward_values=values)
    expected, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, uid, norm_adv_by_std_in_grpo=norm)
    config = algorithm_config(sharpening={"enable": False})
    config.norm_adv_by_std_in_grpo = norm
    xrpo = core_algos.get_adv_estimator_fn("xrpo")
    ours, returns = xrpo(
        token_level_rewards=rewards, response_mask=mask, index=uid, config=config, old_log_probs=log_probs
    )
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert ours.dtype == expected.dtype
    assert returns is ours


def test_one_row_groups_and_all_equal_groups_match_verl():
    rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    mask = torch.ones(5, 2, dtype=torch.int64)
    uid = np.array(["single", "mixed", "mixed", "mixed", "x"], dtype=object)  # two one-row groups
    expected, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, uid)
    ours = compute_advantage(rewards, mask, uid, sharpen=False).advantages
    torch.testing.assert_close(ours, expected)
    assert ours[0, 0].item() == pytest.approx(1.0 / (1.0 + 1e-6))  # one-row group: raw score
    same = compute_advantage(torch.ones(3, 2), torch.ones(3, 2), ["a", "a", "a"], sharpen=False).advantages
    assert torch.count_nonzero(same) == 0  # all-equal group: std 0, advantage 0, not NaN


@settings(max_examples=100, deadline=None)
@given(sizes=group_sizes, seed=st.integers(0, 10_000), weight=st.floats(0, 10), kappa=st.floats(0, 2))
def test_sharpening_bounds(sizes, seed, weight, kappa):
    rewards, mask, uid, log_probs = make_batch(sizes, seed=seed)
    result = compute_advantage(rewards, mask, uid, log_probs, novelty_weight=weight, max_ratio=kappa)
    a, a_plus = result.base, result.base + result.bonus
    positive = a > 0
    assert torch.all(a_plus[positive] >= a[positive])
    assert torch.all(a_plus[positive] <= (1 + kappa) * a[positive] * (1 + 1e-6))
    assert torch.equal(a_plus[~positive], a[~positive])
    expected_tokens = a_plus.unsqueeze(-1) * mask
    torch.testing.assert_close(result.advantages, expected_tokens)


def test_sharpening_matches_hand_computation():
    # One group: two correct answers (one likely, one unlikely) and two wrong ones.
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]])
    log_probs = torch.tensor([[-0.1, -0.1, -9.0], [-1.0, -2.0, -3.0], [-0.5, 5.0, 5.0], [-0.2, -0.4, 7.0]])
    rewards = torch.zeros(4, 3)
    rewards[0, 1] = rewards[1, 2] = 1.0
    result = compute_advantage(rewards, mask, ["q"] * 4, log_probs, novelty_weight=2.5, max_ratio=0.5)

    s = [-0.1, -2.0, -0.5, -0.3]  # masked mean log-likelihoods
    mean_s = sum(s) / 4
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)  # (1 - 0.5) / std(ddof=1) of [1, 1, 0, 0]
    bonus_likely = min(max(2.5 * (1 - math.exp(s[0] - mean_s)), 0), 0.5 * a)
    bonus_unlikely = min(max(2.5 * (1 - math.exp(s[1] - mean_s)), 0), 0.5 * a)
    assert bonus_likely == 0.0 and bonus_unlikely > 0
    assert result.bonus.tolist() == pytest.approx([bonus_likely, bonus_unlikely, 0.0, 0.0], rel=1e-6)
    assert result.sharpened.tolist() == [False, True, False, False]
    assert result.advantages[1].tolist() == pytest.approx([a + bonus_unlikely] * 3, rel=1e-6)
    assert result.advantages[0, 2].item() == 0.0  # outside the mask


def test_less_likely_correct_answers_get_at_least_as_much():
    gen = torch.Generator().manual_seed(1)
    mask = torch.ones(8, 5, dtype=torch.int64)
    rewards = torch.zeros(8, 5)
    rewards[:4, -1] = 1.0
    log_probs = -torch.rand(8, 5, generator=gen) * 4
    result = compute_advantage(rewards, mask, ["g"] * 8, log_probs, max_ratio=10.0)
    seq = log_probs.mean(-1)[:4]
    order = torch.argsort(seq)  # least likely first
    bonus = result.bonus[:4][order]
    assert torch.all(bonus[:-1] >= bonus[1:])


@pytest.mark.parametrize("mask_dtype", [torch.int64, torch.bool, torch.float32])
def test_mask_dtypes_agree_and_inputs_are_not_modified(mask_dtype):
    rewards, mask, uid, log_probs = make_batch([3, 4, 1, 5], mask_dtype=mask_dtype)
    snapshot = (rewards.clone(), mask.clone(), log_probs.clone())
    result = compute_advantage(rewards, mask, uid, log_probs)
    reference = compute_advantage(rewards, mask.to(torch.int64), uid, log_probs)
    torch.testing.assert_close(result.advantages, reference.advantages)
    assert result.advantages.dtype == torch.float32
    for before, after in zip(snapshot, (rewards, mask, log_probs), strict=False):
        assert torch.equal(before, after)


def test_without_log_probs_it_is_grpo_and_says_so_once(caplog, monkeypatch):
    monkeypatch.setattr(estimator, "_warned_no_log_probs", False)
    rewards, mask, uid, _ = make_batch([4, 4])
    expected, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, uid)
    xrpo = core_algos.get_adv_estimator_fn("xrpo")
    with caplog.at_level(logging.WARNING):
        first, _ = xrpo(token_level_rewards=rewards, response_mask=mask, index=uid, config=algorithm_config())
        xrpo(token_level_rewards=rewards, response_mask=mask, index=uid, config=algorithm_config())
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-5)
    warnings = [r for r in caplog.records if "sharpening is skipped" in r.getMessage()]
    assert len(warnings) == 1


def test_rollout_log_probs_are_the_fallback():
    rewards, mask, uid, log_probs = make_batch([4, 4], seed=3)
    xrpo = core_algos.get_adv_estimator_fn("xrpo")
    via_old, _ = xrpo(rewards, mask, uid, config=algorithm_config(), old_log_probs=log_probs)
    via_rollout, _ = xrpo(rewards, mask, uid, config=algorithm_config(), rollout_log_probs=log_probs)
    torch.testing.assert_close(via_old, via_rollout)


def test_estimator_reads_its_knobs_from_the_algorithm_config():
    rewards, mask, uid, log_probs = make_batch([6, 6], seed=4)
    xrpo = core_algos.get_adv_estimator_fn("xrpo")
    capped, _ = xrpo(
        rewards, mask, uid, config=algorithm_config(sharpening={"max_ratio": 0.0}), old_log_probs=log_probs
    )
    plain = compute_advantage(rewards, mask, uid, sharpen=False).advantages
    torch.testing.assert_close(capped, plain)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rewards": torch.zeros(3)}, "must be \\(responses, tokens\\)"),
        ({"mask": torch.ones(3, 4)}, "response_mask shape"),
        ({"uid": ["a", "b"]}, "index has 2 entries for 3 responses"),
        ({"log_probs": torch.zeros(3, 4)}, "log_probs shape"),
    ],
)
def test_bad_input_is_refused_clearly(change, message):
    args = {
        "rewards": torch.zeros(3, 5),
        "mask": torch.ones(3, 5),
        "uid": ["a", "a", "b"],
        "log_probs": torch.zeros(3, 5),
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        compute_advantage(args["rewards"], args["mask"], args["uid"], args["log_probs"])
