"""Score a model folder or verl checkpoint on a parquet set: pass@1, pass@k and cons@k.

    python -m verl_xrpo.eval MODEL [MODEL ...] --data val.parquet [--samples 8] [--out scores.json]

MODEL is a Hugging Face folder or a verl checkpoint (``.../global_step_N``). Several models (a
run's checkpoints, for a learning curve) are scored in turn by one vLLM engine; the JSON then
holds one report per model under ``points``. Responses are sampled
with vLLM (on CPU in CPU mode) and graded by a verl reward function file (``--reward-file``; by
default verl's own ``default_compute_score``, which picks a grader by data source). Prints a table
per data source and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from verl_xrpo.eval.metrics import format_table, score_by_source
from verl_xrpo.eval.sample import (
    EvalInputError,
    Sampler,
    load_reward_module,
    load_rows,
    resolve_model,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m verl_xrpo.eval", description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", type=Path, nargs="+", metavar="MODEL", help="Hugging Face model folder or verl checkpoint"
    )
    parser.add_argument("--data", type=Path, required=True, help="parquet file in verl's RL layout")
    parser.add_argument("--samples", type=int, default=8, help="responses per prompt (default: %(default)s)")
    parser.add_argument("--k", type=int, nargs="+", default=None, help="k values (default: 1 and --samples)")
    parser.add_argument("--temperature", type=float, default=1.0, help="default: %(default)s")
    parser.add_argument(
        "--max-tokens", type=int, default=16, help="response length cap (default: %(default)s)"
    )
    parser.add_argument(
        "--reward-file", type=Path, default=None, help="verl custom reward file (default: verl's graders)"
    )
    parser.add_argument(
        "--reward-name", default="compute_score", help="function in it (default: %(default)s)"
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default: print only)")
    args = parser.parse_args(argv)
    args.k = sorted(set(args.k or [1, args.samples]))
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    if args.k[0] < 1 or args.k[-1] > args.samples:
        parser.error(f"every --k must lie in 1..{args.samples} (--samples)")
    if args.temperature < 0:
        parser.error("--temperature must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from verl_xrpo.cpu.mode import activate

    activate()  # vLLM's CPU build needs CPU mode's variables when there is no accelerator
    try:
        models = [resolve_model(model) for model in args.models]
        frame = load_rows(args.data)
        if args.limit:
            frame = frame.head(args.limit)
        reward = load_reward_module(args.reward_file)
        sampler = Sampler(models[0], args.seed)
        points = [score_model(sampler, model, frame, reward, args) for model in models]
    except EvalInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = {"data": str(args.data), "samples": args.samples, "temperature": args.temperature}
    settings["seed"] = args.seed
    report = {**points[0], **settings} if len(points) == 1 else {**settings, "points": points}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"written: {args.out}")
    return 0


def score_model(
    sampler: Sampler, model: Path, frame: pd.DataFrame, reward: ModuleType, args: argparse.Namespace
) -> dict[str, Any]:
    started = time.monotonic()
    graded = sampler.sample_and_grade(
        model, frame, reward, args.samples, args.temperature, args.max_tokens, args.reward_name
    )
    table = score_by_source(graded, args.k)
    print(model)
    print(format_table(table), flush=True)
    return {
        "model": str(model),
        "seconds": round(time.monotonic() - started, 1),
        "scores": table,
        # correct samples of each prompt, in the data's order: a success histogram, paired tests
        "successes_per_prompt": [sum(prompt.correct) for prompt in graded],
    }


if __name__ == "__main__":
    raise SystemExit(main())
