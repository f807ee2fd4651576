"""The agreement history behind planning.skip_agreed: what it remembers, and its file."""

from __future__ import annotations

import pytest

from verl_xrpo.core.history import AgreementHistory


def test_only_the_latest_visit_counts_and_unseen_prompts_have_not_agreed():
    history = AgreementHistory()
    assert not history.agreed("What is 2 + 2?")
    history.record("What is 2 + 2?", [1.0, 1.0, 1.0])
    history.record("What is 7 * 8?", [0.0, 0.0])
    history.record("What is 9 - 4?", [0.0, 1.0])
    history.record("What is 1 + 1?", [])  # no rollouts (every generation failed): not a visit
    assert [history.agreed(q) for q in ("What is 2 + 2?", "What is 7 * 8?", "What is 9 - 4?")] == [
        True,
        True,
        False,
    ]
    assert not history.agreed("What is 1 + 1?") and len(history) == 3
    history.record("What is 2 + 2?", [1.0, 0.0])  # mixed again: planned again
    assert not history.agreed("What is 2 + 2?")


def test_the_history_reads_back_from_its_file_and_a_foreign_file_is_refused(tmp_path):
    history = AgreementHistory()
    history.record("What is 7 * 8?", [0.0, 0.0])
    history.record("What is 9 - 4?", [0.0, 1.0])
    history.save(tmp_path / "history.json")
    again = AgreementHistory.load(tmp_path / "history.json")
    assert again.agreed("What is 7 * 8?") and not again.agreed("What is 9 - 4?") and len(again) == 2
    assert "7 * 8" not in (tmp_path / "history.json").read_text()  # digests, not question text
    (tmp_path / "bank.json").write_text('{"exemplars": []}')
    with pytest.raises(ValueError, match=r"bank\.json is not an agreement history"):
        AgreementHistory.load(tmp_path / "bank.json")
