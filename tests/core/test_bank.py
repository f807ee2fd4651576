"""The exemplar bank: identity, leakage guard, eviction, retrieval, files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_xrpo.core.bank import BankFileError, ExemplarBank, read_curated_pairs
from verl_xrpo.core.retrieval import DenseRetriever

QUESTIONS = [
    "Ava has 12 apples and eats 3. How many apples are left?",
    "A train travels 60 km in 1.5 hours. What is its average speed?",
    "What is the sum of the interior angles of a hexagon?",
    "Ben has 7 marbles and finds 5 more. How many marbles does he have?",
    "Solve for x: 3x + 4 = 19.",
]


def filled_bank(**kwargs) -> ExemplarBank:
    bank = ExemplarBank(max_size=100, **kwargs)
    for i, q in enumerate(QUESTIONS):
        bank.add(q, f"solution {i}")
    return bank


def test_similar_question_ranks_first_and_the_query_itself_never_returns():
    bank = filled_bank()
    hits = bank.retrieve(["Chen has 20 apples and eats 4 of them. How many apples are left?"], k=2)[0]
    assert hits[0][0].question == QUESTIONS[0]
    for query in QUESTIONS:
        for exemplar, _ in bank.retrieve([query.upper() + "  "], k=4)[0]:
            assert exemplar.question != query


def test_min_score_drops_weak_matches():
    query = "How many apples are left after eating?"
    scores = [s for _, s in filled_bank().retrieve([query], k=5)[0]]
    assert scores and scores == sorted(scores, reverse=True)
    strict = filled_bank(min_score=scores[0])
    assert strict.retrieve([query], k=5) == [[]]
    assert filled_bank().retrieve(["zebra quantum"], k=2) == [[]]  # nothing in common: nothing returned


def test_leaked_questions_are_refused_and_purged():
    bank = ExemplarBank(max_size=10, blocked_questions=["Solve for x: 3x + 4 = 19."])
    assert not bank.add("  solve FOR x:   3x + 4 = 19. ", "x = 5")
    assert bank.refused_leaks == 1
    bank.add(QUESTIONS[0], "9")
    bank.block_questions([QUESTIONS[0].lower()])
    assert len(bank) == 0 and bank.retrieve(["apples left"], k=1) == [[]]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 6), ops=st.lists(st.integers(0, 9), min_size=1, max_size=40))
def test_eviction_drops_the_least_recent_online_exemplar(size, ops):
    bank = ExemplarBank(max_size=size)
    recency: list[int] = []
    for q in ops:
        bank.add(f"question number {q}", f"answer {q}")
        if q in recency:
            recency.remove(q)
        recency.append(q)
        assert len(bank) <= size
    assert [e.question for e in bank] == [f"question number {q}" for q in recency[-size:]]


def test_curated_exemplars_are_pinned():
    bank = ExemplarBank(max_size=3)
    bank.add("curated one", "c1", source="curated")
    assert not bank.add("curated one", "online rewrite")  # an online success does not replace it
    for i in range(5):
        bank.add(f"online {i}", "x")
    assert [e.question for e in bank] == ["curated one", "online 3", "online 4"]
    full = ExemplarBank(max_size=1)
    full.add("a", "1", source="curated")
    with pytest.raises(ValueError, match="bank_size"):
        full.add("b", "2", source="curated")


def test_save_and_load_round_trip(tmp_path):
    bank = filled_bank()
    bank.add("curated q", "curated s", source="curated")
    path = tmp_path / "bank.json"
    bank.save(path)
    loaded = ExemplarBank.load(path)
    assert list(loaded) == list(bank) and loaded.max_size == bank.max_size
    queries = ["apples left", "speed of a train", "angles"]
    assert loaded.retrieve(queries, k=2) == bank.retrieve(queries, k=2)
    guarded = ExemplarBank.load(path, blocked_questions=[QUESTIONS[1]])
    assert len(guarded) == len(bank) - 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable exemplar bank"),
        (json.dumps({"entries": []}), "no 'verl-xrpo-exemplar-bank' format tag"),
        (json.dumps({"format": "verl-xrpo-exemplar-bank", "version": 99, "entries": []}), "version 99"),
        (json.dumps({"format": "verl-xrpo-exemplar-bank", "version": 1, "entries": [{"q": 1}]}), "entry 0"),
    ],
)
def test_damaged_files_raise_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bank.json"
    path.write_text(content)
    with pytest.raises(BankFileError, match=message) as raised:
        ExemplarBank.load(path)
    assert str(path) in str(raised.value)


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exemplar bank at"):
        ExemplarBank.load(tmp_path / "absent.json")


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".json"])
def test_preload_curated_rows(tmp_path, suffix):
    frame = pd.DataFrame({"question": [*QUESTIONS[:3], "leaked"], "solution": ["a", "b", "c", "d"]})
    path = tmp_path / f"curated{suffix}"
    {
        ".parquet": lambda: frame.to_parquet(path),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".json": lambda: frame.to_json(path, orient="records"),
    }[suffix]()
    bank = ExemplarBank(max_size=10, blocked_questions=["LEAKED"])
    assert bank.preload(path) == 3
    assert {e.source for e in bank} == {"curated"}


def test_preload_errors_are_clear(tmp_path):
    path = tmp_path / "rows.jsonl"
    pd.DataFrame({"problem": ["q"], "answer": ["a"]}).to_json(path, orient="records", lines=True)
    with pytest.raises(BankFileError, match=r"no column 'question', 'solution'; its columns are \['problem'"):
        ExemplarBank(max_size=5).preload(path)
    assert ExemplarBank(max_size=5).preload(path, question_key="problem", solution_key="answer") == 1
    with pytest.raises(BankFileError, match=r"unknown file type '\.csv'"):
        (tmp_path / "rows.csv").write_text("question,solution\n")
        ExemplarBank(max_size=5).preload(tmp_path / "rows.csv")
    with pytest.raises(FileNotFoundError):
        ExemplarBank(max_size=5).preload(tmp_path / "nope.parquet")


BAD_ROWS = {
    "null": (
        [{"question": "q1", "solution": "s1"}, {"question": "q2", "solution": None}],
        "row 2 .* solution=",
    ),
    "blank": (
        [{"question": "q1", "solution": "s1"}, {"question": "  ", "solution": "s2"}],
        "row 2 .* question='  '",
    ),
    "absent": ([{"question": "q1", "solution": "s1"}, {"question": "q2"}], "row 2 .* solution="),
    "nested": ([{"question": "q1", "solution": ["a", "b"]}], r"row 1 .* solution=\['a', 'b'\]"),
}


@pytest.mark.parametrize(
    ("case", "suffix"),
    [
        (case, suffix)
        for case in BAD_ROWS
        for suffix in (".jsonl", ".parquet")
        if (case, suffix) != ("nested", ".parquet")
    ],
)
def test_a_bad_curated_row_names_the_file_and_the_row(tmp_path, case, suffix):
    rows, bad = BAD_ROWS[case]
    path = tmp_path / f"curated{suffix}"
    if suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    bank = ExemplarBank(max_size=5)
    with pytest.raises(BankFileError, match=bad) as raised:
        bank.preload(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    assert len(bank) == 0  # nothing of a refused file is kept


def test_numbers_in_a_curated_file_are_text_and_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "curated.jsonl"
    path.write_text(json.dumps({"question": "What is 6 times 7?", "solution": 42}) + "\n")
    assert read_curated_pairs(path) == [("What is 6 times 7?", "42")]
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"question": pd.Series([], dtype=str), "solution": pd.Series([], dtype=str)}).to_parquet(
        empty
    )
    with pytest.raises(BankFileError, match="has no rows"):
        read_curated_pairs(empty)


def hashed_bag_of_words(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), 64))
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, sum(map(ord, word.strip("?.,"))) % 64] += 1
    return out


def test_dense_retriever_ranks_by_cosine():
    bank = ExemplarBank(max_size=10, retriever=DenseRetriever(hashed_bag_of_words))
    for i, q in enumerate(QUESTIONS):
        bank.add(q, str(i))
    hits = bank.retrieve(["How many marbles does Ben have if he finds more marbles?"], k=2)[0]
    assert hits[0][0].question == QUESTIONS[3]
    assert -1.0 <= hits[1][1] <= hits[0][1] <= 1.0
