"""The learning-curve analysis: crossings, censoring, pairing by seed, and the report's summary."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recipe.xrpo.scale_model.compare import ROLLOUT_TABLE_SCHEMA, start_folder
from recipe.xrpo.scale_model.curves import (
    CENSORED_AT,
    CURVE_STEPS,
    DISTURBED_FILE,
    STEPS,
    Curve,
    compact_metrics,
    crossing,
    load_curve,
    median_censored,
    power_table,
)
from recipe.xrpo.scale_model.curves_report import censored_value, report


def curve_of(points: dict[int, float], seconds_per_step: float = 1.0) -> Curve:
    steps = range(STEPS + 1)
    return Curve(
        "x", 0, points, {s: 100.0 * s for s in steps}, {s: seconds_per_step * s for s in steps}, "cpu", "boot"
    )


def test_the_crossing_is_interpolated_between_the_points_around_it():
    curve = curve_of({0: 0.3, 2: 0.4, 4: 0.5, 6: 0.45})
    assert crossing(curve, 0.45) == pytest.approx(3.0)
    assert crossing(curve, 0.45, curve.tokens) == pytest.approx(300.0)
    assert crossing(curve, 0.5) == pytest.approx(4.0)
    assert crossing(curve, 0.3) == pytest.approx(0.0)


def test_a_curve_that_never_reaches_the_threshold_is_censored_not_dropped():
    curve = curve_of({0: 0.3, 2: 0.4, STEPS: 0.42})
    assert crossing(curve, 0.5) is None
    assert censored_value(curve, None, None) == CENSORED_AT
    # tokens and seconds: the run's per-step mean carried on to CENSORED_AT steps
    assert censored_value(curve, None, curve.tokens) == pytest.approx(100.0 * CENSORED_AT)
    assert censored_value(curve, 7.5, None) == 7.5


def test_the_median_counts_censored_values_as_later_than_every_observed_one():
    assert median_censored([3.0, None, 5.0]) == 5.0
    assert median_censored([3.0, None, 5.0, 4.0]) == pytest.approx(4.5)
    assert median_censored([3.0, None, None, 4.0]) is None  # half censored: the median lies beyond the run
    assert median_censored([]) is None


def test_more_seeds_narrow_the_interval_and_the_detectable_difference():
    rows = power_table(0.01, (4, 8))
    assert rows[0]["ci_half"] > rows[1]["ci_half"] and rows[0]["mde80"] > rows[1]["mde80"]
    assert rows[1]["ci_half"] == pytest.approx(2.3646 * 0.01 / 8**0.5, rel=1e-3)


def write_curve_cell(out, variant, seed, accuracy, step_seconds, boot="boot-a", mixed=1.0):
    """A finished curve cell as ``curves run`` leaves it; ``accuracy(step)`` gives the curve."""
    folder = out / "runs" / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    points = [
        {"step": s, "model": f"global_step_{s}", "scores": {"all": {"pass@1": accuracy(s)}}}
        for s in CURVE_STEPS
    ]
    (folder / "curve.json").write_text(json.dumps({"samples": 16, "points": points}))
    lines = [
        json.dumps(
            {
                "step": s,
                "data": {
                    "timing_s/step": step_seconds + 0.5,
                    "timing_s/save_checkpoint": 0.5,
                    "response_length/mean": 10.0,
                },
            }
        )
        for s in range(1, STEPS + 1)
    ]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    rows = []
    for step in range(1, STEPS + 1):
        for group in range(4):  # 4 groups of 8: ``mixed`` of them with mixed outcomes
            successes = 4 if group < 4 * mixed else 0
            row = {"step": step, "prompt_key": f"p{group}", "level": "k2", "rollouts": 8}
            rows.append(
                row
                | {"successes": successes, "seeded_rollouts": 0, "seeded_successes": 0, "response_tokens": 80}
            )
    pq.write_table(pa.Table.from_pylist(rows, schema=ROLLOUT_TABLE_SCHEMA), folder / "rollouts.parquet")
    summary = {"exit_code": 0, "steps_done": STEPS, "machine": "cpu", "boot_id": boot}
    (folder / "summary.json").write_text(json.dumps(summary))
    start = start_folder(out, seed) / "eval.json"
    if not start.is_file():
        start.parent.mkdir(parents=True, exist_ok=True)
        start.write_text(json.dumps({"scores": {"all": {"pass@1": 0.30 + 0.002 * seed}}}))


def test_the_report_pairs_each_variant_with_grpo_by_seed(tmp_path):
    # GRPO climbs linearly from 0.3 to 0.5 at step 40; XRPO gets there twice as fast and then
    # stays, at 1.5x GRPO's seconds a step; seed 2's XRPO ran in another boot (no seconds pair)
    def grpo(step):
        return 0.3 + 0.2 * step / STEPS

    def xrpo(step):
        return min(0.3 + 0.4 * step / STEPS, 0.5)

    for seed in (0, 1, 2, 3):
        write_curve_cell(tmp_path, "grpo", seed, grpo, 10.0, mixed=0.5)
        write_curve_cell(tmp_path, "xrpo", seed, xrpo, 15.0, boot="boot-b" if seed == 2 else "boot-a")
    # seed 3's XRPO cell shared the machine with other work: its seconds say nothing
    (tmp_path / DISTURBED_FILE).write_text(json.dumps({"xrpo:3": "a test run beside it"}))

    assert report(tmp_path, ["grpo", "xrpo"], [0, 1, 2, 3]) == 0

    summary = json.loads((tmp_path / "summary.json").read_text())
    start = 0.303  # the warm start's mean over the four sampling seeds
    assert summary["threshold"] == pytest.approx(start + 0.8 * (0.5 - start))
    g, x = summary["variants"]["grpo"], summary["variants"]["xrpo"]
    assert g["seeds"] == x["seeds"] == [0, 1, 2, 3]
    assert g["auc_mean"] == pytest.approx(sum(grpo(s) for s in CURVE_STEPS) / len(CURVE_STEPS))
    assert x["auc_diff_vs_grpo_mean"] == pytest.approx(
        sum(xrpo(s) - grpo(s) for s in CURVE_STEPS) / len(CURVE_STEPS)
    )
    steps_grpo = (summary["threshold"] - 0.3) / 0.2 * STEPS
    assert g["steps_to_threshold_median"] == pytest.approx(steps_grpo, rel=0.02)
    assert x["steps_to_threshold_diff_vs_grpo_mean"] < -10
    assert "steps_to_threshold_diff_vs_grpo_ci95" not in g
    # tokens: the step's mean response length (10) times its rollouts (32), for both
    assert x["tokens_to_threshold_diff_vs_grpo_mean"] == pytest.approx(
        320 * x["steps_to_threshold_diff_vs_grpo_mean"]
    )
    # seconds: only the two pairs of one boot and undisturbed; the checkpoint's half second is not counted
    assert x["seconds_to_threshold_pairs"] == 2 and x["steps_to_threshold_pairs"] == 4
    assert x["training_seconds_vs_grpo_mean"] == pytest.approx(1.5)
    assert x["useful_share_epochs_2_5"] == pytest.approx(1.0) and g[
        "useful_share_epochs_2_5"
    ] == pytest.approx(0.5)
    assert g["gain_over_start_mean"] == pytest.approx(0.5 - start)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert "| xrpo | 4 |" in (tmp_path / "table.md").read_text()


def test_the_report_refuses_without_two_grpo_cells(tmp_path, capsys):
    write_curve_cell(tmp_path, "grpo", 0, lambda s: 0.4, 10.0)
    assert report(tmp_path, ["grpo"], [0, 1]) == 1
    assert "two finished GRPO cells" in capsys.readouterr().out


def test_a_cell_keeps_only_the_metrics_the_reports_read(tmp_path):
    path = tmp_path / "metrics.jsonl"
    record = {"step": 1, "data": {"timing_s/step": 12.345678, "actor/grad_norm": 0.5, "xrpo/bank_size": 3}}
    path.write_text(json.dumps(record) + "\n")
    compact_metrics(path)
    assert json.loads(path.read_text()) == {"step": 1, "data": {"timing_s/step": 12.35, "xrpo/bank_size": 3}}


def test_a_cell_without_its_curve_is_not_loaded(tmp_path):
    assert load_curve(tmp_path, "grpo", 0) is None
