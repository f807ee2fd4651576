"""The first-visit prior benchmark: only first visits are scored, and where a level's prompts always
fail and another's always succeed, the level and similar-prompt priors beat the running mix."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.prompt_prior import LEVEL, MIX, compare, first_visits


def trace(steps: int = 20) -> tuple[pd.DataFrame, dict[str, str]]:
    """Each step one new prompt of a level that always succeeds, one of a level that always fails,
    and from step 3 a revisit of step 1's solved prompt, half of it seeded."""
    rows, questions = [], {}
    for step in range(1, steps + 1):
        for level, wins in (("easy", 8), ("dead", 0)):
            key = f"{level}{step}"
            topic = "apples pears" if wins else "comets orbits"
            questions[key] = f"{level} problem about {topic} number{step}"
            rows.append((step, key, level, 8, wins, 0, 0))
        if step >= 3:
            rows.append((step, "easy1", "easy", 8, 8, 4, 4))
    columns = ["step", "prompt_key", "level", "rollouts", "successes", "seeded_rollouts", "seeded_successes"]
    return pd.DataFrame(rows, columns=columns), questions


def test_only_first_visits_are_scored_against_the_steps_before():
    frame, questions = trace(steps=4)
    # a second group of a new prompt in its first step is a first visit too
    frame.loc[len(frame)] = (4, "dead4", "dead", 8, 0, 0, 0)
    visits = first_visits(frame, questions, neighbours=(1,))
    order = ["easy1", "dead1", "easy2", "dead2", "easy3", "dead3", "easy4", "dead4", "dead4"]
    assert visits.prompt_key.tolist() == order
    first = visits[visits.step == 1]
    # nothing seen yet: every prior is the mix, one success in two
    assert (first[[MIX, LEVEL, "bm25 k=1"]] == 0.5).all().all()
    # step 2: 8 successes in 16 rollouts; the easy level's 8 in 8; the nearest prompt is solved
    easy2 = visits.set_index("prompt_key").loc["easy2"]
    assert easy2[MIX] == pytest.approx(9 / 18)
    assert easy2[LEVEL] == pytest.approx(9 / 10)
    assert easy2["bm25 k=1"] > 0.8
    # step 4 sees step 3's revisit of easy1 by its unseeded rollouts alone: 4 of 4 more successes
    mix = (3 * 8 + 4 + 1) / (6 * 8 + 4 + 2)
    assert visits.set_index("prompt_key").loc["easy4", MIX] == pytest.approx(mix)


def test_level_and_similar_prompts_beat_the_mix_where_a_level_always_fails():
    frame, questions = trace()
    cells = [first_visits(frame, questions, neighbours=(5,)).assign(cell=c, seed=c) for c in ("a", "b")]
    table = compare(pd.concat(cells, ignore_index=True), (1.0, 2.0, 4.0), resamples=200)
    assert table[MIX]["visits"] == 2 * 40
    assert table[MIX]["gain"] == 0.0
    for name in (LEVEL, "bm25 k=5"):
        row = table[name]
        assert row["score"] > table[MIX]["score"] + 0.1
        assert row["gain"] == pytest.approx(row["score"] - table[MIX]["score"])
        assert row["gain_prompts_bootstrap"][0] > 0.0
