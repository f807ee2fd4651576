"""A tiny randomly initialised Qwen2 model folder, made offline, that verl and vLLM can load.

No hub is reachable on CPU test machines; transformers builds the model from a config, and the
folder (config, weights, tokenizer) is all verl's workers and vLLM need.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from recipe.xrpo.scale_model.tokenizer import build_toy_tokenizer

# vLLM's CPU attention supports head sizes from 32 up; smaller heads fail at the first generation.
HEAD_DIM = 32


def toy_qwen2_config(
    tokenizer: PreTrainedTokenizerFast, hidden_size: int = 64, layers: int = 2
) -> Qwen2Config:
    if hidden_size % HEAD_DIM:
        raise ValueError(f"hidden_size must be a multiple of {HEAD_DIM} (vLLM's smallest head size)")
    heads = hidden_size // HEAD_DIM
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )


def build_toy_model_dir(
    path: str | Path,
    hidden_size: int = 64,
    layers: int = 2,
    seed: int = 0,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> Path:
    """Write tokenizer, config and random weights to ``path`` (created if missing); returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or build_toy_tokenizer()
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(toy_qwen2_config(tokenizer, hidden_size, layers))
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
