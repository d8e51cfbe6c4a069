"""What a bench runs is the tree it sits in: its own imports, and the server and CLI it
starts. ``python -m`` would put the current directory first on the child's path, so a bench
of a snapshot started from another checkout would measure that checkout's server; ``-P``
(Python 3.11) leaves it out and PYTHONPATH names this tree instead."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path[:1] != [ROOT]:
    sys.path.insert(0, ROOT)


def cli(*args: str) -> list[str]:
    """The command line of ``openxbsa ARGS`` from this tree."""
    return [sys.executable, "-P", "-m", "openxbsa.cli.main", *args]


def env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with this tree first on PYTHONPATH."""
    out = dict(os.environ if base is None else base)
    rest = out.get("PYTHONPATH")
    out["PYTHONPATH"] = ROOT + (os.pathsep + rest if rest else "")
    return out
