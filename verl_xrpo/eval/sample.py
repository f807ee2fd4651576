"""Sample responses with vLLM and grade them with a verl reward function.

The model is a Hugging Face folder, or a verl checkpoint (``global_step_N`` or its ``actor``
folder), which is merged into a Hugging Face folder once with verl's own model merger
(``python -m verl.model_merger``) and reused afterwards.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from verl_xrpo.eval.metrics import PromptSamples

MERGED_FOLDER = "merged_hf"


class EvalInputError(ValueError):
    """The model, data or reward file given cannot be used; the message says why."""


def resolve_model(path: Path) -> Path:
    """A Hugging Face model folder for ``path``; merges a verl FSDP checkpoint the first time."""
    path = path.resolve()
    if (path / "config.json").is_file():
        return path
    actor = path / "actor" if (path / "actor").is_dir() else path
    if not (actor / "fsdp_config.json").is_file():
        raise EvalInputError(
            f"{path} is neither a model folder (no config.json) nor a verl FSDP checkpoint "
            "(global_step_N or its actor/ folder)"
        )
    merged = actor / MERGED_FOLDER
    if not (merged / "config.json").is_file():
        command = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp"]
        command += ["--local_dir", str(actor), "--target_dir", str(merged)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise EvalInputError(f"verl's model merger failed on {actor}:\n{done.stderr[-2000:]}")
    return merged


def load_reward_module(path: Path | None) -> ModuleType:
    """A verl custom reward file as a module; None gives verl's own graders as ``compute_score``."""
    if path is None:
        from verl.utils.reward_score import default_compute_score

        module = ModuleType("verl_default_reward")
        module.compute_score = default_compute_score
        return module
    spec = importlib.util.spec_from_file_location(f"reward_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise EvalInputError(f"cannot load a reward function from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_rows(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise EvalInputError(f"no data file at {path}")
    frame = pd.read_parquet(path)
    missing = {"prompt", "data_source", "reward_model"} - set(frame.columns)
    if missing:
        raise EvalInputError(f"{path} lacks verl's columns {sorted(missing)}")
    return frame


def sample_and_grade(
    model: Path,
    frame: pd.DataFrame,
    reward: ModuleType,
    samples: int,
    temperature: float,
    max_tokens: int,
    seed: int,
    score_name: str = "compute_score",
) -> list[PromptSamples]:
    from vllm import LLM, SamplingParams  # imported here: vLLM is heavy and needed only now

    compute_score: Callable[..., Any] = getattr(reward, score_name)
    extract: Callable[[str], str | None] = getattr(
        reward, "extract_answer", lambda text: text.strip() or None
    )
    engine = LLM(model=str(model), enforce_eager=True, seed=seed, dtype="float32")
    tokenizer = engine.get_tokenizer()
    prompts = [
        tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        for messages in frame["prompt"]
    ]
    # The engine's seed makes the run reproducible. A per-request seed would too, but vLLM's CPU
    # sampler then fails on batches it splits ("CPU Generator does not use offset").
    params = SamplingParams(n=samples, temperature=temperature, max_tokens=max_tokens)
    outputs = engine.generate(prompts, params)
    graded = []
    for row, output in zip(frame.itertuples(index=False), outputs, strict=True):
        truth = row.reward_model["ground_truth"]
        texts = [completion.text for completion in output.outputs]
        scores = [compute_score(row.data_source, text, truth) for text in texts]
        correct = [bool(s["acc"]) if isinstance(s, dict) and "acc" in s else _positive(s) for s in scores]
        graded.append(PromptSamples(row.data_source, correct, [extract(text) for text in texts]))
    return graded


def _positive(score: Any) -> bool:
    value = score["score"] if isinstance(score, dict) else score
    return float(value) > 0
