"""The checks behind ``scripts/gpu_smoke.sh``: the installed GPU stack, and what a verl run left behind.

    python -m recipe.xrpo.smoke_check env
    python -m recipe.xrpo.smoke_check run --name "scale model" --metrics RUN/metrics.jsonl --steps 2 \\
        --xrpo --checkpoint RUN/checkpoints/global_step_2 --log RUN/train.log

Every check that passes prints one line, ``ok    <what was checked>``. The first that fails prints
``FAIL  <what is wrong>`` (and the log to read) on stderr and exits with 1.

``env`` compares the installed packages with the pins of verl 0.9.1's own extras (read from verl's
installed metadata, so verl stays their one source), then asks torch for a GPU, verl-xrpo whether
CPU mode would switch on, and imports flash-attn.

``run`` reads a run's metrics in the layout of verl's file logger (``trainer.logger=[..., file]``):
one JSON object per line, ``{"step": N, "data": {metric: value}}``. A training step is a record
with ``timing_s/step``; verl's validation before training is logged as a record without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# verl 0.9.1's extras that make up its vLLM stack on NVIDIA GPUs: torch, vllm and transformers
# (`vllm`), and the flash-attn that its FSDP actor uses by default (`flash-attn-cu130torch211`).
STACK_EXTRAS = ("vllm", "flash-attn-cu130torch211")
VERL_VERSION = "0.9.1"
INSTALL_HINT = "run `bash scripts/install.sh` on this machine"

# One metric per XRPO mechanism: planning, seeding, the exemplar bank, sharpening.
XRPO_METRICS = (
    "xrpo/rollouts_per_prompt/mean",
    "xrpo/phases_run",
    "xrpo/seeding/prompts_seeded",
    "xrpo/bank_size",
    "xrpo/sharpening/share_sharpened",
)
STEP_TIME = "timing_s/step"
CHECKPOINT_STATE = "xrpo"  # XRPO's folder inside verl's global_step_N


class CheckFailed(Exception):
    """A check did not pass; the message says what is wrong and, where it can, what to do."""


# ---- the installed stack ------------------------------------------------------------------------


def pins_of_extra(requirements: Iterable[str], extra: str) -> dict[str, str]:
    """``name -> version`` of the exact pins (``name==version``) an extra adds to a distribution."""
    pins = {}
    for line in requirements:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or not marker.evaluate({"extra": extra}) or marker.evaluate({"extra": ""}):
            continue  # a base requirement, or one of another extra
        specifiers = list(requirement.specifier)
        if len(specifiers) == 1 and specifiers[0].operator == "==":
            pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins


def verl_stack_pins() -> dict[str, str]:
    requirements = metadata.requires("verl") or []
    pins: dict[str, str] = {}
    for extra in STACK_EXTRAS:
        pins.update(pins_of_extra(requirements, extra))
    return pins


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def stack_problems(pins: Mapping[str, str], installed: Mapping[str, str | None]) -> list[str]:
    """One sentence per pinned package that is missing or at another version."""
    problems = []
    for name, version in sorted(pins.items()):
        found = installed.get(name)
        if found is None:
            problems.append(f"{name} is not installed (verl {VERL_VERSION} pins {name}=={version})")
        elif not Requirement(f"{name}=={version}").specifier.contains(found, prereleases=True):
            problems.append(f"{name} {found} is installed, verl {VERL_VERSION} pins {name}=={version}")
    return problems


def check_env() -> Iterator[str]:
    """Yields a line per passed check; raises CheckFailed at the first that fails."""
    verl_found = installed_versions(["verl"])["verl"]
    if verl_found != VERL_VERSION:
        raise CheckFailed(f"verl {verl_found or '(none)'} is installed, not {VERL_VERSION}: {INSTALL_HINT}")
    pins = verl_stack_pins()
    problems = stack_problems(pins, installed_versions(pins))
    if problems:
        raise CheckFailed("; ".join(problems) + f": {INSTALL_HINT}")
    listed = ", ".join(f"{name} {pins[name]}" for name in sorted(pins))
    yield f"verl {VERL_VERSION} with the packages its GPU extras pin: {listed}"

    import torch

    if torch.version.cuda is None or not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
        raise CheckFailed(
            f"torch {torch.__version__} ({build}) sees no GPU: its CUDA build needs an NVIDIA driver "
            "that supports it (nvidia-smi shows the driver's CUDA version)"
        )
    yield (
        f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees {torch.cuda.device_count()} GPU(s), "
        f"the first a {torch.cuda.get_device_name(0)}"
    )

    from verl_xrpo.cpu.mode import DEVICE_SWITCH, cpu_mode_wanted

    if cpu_mode_wanted(os.environ):
        switch = f"{DEVICE_SWITCH}={os.environ.get(DEVICE_SWITCH, 'auto')}"
        raise CheckFailed(
            f"verl-xrpo would run verl in CPU mode ({switch}): unset {DEVICE_SWITCH} or set it to accelerator"
        )
    yield "verl-xrpo leaves CPU mode off"

    try:
        import flash_attn
    except (ImportError, OSError) as error:  # a build for another torch or CUDA fails here, with the reason
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckFailed(f"flash_attn does not import ({first_line}): {INSTALL_HINT}") from None
    yield f"flash_attn {flash_attn.__version__} imports"


# ---- a run's metrics and checkpoint --------------------------------------------------------------


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of verl's file logger; a missing file or a malformed line is a failure."""
    if not path.is_file():
        raise CheckFailed(f"no metrics file {path}: verl logged nothing (is `file` in trainer.logger?)")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CheckFailed(f"{path}:{number} is not JSON ({error.msg})") from None
        if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
            raise CheckFailed(f"{path}:{number} is not a verl metrics record (no integer 'step')")
        if not isinstance(record.get("data"), dict):
            raise CheckFailed(f"{path}:{number} is not a verl metrics record (no 'data' object)")
        records.append(record)
    return records


def training_steps(records: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """``step -> metrics`` of the training steps; a step logged twice keeps its last record."""
    return {int(r["step"]): r["data"] for r in records if STEP_TIME in r["data"]}


def check_run(metrics: Path, steps: int, xrpo: bool, checkpoint: Path | None = None) -> Iterator[str]:
    """Yields a line per passed check; raises CheckFailed at the first that fails."""
    found = training_steps(read_records(metrics))
    expected = list(range(1, steps + 1))
    if sorted(found) != expected:
        raise CheckFailed(f"{metrics} holds training steps {sorted(found)}, expected {expected}")
    if xrpo:
        for step, data in sorted(found.items()):
            missing = [key for key in XRPO_METRICS if key not in data]
            if missing:
                raise CheckFailed(f"step {step} in {metrics} lacks XRPO's metrics {', '.join(missing)}")
        what = "each with XRPO's metrics"
    else:
        for step, data in sorted(found.items()):
            leaked = sorted(key for key in data if key.startswith("xrpo/"))
            if leaked:
                raise CheckFailed(f"step {step} of a run without XRPO logs {leaked[0]}: XRPO acted on it")
        what = "no XRPO metrics (baseline)"
    yield f"{steps} training step(s) in {metrics}, {what}"
    if checkpoint is not None:
        state = checkpoint / CHECKPOINT_STATE
        if not (state.is_dir() and any(state.iterdir())):
            raise CheckFailed(f"no XRPO state in the checkpoint: {state} is missing or empty")
        yield f"checkpoint {state}/ written"


# ---- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m recipe.xrpo.smoke_check", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("env", help="the installed GPU stack")
    run = commands.add_parser("run", help="a finished run's metrics (and checkpoint)")
    run.add_argument("--metrics", type=Path, required=True, help="verl's file-logger output")
    run.add_argument("--steps", type=int, required=True, help="training steps the run was given")
    run.add_argument(
        "--xrpo",
        action=argparse.BooleanOptionalAction,
        required=True,
        help="XRPO's metrics must be in every step (--xrpo) or in none (--no-xrpo)",
    )
    run.add_argument("--checkpoint", type=Path, help="a global_step_N folder that must hold XRPO's state")
    run.add_argument("--name", default="run", help="what the printed lines are about")
    run.add_argument("--log", type=Path, help="the log named when a check fails")
    args = parser.parse_args(argv)
    if args.command == "run" and args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    prefix = "" if args.command == "env" else f"{args.name}: "
    if args.command == "env":
        checks = check_env()
    else:
        checks = check_run(args.metrics, args.steps, args.xrpo, args.checkpoint)
    try:
        for line in checks:
            print(f"ok    {prefix}{line}", flush=True)
    except CheckFailed as failure:
        log = getattr(args, "log", None)
        print(f"FAIL  {prefix}{failure}" + (f"; log: {log}" if log else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
