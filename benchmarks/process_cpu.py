"""Where a training step's CPU goes, per process: a benchmark (it prints figures), not a test.

    python -m benchmarks.process_cpu OUT.json [--from-step 3] -- python -m recipe.xrpo.scale_model.train ...

Runs the command, reads every process's CPU time from /proc when the command prints its
``step K/N`` lines, and reports CPU seconds per step for each process name (Ray's actor names:
the trainer, agent-loop workers, vLLM, reward workers, TransferQueue) between step ``--from-step``
and the last step, for the processes alive at the last step line (a process that ends before it
is not counted). On a machine whose cores the run saturates, CPU one process adds is wall-clock
the step loses, so two runs side by side show which process a change makes busier. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

USAGE = "python -m benchmarks.process_cpu OUT.json [--from-step K] -- COMMAND..."
STEP_LINE = re.compile(r"step (\d+)/(\d+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (name: its command line, cut; CPU seconds, user + system) for every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # ended while being read
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        name = command.decode(errors="replace").strip()[:80] or stat[stat.find("(") : stat.rfind(")") + 1]
        found[int(entry)] = (name, seconds)
    return found


def cpu_per_step(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], steps: int
) -> dict[str, float]:
    """CPU seconds per step by process name between two readings, busiest first."""
    by_name: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        used = seconds - before.get(pid, (name, 0.0))[1]
        if used > 0:
            by_name[name] = by_name.get(name, 0.0) + used / steps
    return dict(sorted(by_name.items(), key=lambda item: -item[1]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print(f"usage: {USAGE}", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where the figures go (JSON)")
    parser.add_argument("--from-step", type=int, default=3, help="first step line counted from (default: 3)")
    args, command = parser.parse_args(argv[:split]), argv[split + 1 :]

    readings: dict[int, tuple[float, dict[int, tuple[str, float]]]] = {}
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in run.stdout:
        sys.stdout.write(line)
        match = STEP_LINE.search(line)
        if match:
            readings[int(match.group(1))] = (time.time(), process_cpu())
    if run.wait() != 0:
        print(f"the command exited with {run.returncode}", file=sys.stderr)
        return run.returncode
    last = max(readings, default=0)
    if args.from_step not in readings or last <= args.from_step:
        print(f"no step lines from step {args.from_step} to a later one in its output", file=sys.stderr)
        return 1
    (start, before), (end, after) = readings[args.from_step], readings[last]
    steps = last - args.from_step
    per_process = cpu_per_step(before, after, steps)
    figures = {
        "command": command,
        "steps": [args.from_step, last],
        "wall_seconds_per_step": (end - start) / steps,
        "cpu_seconds_per_step": sum(per_process.values()),
        "cpu_seconds_per_step_by_process": per_process,
    }
    args.out.write_text(json.dumps(figures, indent=1) + "\n")
    print(
        f"steps {args.from_step}-{last}: {figures['wall_seconds_per_step']:.2f} s wall a step, "
        f"{figures['cpu_seconds_per_step']:.2f} CPU seconds a step"
    )
    for name, seconds in list(per_process.items())[:12]:
        print(f"  {seconds:6.3f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
