"""The job manager (NetBackup's nbjm): every backup and restore is a job with a status."""

from __future__ import annotations

import logging
import time
from typing import Any

from openxbsa.catalog.store import JOB_ACTIVE, Catalog
from openxbsa.server import logs

log = logging.getLogger("openxbsa.jobs")
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class JobManager:
    def __init__(self, catalog: Catalog, server_name: str) -> None:
        self.catalog = catalog
        self.server_name = server_name

    def start(self, *, job_type: int, client: str, owner: str, message: str,
              **values: Any) -> int:
        values.setdefault("state", JOB_ACTIVE)
        job_id = self.catalog.create_job(event=("info", message), job_type=job_type,
                                         client=client, owner=owner, server=self.server_name,
                                         started=int(time.time()), **values)
        self.say(job_id, "info", message)
        return job_id

    def finish(self, job_id: int, status: int, message: str, **values: Any) -> None:
        severity = "info" if status in (0, 1) else "error"
        message = f"{message} (status {status})"
        self.catalog.finish_job(job_id, status, event=(severity, message), **values)
        self.say(job_id, severity, message)

    def log(self, job_id: int, severity: str, message: str) -> None:
        self.catalog.log_job(job_id, severity, message)
        self.say(job_id, severity, message)

    @staticmethod
    def say(job_id: int, severity: str, message: str) -> None:
        """A job's log line, already in the catalog, in the server's log too."""
        with logs.job_context(job_id):
            log.log(_LEVELS.get(severity, logging.INFO), "%s", message)
