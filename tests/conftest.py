"""Shared fixtures: a real ``openxbsa server`` process on a real socket, per test module."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from openxbsa import xbsa as X
from openxbsa.xbsa import _api


@dataclass
class ServerProc:
    home: str
    address: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: str = ""

    @property
    def xbsa_env(self) -> list[str]:
        return ["BSA_API_VERSION=1.1.0", f"BSA_SERVICE_HOST={self.address}"]

    def start(self, extra_env: dict[str, str] | None = None, wrap: Sequence[str] = (),
              ready: Callable[[subprocess.Popen], None] | None = None) -> None:
        """Start the server, its command after ``wrap`` (say, one that enters a network
        namespace first), and wait until ``ready`` (by default: its address accepts)."""
        env = dict(os.environ, **self.env, **(extra_env or {}))
        self.log_path = os.path.join(self.home, "server.log")
        with open(self.log_path, "ab") as log:          # the server keeps its own copy
            self.proc = subprocess.Popen(
                [*wrap, sys.executable, "-m", "openxbsa.cli.main", "server", "--home", self.home,
                 "--listen", self.address, "--log-level", "INFO"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        (ready or (lambda proc: wait_ready(self.address, proc)))(self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "openxbsa.cli.main", *args, "--home", self.home],
                              capture_output=True, text=True, timeout=60)

    def jobs_once_done(self, pick: Callable[[dict], bool], timeout: float = 30) -> list[dict]:
        """The jobs that ``pick`` selects, newest first, once the newest of them is Done (or
        as they are after ``timeout`` seconds: the caller's assertion says what is wrong)."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = [j for j in json.loads(self.cli("jobs", "--json").stdout) if pick(j)]
            if jobs and jobs[0]["state_name"] == "Done" or time.monotonic() > deadline:
                return jobs
            time.sleep(0.2)


def wait_ready(address: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if address.startswith("unix:"):
                s = socket.socket(socket.AF_UNIX)
                s.connect(address[5:])
            else:
                host, port = address.rsplit(":", 1)
                s = socket.create_connection((host, int(port)))
            s.close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def make_home(tmp_path_factory: pytest.TempPathFactory) -> str:
    home = str(tmp_path_factory.mktemp("home"))
    # other local users (ownership tests) must reach the socket inside
    path = home
    while path != "/":
        os.chmod(path, os.stat(path).st_mode | 0o011)
        path = os.path.dirname(path)
    return home


def configured_server(tmp_path_factory: pytest.TempPathFactory, settings: str = "",
                      address: str | None = None, start: bool = True) -> ServerProc:
    """A server whose home has ``settings`` as its openxbsa.toml; started unless asked not."""
    home = make_home(tmp_path_factory)
    if settings:
        with open(os.path.join(home, "openxbsa.toml"), "w") as f:
            f.write(settings)
    srv = ServerProc(home=home, address=address or f"unix:{home}/xbsa.sock")
    if start:
        srv.start()
    return srv


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (tests.pg); each user takes a database of
    its own with new_database()."""
    from tests.pg import Postgres
    pg = Postgres()
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    home = make_home(tmp_path_factory)
    srv = ServerProc(home=home, address=f"unix:{home}/xbsa.sock")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _no_leftover_session() -> Iterator[None]:
    """A failed test must not leave its session open for the next (one per process)."""
    yield
    s = _api._Process.session
    if s is not None:
        X.BSATerminate(s.handle)


# ---------------------------------------------------------------- helpers used by many tests
def descriptor(path: str, size: int = 1, space: str = "", owner: tuple[str, str] = ("", ""),
               copy_type: int = X.BSA_CopyType_BACKUP, object_type: int = X.BSA_ObjectType_FILE,
               **extra: object) -> X.BSA_ObjectDescriptor:
    d = X.BSA_ObjectDescriptor()
    d.objectOwner = X.BSA_ObjectOwner(*owner)
    d.objectName = X.BSA_ObjectName(space, path)
    d.copyType, d.objectType, d.estimatedSize = copy_type, object_type, size
    d.resourceType = "test stream"
    for k, v in extra.items():
        setattr(d, k, v)
    return d


def query(path: str, space: str = "", owner: tuple[str, str] = ("", ""),
          status: int = X.BSA_ObjectStatus_ANY, **extra: object) -> X.BSA_QueryDescriptor:
    q = X.BSA_QueryDescriptor()
    q.objectOwner = X.BSA_ObjectOwner(*owner)
    q.objectName = X.BSA_ObjectName(space, path)
    q.copyType, q.objectType, q.objectStatus = X.BSA_CopyType_ANY, X.BSA_ObjectType_ANY, status
    for k, v in extra.items():
        setattr(q, k, v)
    return q


def send_all(h: int, data: bytes, buf_len: int = 65536) -> None:
    block = X.BSA_DataBlock32(bufferLen=buf_len)
    buf = bytearray(buf_len)
    for i in range(0, len(data), buf_len):
        chunk = data[i:i + buf_len]
        buf[:len(chunk)] = chunk
        block.bufferLen, block.bufferPtr, block.numBytes = buf_len, buf, len(chunk)
        rc = X.BSASendData(h, block)
        assert rc == X.BSA_RC_SUCCESS, X.BSAGetLastError()


def backup(h: int, path: str, data: bytes, buf_len: int = 65536, **kw: object) -> X.BSA_ObjectDescriptor:
    """One object in its own committed backup transaction."""
    assert X.BSABeginTxn(h) == X.BSA_RC_SUCCESS
    d = descriptor(path, size=len(data), **kw)  # type: ignore[arg-type]
    block = X.BSA_DataBlock32()
    assert X.BSACreateObject(h, d, block) == X.BSA_RC_SUCCESS, X.BSAGetLastError()
    if data:
        send_all(h, data, buf_len)
    assert X.BSAEndData(h) == X.BSA_RC_SUCCESS
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_SUCCESS, X.BSAGetLastError()
    return d


def read_all(h: int, buf_len: int = 65536, header: int = 0) -> tuple[bytes, list[int]]:
    """BSAGetData until NO_MORE_DATA; returns the bytes and the numBytes of each call."""
    buf = bytearray(buf_len)
    block = X.BSA_DataBlock32(bufferLen=buf_len, headerBytes=header, bufferPtr=buf)
    out = bytearray()
    sizes = []
    while True:
        rc = X.BSAGetData(h, block)
        assert rc in (X.BSA_RC_SUCCESS, X.BSA_RC_NO_MORE_DATA), X.BSAGetLastError()
        out += buf[header:header + block.numBytes]
        sizes.append(block.numBytes)
        if rc == X.BSA_RC_NO_MORE_DATA:
            return bytes(out), sizes


def restore(h: int, copy_id: int, buf_len: int = 65536) -> bytes:
    assert X.BSABeginTxn(h) == X.BSA_RC_SUCCESS
    block = X.BSA_DataBlock32()
    rc = X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=copy_id), block)
    assert rc == X.BSA_RC_SUCCESS, X.BSAGetLastError()
    data, _ = read_all(h, buf_len)
    assert X.BSAEndData(h) == X.BSA_RC_SUCCESS
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_SUCCESS
    return data


def find(h: int, q: X.BSA_QueryDescriptor) -> tuple[int, list[X.BSA_ObjectDescriptor]]:
    """Run a query in its own transaction: (rc of BSAQueryObject, descriptors)."""
    assert X.BSABeginTxn(h) == X.BSA_RC_SUCCESS
    out: list[X.BSA_ObjectDescriptor] = []
    d = X.BSA_ObjectDescriptor()
    rc = X.BSAQueryObject(h, q, d)
    first = rc
    while rc == X.BSA_RC_SUCCESS:
        out.append(d)
        d = X.BSA_ObjectDescriptor()
        rc = X.BSAGetNextQueryObject(h, d)
    assert rc in (X.BSA_RC_NO_MORE_DATA, X.BSA_RC_NO_MATCH), (rc, X.BSAGetLastError())
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_SUCCESS
    return first, out


def init(server: ServerProc, owner: tuple[str, str] = ("", ""), extra: list[str] | None = None) -> int:
    rc, h = X.BSAInit(None, X.BSA_ObjectOwner(*owner), server.xbsa_env + (extra or []))
    assert rc == X.BSA_RC_SUCCESS, X.BSAGetLastError()
    return h  # type: ignore[return-value]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = ["xbsa_backup", "xbsa_restore", "xbsa_query", "xbsa_delete", "xbsa_multi_restore"]


@pytest.fixture(scope="session")
def cbuild(tmp_path_factory) -> dict[str, str]:
    out = str(tmp_path_factory.mktemp("libxbsa"))
    subprocess.run([sys.executable, "-m", "openxbsa.cli.main", "libxbsa", "build", "--out", out],
                   check=True, capture_output=True)
    assert os.path.islink(os.path.join(out, "libxbsa.so"))
    progs = {}

    def cc(src: str, name: str, flags: tuple[str, ...] = ()) -> None:
        target = os.path.join(out, name)
        subprocess.run(["gcc", "-O2", "-g", "-Wall", "-Werror", *flags, "-I", os.path.join(out, "include"),
                        "-o", target, src, "-L", out, "-lxbsa64", f"-Wl,-rpath,{out}"],
                       check=True, capture_output=True, text=True)
        progs[name] = target

    for name in SAMPLES:
        cc(os.path.join(REPO, "examples", "c", name + ".c"), name)
    cc(os.path.join(REPO, "tests", "c", "abi.c"), "abi")
    cc(os.path.join(REPO, "tests", "c", "calls.c"), "calls", ("-Wno-discarded-qualifiers",))
    cc(os.path.join(REPO, "tests", "c", "threads.c"), "threads", ("-pthread",))
    cc(os.path.join(REPO, "tests", "c", "forks.c"), "forks")
    cc(os.path.join(REPO, "tests", "c", "signals.c"), "signals")
    # a program linked by the other name, as NetBackup-era makefiles do (-lxbsa)
    target = os.path.join(out, "query_lxbsa")
    subprocess.run(["gcc", "-I", os.path.join(out, "include"), "-o", target,
                    os.path.join(REPO, "examples", "c", "xbsa_query.c"), "-L", out, "-lxbsa",
                    f"-Wl,-rpath,{out}"], check=True)
    progs["query_lxbsa"] = target
    return progs


