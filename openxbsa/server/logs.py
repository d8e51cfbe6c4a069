"""Server logs: one file per component under HOME/logs, the job ID on every line of a job.

Line format (what ``openxbsa logs`` parses and the guide documents):

    2026-11-24T15:04:05.123Z INFO    requests job=42 backup started for client db1 ...

Components: server, requests, jobs, scheduler, clientd (the server's side of the client
daemons), media, catalog. The job ID comes from the session
thread that does the work (``job_context``), so every line a job causes carries it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import logging.handlers
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

COMPONENTS = ("server", "requests", "jobs", "scheduler", "clientd", "media", "catalog")
_local = threading.local()
LINE = re.compile(r"^(\S+) (\w+)\s+(\w+) job=(\d+|-) (.*)$")


def current_job() -> int | None:
    return getattr(_local, "job", None)


@contextlib.contextmanager
def job_context(job_id: int | None) -> Iterator[None]:
    previous = current_job()
    _local.job = job_id
    try:
        yield
    finally:
        _local.job = previous


def set_job(job_id: int | None) -> None:
    _local.job = job_id


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
        component = record.name.split(".")[1] if record.name.count(".") else "server"
        job = current_job()
        text = record.getMessage().replace("\n", " | ")
        if record.exc_info:
            text += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return f"{stamp} {record.levelname:<7} {component} job={job if job else '-'} {text}"


def setup(home: str, level: str = "INFO") -> str:
    """Log every component of this server into HOME/logs (rotated) and to stderr."""
    directory = os.path.join(home, "logs")
    os.makedirs(directory, exist_ok=True)
    root = logging.getLogger("openxbsa")
    root.setLevel(level.upper())
    root.handlers[:] = []
    formatter = _Formatter()
    for component in COMPONENTS:
        handler = logging.handlers.RotatingFileHandler(
            os.path.join(directory, f"{component}.log"), maxBytes=20 << 20, backupCount=5)
        handler.setFormatter(formatter)
        handler.addFilter(lambda r, c=component: _component(r) == c)
        root.addHandler(handler)
    console = logging.StreamHandler()
    console.setFormatter(formatter)
    root.addHandler(console)
    root.propagate = False
    return directory


def _component(record: logging.LogRecord) -> str:
    parts = record.name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in COMPONENTS else "server"


@dataclass(frozen=True)
class LogLine:
    time: dt.datetime
    level: str
    component: str
    job: int | None
    message: str


def read(home: str, job: int | None = None, since: dt.datetime | None = None,
         until: dt.datetime | None = None, components: tuple[str, ...] = COMPONENTS
         ) -> list[LogLine]:
    """The log lines of a server home, oldest first, filtered by job and time range."""
    out: list[LogLine] = []
    directory = os.path.join(home, "logs")
    for component in components:
        base = os.path.join(directory, f"{component}.log")
        paths = [f"{base}.{i}" for i in range(5, 0, -1)] + [base]
        for path in paths:
            if not os.path.exists(path):
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                for raw in f:
                    m = LINE.match(raw.rstrip("\n"))
                    if not m:
                        continue
                    when = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                        tzinfo=dt.timezone.utc)
                    line_job = None if m.group(4) == "-" else int(m.group(4))
                    if job is not None and line_job != job:
                        continue
                    if (since and when < since) or (until and when > until):
                        continue
                    out.append(LogLine(when, m.group(2), m.group(3), line_job, m.group(5)))
    out.sort(key=lambda line: line.time)
    return out
