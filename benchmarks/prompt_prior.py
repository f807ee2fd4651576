"""A prompt's first visit: is its success rate told better by similar, seen prompts than by the mix?

Offline, no model. ``PromptHistory`` gives a prompt it has not seen the running success mix of
every rollout as its prior (``prior_mean``), worth ``prior_strength`` rollouts. This replays the
committed scale-model traces (``results/scale-compare/runs/*/seed*/rollouts.parquet``) in step
order, like ``benchmarks.epochs.history_scores`` does for revisits, and scores every prompt's
FIRST visit (unseeded rollouts, n > 0) under priors of the same strength s from:

- ``mix``: the running success mix of the rollouts so far (the library's prior);
- ``bm25 k=K``: the mean posterior success rate (the library's history at its defaults) of the K
  seen prompts nearest by the library's BM25 retriever over question text, rebuilt each step over
  the prompts seen before it;
- ``same level``: the running success rate of the seen prompts of the same chain level.

Each falls back to the mix where it has nothing seen. The score is the mean Beta-binomial
log-likelihood per rollout of a visit's outcome, and each predictor is compared with the mix
visit by visit. The traces hold no question text: each seed's training set is regenerated
(``tasks.generate_rows``) and its questions keyed like ``compare.prompt_key``.

    python -m benchmarks.prompt_prior
"""

from __future__ import annotations

import argparse
import glob
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from benchmarks.epochs import TRACES
from verl_xrpo.config import PlanningConfig
from verl_xrpo.core.history import PromptHistory
from verl_xrpo.core.retrieval import BM25Retriever, Retriever

MIX = "mix"
LEVEL = "same level"


def chat_input(question: str) -> str:
    """A chain question as verl's rollout dump shows it: the scale model's ChatML prompt, decoded
    without special tokens (what ``compare.prompt_key`` hashes)."""
    return f"user\n{question}\nassistant\n"


def training_questions(task: str, train_size: int, seed: int) -> dict[str, str]:
    """prompt_key -> question text of a seed's training set, regenerated as the cells drew it."""
    from recipe.xrpo.scale_model import tasks
    from recipe.xrpo.scale_model.compare import prompt_key

    rows = tasks.generate_rows(task, "train", train_size, seed)
    questions = (row["extra_info"]["question"] for row in rows)
    return {prompt_key(chat_input(question)): question for question in questions}


def first_visits(
    frame: pd.DataFrame,
    questions: Mapping[str, str],
    neighbours: Sequence[int] = (5, 10),
    retriever: Callable[[], Retriever] = BM25Retriever,
) -> pd.DataFrame:
    """Each first visit of a prompt in one cell's rollout table, with every predictor's prior mean.

    Steps are replayed in order; a step's visits are scored against what the steps before it
    recorded (two groups of one prompt in its first step are both first visits). Only unseeded
    rollouts count, for the outcomes and for what is recorded. A prompt whose key is not in
    ``questions`` is neither searched nor indexed: its BM25 prior is the mix."""
    frame = frame.assign(n=frame.rollouts - frame.seeded_rollouts, k=frame.successes - frame.seeded_successes)
    frame = frame[frame.n > 0].sort_values("step", kind="stable")
    history = PromptHistory(decay=PlanningConfig().history_decay)  # the library's defaults
    levels: dict[str, list[float]] = {}  # level -> [successes, rollouts]
    seen: list[str] = []  # keys with a question text, in order of first visit
    rows = []
    for step, visits in frame.groupby("step", sort=True):
        new = visits[[not history.seen(key) for key in visits.prompt_key]]
        if len(new):
            mix = history.prior_mean()
            depth = max(neighbours, default=0)
            nearest = _nearest(new.prompt_key.tolist(), seen, questions, depth, retriever)
            for (key, level, n, k), found in zip(
                new[["prompt_key", "level", "n", "k"]].itertuples(index=False), nearest, strict=True
            ):
                wins, total = levels.get(level, (0.0, 0.0))
                row = {"step": step, "prompt_key": key, "n": int(n), "k": int(k), MIX: mix}
                row[LEVEL] = (wins + 1.0) / (total + 2.0) if total > 0 else mix
                for count in neighbours:
                    means = history.estimate(found[:count])
                    row[f"bm25 k={count}"] = float(means.mean()) if len(means) else mix
                rows.append(row)
        for key, level, n, k in visits[["prompt_key", "level", "n", "k"]].itertuples(index=False):
            if not history.seen(key) and key in questions:
                seen.append(key)
            history.record(key, [1.0] * int(k) + [0.0] * int(n - k))
            if isinstance(level, str):
                counts = levels.setdefault(level, [0.0, 0.0])
                counts[0] += k
                counts[1] += n
    return pd.DataFrame(rows)


def _nearest(
    keys: list[str],
    seen: list[str],
    questions: Mapping[str, str],
    depth: int,
    retriever: Callable[[], Retriever],
) -> list[list[str]]:
    """The ``depth`` seen keys nearest each key's question, nearest first ([] where not searchable)."""
    found: list[list[str]] = [[] for _ in keys]
    asked = [i for i, key in enumerate(keys) if key in questions]
    if not seen or not asked or depth == 0:
        return found
    index = retriever()
    index.build([questions[key] for key in seen])
    ids, _ = index.search([questions[keys[i]] for i in asked], depth)
    for i, row in zip(asked, ids, strict=True):
        found[i] = [seen[j] for j in row if j >= 0]
    return found


def predictors(visits: pd.DataFrame) -> list[str]:
    return [c for c in visits.columns if c not in ("cell", "seed", "step", "prompt_key", "n", "k")]


def log_likelihoods(visits: pd.DataFrame, strength: float) -> pd.DataFrame:
    """Per visit and predictor, the Beta-binomial log-likelihood per rollout of the visit's outcome
    under Beta(s m, s (1 - m)), m the predictor's prior mean."""
    out = {}
    for name in predictors(visits):
        mean = visits[name].to_numpy()
        log_p = stats.betabinom.logpmf(visits.k, visits.n, strength * mean, strength * (1.0 - mean))
        out[name] = log_p / visits.n.to_numpy()
    return pd.DataFrame(out, index=visits.index)


def compare(visits: pd.DataFrame, strengths: Sequence[float], resamples: int = 2000, seed: int = 0) -> dict:
    """Per predictor at its best strength: the mean log-likelihood per rollout over first visits,
    their count, and its gain over the mix at the mix's best strength, per visit, with a 95%
    t-interval over cells (each cell's mean gain) and a 95% bootstrap over prompts (a prompt's
    first visits in every cell of its seed resampled together)."""
    scored = {s: log_likelihoods(visits, s) for s in strengths}
    table: dict[str, dict] = {}
    for name in predictors(visits):
        by_strength = {s: float(scored[s][name].mean()) for s in strengths}
        best = max(by_strength, key=by_strength.get)
        table[name] = {"strength": best, "by_strength": by_strength, "score": by_strength[best]}
        table[name]["series"] = scored[best][name]
    base = table[MIX]["series"]
    prompts = visits.seed.astype(str) + "/" + visits.prompt_key
    codes, _ = pd.factorize(prompts)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, codes.max() + 1, size=(resamples, codes.max() + 1))
    weights = np.stack([np.bincount(row, minlength=codes.max() + 1) for row in draws])  # [resample, prompt]
    counts = np.bincount(codes)
    for row in table.values():
        gain = (row.pop("series") - base).to_numpy()
        per_cell = pd.Series(gain).groupby(visits.cell.to_numpy()).mean().to_numpy()
        half = float(stats.t.ppf(0.975, len(per_cell) - 1) * per_cell.std(ddof=1) / np.sqrt(len(per_cell)))
        boot = (weights @ np.bincount(codes, weights=gain)) / (weights @ counts)
        row.update(
            visits=len(gain),
            gain=float(gain.mean()),
            gain_cells_t=[float(per_cell.mean()) - half, float(per_cell.mean()) + half],
            gain_prompts_bootstrap=[float(x) for x in np.quantile(boot, [0.025, 0.975])],
        )
    return table


def load(
    paths: Sequence[str], task: str, train_size: int, neighbours: Sequence[int]
) -> tuple[pd.DataFrame, dict]:
    """Every cell's first visits (columns ``cell`` and ``seed`` added) and, per cell, how many of
    its trace's keys the regenerated training set holds."""
    cells, matched, sets = [], {}, {}
    for path in paths:
        seed = int(Path(path).parent.name.removeprefix("seed"))
        if seed not in sets:
            sets[seed] = training_questions(task, train_size, seed)
        frame = pd.read_parquet(path)
        keys = set(frame.prompt_key)
        matched[path] = (len(keys & sets[seed].keys()), len(keys))
        cells.append(first_visits(frame, sets[seed], neighbours).assign(cell=path, seed=seed))
    return pd.concat(cells, ignore_index=True), matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.prompt_prior", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--traces", default=TRACES, help="rollout tables to replay (a glob)")
    parser.add_argument("--task", default="chain", help="the cells' task, to regenerate their questions")
    parser.add_argument("--train-size", type=int, default=1024, help="the cells' --train-size")
    parser.add_argument("--strengths", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--neighbours", type=int, nargs="+", default=[5, 10], help="BM25's k")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(args.traces))
    if not paths:
        parser.error(f"--traces {args.traces}: no rollout table")
    visits, matched = load(paths, args.task, args.train_size, args.neighbours)
    found, total = (sum(m[i] for m in matched.values()) for i in (0, 1))
    print(
        f"{len(paths)} cells; prompt keys found in the regenerated training sets: {found}/{total} "
        f"({found / total:.1%})"
    )
    table = compare(visits, args.strengths)
    strengths = " ".join(f"{f's={s:g}':>8s}" for s in args.strengths)
    print(
        f"  {'predictor':11s} {strengths}  {'best':>7s} {'visits':>6s}  gain over the mix a visit "
        "(95%: t over cells | bootstrap over prompts)"
    )
    for name, row in table.items():
        scores = " ".join(f"{row['by_strength'][s]:8.4f}" for s in args.strengths)
        (t_lo, t_hi), (b_lo, b_hi) = row["gain_cells_t"], row["gain_prompts_bootstrap"]
        print(
            f"  {name:11s} {scores}  {row['score']:7.4f} {row['visits']:6d}  {row['gain']:+.4f} "
            f"[{t_lo:+.4f}, {t_hi:+.4f}] | [{b_lo:+.4f}, {b_hi:+.4f}]"
        )
    if args.json:
        args.json.write_text(json.dumps({"matched": [found, total], "predictors": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
