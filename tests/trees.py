"""Nested config trees as flat ``a.b.c -> value`` maps, for comparing configs key by key."""

from __future__ import annotations


def leaves(tree: dict, prefix: str = "", keep_empty: bool = False) -> dict[str, object]:
    """``keep_empty``: an empty group stays as a key of its own (it is declared, so it can be set)."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and (value or not keep_empty):
            flat.update(leaves(value, f"{prefix}{key}.", keep_empty))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
