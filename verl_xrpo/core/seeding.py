"""Seeded prompts: solved exemplars put in front of a question, within the prompt's token budget.

Only exemplar *solutions* are shortened (questions and the original prompt never are). The room
left by the template is shared out fairly: solutions shorter than an equal share stay whole and
the rest split what remains. A solution cut to nothing is useless, so when one would be, the least
similar exemplar is dropped instead; if none fits, there is no seeded prompt (the question stays
zero-shot).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verl_xrpo.core.bank import Exemplar

HEADER = "Below are worked examples of similar problems, each with a correct solution.\n\n"
FOOTER = "Using them as guidance, solve the following problem.\n\n"
TRUNCATED = " [...]"


def render(original: str, pairs: Sequence[tuple[str, str]]) -> str:
    blocks = [f"Example {i}\nProblem: {q}\nSolution: {s}" for i, (q, s) in enumerate(pairs, start=1)]
    return HEADER + "\n\n".join(blocks) + "\n\n" + FOOTER + original


def prompt_tokens(tokenizer: Any, messages: list[dict[str, Any]]) -> int:
    """Length of the prompt as the rollout sees it: the chat template with the generation prompt."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def fair_shares(lengths: Sequence[int], room: int) -> list[int]:
    """Token caps summing to at most ``room``: short items whole, long ones an equal share of the rest."""
    caps = [0] * len(lengths)
    remaining = max(room, 0)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for position, i in enumerate(order):
        share = remaining // (len(order) - position)
        caps[i] = min(lengths[i], share)
        remaining -= caps[i]
    return caps


def build_seeded_messages(
    messages: list[dict[str, Any]], exemplars: Sequence[Exemplar], tokenizer: Any, max_prompt_tokens: int
) -> list[dict[str, Any]] | None:
    """A copy of ``messages`` whose last user message carries the exemplars, or None if none fit."""
    user_turns = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not user_turns or not exemplars:
        return None
    target = user_turns[-1]
    original = messages[target]["content"]
    solution_ids = [tokenizer.encode(e.response, add_special_tokens=False) for e in exemplars]

    def with_solutions(chosen: Sequence[Exemplar], solutions: Sequence[str]) -> list[dict[str, Any]]:
        seeded = [dict(m) for m in messages]
        seeded[target]["content"] = render(
            original, [(e.question, s) for e, s in zip(chosen, solutions, strict=True)]
        )
        return seeded

    for count in range(len(exemplars), 0, -1):  # drop the least similar first
        chosen, ids = exemplars[:count], solution_ids[:count]
        skeleton = prompt_tokens(tokenizer, with_solutions(chosen, [""] * count))
        room = max_prompt_tokens - skeleton
        while room >= 0:
            caps = fair_shares([len(x) for x in ids], room)
            if any(cap == 0 < len(x) for x, cap in zip(ids, caps, strict=True)):
                break
            solutions = [
                tokenizer.decode(x[:cap]) + (TRUNCATED if cap < len(x) else "")
                for x, cap in zip(ids, caps, strict=True)
            ]
            seeded = with_solutions(chosen, solutions)
            overflow = prompt_tokens(tokenizer, seeded) - max_prompt_tokens
            if overflow <= 0:
                return seeded
            room -= overflow  # markers and re-tokenisation at the seams cost a few tokens
    return None
