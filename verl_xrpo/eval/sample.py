"""Sample responses with vLLM and grade them with a verl reward function.

The model is a Hugging Face folder, or a verl checkpoint (``global_step_N`` or its ``actor``
folder), which is merged into a Hugging Face folder once with verl's own model merger and reused
afterwards. Several models of one architecture (a run's checkpoints: a learning curve) share one
vLLM engine: each later model's weights are loaded into it in place, so the engine's start, which
costs far more than sampling a small model, is paid once.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
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
        merge_fsdp_checkpoint(actor, merged)
    return merged


def merge_fsdp_checkpoint(actor: Path, target: Path) -> None:
    """``python -m verl.model_merger merge --backend fsdp``, in this process: a curve merges many
    checkpoints, and a child process per checkpoint would spend ten seconds importing verl."""
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    target.mkdir(parents=True, exist_ok=True)
    config = ModelMergerConfig(
        operation="merge",
        backend="fsdp",
        local_dir=str(actor),
        target_dir=str(target),
        hf_model_config_path=str(actor / "huggingface"),
    )
    try:
        merger = FSDPModelMerger(config)
        merger.merge_and_save()
        merger.cleanup()
    except Exception as error:  # verl's merger raises many kinds; the user needs which checkpoint
        shutil.rmtree(target, ignore_errors=True)
        raise EvalInputError(f"verl's model merger failed on {actor}: {error}") from error


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


class Sampler:
    """One vLLM engine that samples each model it is given in turn.

    Models after the first must share its architecture (``config.json`` apart from dtype-like
    bookkeeping): their weights are loaded into the running engine with vLLM's ``reload_weights``.
    """

    def __init__(self, model: Path, seed: int) -> None:
        from vllm import LLM  # imported here: vLLM is heavy and needed only now

        self.engine = LLM(model=str(model), enforce_eager=True, seed=seed, dtype="float32")
        self.architecture = _architecture(model)
        self.loaded = model

    def load(self, model: Path) -> None:
        if model == self.loaded:
            return
        if _architecture(model) != self.architecture:
            raise EvalInputError(
                f"{model} is not the architecture of {self.loaded}; evaluate them in separate runs"
            )
        self.engine.collective_rpc("reload_weights", kwargs={"weights_path": str(model)})
        self.engine.reset_prefix_cache()  # cached prefixes hold the old weights' keys and values
        self.loaded = model

    def sample_and_grade(
        self,
        model: Path,
        frame: pd.DataFrame,
        reward: ModuleType,
        samples: int,
        temperature: float,
        max_tokens: int,
        score_name: str = "compute_score",
    ) -> list[PromptSamples]:
        from vllm import SamplingParams

        self.load(model)
        compute_score: Callable[..., Any] = getattr(reward, score_name)
        extract: Callable[[str], str | None] = getattr(
            reward, "extract_answer", lambda text: text.strip() or None
        )
        tokenizer = self.engine.get_tokenizer()
        prompts = [
            tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
            for messages in frame["prompt"]
        ]
        # The engine's seed makes the run reproducible. A per-request seed would too, but vLLM's
        # CPU sampler then fails on batches it splits ("CPU Generator does not use offset").
        params = SamplingParams(n=samples, temperature=temperature, max_tokens=max_tokens)
        outputs = self.engine.generate(prompts, params, use_tqdm=False)
        graded = []
        for row, output in zip(frame.itertuples(index=False), outputs, strict=True):
            truth = row.reward_model["ground_truth"]
            texts = [completion.text for completion in output.outputs]
            scores = [compute_score(row.data_source, text, truth) for text in texts]
            correct = [bool(s["acc"]) if isinstance(s, dict) and "acc" in s else _positive(s) for s in scores]
            graded.append(PromptSamples(row.data_source, correct, [extract(text) for text in texts]))
        return graded


def _architecture(model: Path) -> dict[str, Any]:
    config = json.loads((model / "config.json").read_text())
    for bookkeeping in ("_name_or_path", "torch_dtype", "dtype", "transformers_version"):
        config.pop(bookkeeping, None)
    return config


def _positive(score: Any) -> bool:
    value = score["score"] if isinstance(score, dict) else score
    return float(value) > 0
