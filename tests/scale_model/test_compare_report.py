"""The comparison's report: from the cells' verl metrics to the table, CSV and plot."""

from __future__ import annotations

import csv
import json

import pytest

from recipe.xrpo.scale_model.compare import (
    START,
    VAL_ACC,
    VARIANTS,
    Cell,
    format_summary,
    report,
    start_folder,
    steps_to_reach,
)


def write_cell(out, variant, seed, curve, step_seconds):
    cell = Cell(VARIANTS[variant], seed, out)
    cell.folder.mkdir(parents=True)
    with (cell.folder / "metrics.jsonl").open("w") as handle:
        for step, (acc, seconds) in enumerate(zip(curve, step_seconds, strict=True), start=1):
            data = {"timing_s/step": seconds, "timing_s/gen": seconds / 2, "critic/score/mean": 0.3}
            if acc is not None:
                data[VAL_ACC] = acc
            if variant.startswith("xrpo"):
                data.update(
                    {"xrpo/useful_rollout_share": 0.8, "xrpo/seeding/prompts_with_seeded_success": 1.0}
                )
            handle.write(json.dumps({"step": step, "data": data}) + "\n")
    return cell


def test_report_compares_variants_at_grpos_final_accuracy(tmp_path):
    cells = [
        write_cell(tmp_path, "grpo", 0, [0.2, None, 0.4], [10.0, 2.0, 2.0]),
        write_cell(tmp_path, "grpo", 1, [0.2, None, 0.5], [10.0, 2.0, 2.0]),
        write_cell(tmp_path, "xrpo", 0, [0.2, 0.45, 0.5], [10.0, 2.2, 2.2]),
        write_cell(tmp_path, "xrpo", 1, [0.3, None, 0.6], [10.0, 2.2, 2.2]),
    ]
    table = report(tmp_path, cells, rollouts_per_step=64)
    assert table["grpo"]["final_val_acc_mean"] == pytest.approx(0.45)
    assert table["xrpo"]["final_val_acc_mean"] == pytest.approx(0.55)
    assert table["xrpo"]["steps_to_grpo_final"] == pytest.approx((2 + 3) / 2)
    assert table["xrpo"]["rollouts_to_grpo_final"] == pytest.approx(2.5 * 64)
    assert table["xrpo"]["median_gen_seconds"] == pytest.approx(1.1)
    assert table["xrpo"]["step_time_vs_grpo"] == pytest.approx(1.1)
    assert table["xrpo"]["seeded_prompts_solved"] == 6
    with (tmp_path / "steps.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 12
    assert (tmp_path / "val_accuracy.png").stat().st_size > 1000
    assert (tmp_path / "step_time.png").stat().st_size > 1000
    assert json.loads((tmp_path / "summary.json").read_text()).keys() == {"grpo", "xrpo"}
    assert format_summary(table).splitlines()[2].startswith("| grpo |")


def test_a_variant_that_never_reaches_the_target_has_no_step_count():
    rows = [{"seed": 0, "step": 1, "val_acc": 0.1}, {"seed": 1, "step": 1, "val_acc": 0.9}]
    assert steps_to_reach(rows, {0: 0.5, 1: 0.5}) is None


def test_each_seed_has_its_own_target_and_validation_before_training_does_not_count():
    rows = [
        {"seed": 0, "step": 0, "val_acc": 0.6},
        {"seed": 0, "step": 5, "val_acc": 0.5},
        {"seed": 0, "step": 10, "val_acc": 0.6},
        {"seed": 1, "step": 0, "val_acc": 0.2},
        {"seed": 1, "step": 5, "val_acc": 0.3},
    ]
    assert steps_to_reach(rows, {0: 0.55, 1: 0.25}) == pytest.approx((10 + 5) / 2)


def write_eval(folder, pass_at_1):
    folder.mkdir(parents=True, exist_ok=True)
    scores = {"prompts": 8.0, "pass@1": pass_at_1, "cons@4": pass_at_1 + 0.1}
    (folder / "eval.json").write_text(json.dumps({"scores": {"all": scores}}))


def test_report_pairs_each_final_checkpoint_with_its_seeds_warm_start(tmp_path):
    cells = [write_cell(tmp_path, "grpo", seed, [0.2, 0.3], [10.0, 2.0]) for seed in (1, 2)] + [
        write_cell(tmp_path, "xrpo", seed, [0.2, 0.3], [10.0, 2.0]) for seed in (1, 2)
    ]
    for seed, start in ((1, 0.40), (2, 0.50)):
        write_eval(start_folder(tmp_path, seed), start)
    for cell, final in zip(cells, (0.45, 0.55, 0.50, 0.54), strict=True):
        write_eval(cell.folder, final)
    table = report(tmp_path, cells)
    assert table["grpo"]["eval_pass@1_gain_mean"] == pytest.approx(0.05)
    assert table["xrpo"]["eval_pass@1_gain_mean"] == pytest.approx((0.10 + 0.04) / 2)
    assert table["xrpo"]["eval_pass@1_gain_sd"] == pytest.approx(0.0424, abs=1e-4)
    assert table[START]["eval_pass@1"] == pytest.approx(0.45)
    assert table[START]["seeds"] == 2
    assert "| start |" in format_summary(table)
