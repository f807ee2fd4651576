"""The warm start: supervised training of a small Qwen2 model on the scale model's tasks.

RL from a random model gets no reward, so nothing would be learned, planned or seeded. The warm
start leaves the headroom RL is for: its data slips now and then (``tasks.Level.slip``), so the
model samples the right chain often but not always (pass@k well above pass@1), and the hard
level's pairs are never shown, so those prompts mostly fail. A share of its examples is written in
the seeded format XRPO uses at run time (``verl_xrpo.core.seeding``), with solved similar problems
in the context, so the model can read exemplars when XRPO seeds a prompt.

The result is an ordinary model folder (config, safetensors, tokenizer) that verl and vLLM load.
``python -m recipe.xrpo.scale_model.warmstart DIR [--preset scale]`` builds one and reports it.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast, Qwen2ForCausalLM

from recipe.xrpo.scale_model import tasks
from recipe.xrpo.scale_model.model import toy_qwen2_config
from recipe.xrpo.scale_model.tokenizer import build_toy_tokenizer
from verl_xrpo.core.bank import Exemplar
from verl_xrpo.core.seeding import build_seeded_messages, render

REPORT_FILE = "warmstart.json"


@dataclass(frozen=True)
class WarmStartSettings:
    task: str = tasks.CHAIN
    hidden_size: int = 64
    layers: int = 2
    steps: int = 500
    batch_size: int = 64
    learning_rate: float = 3e-3
    # The cosine schedule stops at this floor, not at zero: a model annealed to zero sits where
    # the first steps of a fresh Adam knock it off (scripts/probe_warmstart_lr.py).
    final_learning_rate: float = 1e-3
    train_examples: int = 4000
    # Share of the examples in the seeded format (exemplars of similar problems in the context).
    seeded_share: float = 0.2
    # Prompt budget of a seeded example; the run's rollout.prompt_length must be at least this.
    seeded_prompt_tokens: int = 256
    seed: int = 0
    # Every this many steps, print the loss and held-out greedy accuracy (0: only at the end).
    log_every: int = 0
    # The second stage: this many steps at a constant rate on the habit data (``tasks.Level``:
    # some chains worked step by step, the rest answered at once), with a share of seeded examples
    # so the model keeps reading exemplars. 0: one stage, the skill data only.
    habit_steps: int = 0
    habit_learning_rate: float = 5e-4
    habit_examples: int = 16000
    habit_seeded_share: float = 0.1


# The main job's quick warm start, and the comparison's larger one (a few million parameters cost
# little more per verl step than a tiny model: verl's fixed overhead dominates on this scale).
PRESETS = {
    "demo": WarmStartSettings(seeded_share=0.0),
    # Many distinct examples (each seen ~4 times) so the model learns addition rather than
    # memorising which training chains slipped, and a low final rate so it settles: RL then
    # removes slips from a model that knows the steps (WarmStartSettings' floor note still holds:
    # 3e-4 is above the RL learning rates of configs/scale_model.yaml).
    # Then a habit stage teaches it to answer most longer chains at once, which is usually wrong:
    # RL's headroom is the habit (working step by step), which every level shares.
    "scale": WarmStartSettings(
        hidden_size=128,
        layers=4,
        steps=3000,
        train_examples=48000,
        final_learning_rate=3e-4,
        log_every=500,
        habit_steps=400,
    ),
}


@dataclass(frozen=True)
class WarmStartReport:
    settings: WarmStartSettings
    heldout_accuracy: dict[str, float]
    final_loss: float
    seconds: float
    skill_model: str | None = None  # the skill stage's model, when it was not trained here


def seeded_examples(rows: list[dict], share: float, tokenizer, max_tokens: int, seed: int) -> list[dict]:
    """Copies of a ``share`` of ``rows`` whose prompt carries two solved problems of the same level.

    For the hard level the exemplars start with the same two-digit pair, so the context holds the
    first step: what a retrieved exemplar of a similar problem gives at run time.
    """
    rng = random.Random(f"seeded-{seed}")
    by_level: dict[str, list[dict]] = {}
    for row in rows:
        by_level.setdefault(row["extra_info"]["difficulty"], []).append(row)
    out: list[dict] = []
    for row in rng.sample(rows, int(share * len(rows))):
        info = row["extra_info"]
        if info["difficulty"] == "hard":
            terms = [int(t) for t in info["question"].removeprefix("Add ").split(" step")[0].split(" + ")]
            exemplars = []
            for _ in range(2):
                other = terms[:2] + [rng.randint(1, 9) for _ in terms[2:]]
                exemplars.append(Exemplar(tasks.chain_question(other), tasks.chain_solution(other)))
        else:
            peers = [p for p in by_level[info["difficulty"]] if p is not row]
            exemplars = [
                Exemplar(p["extra_info"]["question"], p["extra_info"]["solution"])
                for p in rng.sample(peers, 2)
            ]
        messages = build_seeded_messages(row["prompt"], exemplars, tokenizer, max_tokens)
        if messages is not None:
            out.append({**row, "prompt": messages})
    return out


def tokenizer_corpus(rows: list[dict]) -> list[str]:
    """Questions, solutions and the seeded prompt's frame, so that BPE merges its words."""
    lines = [f"{row['extra_info']['question']} {row['extra_info']['solution']}" for row in rows]
    frame = render("", [("", ""), ("", "")])
    return lines + [frame] * max(len(lines) // 10, 1)


def encode_examples(
    tokenizer: PreTrainedTokenizerFast, rows: list[dict]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and a mask of the response tokens (the ones trained)."""
    sequences, response_starts = [], []
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        response = row["extra_info"]["solution"] + tokenizer.eos_token
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        sequences.append(prompt_ids + response_ids)
        response_starts.append(len(prompt_ids))
    width = max(len(s) for s in sequences)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response_mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, (seq, start) in enumerate(zip(sequences, response_starts, strict=True)):
        ids[i, : len(seq)] = torch.tensor(seq)
        attention[i, : len(seq)] = 1
        response_mask[i, start : len(seq)] = True
    return ids, attention, response_mask


def response_loss(model: Qwen2ForCausalLM, ids, attention, response_mask) -> torch.Tensor:
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
    targets = ids[:, 1:].masked_fill(~response_mask[:, 1:], -100)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def greedy_exact_match(model: Qwen2ForCausalLM, ids, attention, response_mask) -> torch.Tensor:
    """Per row: once the solution's first token is given, would greedy decoding write the rest of it?

    The first token is left out because it is the habit (work step by step, or answer at once),
    not the skill: this measures how well the model works a chain once it has begun to.
    """
    predicted = model(input_ids=ids, attention_mask=attention).logits[:, :-1].argmax(-1)
    scored = response_mask[:, 1:].clone()
    scored[torch.arange(len(ids)), response_mask.int().argmax(dim=1) - 1] = False  # the first token
    wrong = (predicted != ids[:, 1:]) & scored
    return ~wrong.any(dim=1)


def build_warm_model_dir(
    path: str | Path, settings: WarmStartSettings | None = None, skill_model: str | Path | None = None
) -> WarmStartReport:
    """Write a warm-started model folder to ``path``; returns what it reached.

    ``skill_model``: a model folder that has been through the skill stage already (weights and
    tokenizer); only the habit stage runs, from it.
    """
    settings = settings or WarmStartSettings()
    if skill_model is not None and not settings.habit_steps:
        raise ValueError("a skill model was given, but these settings have no habit stage (habit_steps=0)")
    started = time.perf_counter()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    rows = tasks.generate_rows(
        settings.task, "sft", settings.train_examples, seed=10_000 + settings.seed, warm_start="skill"
    )
    heldout = tasks.generate_rows(settings.task, "sft_heldout", 256, seed=20_000 + settings.seed)
    if skill_model is None:
        tokenizer = build_toy_tokenizer(corpus=tokenizer_corpus(rows))
        model = Qwen2ForCausalLM(toy_qwen2_config(tokenizer, settings.hidden_size, settings.layers))
    else:
        tokenizer = AutoTokenizer.from_pretrained(skill_model)
        model = Qwen2ForCausalLM.from_pretrained(skill_model)
    seeded = seeded_examples(
        rows, settings.seeded_share, tokenizer, settings.seeded_prompt_tokens, settings.seed
    )
    generator = torch.Generator().manual_seed(settings.seed)

    def log(step: int, loss: float) -> None:
        if settings.log_every and step % settings.log_every == 0 and step < last_step:
            _log_progress(step, last_step, loss, heldout_accuracy(model.eval(), tokenizer, heldout), started)

    last_step = settings.steps + settings.habit_steps
    loss = float("nan")
    if skill_model is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=settings.steps, eta_min=settings.final_learning_rate
        )
        loss = train_steps(
            model,
            optimizer,
            schedule,
            [rows, seeded],
            None,
            settings.steps,
            settings,
            tokenizer,
            generator,
            log,
        )
    if settings.habit_steps:
        habit = tasks.generate_rows(
            settings.task, "habit", settings.habit_examples, seed=30_000 + settings.seed, warm_start="habit"
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.habit_learning_rate, weight_decay=0.0)
        pools = [habit, seeded]
        shares = [1 - settings.habit_seeded_share, settings.habit_seeded_share]
        loss = train_steps(
            model,
            optimizer,
            None,
            pools,
            shares,
            settings.habit_steps,
            settings,
            tokenizer,
            generator,
            log,
            first_step=settings.steps,
        )
    model.eval()
    accuracy = heldout_accuracy(model, tokenizer, heldout)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    report = WarmStartReport(
        settings, accuracy, loss, time.perf_counter() - started, str(skill_model) if skill_model else None
    )
    (path / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2))
    return report


def train_steps(
    model: Qwen2ForCausalLM,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler | None,
    pools: list[list[dict]],
    shares: list[float] | None,
    steps: int,
    settings: WarmStartSettings,
    tokenizer: PreTrainedTokenizerFast,
    generator: torch.Generator,
    log: Callable[[int, float], None],
    first_step: int = 0,
) -> float:
    """One stage's ``steps`` supervised steps on batches drawn from ``pools`` (by ``shares``, else
    by size); the last loss. Steps are numbered from ``first_step`` on, for the progress lines.

    Each batch comes from one pool: seeded examples are three times as long, and batched apart
    they do not pad the short ones.
    """
    encoded = [encode_examples(tokenizer, pool) for pool in pools if pool]
    weights = (
        [len(pool) for pool in pools if pool]
        if shares is None
        else [share for share, pool in zip(shares, pools, strict=True) if pool]
    )
    weights = torch.tensor(weights, dtype=torch.float)
    loss = torch.tensor(float("nan"))
    model.train()
    for step in range(first_step + 1, first_step + steps + 1):
        ids, attention, response_mask = encoded[int(torch.multinomial(weights, 1, generator=generator))]
        batch = torch.randint(len(ids), (settings.batch_size,), generator=generator)
        width = int(attention[batch].sum(dim=1).max())
        loss = response_loss(
            model, ids[batch, :width], attention[batch, :width], response_mask[batch, :width]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        log(step, loss.item())
        model.train()
    return loss.item()


def _log_progress(step: int, last_step: int, loss: float, accuracy: dict, started: float) -> None:
    shares = " ".join(f"{k} {v:.2f}" for k, v in accuracy.items())
    elapsed = time.perf_counter() - started
    print(
        f"warm start step {step}/{last_step} ({elapsed:.0f} s): loss {loss:.3f}, greedy {shares}",
        flush=True,
    )


def heldout_accuracy(model: Qwen2ForCausalLM, tokenizer, rows: list[dict]) -> dict[str, float]:
    """Greedy exact match of the reference solution after its first token, overall and per difficulty."""
    ids, attention, response_mask = encode_examples(tokenizer, rows)
    correct = greedy_exact_match(model, ids, attention, response_mask)
    levels = [row["extra_info"]["difficulty"] for row in rows]
    accuracy = {"all": float(correct.float().mean())}
    for level in sorted(set(levels)):
        picked = torch.tensor([lv == level for lv in levels])
        accuracy[level] = float(correct[picked].float().mean())
    return accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="model folder to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--task", default=None, help="task family (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skill-model",
        type=Path,
        default=None,
        help="a model folder that has had the skill stage: run only the habit stage, from it",
    )
    args = parser.parse_args(argv)
    settings = replace(PRESETS[args.preset], seed=args.seed, task=args.task or PRESETS[args.preset].task)
    if args.skill_model is not None and not settings.habit_steps:
        parser.error(f"--skill-model: the {args.preset!r} preset has no habit stage to run from it")
    report = build_warm_model_dir(args.path, settings, args.skill_model)
    shares = ", ".join(f"{k} {v:.0%}" for k, v in report.heldout_accuracy.items())
    print(f"warm-started model in {args.path} ({report.seconds:.0f} s): greedy accuracy {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
