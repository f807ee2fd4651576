"""A small byte-level BPE tokenizer with a ChatML chat template, trained locally in a second.

Byte-level, so it encodes any text; a few hundred tokens, because vocabulary size dominates the
cost of a tiny model on CPU. Used by the tests and by CPU runs, where no hub is reachable.

It pre-tokenizes exactly like Qwen2's tokenizer (digits one by one), because next to a Qwen2
config ``AutoTokenizer`` (so verl and vLLM) loads it as ``Qwen2Tokenizer``, which rebuilds the
pre-tokenizer its own way: any other choice would give the model different ids at run time.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def default_corpus() -> list[str]:
    """English word problems and arithmetic, generated deterministically."""
    names = ["Ava", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana"]
    things = ["apples", "marbles", "coins", "books", "stamps", "pencils", "cookies", "shells"]
    lines = []
    for i in range(400):
        a, b = (i * 7) % 97 + 2, (i * 13) % 89 + 1
        name, thing = names[i % len(names)], things[(i // 3) % len(things)]
        lines.append(f"{name} has {a} {thing} and buys {b} more. How many {thing} does {name} have now?")
        lines.append(f"{a} + {b} = {a + b}. {a} * {b} = {a * b}. The answer is {a + b}.")
        lines.append(f"Solve the problem step by step and give the final answer: {a} - {b} = {a - b}")
    return lines


def build_toy_tokenizer(
    vocab_size: int = 384, corpus: Iterable[str] | None = None
) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus) if corpus is not None else default_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
    )
