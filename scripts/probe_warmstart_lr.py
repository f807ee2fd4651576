"""Does a fresh Adam at RL-sized learning rates knock the warm-started toy model off its solution?

RL on the toy model starts a new optimizer on a model that supervised training has just left.
This probe builds the warm start twice, with its cosine schedule ending at zero and at the default
floor (``WarmStartSettings.final_learning_rate``), then continues supervised training on the true
answers with a fresh AdamW at each probed learning rate and prints held-out greedy accuracy.
Training on the true answers can only help a model that tolerates the step size; a drop means
the learning rate is too large for where the warm start left the model.

    python scripts/probe_warmstart_lr.py [--lrs 3e-4 1e-3] [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen2ForCausalLM

# This repository's recipe/ first: as a script, its folder (scripts/) heads sys.path, and verl's
# wheel installs a top-level `recipe` package of its own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipe.xrpo.scale_model import tasks
from recipe.xrpo.scale_model.warmstart import (
    WarmStartSettings,
    build_warm_model_dir,
    encode_examples,
    heldout_accuracy,
    response_loss,
)


def continue_sft(model_dir: str, lr: float, steps: int, seed: int) -> list[float]:
    """Greedy held-out accuracy before and every 5 steps of fresh-Adam SFT at ``lr``."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = Qwen2ForCausalLM.from_pretrained(model_dir)
    heldout = tasks.generate_rows(tasks.CHAIN, "probe_heldout", 300, seed=30_000 + seed)
    train = tasks.generate_rows(tasks.CHAIN, "probe_train", 512, seed=40_000 + seed)
    ids, attention, response_mask = encode_examples(tokenizer, train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    accuracy = [heldout_accuracy(model.eval(), tokenizer, heldout)["all"]]
    for step in range(1, steps + 1):
        batch = torch.randint(len(train), (32,))
        model.train()
        loss = response_loss(model, ids[batch], attention[batch], response_mask[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            accuracy.append(heldout_accuracy(model.eval(), tokenizer, heldout)["all"])
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    default = WarmStartSettings(seed=args.seed)
    print("greedy held-out accuracy at steps 0, 5, 10, ... of fresh-Adam SFT on the true answers")
    for final_lr in (0.0, default.final_learning_rate):
        with tempfile.TemporaryDirectory() as folder:
            build_warm_model_dir(folder, replace(default, final_learning_rate=final_lr))
            for lr in args.lrs:
                curve = continue_sft(folder, lr, args.steps, args.seed)
                shown = " ".join(f"{a:.2f}" for a in curve)
                print(f"warm start annealed to {final_lr:g}, fresh Adam at lr {lr:g}: {shown}", flush=True)


if __name__ == "__main__":
    main()
