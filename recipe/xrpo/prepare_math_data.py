"""Convert local math datasets into verl's RL parquet format for the XRPO comparison runs.

The public datasets are downloaded by the user beforehand (this script never goes online). Each input
is given as ``NAME=PATH``; ``PATH`` is a ``.parquet``, ``.jsonl`` or ``.json`` file, or a glob of them.
Known names and the ``data_source`` each one gets by default:

    name      split  data_source             verl 0.9.1 verifier (utils/reward_score default_compute_score)
    dapo17k   train  math_dapo               math_dapo: score +1/-1, acc, pred
    math      train  lighteval/MATH          math_reward: Hendrycks-MATH equivalence, score 1/0 (acc = score)
    aime24    test   aime24                  math_dapo (any name starting with "aime")
    aime25    test   aime25                  math_dapo
    hmmt25    test   aime_hmmt25             math_dapo (the "aime" prefix is what routes it there)
    math500   test   HuggingFaceH4/MATH-500  math_reward

Why these: verl's validation reports ``maj@N`` (cons@N) only when the reward returns a ``pred`` field,
which only the math_dapo route does, so the competition sets (integer or short answers) go there.
math_dapo compares a ``\\boxed{}`` answer with the ground truth as exact strings (its normalised path
is used only when the response has an ``Answer:`` line), so LaTeX answers such as MATH's are routed to
math_reward, whose equivalence check normalises ``\\dfrac``, spaces, units, etc. (no ``pred``, so no
``maj@N`` there). ``--data-source math500=math`` trades that for ``maj@N`` on MATH-500. Any other name
needs ``--data-source NAME=SOURCE`` with a source verl knows (see the table above).

Output (``--out-dir``, default ``~/data/xrpo_math``): ``train.parquet`` (all ``--train`` inputs),
``<name>.parquet`` per ``--val`` input, and ``val_all.parquet`` (all validation sets; verl reports
metrics per ``data_source``). Columns: ``data_source``, ``prompt`` (one user message: the question,
a blank line, the instruction), ``ability`` ("math"), ``reward_model`` ({"style": "rule",
"ground_truth"}), ``extra_info`` ({"split", "index" (row in the input file), "question"}).

Cleaning: the DAPO-Math-17k prompt template is stripped from its questions (the released parquet
wraps each question in an "Answer:"-style instruction and repeats every question many times);
answers given as a full solution are reduced to their last ``\\boxed{}``; integer answers lose
leading zeros ("033" -> "33"); rows repeating a question (case and whitespace ignored) are dropped
within each dataset; training rows whose question is in a validation set are dropped.

Example (file names inside the downloads vary between releases):

    python recipe/xrpo/prepare_math_data.py \\
        --train dapo17k=~/raw/DAPO-Math-17k/data/dapo-math-17k.parquet \\
        --val "aime24=~/raw/aime_2024/data/train-*.parquet" \\
        --val aime25=~/raw/aime_2025/train.jsonl \\
        --val hmmt25=~/raw/hmmt_feb_2025/data/train-00000-of-00001.parquet \\
        --val math500=~/raw/MATH-500/test.jsonl \\
        --out-dir ~/data/xrpo_math
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULT_OUT_DIR = "~/data/xrpo_math"
SUPPORTED_SUFFIXES = (".parquet", ".jsonl", ".json")


@dataclass(frozen=True)
class Preset:
    split: str
    data_source: str
    description: str


PRESETS: dict[str, Preset] = {
    "dapo17k": Preset(
        "train", "math_dapo", "DAPO-Math-17k (BytedTsinghua-SIA/DAPO-Math-17k or a processed copy)"
    ),
    "math": Preset("train", "lighteval/MATH", "MATH train split (e.g. DigitalLearningGmbH/MATH-lighteval)"),
    "aime24": Preset("test", "aime24", "AIME 2024 (e.g. HuggingFaceH4/aime_2024, Maxwell-Jia/AIME_2024)"),
    "aime25": Preset("test", "aime25", "AIME 2025 I+II (e.g. yentinglin/aime_2025, math-ai/aime25)"),
    "hmmt25": Preset("test", "aime_hmmt25", "HMMT February 2025 (e.g. MathArena/hmmt_feb_2025)"),
    "math500": Preset("test", "HuggingFaceH4/MATH-500", "MATH-500 (HuggingFaceH4/MATH-500)"),
}

# Tried in order, case-insensitively, when no key is given. A dotted key reads a nested field.
QUESTION_CANDIDATES = ("problem", "question", "prompt", "query", "input")
ANSWER_CANDIDATES = (
    "answer",
    "final_answer",
    "expected_answer",
    "reward_model.ground_truth",
    "ground_truth",
    "solution",
    "label",
    "target",
)

# DAPO-Math-17k wraps every question in this instruction (Minerva-style "Answer:" line).
_DAPO_PREFIX = "Solve the following math problem step by step."
_DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:"'
_INTEGER = re.compile(r"[+-]?\d+")


class DataError(ValueError):
    """An input that cannot be converted: missing file, absent column, nothing left to write."""


@dataclass
class ConversionReport:
    source: str
    question_key: str = ""
    answer_key: str = ""
    rows_in: int = 0
    kept: int = 0
    empty: int = 0
    duplicates: int = 0
    conflicting_duplicates: int = 0
    contaminated: int = 0
    over_limit: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.kept} kept of {self.rows_in}"]
        for label, count in (
            ("duplicate questions", self.duplicates),
            ("of them with a different answer", self.conflicting_duplicates),
            ("empty question/answer", self.empty),
            ("also in a validation set", self.contaminated),
            ("over --limit", self.over_limit),
        ):
            if count:
                parts.append(f"{count} {label}")
        keys = f"question={self.question_key!r}, answer={self.answer_key!r}"
        notes = "".join(f"; {note}" for note in self.notes)
        return f"{self.source}: {', '.join(parts)} ({keys}{notes})"


# ---------------------------------------------------------------------------------------------------
# Pure conversion (no I/O): unit-testable.
# ---------------------------------------------------------------------------------------------------


def normalize_question(text: str) -> str:
    """Key for de-duplication and decontamination: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA (containers and strings are never missing)."""
    if value is None:
        return True
    if isinstance(value, (str, bytes, Mapping, list, tuple)) or getattr(value, "ndim", 0) > 0:
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _as_list(value: Any) -> list[Any] | None:
    """Lists, tuples and numpy arrays (how parquet returns list columns) as a list; else None."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1:
        return list(value.tolist())
    return None


def strip_dapo_template(text: str) -> str:
    """The bare question of a DAPO-Math-17k prompt (other text is returned unchanged)."""
    text = text.strip()
    if text.startswith(_DAPO_PREFIX):
        _, sep, body = text.partition("\n\n")
        if sep:
            text = body
    if _DAPO_SUFFIX in text:
        text = text.split(_DAPO_SUFFIX, 1)[0]
    return text.strip()


def question_text(value: Any) -> str | None:
    """A question from a string, a chat-message list (last user turn) or a message dict."""
    if _is_missing(value):
        return None
    messages = _as_list(value)
    if messages is not None:
        users = [m for m in messages if isinstance(m, Mapping) and m.get("role", "user") == "user"]
        if not users:
            return None
        value = users[-1].get("content")
    elif isinstance(value, Mapping):
        value = value.get("content")
    if not isinstance(value, str):
        return None
    text = strip_dapo_template(value)
    return text or None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched; None if absent."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def answer_text(value: Any, require_boxed: bool = False) -> str | None:
    """A ground-truth string: boxed answers unwrapped, ``$...$`` removed, integers canonical.

    ``require_boxed``: the value is a worked solution, so text without a ``\\boxed{}`` gives None.
    """
    if _is_missing(value):
        return None
    items = _as_list(value)
    if items is not None:  # e.g. a one-element answer list
        return answer_text(items[0], require_boxed) if len(items) == 1 else None
    if isinstance(value, bool):
        return None
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    if isinstance(value, int) or kind in ("i", "u"):
        return str(int(value))
    if isinstance(value, float) or kind == "f":
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if "\\boxed" in text or "\\fbox" in text:
        boxed = last_boxed(text)
        if boxed is None:
            return None
        text = boxed.strip()
    elif require_boxed:
        return None
    while len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text[1:-1].strip()
    if _INTEGER.fullmatch(text):
        text = str(int(text))
    return text or None


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    if key in row:
        return row[key]
    head, _, rest = key.partition(".")
    value = row.get(head)
    while rest:
        if not isinstance(value, Mapping):
            return None
        head, _, rest = rest.partition(".")
        value = value.get(head)
    return value


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def _has_key(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    """True if some row has ``key`` (dotted keys: the nested field exists in some row)."""
    for row in rows:
        if key in row:
            return True
        head, _, rest = key.partition(".")
        if rest and isinstance(row.get(head), Mapping) and _lookup(row, key) is not None:
            return True
    return False


def resolve_key(
    rows: Sequence[Mapping[str, Any]],
    requested: str | None,
    candidates: Sequence[str],
    role: str,
    source: str,
) -> str:
    """The column to read: ``requested`` if given (it must exist), else the first candidate found."""
    columns = _columns(rows)
    if requested:
        if _has_key(rows, requested):
            return requested
        raise DataError(
            f"{source}: {role} column {requested!r} not found; columns found: {columns}. "
            f"Pass --{role}-key NAME=COLUMN with one of them (a dotted key reads a nested field)."
        )
    by_lower = {c.lower(): c for c in columns}
    for candidate in candidates:
        head, dot, rest = candidate.partition(".")
        actual = by_lower.get(head.lower())
        if actual is None:
            continue
        key = f"{actual}{dot}{rest}"
        if _has_key(rows, key):
            return key
    raise DataError(
        f"{source}: no {role} column found (tried {', '.join(candidates)}); columns found: {columns}. "
        f"Pass --{role}-key NAME=COLUMN."
    )


def holds_solutions(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    """True if most non-empty values of ``key`` contain a ``\\boxed{}`` (worked solutions, as in MATH)."""
    texts = [v for v in (_lookup(row, key) for row in rows) if isinstance(v, str) and v.strip()]
    return bool(texts) and 2 * sum("\\boxed" in t or "\\fbox" in t for t in texts) >= len(texts)


def build_prompt(question: str, instruction: str) -> list[dict[str, str]]:
    content = question if not instruction or instruction in question else f"{question}\n\n{instruction}"
    return [{"role": "user", "content": content}]


def convert_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    data_source: str,
    split: str,
    question_key: str | None = None,
    answer_key: str | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
    dedup: bool = True,
    limit: int | None = None,
    exclude_questions: Iterable[str] = (),
    source: str = "input",
) -> tuple[list[dict[str, Any]], ConversionReport]:
    """Raw rows to verl RL records; rows whose question is in ``exclude_questions`` are dropped.

    Questions are compared after ``normalize_question`` (used for de-duplication and decontamination).
    Raises DataError if a column is absent (naming the columns found). Rows with an empty question or
    answer are skipped and counted; the report says how many rows each rule removed.
    """
    rows = list(rows)
    report = ConversionReport(source=source, rows_in=len(rows))
    if not rows:
        return [], report
    report.question_key = resolve_key(rows, question_key, QUESTION_CANDIDATES, "question", source)
    report.answer_key = resolve_key(rows, answer_key, ANSWER_CANDIDATES, "answer", source)
    require_boxed = holds_solutions(rows, report.answer_key)
    if require_boxed:
        report.notes.append("answers taken from the last \\boxed{} of each solution")
    excluded = {normalize_question(q) for q in exclude_questions}
    first_answer: dict[str, str] = {}
    records: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        question = question_text(_lookup(row, report.question_key))
        answer = answer_text(_lookup(row, report.answer_key), require_boxed)
        if question is None or answer is None:
            report.empty += 1
            continue
        key = normalize_question(question)
        if key in excluded:
            report.contaminated += 1
            continue
        if dedup and key in first_answer:
            report.duplicates += 1
            if first_answer[key] != answer:
                report.conflicting_duplicates += 1
            continue
        first_answer[key] = answer
        if limit is not None and len(records) >= limit:
            report.over_limit += 1
            continue
        records.append(
            {
                "data_source": data_source,
                "prompt": build_prompt(question, instruction),
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": answer},
                "extra_info": {"split": split, "index": index, "question": question},
            }
        )
    report.kept = len(records)
    return records, report


# ---------------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------------


def expand_inputs(path: str) -> list[str]:
    """Files named by ``path`` (a file or a glob); clear errors for anything else."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        found = sorted(
            os.path.relpath(p, path)
            for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
            if p.endswith(SUPPORTED_SUFFIXES)
        )
        hint = f" Data files inside: {found[:20]}" if found else " It holds no .parquet/.jsonl/.json file."
        raise DataError(
            f"{path} is a folder; name the file (or a glob) of the split you mean, as a folder may hold "
            f"several splits.{hint}"
        )
    if os.path.isfile(path):
        files = [path]
    elif glob.has_magic(path):
        files = sorted(p for p in glob.glob(path) if os.path.isfile(p))
        if not files:
            raise DataError(f"no file matches {path}")
    else:
        raise DataError(
            f"input file not found: {path} (download the dataset first; this script reads local files)"
        )
    for file in files:
        if not file.endswith(SUPPORTED_SUFFIXES):
            raise DataError(f"{file}: unsupported file type; use .parquet, .jsonl or .json")
    return files


def _read_json(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # JSON Lines saved with a .json name (common for dataset exports).
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: neither JSON nor JSON Lines ({error})") from error
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if len(lists) == 1 and all(isinstance(r, dict) for r in next(iter(lists.values()))):
            return next(iter(lists.values()))  # {"data": [ {...}, ... ]}
        if lists and len(lists) == len(data) and len({len(v) for v in lists.values()}) == 1:
            return pd.DataFrame(data).to_dict("records")  # column-oriented
    raise DataError(f"{path}: expected a list of records, JSON Lines, or a dict of equal-length columns")


def read_rows(path: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for file in expand_inputs(path):
        if file.endswith(".parquet"):
            rows.extend(pd.read_parquet(file).to_dict("records"))
        elif file.endswith(".jsonl"):
            with open(file, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as error:
                            raise DataError(f"{file}:{number}: invalid JSON ({error})") from error
        else:
            rows.extend(_read_json(file))
    bad = next((r for r in rows if not isinstance(r, dict)), None)
    if bad is not None:
        raise DataError(f"{path}: every record must be an object, found {type(bad).__name__}")
    return rows


def write_parquet(records: list[dict[str, Any]], path: str) -> None:
    if not records:
        raise DataError(f"nothing to write to {path}: no rows left")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pd.DataFrame.from_records(records).to_parquet(path, index=False)


def _pairs(values: Sequence[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise DataError(f"{option} expects NAME=VALUE, got {value!r}")
        pairs.append((name.strip(), rest.strip()))
    return pairs


def _per_name(values: Sequence[str], option: str) -> tuple[str | None, dict[str, str]]:
    """``COLUMN`` (all inputs) or ``NAME=COLUMN`` (one input)."""
    default, named = None, {}
    for value in values:
        if "=" in value:
            name, column = _pairs([value], option)[0]
            named[name] = column
        else:
            default = value
    return default, named


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    names = "\n".join(
        f"  {n:9s} {p.split:5s} data_source={p.data_source:24s} {p.description}" for n, p in PRESETS.items()
    )
    parser = argparse.ArgumentParser(
        description="Convert local math datasets to verl's RL parquet format (XRPO recipe).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Known dataset names:\n{names}\nOther names need --data-source NAME=SOURCE.",
    )
    parser.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="training input (repeatable; all go into train.parquet)",
    )
    parser.add_argument(
        "--val",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="validation input (repeatable; NAME.parquet each, plus val_all.parquet)",
    )
    parser.add_argument(
        "--out-dir", default=DEFAULT_OUT_DIR, help=f"output folder (default {DEFAULT_OUT_DIR})"
    )
    parser.add_argument(
        "--question-key",
        action="append",
        default=[],
        metavar="[NAME=]COLUMN",
        help=f"question column, for all inputs or one (default: first of {list(QUESTION_CANDIDATES)})",
    )
    parser.add_argument(
        "--answer-key",
        action="append",
        default=[],
        metavar="[NAME=]COLUMN",
        help=f"answer column; dotted keys read nested fields (default: first of {list(ANSWER_CANDIDATES)})",
    )
    parser.add_argument(
        "--data-source",
        action="append",
        default=[],
        metavar="NAME=SOURCE",
        help="data_source for an input (selects verl's verifier); overrides the default",
    )
    parser.add_argument(
        "--instruction",
        default=DEFAULT_INSTRUCTION,
        help="appended to every question after a blank line ('' for none)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="keep at most N rows per input (after cleaning)"
    )
    parser.add_argument("--no-dedup", action="store_true", help="keep rows that repeat a question")
    parser.add_argument(
        "--no-decontaminate",
        action="store_true",
        help="keep training rows whose question is also in a validation set",
    )
    args = parser.parse_args(argv)
    if not args.train and not args.val:
        parser.error("give at least one --train or --val input")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train_specs = _pairs(args.train, "--train")
        val_specs = _pairs(args.val, "--val")
        sources = dict(_pairs(args.data_source, "--data-source"))
        q_default, q_named = _per_name(args.question_key, "--question-key")
        a_default, a_named = _per_name(args.answer_key, "--answer-key")
        names = [n for n, _ in train_specs + val_specs]
        val_names = [n for n, _ in val_specs]
        if len(set(val_names)) != len(val_names):
            raise DataError(f"each --val name must be unique, got {val_names}")
        if "all" in val_names or "train" in val_names:
            raise DataError("'all' and 'train' are reserved output names; rename the --val input")
        for option, named in (
            ("--question-key", q_named),
            ("--answer-key", a_named),
            ("--data-source", sources),
        ):
            unknown = sorted(set(named) - set(names))
            if unknown:
                raise DataError(f"{option} names {unknown}, which are not inputs ({names})")
        for name in names:
            if name not in PRESETS and name not in sources:
                raise DataError(
                    f"unknown dataset name {name!r}: use one of {list(PRESETS)} "
                    f"or add --data-source {name}=SOURCE"
                )

        out_dir = os.path.expanduser(args.out_dir)

        def convert(name: str, path: str, split: str, exclude: Iterable[str] = ()):
            rows = read_rows(path)
            data_source = sources.get(name) or PRESETS[name].data_source
            records, report = convert_rows(
                rows,
                data_source=data_source,
                split=split,
                question_key=q_named.get(name, q_default),
                answer_key=a_named.get(name, a_default),
                instruction=args.instruction,
                dedup=not args.no_dedup,
                limit=args.limit,
                exclude_questions=exclude,
                source=f"{name} ({path})",
            )
            print(f"[{split}] {report.summary()} -> data_source={data_source!r}")
            if not records:
                raise DataError(f"{name} ({path}): no usable rows")
            return records

        val_all: list[dict[str, Any]] = []
        for name, path in val_specs:
            records = convert(name, path, "test")
            target = os.path.join(out_dir, f"{name}.parquet")
            write_parquet(records, target)
            print(f"  wrote {target}")
            val_all.extend(records)
        if val_all:
            target = os.path.join(out_dir, "val_all.parquet")
            write_parquet(val_all, target)
            print(f"  wrote {target} ({len(val_all)} rows)")

        exclude = [] if args.no_decontaminate else [r["extra_info"]["question"] for r in val_all]
        train: list[dict[str, Any]] = []
        for name, path in train_specs:
            train.extend(convert(name, path, "train", exclude))
        if train:
            target = os.path.join(out_dir, "train.parquet")
            write_parquet(train, target)
            print(f"  wrote {target} ({len(train)} rows)")
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
