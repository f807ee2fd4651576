"""The prompt history behind planning.mode 'submission' and skip_agreed: what it remembers, and its file."""

from __future__ import annotations

import pytest

from verl_xrpo.core.history import PromptHistory


def test_the_last_visit_says_whether_a_prompt_agreed_or_failed_everything():
    history = PromptHistory()
    assert not history.agreed("What is 2 + 2?") and not history.seen("What is 2 + 2?")
    history.record("What is 2 + 2?", [1.0, 1.0, 1.0])
    history.record("What is 7 * 8?", [0.0, 0.0])
    history.record("What is 9 - 4?", [0.0, 1.0])
    history.record("What is 1 + 1?", [])  # no rollouts (every generation failed): not a visit
    assert [history.agreed(q) for q in ("What is 2 + 2?", "What is 7 * 8?", "What is 9 - 4?")] == [
        True,
        True,
        False,
    ]
    assert [history.failed_all(q) for q in ("What is 2 + 2?", "What is 7 * 8?", "What is 9 - 4?")] == [
        False,
        True,
        False,
    ]
    assert not history.seen("What is 1 + 1?") and len(history) == 3
    history.record("What is 2 + 2?", [1.0, 0.0])  # mixed again: planned again
    assert not history.agreed("What is 2 + 2?")


def test_estimates_weigh_earlier_visits_by_the_decay_and_start_from_the_mix():
    last_only, every = PromptHistory(decay=0.0), PromptHistory(decay=1.0)
    for history in (last_only, every):
        history.record("q", [1, 1, 1, 1])
        history.record("q", [0, 0, 0, 0])
        history.record("other", [1, 0])
    mix = (5 + 1) / (10 + 2)
    assert last_only.prior_mean() == pytest.approx(mix)
    # Beta posterior mean with the mix worth one rollout: (mix + s) / (1 + t)
    assert last_only.estimate(["q"])[0] == pytest.approx(mix / 5)
    assert every.estimate(["q"])[0] == pytest.approx((mix + 4) / 9)
    assert every.estimate(["never seen"])[0] == pytest.approx(mix)
    half = PromptHistory(decay=0.5)
    half.record("q", [1, 1, 1, 1])
    half.record("q", [0, 0, 0, 0])
    assert half.estimate(["q"])[0] == pytest.approx((half.prior_mean() + 2) / (1 + 6))


def test_memory_is_bounded_by_dropping_the_least_recently_visited():
    history = PromptHistory(max_prompts=2)
    for question in ("a", "b", "a", "c"):
        history.record(question, [1, 0])
    assert len(history) == 2 and history.seen("a") and history.seen("c") and not history.seen("b")


def test_the_history_reads_back_from_its_file_and_a_foreign_file_is_refused(tmp_path):
    history = PromptHistory(decay=0.5)
    history.record("What is 7 * 8?", [0.0, 0.0])
    history.record("What is 9 - 4?", [0.0, 1.0])
    history.save(tmp_path / "history.json")
    again = PromptHistory.load(tmp_path / "history.json", decay=0.5)
    assert again.failed_all("What is 7 * 8?") and not again.agreed("What is 9 - 4?") and len(again) == 2
    assert again.estimate(["What is 9 - 4?"]) == pytest.approx(history.estimate(["What is 9 - 4?"]))
    assert "7 * 8" not in (tmp_path / "history.json").read_text()  # digests, not question text
    (tmp_path / "bank.json").write_text('{"exemplars": []}')
    with pytest.raises(ValueError, match=r"bank\.json is not a prompt history"):
        PromptHistory.load(tmp_path / "bank.json")
