"""Question identity: two questions are the same when they match after this normalisation."""

import re

_SPACE = re.compile(r"\s+")


def normalize_question(text: str) -> str:
    """Case-folded, whitespace collapsed and stripped: what the bank and its leakage guard compare."""
    return _SPACE.sub(" ", text).strip().casefold()
