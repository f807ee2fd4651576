"""XRPO settings: one typed, validated object per mechanism.

The same keys live in Hydra under ``algorithm.xrpo`` (see ``verl_xrpo/conf/xrpo/xrpo.yaml``). Every
error names the full key a user would type on the command line and says how to fix it, so a bad
value fails here, long before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

CONFIG_ROOT = "algorithm.xrpo"


class XRPOConfigError(ValueError):
    """A setting under ``algorithm.xrpo`` that cannot work, with the key and the fix in the message."""


def _fail(key: str, value: Any, problem: str, fix: str) -> XRPOConfigError:
    """``fix`` may name the key's default as ``{default}``: it is read from the dataclass, never typed."""
    return XRPOConfigError(f"{CONFIG_ROOT}.{key}={value!r} {problem}. {fix.format(default=default_of(key))}")


def default_of(key: str) -> str:
    """A setting's default as a user would type it (``null``, ``true``), by its key under algorithm.xrpo."""
    section: Any = XRPOConfig
    *groups, name = key.split(".")
    for group in groups:
        section = _NESTED[_field(section, group).type]
    return _as_typed(_field(section, name).default)


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _as_typed(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


# planning settings of the in-step phases alone
IN_STEP_SETTINGS = ("num_phases", "overlap_share", "skip_agreed")


@dataclass(frozen=True)
class PlanningConfig:
    """Hierarchical rollout planning (``docs/algorithm.md`` section 1)."""

    enable: bool = True
    # 'phases': the paper's in-step phases (one generation call per phase). 'submission', beyond the
    # paper: every prompt's count is decided before the step generates, from its earlier visits
    # (one generation call per step); a prompt seen before gets at least skip_agreed_base. 'auto':
    # phases in XRPO's synchronous trainer, submission in verl's asynchronous ones (which train a
    # group as soon as it is done, so there is no later phase to plan).
    mode: Literal["auto", "phases", "submission"] = "auto"
    # Rollouts every prompt gets in phase 1 (in 'submission' mode: a prompt not seen before); below
    # 3 the Student-t quantile explodes (12.7 at n=2).
    n_base: int = 4
    # Per-prompt cap over all phases; None means twice the uniform budget (2 x rollout.n).
    n_max: int | None = None
    # Phase 1 plus the phases that share out the rest of the budget.
    num_phases: int = 3
    # Confidence level of the Student-t interval.
    alpha: float = 0.05
    # Weight of the UCB bonus; small, because CI shrinks are only 0.01-0.2 for n = 4-16 while the
    # bonus grows with log(1 + T) (the choice: docs/benchmarks.md, "Allocation").
    ucb_lambda: float = 0.01
    # What T in the bonus counts: the global training step, or all rollouts drawn so far.
    time_mode: Literal["step", "rollouts"] = "step"
    # Beyond the paper, off by default: a prompt whose rollouts all agreed (all failed or all
    # passed) the last time it was trained gets skip_agreed_base rollouts in phase 1 and none
    # later; the budget it frees goes to the other prompts. Acts from a prompt's second visit on.
    skip_agreed: bool = False
    skip_agreed_base: int = 2
    # Beyond the paper: plan the next phase once this share of the current phase's rollouts is in,
    # counting the ones still running; 1.0 waits for all of them (a barrier per phase).
    overlap_share: float = 1.0
    # How much a prompt's earlier visits count at its next one: at each visit the counts so far are
    # multiplied by this before the visit's own are added (0: the last visit alone). The choice:
    # docs/benchmarks.md, "Prompt history".
    history_decay: float = 0.5

    def __post_init__(self) -> None:
        p = "planning."
        if self.n_base < 2:
            raise _fail(
                p + "n_base",
                self.n_base,
                "is too small: the t interval needs 2 samples",
                "Set it to at least 2 (3 or more is recommended).",
            )
        if self.n_max is not None and self.n_max < self.n_base:
            raise _fail(
                p + "n_max",
                self.n_max,
                f"is below planning.n_base={self.n_base}",
                "Raise n_max, lower n_base, or set n_max=null for 2 x rollout.n.",
            )
        if self.num_phases < 1:
            raise _fail(p + "num_phases", self.num_phases, "must be at least 1", "Use 3 (the paper's).")
        if not 0.0 < self.alpha < 1.0:
            raise _fail(p + "alpha", self.alpha, "is not in (0, 1)", "Use e.g. 0.05 for a 95% interval.")
        if self.ucb_lambda < 0 or not math.isfinite(self.ucb_lambda):
            raise _fail(
                p + "ucb_lambda",
                self.ucb_lambda,
                "must be finite and non-negative",
                "Use 0 to switch the bonus off; the default is {default}.",
            )
        if self.mode not in ("auto", "phases", "submission"):
            raise _fail(
                p + "mode", self.mode, "is unknown", "Use 'auto', 'phases' (the paper's) or 'submission'."
            )
        if self.time_mode not in ("step", "rollouts"):
            raise _fail(p + "time_mode", self.time_mode, "is unknown", "Use 'step' or 'rollouts'.")
        if not 1 <= self.skip_agreed_base <= self.n_base:
            raise _fail(
                p + "skip_agreed_base",
                self.skip_agreed_base,
                f"is not between 1 and planning.n_base={self.n_base}",
                "Use e.g. {default} (the default): a skipped prompt still needs a rollout to learn from.",
            )
        if not 0.0 <= self.history_decay <= 1.0:
            raise _fail(
                p + "history_decay",
                self.history_decay,
                "is not in [0, 1]",
                "Use e.g. {default} (the default): 0 keeps a prompt's last visit alone, 1 every visit alike.",
            )
        if not 0.0 < self.overlap_share <= 1.0:
            raise _fail(
                p + "overlap_share",
                self.overlap_share,
                "is not in (0, 1]",
                "Use 1.0 to wait for every rollout of a phase, or e.g. 0.5 to plan once half are in.",
            )
        if self.mode == "submission":
            # settings of the in-step phases, which this mode does not have
            changed = self.changed_in_step_settings()
            if changed:
                name = changed[0]
                raise _fail(
                    p + name,
                    getattr(self, name),
                    "sets the in-step phases, which planning.mode='submission' does not have",
                    "Drop it, or use planning.mode=phases.",
                )

    def changed_in_step_settings(self) -> list[str]:
        """The in-step phases' settings that differ from their defaults."""
        return [n for n in IN_STEP_SETTINGS if getattr(self, n) != _field(PlanningConfig, n).default]

    @property
    def skips_agreed(self) -> bool:
        """Whether prompts that agreed last time are skipped: only with planning on."""
        return self.enable and self.skip_agreed


@dataclass(frozen=True)
class SeedingConfig:
    """In-context seeding of prompts whose rollouts all failed (``docs/algorithm.md`` section 2)."""

    enable: bool = True
    # Exemplars put into a seeded prompt's context (K).
    num_exemplars: int = 2
    # 'bm25' needs no model; 'dense' needs embedding_model (a local sentence-transformers folder).
    retriever: Literal["bm25", "dense"] = "bm25"
    embedding_model: str | None = None
    # Exemplars scoring at or below this are not used (BM25 score, or cosine for 'dense').
    min_score: float = 0.0
    # Most exemplars the bank holds; past it the oldest online exemplar is evicted.
    bank_size: int = 10000
    # Optional curated (question, solution) file: .parquet, .jsonl or .json.
    preload_path: str | None = None
    # Later-phase rollouts under exemplars for each prompt that failed every phase-1 rollout. They
    # are their own share of the step's budget, whatever the planner's UCB weight. In planning.mode
    # 'submission', a prompt whose last visit failed every rollout is drawn seeded as a whole group,
    # of at least this many rollouts (at most rollout.n).
    rollouts_per_prompt: int = 2
    # Seeding's share never exceeds this fraction of the later phases' budget (but each such
    # prompt gets at least one seeded rollout while the first later phase has room); in planning.mode
    # 'submission', this fraction of the step's budget.
    max_budget_share: float = 0.25
    # A control arm to measure seeding's lift: this share of the prompts that qualify gets the same
    # rollouts without exemplars. 0 in training runs; experiments set it.
    control_share: float = 0.0

    def __post_init__(self) -> None:
        p = "seeding."
        if self.num_exemplars < 1:
            raise _fail(
                p + "num_exemplars",
                self.num_exemplars,
                "must be at least 1",
                "Use 2 (the paper's), or seeding.enable=false to switch seeding off.",
            )
        if self.retriever not in ("bm25", "dense"):
            raise _fail(p + "retriever", self.retriever, "is unknown", "Use 'bm25' or 'dense'.")
        if self.retriever == "dense" and not self.embedding_model:
            raise _fail(
                p + "embedding_model",
                self.embedding_model,
                "is required by retriever='dense'",
                "Name a local sentence-transformers model folder, or use retriever=bm25.",
            )
        if self.bank_size < self.num_exemplars:
            raise _fail(
                p + "bank_size",
                self.bank_size,
                f"is below num_exemplars={self.num_exemplars}",
                "Use a bank of at least a few thousand exemplars.",
            )
        if not math.isfinite(self.min_score):
            raise _fail(p + "min_score", self.min_score, "must be finite", "Use 0.0 to accept any overlap.")
        if self.rollouts_per_prompt < 1:
            raise _fail(
                p + "rollouts_per_prompt",
                self.rollouts_per_prompt,
                "must be at least 1",
                "Use 2, or seeding.enable=false to switch seeding off.",
            )
        if not 0.0 < self.max_budget_share <= 1.0:
            raise _fail(
                p + "max_budget_share",
                self.max_budget_share,
                "is not in (0, 1]",
                "Use e.g. 0.25: seeding takes at most a quarter of the later phases' rollouts.",
            )
        if not 0.0 <= self.control_share < 1.0:
            raise _fail(
                p + "control_share",
                self.control_share,
                "is not in [0, 1)",
                "Use 0 for training runs, or e.g. 0.5 to measure seeding against an unseeded control.",
            )


@dataclass(frozen=True)
class SharpeningConfig:
    """Novelty-guided advantage sharpening (``docs/algorithm.md`` section 3)."""

    enable: bool = True
    # lambda_nov: bonus per unit of novelty (1 - eta).
    novelty_weight: float = 2.5
    # kappa: the bonus never exceeds kappa * A, so A+ <= (1 + kappa) A.
    max_ratio: float = 0.5

    def __post_init__(self) -> None:
        p = "sharpening."
        if self.novelty_weight < 0 or not math.isfinite(self.novelty_weight):
            raise _fail(
                p + "novelty_weight",
                self.novelty_weight,
                "must be finite and non-negative",
                "Use 2.5 (the paper's) or sharpening.enable=false.",
            )
        if self.max_ratio < 0 or not math.isfinite(self.max_ratio):
            raise _fail(
                p + "max_ratio",
                self.max_ratio,
                "must be finite and non-negative",
                "Use 0.5 (the paper's) or sharpening.enable=false.",
            )


@dataclass(frozen=True)
class XRPOConfig:
    planning: PlanningConfig = field(default_factory=PlanningConfig)
    seeding: SeedingConfig = field(default_factory=SeedingConfig)
    sharpening: SharpeningConfig = field(default_factory=SharpeningConfig)
    # Correctness for the statistics: this reward field if present, else score > success_threshold.
    success_key: str = "acc"
    success_threshold: float = 0.0
    # A phase whose prompts are not all done after this many seconds fails the step, naming the
    # prompts still generating. Generous: a phase of long responses from a large model takes minutes.
    phase_timeout_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if not self.success_key.strip():
            raise _fail(
                "success_key", self.success_key, "is empty", "Name the reward field saying correct: acc."
            )
        if not math.isfinite(self.success_threshold):
            raise _fail("success_threshold", self.success_threshold, "must be finite", "Use e.g. 0.0.")
        if not (self.phase_timeout_seconds > 0 and math.isfinite(self.phase_timeout_seconds)):
            raise _fail(
                "phase_timeout_seconds",
                self.phase_timeout_seconds,
                "must be a positive number of seconds",
                "Use e.g. {default} (the default).",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> XRPOConfig:
        """Build from a plain mapping or an OmegaConf node; unknown keys are refused by name."""
        if values is None:
            return cls()
        if not isinstance(values, Mapping):  # e.g. a DictConfig that is not a Mapping subclass
            values = dict(values)
        return _build(cls, values, prefix="")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_key(key: str) -> None:
    """Raise ``XRPOConfigError`` naming the nearest setting if ``key`` (under algorithm.xrpo, e.g.
    ``planning.n_base``) is not a setting or a group of them."""
    section: type = XRPOConfig
    prefix = ""
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(section)}
        if part not in fields:
            raise _unknown_key(part, fields, prefix)
        nested = _NESTED.get(fields[part].type)
        if nested is None:
            if depth < len(parts) - 1:
                raise XRPOConfigError(f"{CONFIG_ROOT}.{prefix}{part} is a setting, not a group of settings.")
            return
        section, prefix = nested, f"{prefix}{part}."


def _unknown_key(key: Any, fields: Mapping[str, dataclasses.Field], prefix: str) -> XRPOConfigError:
    close = difflib.get_close_matches(str(key), fields, n=1)
    hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
    return XRPOConfigError(
        f"{CONFIG_ROOT}.{prefix}{key} is not an XRPO setting.{hint} "
        f"Settings here: {', '.join(prefix + name for name in fields)}."
    )


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key(key, fields, prefix)
        nested = _NESTED.get(fields[key].type) if isinstance(fields[key].type, str) else None
        if nested is not None:
            if value is not None and not isinstance(value, Mapping):
                raise XRPOConfigError(
                    f"{CONFIG_ROOT}.{prefix}{key} must be a group of settings, got {value!r}."
                )
            kwargs[key] = _build(nested, value or {}, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(fields[key], value, prefix + key)
    return cls(**kwargs)


_NESTED: dict[str, type] = {
    "PlanningConfig": PlanningConfig,
    "SeedingConfig": SeedingConfig,
    "SharpeningConfig": SharpeningConfig,
}


def _coerce(f: dataclasses.Field, value: Any, key: str) -> Any:
    """Check a leaf value's type so that e.g. n_base='four' fails here, not in a comparison later."""
    default = f.default
    if value is None:
        if default is None:
            return None
        raise XRPOConfigError(f"{CONFIG_ROOT}.{key} cannot be null. Its default is {_as_typed(default)}.")
    # Each message says what the value must be and gives the default as the fix.
    fix = f"; the default is {_as_typed(default)}." if default is not None else ", or null (the default)."
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise XRPOConfigError(f"{CONFIG_ROOT}.{key}={value!r} must be true or false{fix}")
    if isinstance(default, int) or f.type in ("int | None",):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise XRPOConfigError(f"{CONFIG_ROOT}.{key}={value!r} must be a whole number{fix}")
    if isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise XRPOConfigError(f"{CONFIG_ROOT}.{key}={value!r} must be a number{fix}")
    if isinstance(value, str):
        return value
    raise XRPOConfigError(f"{CONFIG_ROOT}.{key}={value!r} must be a string{fix}")
