"""A real PostgreSQL server for the catalog tests: initdb into a temporary directory, run
as the 'postgres' OS user, listening on a Unix socket only (Debian's postgresql package;
scripts/setup.sh installs it when missing)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid


class Postgres:
    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (scripts/setup.sh installs it)")
        self.bin = os.path.dirname(bins[-1])
        self.dir = tempfile.mkdtemp(prefix="openxbsa-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.sock = self.dir
        self.port = 5432 + (os.getpid() % 1000) + 1
        self._as_postgres = os.getuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(["initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync"])
        self.options = ["-k", self.sock, "-p", str(self.port), "-c", "listen_addresses=",
                        "-c", "fsync=off"]
        self.proc = subprocess.Popen(
            self._cmd(["postgres", "-D", self.data, *self.options]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(self.sock, f".s.PGSQL.{self.port}")):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("PostgreSQL did not start")
            time.sleep(0.1)
        time.sleep(0.3)

    def _cmd(self, args: list[str]) -> list[str]:
        cmd = [os.path.join(self.bin, args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *cmd] if self._as_postgres else cmd

    def _run(self, args: list[str]) -> None:
        subprocess.run(self._cmd(args), check=True, capture_output=True)

    def new_database(self) -> str:
        """A fresh database; its SQLAlchemy URL."""
        name = "openxbsa_" + uuid.uuid4().hex[:12]
        self._run(["createdb", "-h", self.sock, "-p", str(self.port), "-U", "postgres", name])
        return f"postgresql+psycopg://postgres@/{name}?host={self.sock}&port={self.port}"

    def pg_ctl(self, action: str) -> None:
        """``pg_ctl restart``, ``stop`` or ``start`` on this server (fast shutdown; waits)."""
        self._run(["pg_ctl", "-D", self.data, "-m", "fast", "-w",
                   "-l", os.path.join(self.dir, "pg_ctl.log"),
                   "-o", " ".join(self.options),
                   action])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):   # pg_ctl started it
            subprocess.run(self._cmd(["pg_ctl", "-D", self.data, "-m", "immediate", "stop"]),
                           capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
