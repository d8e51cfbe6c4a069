"""The library's debug log, written when the session's NBBSA_LOG_DIRECTORY is set.

One file per process (``openxbsa-xbsa-<pid>.log``), rotated at 10 MiB, three kept. At
level DEBUG (the default) every call is logged with its return code; failures are
WARNING lines with BSAGetLastError's words; NBBSA_LOG_LEVEL=INFO|WARNING|ERROR keeps the
log quieter.
"""

from __future__ import annotations

import logging
import logging.handlers
import os

_logger: logging.Logger | None = None


LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
          "ERROR": logging.ERROR}


def start(directory: str, level: str = "DEBUG") -> str | None:
    """Log into ``directory`` at ``level``; returns why not, or None."""
    if level.upper() not in LEVELS:
        return f"NBBSA_LOG_LEVEL={level} is not one of {', '.join(LEVELS)}"
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
    logger.setLevel(LEVELS[level.upper()])
    logger.propagate = False
    _logger = logger
    logger.info("XBSA session log started (level %s)", level.upper())
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
