"""The multi-epoch allocation benchmark: its drift fit finds a known drift, and every allocator
spends GRPO's budget on the same prompts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks import epochs
from benchmarks.epochs import Drift, drift_log_likelihood, fit_drift, run, visit_pairs


def test_visit_pairs_follow_each_prompt_in_step_order(tmp_path):
    table = pd.DataFrame(
        {
            "step": [1, 1, 3, 6],
            "prompt_key": ["a", "b", "a", "a"],
            "rollouts": [8, 8, 6, 8],
            "successes": [2, 0, 5, 8],
            "seeded_rollouts": [0, 0, 2, 0],
            "seeded_successes": [0, 0, 2, 0],
        }
    )
    path = tmp_path / "rollouts.parquet"
    table.to_parquet(path)
    # seeded rollouts are left out: drawn under another context
    assert visit_pairs([str(path)]).tolist() == [[2, 8, 2, 4, 3], [3, 4, 3, 8, 8]]


def test_the_fit_prefers_the_drift_the_visits_were_drawn_with():
    rng = np.random.default_rng(0)
    true = Drift(0.04, 0.3)
    rows = []
    for _ in range(1500):
        logit = rng.normal(0.0, 1.5)
        gap = int(rng.integers(1, 10))
        later = logit + rng.normal(true.mean * gap, true.sd * np.sqrt(gap))
        p1, p2 = 1 / (1 + np.exp(-logit)), 1 / (1 + np.exp(-later))
        rows.append((gap, 8, rng.binomial(8, p1), 8, rng.binomial(8, p2)))
    pairs = np.array(rows)
    assert drift_log_likelihood(pairs, true) > drift_log_likelihood(pairs, Drift(0.04, 0.0))
    fitted = fit_drift(pairs)
    assert 0.2 <= fitted.sd <= 0.5 and 0.0 <= fitted.mean <= 0.06


def test_every_allocator_runs_the_epochs_at_grpos_budget(monkeypatch):
    spent = []
    original = epochs.sample

    def counting(rates, counts, rng):
        spent.append(int(np.sum(counts)))
        return original(rates, counts, rng)

    monkeypatch.setattr(epochs, "sample", counting)
    rates = np.random.default_rng(1).beta(0.5, 0.5, size=100)
    for allocator in ("uniform", "submission", "oracle"):
        spent.clear()
        shares = run(rates, Drift(0.03, 0.2), allocator, 16, 8, 3, 8, seed=0)
        assert len(shares) == 3 and all(0.0 <= s <= 1.0 for s in shares)
        assert spent == [64] * 6  # two steps an epoch, 8 prompts x 8 rollouts each
    phases = run(rates, Drift(0.03, 0.2), "phases", 16, 8, 3, 8, seed=0)
    assert len(phases) == 3
