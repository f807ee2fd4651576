"""The comparison's report: from the cells' verl metrics, rollout dumps (or the tables that replace
them) and evaluations to the summary."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict

import pyarrow.parquet as pq
import pytest

from recipe.xrpo.scale_model.compare import (
    START,
    VARIANTS,
    Cell,
    Schedule,
    allocation_by_step,
    format_summary,
    mean_ci95,
    proportion_ci95,
    report,
    start_folder,
    steps_to_reach,
    write_rollout_table,
)
from verl_xrpo.core.seeding import render

SCHEDULE = Schedule(
    steps=3, val_every=1, val_size=8, train_size=16, prompts_per_step=2, task="chain", warm_start="demo"
)


def chat(question):
    return f"user\n{question}\nassistant\n"


def rollout(uid, question, score, seeded=False, **fields):
    """One line of a rollout dump; ``seeded`` puts an exemplar in front of the question as seeding does."""
    text = (
        render(question, [("Add 2 + 2 step by step.", "2 + 2 = 4. The answer is 4.")]) if seeded else question
    )
    return {"input": chat(text), "output": "...", "score": score, "uid": uid, **fields}


def write_cell(out, variant, seed, curve, groups, step_seconds=2.0, machine=None):
    """A cell in verl's layouts: metrics.jsonl lines and one rollout dump per step (uid keys, scores);
    with ``machine``, the summary the launcher writes, naming the machine it ran on."""
    cell = Cell(VARIANTS[variant], seed, out)
    cell.rollouts.mkdir(parents=True)
    with (cell.folder / "metrics.jsonl").open("w") as handle:
        for step, acc in enumerate(curve, start=1):
            data = {
                "timing_s/step": step_seconds,
                "critic/score/mean": 0.3 + 0.1 * step,
                "response_length/mean": 10.0,
            }
            if acc is not None:
                data[SCHEDULE.val_key] = acc
            handle.write(json.dumps({"step": step, "data": data}) + "\n")
    for step in range(1, len(curve) + 1):
        lines = [
            json.dumps({**rollout(f"u{g}_{session}_0", f"Add {g} + 1 step by step.", score), "step": step})
            for g, scores in enumerate(groups)
            for session, score in enumerate(scores)
        ]
        # a row verl padded the batch with (a plain verl dump marks it only by its uid): not a rollout
        lines.append(json.dumps({**rollout("pad0123abcd_0_0", "Add 1 + 1 step by step.", 0.0), "step": step}))
        (cell.rollouts / f"{step}.jsonl").write_text("\n".join(lines) + "\n")
    if machine is not None:
        (cell.folder / "summary.json").write_text(json.dumps({"exit_code": 0, "machine": machine}))
    return cell


def write_eval(path, pass_at_1, per_prompt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"scores": {"all": {"prompts": 8.0, "pass@1": pass_at_1, "cons@16": pass_at_1 + 0.1}}}
    if per_prompt is not None:
        report["successes_per_prompt"] = per_prompt
    path.write_text(json.dumps(report))


def test_report_pairs_gains_by_seed_and_counts_useful_rollouts_for_every_variant(tmp_path):
    # grpo: one mixed group of 4 and one all-fail group of 4 -> half the rollouts are useful;
    # xrpo: a mixed group of 6 and an all-fail group of 2 -> three quarters.
    cells = [write_cell(tmp_path, "grpo", s, [0.2, None, 0.4], [[1, 0, 0, 1], [0, 0, 0, 0]]) for s in (0, 1)]
    cells += [
        write_cell(tmp_path, "xrpo", s, curve, [[1, 0, 1, 1, 0, 1], [0, 0]])
        for s, curve in ((0, [0.3, 0.45, 0.5]), (1, [0.3, 0.35, 0.5]))
    ]
    for seed, start in ((0, 0.40), (1, 0.50)):
        write_eval(start_folder(tmp_path, seed) / "eval.json", start)
        write_eval(start_folder(tmp_path, seed) / "train_eval.json", start, per_prompt=[0, 0, 8, 3])
    for cell, final in zip(cells, (0.45, 0.55, 0.50, 0.62), strict=True):
        write_eval(cell.folder / "eval.json", final)

    summary = report(tmp_path, cells, SCHEDULE)

    grpo, xrpo = summary["grpo"], summary["xrpo"]
    assert grpo["useful_rollout_share"] == pytest.approx(0.5)
    assert xrpo["useful_rollout_share"] == pytest.approx(0.75)
    assert grpo["zero_variance_share"] == xrpo["zero_variance_share"] == pytest.approx(0.5)
    assert grpo["pass1_gain_mean"] == pytest.approx(0.05)
    assert xrpo["pass1_gain_mean"] == pytest.approx((0.10 + 0.12) / 2)
    low, high = xrpo["pass1_gain_ci95"]
    assert low < 0.11 < high
    assert xrpo["diff_vs_grpo_mean"] == pytest.approx((0.05 + 0.07) / 2) and "diff_vs_grpo_ci95" not in grpo
    # GRPO ends at 0.4 on both seeds; XRPO reaches it at steps 2 and 3
    assert xrpo["steps_to_grpo_final"] == pytest.approx((2 + 3) / 2)
    assert xrpo["rollouts_to_grpo_final"] == pytest.approx(2.5 * SCHEDULE.rollouts_per_step)
    assert summary[START]["pass@1"] == pytest.approx(0.45)
    histogram = summary["warm_start_success_histogram"]
    assert histogram["histogram"] == [4, 0, 0, 2, 0, 0, 0, 0, 2] and histogram["all_fail_share"] == 0.5
    with (tmp_path / "steps.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 12
    assert (tmp_path / "val_accuracy.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "summary.json").read_text())
    for key in ("pass1_gain_mean", "pass1_gain_ci95", "useful_rollout_share"):
        assert key in saved["grpo"] and key in saved["xrpo"]
    table = format_summary(summary)
    assert "| warm start |" in table and "| xrpo | 2 |" in table


def test_step_times_are_compared_only_between_cells_of_one_machine(tmp_path):
    groups = [[1, 0], [0, 0]]
    cells = [
        write_cell(tmp_path, "grpo", 0, [0.2, 0.3, 0.4], groups, step_seconds=2.0, machine="AMD EPYC x2"),
        write_cell(tmp_path, "grpo", 1, [0.2, 0.3, 0.4], groups, step_seconds=2.0, machine="AMD EPYC x2"),
        write_cell(tmp_path, "xrpo", 0, [0.2, 0.3, 0.4], groups, step_seconds=3.0, machine="AMD EPYC x2"),
        # twice as fast a machine: its step time says nothing against GRPO's
        write_cell(tmp_path, "xrpo", 1, [0.2, 0.3, 0.4], groups, step_seconds=1.0, machine="Intel Xeon x2"),
        write_cell(tmp_path, "gspo", 0, [0.2, 0.3, 0.4], groups, step_seconds=5.0),  # machine unrecorded
    ]
    summary = report(tmp_path, cells, SCHEDULE)
    assert summary["xrpo"]["step_time_vs_grpo"] == pytest.approx(1.5)
    assert summary["xrpo"]["step_time_pairs"] == 1
    assert summary["xrpo"]["machines"] == ["AMD EPYC x2", "Intel Xeon x2"]
    assert summary["gspo"]["step_time_vs_grpo"] is None and summary["gspo"]["machines"] == ["unrecorded"]


def test_the_seeding_control_cell_reports_both_arms():
    from recipe.xrpo.scale_model.compare import summarize_variant

    rows = [
        {"variant": "x", "seed": 0, "step": 1, "train_score": 0.1, "useful_rollout_share": None,
         "zero_variance_share": None, "step_seconds": 1.0, "gen_seconds": None, "old_log_prob_seconds": None,
         "update_actor_seconds": None, "xrpo_planning_s": None, "xrpo_retrieval_s": None,
         "xrpo_advantage_s": None, "seeding_treated_rollouts": 20.0, "seeding_treated_successes": 8.0,
         "seeding_control_rollouts": 20.0, "seeding_control_successes": 1.0}
    ]  # fmt: skip
    lift = summarize_variant("xrpo_seeding_control", rows, {}, {}, {})["seeding_lift"]
    assert lift["treated_rate"] == 0.4 and lift["control_rate"] == 0.05
    assert lift["control_ci95"][0] < 0.05 < lift["control_ci95"][1] < lift["treated_ci95"][1]


def test_intervals():
    assert mean_ci95([0.1]) == (0.1, None)
    mean, (low, high) = mean_ci95([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and high - mean == pytest.approx(4.303 * 0.1 / 3**0.5, rel=1e-3)
    assert proportion_ci95(0, 0) is None
    low, high = proportion_ci95(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-3) and high == pytest.approx(0.7634, abs=1e-3)


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


def test_held_out_pass_at_1_is_reported_per_difficulty_level(tmp_path):
    from recipe.xrpo.scale_model import tasks

    levels = [
        r["extra_info"]["difficulty"] for r in tasks.generate_rows("chain", "val", SCHEDULE.val_size, 0)
    ]
    successes = [4 * (i % 2) for i in range(len(levels))]  # odd prompts always right, even ones never
    cell = write_cell(tmp_path, "grpo", 0, [0.2, 0.3, 0.4], [[1, 0]])
    for path in (cell.folder / "eval.json", start_folder(tmp_path, 0) / "eval.json"):
        write_eval(path, 0.5)
        path.write_text(
            json.dumps({**json.loads(path.read_text()), "samples": 4, "successes_per_prompt": successes})
        )

    summary = report(tmp_path, [cell], SCHEDULE)

    expected = {}
    for level in set(levels):
        mine = [i for i, lv in enumerate(levels) if lv == level]
        expected[level] = sum(i % 2 for i in mine) / len(mine)
    assert summary["grpo"]["pass1_by_level"] == pytest.approx(expected)
    assert summary[START]["pass1_by_level"] == pytest.approx(expected)
    easiest_first = [level.name for level in tasks.CHAIN_LEVELS]
    row = "| warm start | " + " | ".join(f"{expected[level]:.3f}" for level in easiest_first) + " |"
    assert row in format_summary(summary)


def test_an_evaluation_of_other_prompts_has_no_levels():
    from recipe.xrpo.scale_model.compare import pass1_by_level

    assert pass1_by_level({"samples": 4, "successes_per_prompt": [1, 2]}, ["k2", "k3", "k4"]) is None
    assert pass1_by_level({"samples": 4}, ["k2"]) is None
    assert pass1_by_level({"samples": 4, "successes_per_prompt": [1, 4, 2]}, ["k2", "k3", "k2"]) == {
        "k2": pytest.approx(0.375),
        "k3": 1.0,
    }


def test_a_cell_another_process_is_training_is_skipped_not_wiped(tmp_path, capsys):
    from recipe.xrpo.scale_model.compare import claimed, main

    cell = Cell(VARIANTS["grpo"], 0, tmp_path)
    cell.folder.mkdir(parents=True)
    (cell.folder / "metrics.jsonl").write_text("{}\n")
    with claimed(cell) as mine:  # the lock another `compare train` would hold
        assert mine
        assert main(["train", "--out", str(tmp_path), "--variants", "grpo", "--seeds", "0"]) == 0
    assert (cell.folder / "metrics.jsonl").is_file()
    assert "another process is training it: skipped" in capsys.readouterr().out
    with claimed(cell) as mine:
        assert mine  # released with its holder


def write_dump(folder, steps):
    folder.mkdir(parents=True)
    for step, records in steps.items():
        (folder / f"{step}.jsonl").write_text(
            "".join(json.dumps({**r, "step": step}) + "\n" for r in records)
        )


EASY, LONG, HARD = (
    "Add 3 + 4 step by step.",
    "Add 1 + 2 + 3 + 4 step by step.",
    "Add 56 + 36 + 4 step by step.",
)
DUMP = {
    1: [
        rollout("a_0_0", EASY, 1.0),
        rollout("a_1_0", EASY, 1.0),
        rollout("b_0_0", HARD, 0.0),
        rollout("b_1_0", HARD, 1.0, seeded=True),
        rollout("b_2_0", HARD, 0.0, seeded=True),
        rollout("pad0123abcd_0_0", EASY, 0.0),  # verl's filler row, marked by its uid only
    ],
    2: [
        # the same question twice in one step (the data repeats short chains): two groups
        rollout("c_0_0", EASY, 0.0),
        rollout("c_1_0", EASY, 1.0),
        rollout("d_0_0", EASY, 0.0),
        rollout("d_1_0", EASY, 0.0),
        rollout("e_0_0", LONG, 1.0),
        rollout("e_1_0", LONG, 1.0),
        rollout("e_2_0", LONG, 0.0),
        {**rollout("f_0_0", LONG, 0.0), "is_padding": True},  # XRPO's dump marks its filler rows
    ],
}


def reference_allocation(folder):
    """The useful share per step read straight off the dumps, the way the report did before tables."""
    steps = {}
    for path in sorted(folder.glob("*.jsonl")):
        groups = defaultdict(list)
        for record in map(json.loads, path.read_text().splitlines()):
            if not (record.get("is_padding") or record["uid"].startswith("pad")):
                groups[record["uid"].rsplit("_", 2)[0]].append(float(record["score"]) > 0)
        sizes = [len(g) for g in groups.values()]
        mixed = [len(g) for g in groups.values() if 0 < sum(g) < len(g)]
        steps[int(path.stem)] = {
            "rollouts": sum(sizes),
            "useful_rollout_share": sum(mixed) / sum(sizes),
            "zero_variance_share": 1 - len(mixed) / len(groups),
        }
    return steps


def test_the_rollout_table_has_one_sorted_row_per_group_and_step_without_padding(tmp_path):
    write_dump(tmp_path / "rollouts", DUMP)
    table = write_rollout_table(tmp_path / "rollouts", tmp_path / "rollouts.parquet")
    rows = pq.read_table(table).to_pylist()

    keys = {(r["step"], r["level"]): r["prompt_key"] for r in rows}
    assert keys[(1, "k2")] == keys[(2, "k2")]  # one question, one key across steps and uids
    assert len(set(keys.values())) == 3 and all(len(k) == 16 for k in keys.values())
    groups = [(r["step"], r["level"], r["rollouts"], r["successes"], r["seeded_rollouts"]) for r in rows]
    assert sorted(groups) == [
        (1, "hard", 3, 1, 2),
        (1, "k2", 2, 2, 0),
        (2, "k2", 2, 0, 0),
        (2, "k2", 2, 1, 0),
        (2, "k4", 3, 2, 0),
    ]
    order = [(r["step"], r["prompt_key"], r["successes"]) for r in rows]
    assert order == sorted(order)
    hard = next(r for r in rows if r["level"] == "hard")
    assert hard["seeded_successes"] == 1  # the seeded rollout's question is still the hard prompt's
    assert all(r["response_tokens"] is None for r in rows)  # a plain verl dump does not count them
    assert pq.read_metadata(table).row_group(0).column(0).compression == "ZSTD"


def test_the_rollout_table_sums_the_token_counts_xrpo_dumps(tmp_path):
    records = [
        {**rollout(f"a_{i}_0", LONG, 1.0), "response_length": 10 + i, "is_padding": False} for i in range(3)
    ]
    write_dump(tmp_path / "rollouts", {5: records})
    (row,) = pq.read_table(write_rollout_table(tmp_path / "rollouts", tmp_path / "t.parquet")).to_pylist()
    assert row["response_tokens"] == 33 and row["level"] == "k4" and row["step"] == 5
    assert write_rollout_table(tmp_path / "nothing", tmp_path / "none.parquet") is None


def test_the_rollout_table_reads_responses_holding_unicode_line_separators(tmp_path):
    """verl dumps with ensure_ascii=False, so an untrained model's random tokens reach the file as
    raw separators (U+2028, U+001C) that str.splitlines would cut a record at."""
    records = [{**rollout(f"a_{i}_0", LONG, 0.0), "output": "x\u2028y\x1cz\x85"} for i in range(3)]
    (tmp_path / "rollouts").mkdir()
    (tmp_path / "rollouts" / "1.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    (row,) = pq.read_table(write_rollout_table(tmp_path / "rollouts", tmp_path / "t.parquet")).to_pylist()
    assert row["rollouts"] == 3 and row["successes"] == 0


def test_the_report_reads_the_same_allocation_from_the_table_as_from_the_dumps(tmp_path):
    cell = Cell(VARIANTS["xrpo"], 0, tmp_path)
    write_dump(cell.rollouts, DUMP)
    expected = reference_allocation(cell.rollouts)
    assert expected[1]["useful_rollout_share"] == pytest.approx(3 / 5)

    assert allocation_by_step(cell) == expected  # the table is written from the dumps first
    assert cell.rollout_table.is_file()
    shutil.rmtree(cell.rollouts)  # a clone: the table alone
    assert allocation_by_step(cell) == expected


def test_the_whole_report_is_the_same_from_the_tables_alone(tmp_path):
    cells = [
        write_cell(tmp_path, variant, seed, [0.2, 0.3, 0.4], [[1, 0, 1], [0, 0, 0, 0], [1, 1]])
        for variant in ("grpo", "xrpo")
        for seed in (0, 1)
    ]
    for cell in cells:
        write_eval(cell.folder / "eval.json", 0.5)
    report(tmp_path, cells, SCHEDULE)
    outputs = [(tmp_path / name).read_text() for name in ("summary.json", "steps.csv")]
    for cell in cells:
        shutil.rmtree(cell.rollouts)
    report(tmp_path, cells, SCHEDULE)
    assert [(tmp_path / name).read_text() for name in ("summary.json", "steps.csv")] == outputs
    assert json.loads(outputs[0])["xrpo"]["useful_rollout_share"] == pytest.approx(3 / 9)
