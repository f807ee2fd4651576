"""Calibrate the generation-time model's engine: a vLLM engine's decode iteration time.

``benchmarks.generation`` models an iteration as ``base_ms + per_seq_ms x running``.
This script measures it on a real engine: for each batch size it generates a fixed number of
tokens per sequence (end token ignored, so every sequence runs to the end) and divides the wall
time by that number; a least-squares line through the points gives the two flags. Prefill is in
the figures too (one short prompt per sequence), which is small against 256 decode steps.

    python -m benchmarks.engine MODEL_DIR                  # CPU: the CPU preset's settings
    python -m benchmarks.engine MODEL_DIR --dtype bfloat16 --batch-sizes 1 64 256 1024

A benchmark (it prints figures), not a test. Without a GPU it runs vLLM's CPU build with CPU
mode's KV-cache size; don't run it beside other heavy jobs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def fit_line(batch_sizes: list[int], iteration_ms: list[float]) -> tuple[float, float]:
    """(base_ms, per_seq_ms) of the least-squares line through the measured points."""
    per_seq, base = np.polyfit(np.asarray(batch_sizes, float), np.asarray(iteration_ms, float), 1)
    return float(base), float(per_seq)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a Hugging Face model folder")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 24, 64])
    parser.add_argument("--tokens", type=int, default=256, help="decode steps per measurement")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU (the CPU preset's), else auto")
    parser.add_argument(
        "--repeats", type=int, default=2, help="measurements per batch size; the fastest counts"
    )
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        parser.error(f"{args.model}: no config.json, not a model folder")
    if len(set(args.batch_sizes)) < 2 or min(args.batch_sizes) < 1:
        parser.error("--batch-sizes: at least two different sizes, each at least 1")
    if args.tokens < 16 or args.repeats < 1:
        parser.error("--tokens must be at least 16 and --repeats at least 1")

    from verl_xrpo.cpu.mode import activate

    on_cpu = activate()  # CPU mode's environment: vLLM's CPU target and KV-cache size
    from vllm import LLM, SamplingParams

    dtype = args.dtype or ("float32" if on_cpu else "auto")
    engine = LLM(model=str(args.model), dtype=dtype, enforce_eager=on_cpu, max_model_len=args.tokens + 64)
    params = SamplingParams(max_tokens=args.tokens, min_tokens=args.tokens, ignore_eos=True, temperature=1.0)
    engine.generate(["warm up"], params, use_tqdm=False)
    measured = []
    print(f"{args.model} ({dtype}): {args.tokens} decode steps per measurement, fastest of {args.repeats}")
    for size in args.batch_sizes:
        best = np.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            engine.generate(["hello"] * size, params, use_tqdm=False)
            best = min(best, time.perf_counter() - start)
        measured.append(1000.0 * best / args.tokens)
        print(f"  {size:5d} sequences: {measured[-1]:7.2f} ms per iteration", flush=True)
    base, per_seq = fit_line(args.batch_sizes, measured)
    print(f"benchmarks.generation flags: --base-ms {base:.2f} --per-seq-ms {per_seq:.4f}")
    return 0


if __name__ == "__main__":  # vLLM's engine process is spawned: it re-imports this module
    raise SystemExit(main())
