"""Crash points for the crash-consistency tests.

When $OPENXBSA_FAULT names a point, the server stops there (writes $OPENXBSA_FAULT_FILE and
sleeps, an hour or $OPENXBSA_FAULT_SECONDS) so a test can kill it with SIGKILL, or stop it
with SIGTERM, at exactly that step; with $OPENXBSA_FAULT_ACTION=raise it raises an
unexpected error there instead (the failure nobody foresaw). Unset, a point costs one
comparison.
"""

from __future__ import annotations

import os
import time

_ARMED = os.environ.get("OPENXBSA_FAULT", "")


def point(name: str) -> None:
    if _ARMED and _ARMED == name:
        marker = os.environ.get("OPENXBSA_FAULT_FILE")
        if marker:
            with open(marker, "w") as f:
                f.write(name)
        if os.environ.get("OPENXBSA_FAULT_ACTION") == "raise":
            raise RuntimeError(f"fault injected at {name}")
        time.sleep(float(os.environ.get("OPENXBSA_FAULT_SECONDS", 3600)))
