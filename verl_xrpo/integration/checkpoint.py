"""XRPO's state in verl's checkpoints: ``global_step_N/xrpo/``, written whole or not read at all.

What a resume relies on:

- XRPO's trainer writes this folder before verl saves the actor and, last of all, records the step
  in ``latest_checkpointed_iteration.txt``. A run killed in the middle of a save therefore leaves
  the tracker at the previous, complete checkpoint, and the half-written folder is never resumed.
- Each file is replaced in one rename (``write_text_atomically``), and ``state.json`` is written
  after the bank and the prompt history (with planning on) and holds their
  SHA-256: a file that does not match its state was not written by that save, and is refused.
- A missing or damaged file stops the resume with one sentence naming it; it never becomes an empty
  bank or zeroed counters.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_xrpo.core.bank import ExemplarBank
from verl_xrpo.core.files import write_text_atomically
from verl_xrpo.core.history import PromptHistory

STATE_FOLDER = "xrpo"  # inside verl's global_step_N checkpoint folder
BANK_FILE = "exemplar_bank.json"
HISTORY_FILE = "prompt_history.json"
STATE_FILE = "state.json"
STATE_FORMAT = "verl-xrpo-state"
STATE_VERSION = 1
RESUME_FIX = (
    "resume an earlier checkpoint (trainer.resume_mode=resume_path "
    "trainer.resume_from_path=.../global_step_K) or start over (trainer.resume_mode=disable)"
)


class XRPOCheckpointError(RuntimeError):
    """XRPO state that cannot be resumed; the message names the file and the way out."""


@dataclass(frozen=True)
class SavedState:
    global_steps: int
    rollouts_drawn: int
    bank_sha256: str | None  # None: saved with seeding off, so there is no bank to restore
    history_sha256: str | None = None  # None: saved without a prompt history (planning off)


def save_state(
    folder: str | os.PathLike,
    global_steps: int,
    rollouts_drawn: int,
    bank: ExemplarBank | None,
    history: PromptHistory | None = None,
) -> None:
    """Write the bank and the history, then the state that vouches for them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digest = history_digest = None
    if bank is not None:
        bank.save(folder / BANK_FILE)
        digest = _sha256(folder / BANK_FILE)
    if history is not None:
        history.save(folder / HISTORY_FILE)
        history_digest = _sha256(folder / HISTORY_FILE)
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "global_steps": global_steps,
        "rollouts_drawn": rollouts_drawn,
        "bank_sha256": digest,
        "history_sha256": history_digest,
    }
    write_text_atomically(folder / STATE_FILE, json.dumps(state))


def read_state(folder: str | os.PathLike, global_steps: int) -> SavedState:
    """The state saved in ``folder`` for step ``global_steps``, with its bank file checked against it."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise XRPOCheckpointError(
            f"XRPO cannot resume: {path} is missing, so this checkpoint holds no XRPO state (it was not "
            f"written by an XRPO run); {RESUME_FIX}."
        )
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a {STATE_FORMAT} file of version {STATE_VERSION}")
        saved = SavedState(
            _whole(state["global_steps"]),
            _whole(state["rollouts_drawn"]),
            state.get("bank_sha256"),
            state.get("history_sha256"),
        )
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise XRPOCheckpointError(
            f"XRPO cannot resume: {path} is damaged ({error}); {RESUME_FIX}."
        ) from error
    if saved.global_steps != global_steps:
        raise XRPOCheckpointError(
            f"XRPO cannot resume: {path} is the state of step {saved.global_steps}, not of the checkpoint "
            f"of step {global_steps} it sits in; {RESUME_FIX}."
        )
    vouched = ((BANK_FILE, "bank", saved.bank_sha256), (HISTORY_FILE, "history", saved.history_sha256))
    for name, kind, digest in vouched:
        if digest is None:
            continue
        file = Path(folder) / name
        if not file.is_file():
            raise XRPOCheckpointError(f"XRPO cannot resume: {file} is missing; {RESUME_FIX}.")
        if _sha256(file) != digest:
            raise XRPOCheckpointError(
                f"XRPO cannot resume: {file} is damaged (it is not the {kind} {path} was saved with); "
                f"{RESUME_FIX}."
            )
    return saved


def resumed_step_folder(config: Any) -> str | None:
    """The checkpoint folder verl will resume (``global_step_N``), as verl's ``_load_checkpoint`` finds it.

    None when verl starts from scratch. A tracker file that holds no step number is an error here
    (verl would stop on it with a ValueError).
    """
    from verl.utils.checkpoint.checkpoint_manager import (
        find_latest_ckpt_path,
        get_checkpoint_tracker_filename,
    )

    trainer = config.trainer
    if trainer.resume_mode == "disable":
        return None
    if trainer.resume_mode == "resume_path":
        return os.path.abspath(str(trainer.resume_from_path))
    folder = os.path.abspath(str(trainer.default_local_dir))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # verl prints what it finds, or does not
            return find_latest_ckpt_path(folder)
    except ValueError as error:
        tracker = get_checkpoint_tracker_filename(folder)
        raise XRPOCheckpointError(
            f"XRPO cannot resume: {tracker} does not hold a step number ({error}); write the step of the "
            f"last complete checkpoint into it, or start over (trainer.resume_mode=disable)."
        ) from error


def check_resume(config: Any) -> None:
    """The XRPO state of the checkpoint verl is about to resume, checked as the trainer will read it."""
    step_folder = resumed_step_folder(config)
    if step_folder is not None and os.path.isdir(step_folder):
        read_state(Path(step_folder) / STATE_FOLDER, step_of(step_folder))


def step_of(step_folder: str) -> int:
    """N of a ``global_step_N`` folder, as verl reads it."""
    return int(step_folder.rstrip("/").split("global_step_")[-1])


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
