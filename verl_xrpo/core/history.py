"""Which prompts' rollouts agreed the last time they were trained (``planning.skip_agreed``).

A group agrees when all its rollouts failed or all passed: it gives GRPO no advantage. Prompts are
known by a short digest of their question text, so the record stays small for large datasets and
holds no text. Only the latest visit counts: a prompt that is mixed again is planned again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from verl_xrpo.core.files import write_text_atomically

FORMAT = "verl-xrpo-agreement-history"


def question_key(question: str) -> str:
    return hashlib.blake2b(question.encode("utf-8"), digest_size=8).hexdigest()


class AgreementHistory:
    def __init__(self) -> None:
        self._agreed: dict[str, bool] = {}

    def __len__(self) -> int:
        return len(self._agreed)

    def record(self, question: str, correct: Sequence[float]) -> None:
        """This visit's rollouts of ``question`` (correctness); a visit without rollouts is not one."""
        if len(correct):
            self._agreed[question_key(question)] = min(correct) == max(correct)

    def agreed(self, question: str) -> bool:
        """Whether the last visit's rollouts all agreed; False for a prompt not seen yet."""
        return self._agreed.get(question_key(question), False)

    def save(self, path: str | Path) -> None:
        write_text_atomically(Path(path), json.dumps({"format": FORMAT, "agreed": self._agreed}))

    @classmethod
    def load(cls, path: str | Path) -> AgreementHistory:
        """The history saved at ``path``; ValueError naming the file if it is not one."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or not isinstance(data.get("agreed"), dict):
                raise ValueError(f"not a {FORMAT} file")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
            raise ValueError(f"{path} is not an agreement history ({error})") from error
        history = cls()
        history._agreed = {str(k): bool(v) for k, v in data["agreed"].items()}
        return history
