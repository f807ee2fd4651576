"""The generation-time benchmark's engine model and schedules (benchmarks/generation.py)."""

import numpy as np
import pytest

from benchmarks.allocation import MIXTURES
from benchmarks.epochs import Drift
from benchmarks.generation import (
    SUBMISSION,
    Engine,
    EngineRun,
    LastVisit,
    Lengths,
    benchmark,
    main,
    plan_submission,
    run_step,
)
from verl_xrpo.config import PlanningConfig, SeedingConfig


def test_one_slot_runs_requests_one_after_the_other():
    engine = Engine(replicas=1, max_num_seqs=1, base_ms=10.0, per_seq_ms=0.0)
    sim = EngineRun(engine)
    sim.submit(0, 100)
    sim.submit(1, 50)
    assert sim.advance() == [0]
    assert sim.advance() == [1]
    assert sim.now == pytest.approx(150 * 0.010)
    assert sim.advance() == []


def test_sequences_in_flight_share_iterations_and_requests_spread_over_replicas():
    engine = Engine(replicas=2, max_num_seqs=4, base_ms=10.0, per_seq_ms=1.0)
    sim = EngineRun(engine)
    for request, length in enumerate([100, 100, 10, 10]):
        sim.submit(request, length)
    assert [sim.outstanding(r) for r in range(2)] == [2, 2]
    finished = sim.advance()
    # each replica runs 2 sequences: 12 ms an iteration, the 10-token ones finish first
    assert sorted(finished) == [2, 3] and sim.now == pytest.approx(10 * 0.012)


@pytest.mark.parametrize("overlap", [1.0, 0.75, 0.5])
def test_every_schedule_spends_exactly_the_grpo_budget(overlap):
    rng = np.random.default_rng(0)
    rates = rng.beta(0.5, 0.5, size=16)
    engine = Engine(replicas=2, max_num_seqs=8)
    lengths = Lengths(median=50.0, max_len=400)
    grpo = run_step(rates, 8, 1, None, 1.0, SeedingConfig(), lengths, engine, np.random.default_rng(1))
    xrpo = run_step(
        rates,
        8,
        1,
        PlanningConfig(),
        overlap,
        SeedingConfig(),
        lengths,
        engine,
        np.random.default_rng(1),
    )
    for result in (grpo, xrpo):
        assert result.rollouts == 16 * 8
        assert 0.0 < result.slot_utilisation <= 1.0
    if overlap == 1.0:  # each barrier adds a wait for the phase's slowest rollout
        assert xrpo.seconds > grpo.seconds


def test_barriers_cost_more_than_the_overlapped_schedule_on_heavy_tails():
    rates = np.random.default_rng(0).beta(0.5, 0.5, size=64)
    common = dict(
        rates=rates, rollout_n=8, step=1, seeding=SeedingConfig(), lengths=Lengths(), engine=Engine()
    )
    built = run_step(planning=PlanningConfig(), overlap_share=1.0, rng=np.random.default_rng(2), **common)
    overlapped = run_step(
        planning=PlanningConfig(), overlap_share=0.5, rng=np.random.default_rng(2), **common
    )
    assert overlapped.seconds < built.seconds


def test_cli_prints_a_table_and_refuses_a_bad_share(capsys):
    assert main(["--draws", "1", "--prompts", "8", "--mixtures", "math_hard", "--max-len", "512"]) == 0
    out = capsys.readouterr().out
    assert "xrpo (phases as built)" in out and "vs GRPO" in out
    with pytest.raises(SystemExit):
        main(["--overlap", "1.5"])
    with pytest.raises(SystemExit):
        main(["--phases", "1"])


def test_fewer_phases_wait_at_fewer_barriers():
    mixture = next(m for m in MIXTURES if m.name == "math_hard")
    table = benchmark(mixture, 3, 32, 8, Lengths(), Engine(), overlap_shares=(), seed=0, phase_counts=(2, 3))
    assert set(table) == {"grpo", "xrpo (phases as built)", "xrpo, 2 phases"}  # 3 is the default
    # one phase's slowest rollout less to wait for
    assert table["xrpo, 2 phases"]["seconds"] < table["xrpo (phases as built)"]["seconds"]
    # useful share against the barrier's, paired by draw: none for itself, GRPO's well below
    assert table["xrpo (phases as built)"]["useful_vs_built_pt"] == 0.0
    grpo = table["grpo"]
    assert grpo["useful_vs_built_pt"] + grpo["useful_vs_built_half_pt"] < 0


def test_seeded_rollouts_succeed_as_often_as_seeding_makes_them():
    """Prompts that failed everything so far get rollouts drawn at max(p, seeded_success)."""
    rates = np.zeros(16)  # nothing is solved without an exemplar
    common = dict(
        rates=rates,
        rollout_n=8,
        step=1,
        overlap_share=1.0,
        seeding=SeedingConfig(),
        lengths=Lengths(median=50.0, max_len=400),
        engine=Engine(replicas=1, max_num_seqs=64),
    )
    unseeded = run_step(planning=PlanningConfig(), rng=np.random.default_rng(5), **common)
    seeded = run_step(planning=PlanningConfig(), rng=np.random.default_rng(5), seeded_success=0.5, **common)
    grpo = run_step(planning=None, rng=np.random.default_rng(5), seeded_success=0.5, **common)
    assert unseeded.useful_share == 0.0 and grpo.useful_share == 0.0  # GRPO does not seed
    assert seeded.useful_share > 0.0


def test_an_overlapped_phase_seeds_prompts_on_the_failures_that_are_in():
    """Under an overlap, a prompt whose rollouts in so far all failed is seeded in the later phase
    though some of its rollouts still run (waiting for them left ~1 prompt in 5 seeded here)."""
    common = dict(
        rates=np.zeros(16),
        rollout_n=8,
        step=1,
        planning=PlanningConfig(num_phases=2),  # one later phase: seeded there or never
        seeding=SeedingConfig(),
        lengths=Lengths(median=50.0, max_len=400),
        engine=Engine(replicas=1, max_num_seqs=256),
        seeded_success=1.0,  # a seeded rollout always succeeds: a seeded prompt's group is mixed
    )
    overlapped = [run_step(overlap_share=0.5, rng=np.random.default_rng(s), **common) for s in range(5)]
    barrier = [run_step(overlap_share=1.0, rng=np.random.default_rng(s), **common) for s in range(5)]
    assert all(r.useful_share == 1.0 for r in barrier)  # every prompt failed all of phase 1: seeded
    assert np.mean([r.useful_share for r in overlapped]) > 0.6


def test_cli_runs_recorded_rates_alone(tmp_path, capsys):
    rates = tmp_path / "never.json"
    rates.write_text("[0.0, 0.0]")
    args = ["--draws", "1", "--prompts", "4", "--max-len", "256", "--overlap", "0.5"]
    assert main([*args, "--rates", str(rates), "--mixtures", "--seeded-success", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "recorded (never.json, 2 prompts)" in out and "math_hard" not in out
    assert "max(p, 0.3)" in out
    with pytest.raises(SystemExit):
        main([*args, "--mixtures"])  # nothing left to run
    with pytest.raises(SystemExit):
        main([*args, "--seeded-success", "1.5"])


def test_the_submission_generates_once_at_grpos_budget_and_waits_no_longer_than_the_phases():
    """planning.mode=submission: one generation call a step, the step's prompts x rollout.n
    rollouts, so one tail to wait for where the phases wait for three."""
    for seed in range(3):
        rates = np.random.default_rng(seed).beta(0.5, 0.5, size=64)
        common = dict(rates=rates, rollout_n=8, step=1, overlap_share=1.0, seeding=SeedingConfig())
        common |= dict(lengths=Lengths(), engine=Engine())
        submission = run_step(
            planning=PlanningConfig(mode="submission"), rng=np.random.default_rng([seed, 1]), **common
        )
        built = run_step(planning=PlanningConfig(), rng=np.random.default_rng([seed, 1]), **common)
        assert submission.submissions == 1 and built.submissions == 3
        assert submission.rollouts == built.rollouts == 64 * 8
        assert submission.seconds <= built.seconds


def test_the_submission_plans_from_the_earlier_visit():
    """With no drift the earlier visit is drawn at today's rates: a prompt never solved failed it and
    is seeded, and the prompts whose visit was mixed get most of the budget."""
    rates = np.array([0.0] * 4 + [1.0] * 4 + [0.5] * 8)
    counts, seeded = plan_submission(
        rates,
        8,
        1,
        PlanningConfig(mode="submission"),
        SeedingConfig(),
        LastVisit(Drift(0.0, 0.0), gap=8),
        np.random.default_rng(0),
    )
    assert counts.sum() == 16 * 8 and counts.max() <= 16
    assert seeded.tolist() == [True] * 4 + [False] * 12
    assert counts[:8].max() < 8 < counts[8:].min()


def test_the_table_has_a_submission_row_when_given_a_history(capsys):
    mixture = next(m for m in MIXTURES if m.name == "math_hard")
    table = benchmark(mixture, 3, 32, 8, Lengths(), Engine(), (), seed=0, last_visit=LastVisit())
    assert list(table) == ["grpo", "xrpo (phases as built)", SUBMISSION]
    # one call at GRPO's budget: GRPO's time, and a better useful share than GRPO's from its history
    assert table[SUBMISSION]["vs_grpo"] < table["xrpo (phases as built)"]["vs_grpo"]
    assert table[SUBMISSION]["useful_share"] > table["grpo"]["useful_share"]
    assert main(["--draws", "1", "--prompts", "8", "--mixtures", "math_hard", "--visit-gap", "2"]) == 0
    assert "2 steps back" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--visit-gap", "0"])
