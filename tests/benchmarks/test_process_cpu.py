"""The per-process CPU benchmark: CPU between two step lines is charged to the process that used it."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks import process_cpu

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# prints step lines while a child process, named by its marker, burns CPU from before step 2 to after step 4
JOB = """
import subprocess, sys, time
burn = "# BURNER\\nimport time\\nend = time.time() + 3\\nwhile time.time() < end: pass"
print("step 1/4", flush=True)
burner = subprocess.Popen([sys.executable, "-c", burn])
time.sleep(0.3)
for step in (2, 3, 4):
    print(f"step {step}/4", flush=True)
    time.sleep(0.5)
burner.wait()
"""


def test_cpu_between_step_lines_is_charged_to_the_process_that_used_it(tmp_path):
    out = tmp_path / "cpu.json"
    assert process_cpu.main([str(out), "--from-step", "2", "--", sys.executable, "-c", JOB]) == 0
    figures = json.loads(out.read_text())
    assert figures["steps"] == [2, 4]
    by_process = figures["cpu_seconds_per_step_by_process"]
    burner = [seconds for name, seconds in by_process.items() if "BURNER" in name]
    # about 0.5 CPU seconds a step on an idle core; a loaded machine gives it less, never more
    assert len(burner) == 1 and 0.05 < burner[0] <= figures["wall_seconds_per_step"] + 0.05
    assert figures["cpu_seconds_per_step"] >= burner[0]


def test_cpu_per_step_divides_each_processes_use_by_the_steps():
    before = {1: ("trainer", 1.0), 2: ("worker", 5.0)}
    after = {1: ("trainer", 3.0), 2: ("worker", 5.5), 3: ("worker", 0.5)}  # pid 3 started between
    assert process_cpu.cpu_per_step(before, after, steps=2) == {"trainer": 1.0, "worker": 0.5}


def test_a_command_without_step_lines_is_reported_not_divided_by_zero(tmp_path, capsys):
    code = process_cpu.main([str(tmp_path / "cpu.json"), "--", sys.executable, "-c", "print('hello')"])
    assert code == 1
    assert "no step lines" in capsys.readouterr().err
