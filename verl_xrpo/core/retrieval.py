"""Retrievers for the exemplar bank: BM25 (bm25s) by default, dense embeddings as an option.

A retriever indexes the bank's questions once (``build``) and answers a batch of queries with the
ids and scores of the best documents, -1 where there are fewer documents than asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from verl_xrpo.config import SeedingConfig


class Retriever(Protocol):
    def build(self, documents: list[str]) -> None: ...

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _empty(num_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((num_queries, k), -1, dtype=np.int64), np.zeros((num_queries, k), dtype=np.float32)


class BM25Retriever:
    """Lexical BM25 over English-stopword-filtered tokens; needs no model weights."""

    def __init__(self, stopwords: str | None = "en"):
        self.stopwords = stopwords
        self._model = None
        self._size = 0

    def build(self, documents: list[str]) -> None:
        import bm25s

        self._size = len(documents)
        self._model = None
        if documents:
            self._model = bm25s.BM25()
            tokens = bm25s.tokenize(documents, stopwords=self.stopwords, show_progress=False)
            self._model.index(tokens, show_progress=False)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        import bm25s

        ids, scores = _empty(len(queries), k)
        if self._model is None or not queries or k == 0:
            return ids, scores
        width = min(k, self._size)
        tokens = bm25s.tokenize(queries, stopwords=self.stopwords, show_progress=False, return_ids=False)
        found, found_scores = self._model.retrieve(tokens, k=width, show_progress=False, n_threads=0)
        ids[:, :width] = found
        scores[:, :width] = found_scores
        return ids, scores


class DenseRetriever:
    """Cosine similarity of embeddings from ``encode`` (texts -> (n, d) array)."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray]):
        self.encode = encode
        self._matrix = np.zeros((0, 0), dtype=np.float32)

    @classmethod
    def from_sentence_transformers(cls, model_path: str) -> DenseRetriever:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise ImportError(
                "algorithm.xrpo.seeding.retriever=dense needs sentence-transformers: "
                "pip install 'verl-xrpo[dense]'"
            ) from error
        model = SentenceTransformer(model_path, device="cpu")
        return cls(lambda texts: model.encode(texts, convert_to_numpy=True, show_progress_bar=False))

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.encode(texts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def build(self, documents: list[str]) -> None:
        self._matrix = self._embed(documents) if documents else np.zeros((0, 0), dtype=np.float32)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = _empty(len(queries), k)
        size = self._matrix.shape[0]
        if size == 0 or not queries or k == 0:
            return ids, scores
        width = min(k, size)
        similarity = self._embed(queries) @ self._matrix.T
        top = np.argpartition(-similarity, width - 1, axis=1)[:, :width]
        top_scores = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        ids[:, :width] = np.take_along_axis(top, order, axis=1)
        scores[:, :width] = np.take_along_axis(top_scores, order, axis=1)
        return ids, scores


def make_retriever(seeding: SeedingConfig) -> Retriever:
    if seeding.retriever == "dense":
        return DenseRetriever.from_sentence_transformers(seeding.embedding_model)
    return BM25Retriever()
