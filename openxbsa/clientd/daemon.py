"""The client daemon's loop: receive a scheduled run, check and run its scripts in order,
stream their output into the job log, report the status.

Each script runs with the run's context in its process environment — NBBSA_POLICY,
NBBSA_SCHEDULE, NBBSA_CLIENT_HOST, BSA_SERVICE_HOST and NBBSA_PARENT_JOB — for it to hand
to its XBSA application; the backups the application makes become the run's child jobs.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from openxbsa import wire
from openxbsa.clientd.authorize import check
from openxbsa.xbsa._client import Connection

log = logging.getLogger("openxbsa.clientd")

DEFAULT_CONFIG = "/etc/openxbsa/client.toml"
DEFAULT_SCRIPT_DIR = "/etc/openxbsa/db_ext"


@dataclass
class ClientConfig:
    server: str
    default_script_dir: str = DEFAULT_SCRIPT_DIR
    db_script_path: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | None, server: str | None) -> ClientConfig:
        """The client configuration (all optional). It names the authorized script
        locations, so it is checked whole: an unknown key, a wrong type or a relative
        location raises ConfigFileError rather than being skipped."""
        from openxbsa.server.config import ConfigFileError, Settings, read_settings
        path = path or DEFAULT_CONFIG
        data = read_settings(path, {"": {"server", "default_script_dir", "DB_SCRIPT_PATH",
                                         "db_script_path"}})
        if "DB_SCRIPT_PATH" in data and "db_script_path" in data:
            raise ConfigFileError(f"{path}: DB_SCRIPT_PATH and db_script_path are the same "
                                  "setting; give one")
        get = Settings(path, data).section("")
        key = "db_script_path" if "db_script_path" in data else "DB_SCRIPT_PATH"
        if isinstance(data.get(key), str):              # one location, as bp.conf writes it
            data[key] = [data[key]]
        locations = get.names(key, what="absolute paths")
        default_dir = get.text("default_script_dir") or DEFAULT_SCRIPT_DIR
        for where in (*locations, default_dir):
            if not os.path.isabs(where):
                raise ConfigFileError(f"{path}: {where!r} is not an absolute path (script "
                                      "locations must be)")
        return cls(server=server or get.text("server") or wire.default_address(),
                   default_script_dir=default_dir, db_script_path=list(locations))


_RUN_ENDED = object()   # told to a run's cancel watcher when the run ended by itself
ST_CANCELLED = 150


def serve(config: ClientConfig) -> None:
    """Register with the server as this host's client daemon and run what it sends."""
    conn = Connection(config.server)
    conn.call("init", env=["BSA_API_VERSION=1.1.0"], owner=["", ""], **conn.credentials())
    reply = conn.call("clientd")
    log.info("client daemon of %s connected to %s", reply.get("host"), config.server)
    inbox: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            while True:
                inbox.put(conn.channel.read_message(wire.REP))
        except Exception as exc:  # the connection ended: the main loop re-raises it
            inbox.put(exc)

    threading.Thread(target=read, name="server-reader", daemon=True).start()
    while True:
        msg = inbox.get()
        if isinstance(msg, Exception):
            raise msg
        if msg is _RUN_ENDED or "cancel" in msg:       # nothing of that run is left here
            continue
        run = msg.get("run")
        if not isinstance(run, dict):
            raise wire.ProtocolError("the server sent something that is not a run")
        status = execute(conn, config, run, inbox)
        conn.channel.send_message(wire.REQ, {"op": "jobdone", "job": run["job"], "status": status})


def _say(conn: Connection, line: str, severity: str = "info") -> None:
    conn.channel.send_message(wire.REQ, {"op": "joblog", "line": line, "severity": severity})


def execute(conn: Connection, config: ClientConfig, run: dict[str, Any],
            inbox: queue.Queue | None = None) -> int:
    """Run the scripts in list order; the run's status is the first failing one's. A cancel
    from the server stops the running script (status 150) and the rest of the list."""
    status = 0
    env = dict(os.environ, NBBSA_POLICY=run["policy"], NBBSA_SCHEDULE=run["schedule"],
               NBBSA_PARENT_JOB=str(run["job"]), BSA_SERVICE_HOST=config.server)
    cancelled = threading.Event()
    for script in run["scripts"]:
        if cancelled.is_set():
            break
        refusal = check(script, config.default_script_dir, config.db_script_path)
        if refusal:
            _say(conn, f"refused: {refusal.message} (status {refusal.status})", "error")
            status = status or refusal.status
            continue
        _say(conn, f"running {script}")
        proc = subprocess.Popen([script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=os.path.dirname(script),
                                start_new_session=True)
        watcher = None
        if inbox is not None:
            watcher = threading.Thread(target=_watch, args=(inbox, run["job"], proc, cancelled),
                                       daemon=True)
            watcher.start()
        assert proc.stdout is not None
        for raw in proc.stdout:
            _say(conn, f"{os.path.basename(script)}: {raw.decode('utf-8', 'replace').rstrip()}")
        code = proc.wait()
        if watcher is not None:
            inbox.put(_RUN_ENDED)       # type: ignore[union-attr]
            watcher.join()
        if cancelled.is_set():
            _say(conn, f"{script} stopped: the administrator cancelled the job", "error")
            return ST_CANCELLED
        exit_status = code if code >= 0 else 50      # killed by a signal: client process aborted
        _say(conn, f"{script} exited with {code}", "info" if code == 0 else "error")
        status = status or exit_status
    return status


def _watch(inbox: queue.Queue, job: int, proc: subprocess.Popen, cancelled: threading.Event) -> None:
    """Stop the script (its whole process group) when the server cancels the run."""
    msg = inbox.get()
    if isinstance(msg, Exception):
        inbox.put(msg)                     # for the main loop to see
        return
    if msg is not _RUN_ENDED and isinstance(msg, dict) and msg.get("cancel") == job:
        cancelled.set()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
