"""What each prompt's earlier visits said: the evidence for planning before a step generates.

A visit is one training step's rollouts of a prompt. Per prompt the history keeps

- a success estimate: decayed counts of successes ``s`` and rollouts ``t``; at each visit the old
  counts are multiplied by ``decay`` before the visit's own are added (``decay`` 0 keeps the last
  visit alone, 1 every visit alike), since the policy moves between visits;
- the last visit's outcome: whether its rollouts all agreed (``planning.skip_agreed``) and whether
  they all failed (next-visit seeding).

``estimate`` turns the counts into a Beta posterior mean whose prior is the running success mix
of every rollout recorded, worth ``prior_strength`` rollouts. Prompts are known by a short digest of
their question text (verl gives each fetch a fresh uid), so the record holds no text; it keeps at
most ``max_prompts`` of them, the least recently visited going first.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verl_xrpo.core.files import write_text_atomically

FORMAT = "verl-xrpo-prompt-history"
# About 200 bytes a prompt in memory: 40 MB at the cap, far above the prompts of a math dataset.
MAX_PROMPTS = 200_000


def question_key(question: str) -> str:
    return hashlib.blake2b(question.encode("utf-8"), digest_size=8).hexdigest()


@dataclass
class Visits:
    successes: float = 0.0  # decayed
    rollouts: float = 0.0  # decayed
    last_rollouts: int = 0
    last_successes: int = 0


class PromptHistory:
    def __init__(self, decay: float = 0.5, prior_strength: float = 1.0, max_prompts: int = MAX_PROMPTS):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"a history's decay is in [0, 1], got {decay}")
        self.decay = decay
        self.prior_strength = prior_strength
        self.max_prompts = max_prompts
        self._visits: OrderedDict[str, Visits] = OrderedDict()  # least recently visited first
        self.successes = 0.0  # every rollout recorded: the prior's success mix
        self.rollouts = 0.0

    def __len__(self) -> int:
        return len(self._visits)

    def record(self, question: str, correct: Sequence[float]) -> None:
        """This visit's rollouts of ``question`` (correctness); a visit without rollouts is not one."""
        if not len(correct):
            return
        key = question_key(question)
        visits = self._visits.pop(key, None) or Visits()
        wins = int(sum(float(c) > 0 for c in correct))
        visits.successes = self.decay * visits.successes + wins
        visits.rollouts = self.decay * visits.rollouts + len(correct)
        visits.last_rollouts, visits.last_successes = len(correct), wins
        self._visits[key] = visits
        self.successes += wins
        self.rollouts += len(correct)
        while len(self._visits) > self.max_prompts:
            self._visits.popitem(last=False)

    def seen(self, question: str) -> bool:
        return question_key(question) in self._visits

    def agreed(self, question: str) -> bool:
        """Whether the last visit's rollouts all agreed; False for a prompt not seen yet."""
        visits = self._visits.get(question_key(question))
        return visits is not None and visits.last_successes in (0, visits.last_rollouts)

    def failed_all(self, question: str) -> bool:
        """Whether the last visit's rollouts all failed; False for a prompt not seen yet."""
        visits = self._visits.get(question_key(question))
        return visits is not None and visits.last_successes == 0

    def prior_mean(self) -> float:
        """The success mix of every rollout recorded (one success in two before any)."""
        return (self.successes + 1.0) / (self.rollouts + 2.0)

    def posterior(self, question: str) -> tuple[float, float]:
        """Beta(a, b) of the question's success rate: the prior mix worth ``prior_strength``
        rollouts, plus its decayed successes and failures."""
        prior, weight = self.prior_mean(), self.prior_strength
        visits = self._visits.get(question_key(question)) or Visits()
        return weight * prior + visits.successes, weight * (1.0 - prior) + visits.rollouts - visits.successes

    def estimate(self, questions: Sequence[str]) -> np.ndarray:
        """Each question's posterior mean success rate; the prior mix for a question not seen yet."""
        out = np.empty(len(questions))
        for i, question in enumerate(questions):
            a, b = self.posterior(question)
            out[i] = a / (a + b)
        return out

    def save(self, path: str | Path) -> None:
        rows = {
            key: [v.successes, v.rollouts, v.last_rollouts, v.last_successes]
            for key, v in self._visits.items()
        }
        data = {"format": FORMAT, "mix": [self.successes, self.rollouts], "prompts": rows}
        write_text_atomically(Path(path), json.dumps(data))

    @classmethod
    def load(
        cls, path: str | Path, decay: float = 0.5, prior_strength: float = 1.0, max_prompts: int = MAX_PROMPTS
    ) -> PromptHistory:
        """The history saved at ``path`` (its visit order kept); ValueError naming the file if it is
        not one. ``decay`` and ``prior_strength`` are the run's settings, not the file's."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or not isinstance(data.get("prompts"), dict):
                raise ValueError(f"not a {FORMAT} file")
            history = cls(decay, prior_strength, max_prompts)
            history.successes, history.rollouts = (float(x) for x in data["mix"])
            for key, (s, t, n, k) in data["prompts"].items():
                history._visits[str(key)] = Visits(float(s), float(t), int(n), int(k))
        except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError, KeyError) as error:
            raise ValueError(f"{path} is not a prompt history ({error})") from error
        return history
