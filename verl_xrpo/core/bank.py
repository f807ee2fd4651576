"""The exemplar bank: verified (question, solution) pairs for in-context seeding.

- One exemplar per question (compared after ``normalize_question``): an online success for a
  question already held replaces its solution and makes it the most recent.
- Eviction: past ``max_size``, the least recently added or refreshed *online* exemplar goes.
  Curated exemplars (``preload``) are pinned: never evicted, never replaced by online ones.
- Leakage guard: a question matching a blocked (validation) question is refused, and blocking a
  question later removes it from the bank.
- ``save``/``load`` round-trip through a JSON file written atomically; a missing or damaged file
  raises, it never yields a silently empty bank.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from verl_xrpo.core.files import write_text_atomically
from verl_xrpo.core.retrieval import BM25Retriever, Retriever
from verl_xrpo.core.text import normalize_question

FILE_FORMAT = "verl-xrpo-exemplar-bank"
FILE_VERSION = 1

Source = Literal["online", "curated"]


class BankFileError(ValueError):
    """A bank or curated file that exists but cannot be read as one."""


@dataclass(frozen=True)
class Exemplar:
    question: str
    response: str
    source: Source = "online"


class ExemplarBank:
    def __init__(
        self,
        max_size: int,
        retriever: Retriever | None = None,
        min_score: float = 0.0,
        blocked_questions: Iterable[str] = (),
    ):
        if max_size < 1:
            raise ValueError(f"an exemplar bank needs max_size >= 1, got {max_size}")
        self.max_size = max_size
        self.min_score = min_score
        self.retriever = retriever or BM25Retriever()
        self._entries: OrderedDict[str, Exemplar] = OrderedDict()  # least recent first
        self._blocked: set[str] = {normalize_question(q) for q in blocked_questions}
        self._indexed_keys: list[str] | None = None  # None: the index is stale
        self.refused_leaks = 0  # online solutions of validation questions refused (a metric)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(self._entries.values())

    # ---- adding -----------------------------------------------------------------------------

    def add(self, question: str, response: str, source: Source = "online") -> bool:
        """Keep a verified solution; False if refused (leak, empty, or an online copy of a curated one)."""
        key = normalize_question(question)
        if not key or not response.strip():
            return False
        if key in self._blocked:
            self.refused_leaks += 1
            return False
        held = self._entries.get(key)
        if held is not None and held.source == "curated" and source == "online":
            return False
        self._entries[key] = Exemplar(question, response, source)
        self._entries.move_to_end(key)
        self._indexed_keys = None
        self._evict()
        return key in self._entries

    def add_many(self, pairs: Iterable[tuple[str, str]], source: Source = "online") -> int:
        return sum(self.add(question, response, source) for question, response in pairs)

    def _evict(self) -> None:
        while len(self._entries) > self.max_size:
            oldest_online = next((k for k, e in self._entries.items() if e.source == "online"), None)
            if oldest_online is None:
                raise ValueError(
                    f"the exemplar bank holds {len(self._entries)} curated exemplars, more than its size "
                    f"{self.max_size}; raise algorithm.xrpo.seeding.bank_size"
                )
            del self._entries[oldest_online]

    def block_questions(self, questions: Iterable[str]) -> None:
        """Bar these (validation) questions from the bank, removing any already held."""
        new = {normalize_question(q) for q in questions}
        self._blocked |= new
        for key in new & self._entries.keys():
            del self._entries[key]
            self._indexed_keys = None

    # ---- retrieval --------------------------------------------------------------------------

    def retrieve(self, queries: list[str], k: int) -> list[list[tuple[Exemplar, float]]]:
        """Up to k exemplars per query, most similar first: never the query's own question, and
        only those scoring above ``min_score``."""
        if not queries:
            return []
        if self._indexed_keys is None:
            self._indexed_keys = list(self._entries)
            self.retriever.build([self._entries[key].question for key in self._indexed_keys])
        ids, scores = self.retriever.search(queries, k + 1)  # one spare for the query itself
        results = []
        for query, row_ids, row_scores in zip(queries, ids, scores, strict=True):
            own = normalize_question(query)
            hits = []
            for doc, score in zip(row_ids, row_scores, strict=True):
                if doc < 0 or score <= self.min_score or self._indexed_keys[doc] == own:
                    continue
                hits.append((self._entries[self._indexed_keys[doc]], float(score)))
                if len(hits) == k:
                    break
            results.append(hits)
        return results

    # ---- files ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "max_size": self.max_size,
            "entries": [{"question": e.question, "response": e.response, "source": e.source} for e in self],
        }
        write_text_atomically(path, json.dumps(payload, ensure_ascii=False))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        retriever: Retriever | None = None,
        min_score: float = 0.0,
        blocked_questions: Iterable[str] = (),
        max_size: int | None = None,
    ) -> ExemplarBank:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no exemplar bank at {path}")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BankFileError(f"{path} is not a readable exemplar bank: {error}") from error
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise BankFileError(f"{path} is not an exemplar bank file (no '{FILE_FORMAT}' format tag)")
        if payload.get("version") != FILE_VERSION:
            raise BankFileError(
                f"{path} has bank format version {payload.get('version')}, expected {FILE_VERSION}"
            )
        entries = payload.get("entries")
        if not isinstance(entries, list):
            raise BankFileError(f"{path} has no list of entries")
        bank = cls(
            max_size or int(payload.get("max_size", len(entries) or 1)),
            retriever,
            min_score,
            blocked_questions,
        )
        for i, entry in enumerate(entries):
            try:
                bank.add(entry["question"], entry["response"], entry.get("source", "online"))
            except (KeyError, TypeError, AttributeError) as error:
                raise BankFileError(f"{path}: entry {i} is malformed ({error!r})") from error
        return bank

    def preload(
        self, path: str | os.PathLike, question_key: str = "question", solution_key: str = "solution"
    ) -> int:
        """Add curated rows from .parquet, .jsonl or .json (a list of objects); returns how many were kept."""
        return self.add_many(read_curated_pairs(path, question_key, solution_key), source="curated")


def read_curated_pairs(
    path: str | os.PathLike, question_key: str = "question", solution_key: str = "solution"
) -> list[tuple[str, str]]:
    """The (question, solution) rows of a curated file; a row without usable text is refused by number.

    Numbers are accepted as text (a JSON solution ``42``); null, NaN, blank text and nested values
    are not: turned into strings they would become exemplars such as "None" or "nan".
    """
    frame = read_rows(Path(path))
    missing = [key for key in (question_key, solution_key) if key not in frame.columns]
    if missing:
        raise BankFileError(
            f"{path} has no column {', '.join(map(repr, missing))}; its columns are {list(frame.columns)}"
        )
    if frame.empty:
        raise BankFileError(f"{path} has no rows; give it curated rows or drop seeding.preload_path")
    pairs = []
    columns = (question_key, solution_key)
    for number, values in enumerate(zip(frame[question_key], frame[solution_key], strict=True), start=1):
        texts = [_cell_text(value) for value in values]
        for column, value, text in zip(columns, values, texts, strict=True):
            if text is None:
                raise BankFileError(
                    f"{path}: row {number} (counting from 1) has {column}={value!r}; every row needs a "
                    f"non-empty {question_key} and {solution_key}. Fix or remove that row."
                )
        pairs.append((texts[0], texts[1]))
    return pairs


def _cell_text(value: object) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    # numbers.Real also covers numpy's scalars, which is what pandas hands out for numeric columns
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    return None


def read_rows(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"no curated exemplar file at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        if suffix == ".json":
            return pd.read_json(path)
    except ValueError as error:
        raise BankFileError(f"{path} could not be read: {error}") from error
    raise BankFileError(f"{path}: unknown file type '{suffix}'; use .parquet, .jsonl or .json")
