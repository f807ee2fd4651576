"""The rollout dump's XRPO fields hold enough to recompute a step's advantages, and the check can fail."""

from __future__ import annotations

import json
import random

import pytest
import torch

from verl_xrpo.config import SharpeningConfig
from verl_xrpo.core.advantage import compute_advantage
from verl_xrpo.eval.rollout_dump import largest_advantage_difference, read_step, read_steps, rollout_fields

GROUP_SIZES = [4, 7, 2, 5, 6]  # uneven, as XRPO's planner leaves them
WIDTH = 9


def trained_step(seed: int = 0):
    """Token-level tensors as the actor gets them (float32, ragged responses), plus one padding row."""
    gen = torch.Generator().manual_seed(seed)
    uids = [f"u{g}" for g, size in enumerate(GROUP_SIZES) for _ in range(size)] + ["pad0"]
    n = len(uids)
    lengths = torch.randint(1, WIDTH + 1, (n,), generator=gen)
    lengths[-1] = 0  # verl's padding row has an empty response
    mask = (torch.arange(WIDTH) < lengths[:, None]).to(torch.int64)
    scores = (torch.rand(n, generator=gen) < 0.5).float()
    scores[-1] = 0.0
    rewards = torch.zeros(n, WIDTH)
    rewards[torch.arange(n - 1), (lengths[:-1] - 1).clamp_min(0)] = scores[:-1]
    log_probs = -torch.rand(n, WIDTH, generator=gen) * 3 * mask
    result = compute_advantage(rewards, mask, uids, log_probs)
    tags = [{}] * (n - 1) + [{"is_padding": True}]
    return result, mask, log_probs, uids, tags, scores


def write_dump(path, seed: int = 0, shuffle: bool = True) -> None:
    result, mask, log_probs, uids, tags, scores = trained_step(seed)
    fields = rollout_fields(result.advantages, mask, log_probs, uids, tags)
    rows = [
        {"input": "q", "output": "a", "score": float(scores[i]), "step": int(path.stem)}
        | {name: values[i] for name, values in fields.items()}
        for i in range(len(uids))
    ]
    if shuffle:  # verl's dump order is by key, not the order the actor saw
        random.Random(seed).shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_dump_recomputes_to_the_trained_advantages(tmp_path):
    write_dump(tmp_path / "3.jsonl")
    step = read_step(tmp_path / "3.jsonl")
    assert step.step == 3
    assert sorted(step.rollouts_per_prompt.values()) == sorted(GROUP_SIZES)  # the padding row is left out
    assert largest_advantage_difference(step, SharpeningConfig()) < 1e-5
    assert any(r["advantage"] != 0 for r in step.rows)


def test_a_split_group_is_caught(tmp_path):
    """What a rank that grouped by its own share would do: one rollout lands in another group."""
    write_dump(tmp_path / "1.jsonl")
    step = read_step(tmp_path / "1.jsonl")
    moved = next(r for r in step.rows if r["prompt_uid"] == "u1" and r["advantage"] != 0)
    moved["prompt_uid"] = "u3"
    assert largest_advantage_difference(step, SharpeningConfig()) > 0.01


def test_recomputing_with_other_sharpening_settings_disagrees(tmp_path):
    write_dump(tmp_path / "1.jsonl")
    step = read_step(tmp_path / "1.jsonl")
    assert largest_advantage_difference(step, SharpeningConfig(enable=False)) > 1e-3


def test_steps_come_in_order_and_a_plain_verl_dump_is_refused(tmp_path):
    for number in (10, 2, 1):
        write_dump(tmp_path / f"{number}.jsonl", seed=number)
    assert [s.step for s in read_steps(tmp_path)] == [1, 2, 10]
    plain = tmp_path / "plain" / "1.jsonl"
    plain.parent.mkdir()
    plain.write_text(
        json.dumps({"input": "q", "output": "a", "score": 1.0, "step": 1, "uid": "k_0_0"}) + "\n"
    )
    with pytest.raises(ValueError, match="no XRPO fields"):
        read_step(plain)
