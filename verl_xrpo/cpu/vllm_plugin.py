"""Entry point of vLLM's ``vllm.general_plugins`` group, for CPU mode.

vLLM loads its general plugins in each of its processes when it builds engine arguments, after
vLLM itself is imported. verl's ``import verl`` hook comes too early for that in the process that
hosts the engine (verl's rollout server imports verl first), so the vLLM-side patches of
``verl_xrpo.cpu.patches`` are applied from here. Outside CPU mode it does nothing.
"""

from __future__ import annotations


def register() -> None:
    from verl_xrpo.cpu.mode import is_active

    if is_active():
        from verl_xrpo.cpu.patches import apply_vllm_patches

        apply_vllm_patches()
