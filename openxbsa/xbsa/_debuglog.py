"""The library's debug log, written when the session's NBBSA_LOG_DIRECTORY is set.

One file per process (``openxbsa-xbsa-<pid>.log``), rotated at 10 MiB, three kept; every
call is logged with its return code, failures with BSAGetLastError's words.
"""

from __future__ import annotations

import logging
import logging.handlers
import os

_logger: logging.Logger | None = None


def start(directory: str) -> str | None:
    """Log into ``directory``; returns why not, or None."""
    global _logger
    try:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"openxbsa-xbsa-{os.getpid()}.log")
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=10 << 20, backupCount=3)
    except OSError as exc:
        return f"cannot write the debug log in {directory}: {exc.strerror}"
    handler.setFormatter(logging.Formatter("%(asctime)s pid=%(process)d %(levelname)s %(message)s"))
    logger = logging.getLogger(f"openxbsa.xbsa.debug.{os.getpid()}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    _logger = logger
    return None


def stop() -> None:
    global _logger
    if _logger is not None:
        for h in _logger.handlers:
            h.close()
        _logger.handlers[:] = []
    _logger = None


def call(name: str, rc: int, detail: str) -> None:
    if _logger is None:
        return
    if rc in (0, 0x12):   # SUCCESS, NO_MORE_DATA
        _logger.debug("%s rc=%d", name, rc)
    else:
        _logger.warning("%s rc=%d %s", name, rc, detail)
