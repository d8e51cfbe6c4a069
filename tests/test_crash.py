"""Crash consistency: kill -9 of the server or the client at each step of a backup.

After a restart no partial object or image is visible, committed backups restore
byte-exact, the interrupted job shows a failure status and orphaned data is removed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest

from openxbsa import xbsa as X
from tests.conftest import ServerProc, backup, descriptor, find, init, make_home, query, restore, send_all

OK = X.BSA_RC_SUCCESS


@pytest.fixture
def srv(tmp_path_factory):
    home = make_home(tmp_path_factory)
    s = ServerProc(home=home, address=f"unix:{home}/xbsa.sock")
    s.start()
    yield s
    s.stop()


def storage_files(srv: ServerProc) -> list[str]:
    out = []
    for root, _dirs, files in os.walk(os.path.join(srv.home, "storage")):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


def jobs(srv: ServerProc) -> list[dict]:
    return json.loads(srv.cli("jobs", "--json").stdout)


def committed_baseline(srv: ServerProc) -> tuple[int, bytes]:
    data = os.urandom(3 << 20)
    h = init(srv)
    d = backup(h, "/crash/committed", data)
    X.BSATerminate(h)
    return d.copyId, data


def check_after_restart(srv: ServerProc, copy_id: int, data: bytes, lost_path: str) -> None:
    srv.start()
    h = init(srv)
    assert find(h, query(lost_path))[0] == X.BSA_RC_NO_MATCH      # nothing half-visible
    assert restore(h, copy_id) == data                           # nothing committed lost
    X.BSATerminate(h)
    images = json.loads(srv.cli("images", "--json").stdout)
    assert len(images) == 1
    assert len(storage_files(srv)) == 1                          # orphaned data removed
    interrupted = [j for j in jobs(srv) if j["type"] == "Backup" and j["jobid"] != images[0]["jobid"]]
    assert interrupted and all(j["state_name"] == "Done" and j["status"] not in (0, 1, None)
                               for j in interrupted)


def _commit_stopped_at(srv: ServerProc, point: str, xbsa_env: list[str],
                       env: dict[str, str], work: Callable[[int], None]
                       ) -> tuple[int, threading.Thread, list[int]]:
    """Restart the server armed with the fault ``point`` (see openxbsa.server.faults), open
    a session with ``xbsa_env``, do ``work`` in a transaction and commit it on a thread;
    return once the server has stopped at the point: the handle, the thread and where it
    puts BSAEndTxn's rc."""
    srv.stop()
    marker = os.path.join(srv.home, "fault.reached")
    srv.start({"OPENXBSA_FAULT": point, "OPENXBSA_FAULT_FILE": marker, **env})
    rc, h = X.BSAInit(None, X.BSA_ObjectOwner(), xbsa_env)
    assert rc == OK
    assert X.BSABeginTxn(h) == OK
    work(h)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(X.BSAEndTxn(h, X.BSA_Vote_COMMIT)))
    t.start()
    deadline = time.time() + 30
    while not os.path.exists(marker) and time.time() < deadline:
        time.sleep(0.02)
    assert os.path.exists(marker), "the server never reached the crash point"
    return h, t, result


def commit_stopped_at(srv: ServerProc, point: str, path: str, payload: bytes,
                      xbsa_env: list[str] | None = None, **env: str
                      ) -> tuple[int, X.BSA_ObjectDescriptor, threading.Thread, list[int]]:
    """Back up ``payload`` at ``path`` (in a session opened with ``xbsa_env``, by default
    the server's) and commit it, stopping at the fault ``point``: the handle, the
    descriptor, the thread and where it puts BSAEndTxn's rc."""
    d = descriptor(path, len(payload))

    def create(h: int) -> None:
        assert X.BSACreateObject(h, d, X.BSA_DataBlock32()) == OK
        send_all(h, payload)
        assert X.BSAEndData(h) == OK

    h, t, result = _commit_stopped_at(srv, point, xbsa_env or srv.xbsa_env, env, create)
    return h, d, t, result


def test_server_killed_mid_object(srv):
    copy_id, data = committed_baseline(srv)
    h = init(srv)
    assert X.BSABeginTxn(h) == OK
    assert X.BSACreateObject(h, descriptor("/crash/mid-object", 10 << 20), X.BSA_DataBlock32()) == OK
    send_all(h, os.urandom(5 << 20))
    time.sleep(0.3)
    srv.kill()
    rc = X.BSASendData(h, X.BSA_DataBlock32(65536, 65536, 0, 0, 0, bytearray(65536)))
    for _ in range(50):                # the loss shows at the latest when the socket fills
        if rc != OK:
            break
        rc = X.BSASendData(h, X.BSA_DataBlock32(65536, 65536, 0, 0, 0, bytearray(65536)))
    X.BSAEndData(h)
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_TRANSACTION_ABORTED
    X.BSATerminate(h)
    check_after_restart(srv, copy_id, data, "/crash/mid-object")
    assert any(j["status"] == 130 for j in jobs(srv))


def test_server_stopped_mid_object_ends_its_jobs_before_it_exits(srv):
    """SIGTERM (systemctl stop, an administrator) while a backup is mid-object and another
    session idles: the server ends both sessions before it exits, so its catalog, read
    while it is down, shows the backup's job Done with status 150 and nothing Active; the
    application's commit is refused; after a restart nothing of it is visible and the
    committed backup restores."""
    copy_id, data = committed_baseline(srv)
    idle = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from openxbsa import xbsa as X
        rc, h = X.BSAInit(None, X.BSA_ObjectOwner(), {srv.xbsa_env!r})
        print(rc, flush=True)
        time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert idle.stdout.readline().strip() == "0"
        h = init(srv)
        assert X.BSABeginTxn(h) == OK
        assert X.BSACreateObject(h, descriptor("/crash/stopped", 10 << 20),
                                 X.BSA_DataBlock32()) == OK
        send_all(h, os.urandom(4 << 20))
        time.sleep(0.3)
        started = time.monotonic()
        srv.stop()                                        # SIGTERM, then waits for the exit
        assert srv.proc.returncode == 0 and time.monotonic() - started < 9
        backups = [j for j in jobs(srv) if j["type"] == "Backup"]
        assert [j["state_name"] for j in backups] == ["Done", "Done"], backups
        stopped = max(backups, key=lambda j: j["jobid"])
        assert stopped["status"] == 150, stopped
        log = json.loads(srv.cli("jobs", "--log", str(stopped["jobid"]), "--json").stdout)
        assert any("server was stopped" in line["message"] for line in log), log
        X.BSAEndData(h)
        assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_TRANSACTION_ABORTED
        X.BSATerminate(h)
    finally:
        idle.kill()
    srv.start()
    h = init(srv)
    assert find(h, query("/crash/stopped"))[0] == X.BSA_RC_NO_MATCH
    assert restore(h, copy_id) == data
    X.BSATerminate(h)


def test_a_commit_under_way_when_the_server_is_stopped_completes_and_says_so(srv):
    """SIGTERM while a commit is between its storage flush and its catalog transaction:
    the stopping server lets it finish and answer, so the application is told SUCCESS for a
    backup that is indeed kept (not TRANSACTION_ABORTED for one that was committed)."""
    payload = os.urandom(1 << 20)
    h, d, t, result = commit_stopped_at(srv, "commit:before_catalog", "/crash/committing",
                                        payload, OPENXBSA_FAULT_SECONDS="2")
    srv.stop()
    t.join(30)
    assert result == [OK]
    X.BSATerminate(h)
    assert [j["status"] for j in jobs(srv) if j["type"] == "Backup"] == [0]
    srv.start()
    h = init(srv)
    assert restore(h, d.copyId) == payload
    X.BSATerminate(h)


def test_a_stopping_server_waits_for_a_commit_no_longer_than_stop_grace(srv):
    """[limits] stop_grace bounds how long SIGTERM waits for a session (here a commit held
    up for a minute): the server exits cleanly after about that long, as a kill would leave
    it — the application is told that whether it committed is not known (the server is
    gone), and after a restart nothing of it is visible and the committed backup restores."""
    copy_id, data = committed_baseline(srv)
    with open(os.path.join(srv.home, "openxbsa.toml"), "w") as f:
        f.write("[limits]\nstop_grace = 1\n")
    h, d, t, result = commit_stopped_at(srv, "commit:before_catalog", "/crash/held",
                                        os.urandom(1 << 20), OPENXBSA_FAULT_SECONDS="60")
    started = time.monotonic()
    srv.stop()                  # the harness kills after 10 s, as long as the default grace
    assert srv.proc.returncode == 0 and time.monotonic() - started < 8
    t.join(30)
    assert result == [X.BSA_RC_ABORT_SYSTEM_ERROR]     # the server is gone: nobody to ask
    X.BSATerminate(h)
    check_after_restart(srv, copy_id, data, "/crash/held")


@pytest.mark.parametrize("point", ["commit:before_catalog", "commit:after_catalog"])
def test_server_killed_mid_commit(srv, point):
    """The server dies while committing: the application cannot know whether the backup
    was kept (at the second point it was), so BSAEndTxn says that (ABORT_SYSTEM_ERROR,
    naming the job to look up), never TRANSACTION_ABORTED for a backup that may be kept."""
    copy_id, data = committed_baseline(srv)
    payload = os.urandom(2 << 20)
    h, d, t, result = commit_stopped_at(srv, point, "/crash/mid-commit", payload)
    srv.kill()
    t.join(30)
    assert result == [X.BSA_RC_ABORT_SYSTEM_ERROR]
    assert "committed is not known" in X.BSAGetLastError()[1]
    assert "openxbsa jobs --jobid" in X.BSAGetLastError()[1]
    X.BSATerminate(h)
    if point == "commit:before_catalog":
        check_after_restart(srv, copy_id, data, "/crash/mid-commit")
    else:
        # the catalog commit happened: the backup is durable and complete
        srv.start()
        h = init(srv)
        assert restore(h, d.copyId) == payload
        assert restore(h, copy_id) == data
        X.BSATerminate(h)
        assert len(storage_files(srv)) == 2
        job = [j for j in jobs(srv) if j["backupid"] and j["type"] == "Backup"][0]
        assert job["status"] == 0


class Relay:
    """A real Unix-socket relay between the application and the server: the network a
    session crosses. ``cut()`` breaks every connection through it at once, as a failed
    link or a reset from a middlebox would; connections made afterwards pass again."""

    def __init__(self, path: str, target: str) -> None:
        self.path, self.target = path, target
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.dropping = False       # what the application sends is lost on the way
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def env(self) -> list[str]:
        return ["BSA_API_VERSION=1.1.0", f"BSA_SERVICE_HOST=unix:{self.path}"]

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                b.connect(self.target)
            except OSError:                 # the server is down: refused, as it would be
                a.close()
                b.close()
                continue
            self.pairs.append((a, b))
            for src, dst, upstream in ((a, b, True), (b, a, False)):
                threading.Thread(target=self._pump, args=(src, dst, upstream),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if not (upstream and self.dropping):
                    dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Break the connections made so far (not one being made meanwhile)."""
        pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def commit_lost_on_the_way(self, h: int) -> int:
        """BSAEndTxn(COMMIT) on ``h`` whose request is lost on the way, after which the link
        breaks (the library cannot tell whether the commit arrived); its rc."""
        self.dropping = True
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(X.BSAEndTxn(h, X.BSA_Vote_COMMIT)))
        t.start()
        time.sleep(0.5)
        assert t.is_alive()                     # waiting for a reply that cannot come
        self.dropping = False                   # the new session's requests pass
        self.cut()
        t.join(60)
        assert not t.is_alive()
        return result[0]

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.mark.parametrize("point", ["commit:before_catalog", "commit:after_catalog"])
def test_a_commit_whose_reply_the_network_lost_reports_how_it_ended(srv, point):
    """The link breaks while the server commits (before, or after, its catalog
    transaction), so the reply never arrives. The server carries on and keeps the backup;
    the library asks it on a new session how the job ended, and BSAEndTxn says SUCCESS —
    not TRANSACTION_ABORTED for a backup that is kept and restores."""
    relay = Relay(os.path.join(srv.home, "relay.sock"), srv.address.removeprefix("unix:"))
    payload = os.urandom(2 << 20)
    try:
        h, d, t, result = commit_stopped_at(srv, point, "/crash/reply-lost", payload,
                                            relay.env, OPENXBSA_FAULT_SECONDS="1")
        relay.cut()
        t.join(60)
        assert result == [OK], X.BSAGetLastError()
        X.BSATerminate(h)
    finally:
        relay.close()
    h = init(srv)
    assert restore(h, d.copyId) == payload
    X.BSATerminate(h)
    assert [j["status"] for j in jobs(srv) if j["type"] == "Backup"] == [0]


@pytest.mark.parametrize("how", ["link down before the commit", "commit lost on the way"])
def test_a_commit_that_never_reached_the_server_is_reported_aborted(srv, how):
    """The link fails after the object's data, and the commit never reaches the server:
    either the link is already down when the library sends it (the send fails), or it is
    lost on the way and the link then breaks (the library cannot tell whether it arrived,
    and asks on a new session). The server aborts the backup when it finds the connection
    gone, and BSAEndTxn reports TRANSACTION_ABORTED — true, since nothing of it is kept."""
    relay = Relay(os.path.join(srv.home, "relay.sock"), srv.address.removeprefix("unix:"))
    try:
        rc, h = X.BSAInit(None, X.BSA_ObjectOwner(), relay.env)
        assert rc == OK
        assert X.BSABeginTxn(h) == OK
        assert X.BSACreateObject(h, descriptor("/crash/cut", 1 << 20), X.BSA_DataBlock32()) == OK
        send_all(h, os.urandom(1 << 20))
        assert X.BSAEndData(h) == OK
        if how == "link down before the commit":
            relay.cut()
            assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == X.BSA_RC_TRANSACTION_ABORTED
            assert "before the commit was sent" in X.BSAGetLastError()[1]
        else:
            assert relay.commit_lost_on_the_way(h) == X.BSA_RC_TRANSACTION_ABORTED, \
                X.BSAGetLastError()
            assert "ended with status" in X.BSAGetLastError()[1]
        X.BSATerminate(h)
    finally:
        relay.close()
    h = init(srv)
    assert find(h, query("/crash/cut"))[0] == X.BSA_RC_NO_MATCH
    X.BSATerminate(h)
    (job,) = [j for j in jobs(srv) if j["type"] == "Backup"]
    assert job["state_name"] == "Done" and job["status"] not in (0, 1)


def delete_commit_stopped_at(srv: ServerProc, point: str, relay: Relay, **env: str
                             ) -> tuple[int, int, threading.Thread, list[int]]:
    """Back up an object, then delete it in a transaction through ``relay`` and commit,
    stopping at the fault ``point``: the handle, the copy ID, the thread and where it puts
    BSAEndTxn's rc."""
    h = init(srv)
    copy_id = backup(h, "/crash/deleted", b"d" * 5000).copyId
    X.BSATerminate(h)

    def delete(h: int) -> None:
        assert X.BSADeleteObject(h, copy_id) == OK

    h, t, result = _commit_stopped_at(srv, point, relay.env, env, delete)
    return h, copy_id, t, result


@pytest.mark.parametrize("point", ["delete:before_catalog", "delete:after_catalog"])
def test_a_delete_commit_whose_reply_the_network_lost_reports_how_it_ended(srv, point):
    """As for a backup, for deletions: the link breaks while the server commits a delete
    transaction. The server carries on and deletes; the library asks on a new session
    whether the transaction (by the token the server gave it at BSABeginTxn) committed,
    and BSAEndTxn says SUCCESS — the object is gone, as the application was told."""
    relay = Relay(os.path.join(srv.home, "relay.sock"), srv.address.removeprefix("unix:"))
    try:
        h, copy_id, t, result = delete_commit_stopped_at(srv, point, relay,
                                                         OPENXBSA_FAULT_SECONDS="1")
        relay.cut()
        t.join(60)
        assert result == [OK], X.BSAGetLastError()
        X.BSATerminate(h)
    finally:
        relay.close()
    h = init(srv)
    assert find(h, query("/crash/deleted"))[0] == X.BSA_RC_NO_MATCH
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=copy_id),
                          X.BSA_DataBlock32()) == X.BSA_RC_OBJECT_NOT_FOUND
    X.BSATerminate(h)


def test_a_delete_commit_lost_on_the_way_is_reported_aborted_and_deletes_nothing(srv):
    """The commit of a delete transaction is lost on the way and the link then breaks:
    the server never had it, nullifies the transaction when it finds the connection gone,
    and BSAEndTxn reports TRANSACTION_ABORTED; the object is still there and restores."""
    relay = Relay(os.path.join(srv.home, "relay.sock"), srv.address.removeprefix("unix:"))
    h = init(srv)
    copy_id = backup(h, "/crash/kept", b"k" * 5000).copyId
    X.BSATerminate(h)
    try:
        rc, h = X.BSAInit(None, X.BSA_ObjectOwner(), relay.env)
        assert rc == OK
        assert X.BSABeginTxn(h) == OK
        assert X.BSADeleteObject(h, copy_id) == OK
        assert relay.commit_lost_on_the_way(h) == X.BSA_RC_TRANSACTION_ABORTED, \
            X.BSAGetLastError()
        assert "the deletions were not made" in X.BSAGetLastError()[1]
        X.BSATerminate(h)
    finally:
        relay.close()
    h = init(srv)
    assert restore(h, copy_id) == b"k" * 5000
    X.BSATerminate(h)


@pytest.mark.parametrize("point", ["delete:before_catalog", "delete:after_catalog"])
def test_server_killed_mid_delete_commit(srv, point):
    """The server dies while committing deletions: nobody can say whether they were made,
    so BSAEndTxn says ABORT_SYSTEM_ERROR ("query the objects again"); after a restart the
    object is there (killed before the catalog step) or gone (after it), never half."""
    relay = Relay(os.path.join(srv.home, "relay.sock"), srv.address.removeprefix("unix:"))
    try:
        h, copy_id, t, result = delete_commit_stopped_at(srv, point, relay)
        srv.kill()
        t.join(60)
        assert result == [X.BSA_RC_ABORT_SYSTEM_ERROR], X.BSAGetLastError()
        assert "query the objects again" in X.BSAGetLastError()[1]
        X.BSATerminate(h)
    finally:
        relay.close()
    srv.start()
    h = init(srv)
    if point == "delete:before_catalog":
        assert restore(h, copy_id) == b"d" * 5000
    else:
        assert find(h, query("/crash/deleted"))[0] == X.BSA_RC_NO_MATCH
    X.BSATerminate(h)


def test_asking_how_a_commit_ended_is_bounded_in_time(tmp_path):
    """The second session that asks how a commit ended has a time limit (OUTCOME_TIMEOUT,
    45 s, over the server's 30 s wait for the job): a service that accepts and then says
    nothing — a half-dead host, a link that drops packets — yields a timeout the library
    turns into ABORT_SYSTEM_ERROR, not a call that hangs. Here a real listener that never
    answers, with a short limit."""
    from openxbsa.xbsa import _api
    from openxbsa.xbsa._client import Connection
    assert 30 < _api.OUTCOME_TIMEOUT <= 60
    path = str(tmp_path / "silent.sock")
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(path)
    silent.listen(1)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            Connection(f"unix:{path}", timeout=0.5)          # no hello ever comes
        assert time.monotonic() - started < 5
    finally:
        silent.close()


@pytest.mark.timeout(90)        # a leaked slot shows as a create that waits for ever
def test_a_backup_that_fails_to_start_unexpectedly_ends_its_job_and_frees_its_slot(srv):
    """An error nobody foresaw while a backup starts (injected: OPENXBSA_FAULT_ACTION=raise
    at backup:start, after the job took its storage-unit slot): BSACreateObject returns
    ABORT_SYSTEM_ERROR (the session ends, as after any internal error), the job ends Done
    with status 130 and the slot is given back — on a unit of one concurrent job, the next
    backup fails the same way at once instead of waiting for ever in the queue. Without
    the fault, backups go on."""
    copy_id, data = committed_baseline(srv)
    out = srv.cli("stu", "modify", "disk-default", "--max-jobs", "1")
    assert out.returncode == 0, out.stderr
    srv.stop()
    srv.start({"OPENXBSA_FAULT": "backup:start", "OPENXBSA_FAULT_ACTION": "raise"})
    for attempt in range(2):          # the unexpected error ends its session: a new one
        h = init(srv)
        assert X.BSABeginTxn(h) == OK
        started = time.monotonic()
        rc = X.BSACreateObject(h, descriptor(f"/crash/unstarted/{attempt}", 10),
                               X.BSA_DataBlock32())
        assert rc == X.BSA_RC_ABORT_SYSTEM_ERROR and time.monotonic() - started < 10
        assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
        X.BSATerminate(h)
    failed = [j for j in jobs(srv) if j["type"] == "Backup" and j["status"] != 0]
    assert [(j["state_name"], j["status"]) for j in failed] == [("Done", 130)] * 2
    srv.stop()
    srv.start()
    h = init(srv)
    assert restore(h, copy_id) == data
    backup(h, "/crash/started", b"fine")
    X.BSATerminate(h)


CLIENT = textwrap.dedent("""
    import os, sys, time
    from openxbsa import xbsa as X
    rc, h = X.BSAInit(None, X.BSA_ObjectOwner(), ["BSA_API_VERSION=1.1.0", "BSA_SERVICE_HOST=" + sys.argv[1]])
    X.BSABeginTxn(h)
    d = X.BSA_ObjectDescriptor(objectName=X.BSA_ObjectName("", "/crash/client"), copyType=3,
                               objectType=2, resourceType="r", estimatedSize=1 << 30)
    X.BSACreateObject(h, d, X.BSA_DataBlock32())
    buf = bytearray(os.urandom(1 << 20))
    for _ in range(int(sys.argv[2])):
        X.BSASendData(h, X.BSA_DataBlock32(1 << 20, 1 << 20, 0, 0, 0, buf))
    if sys.argv[3] == "enddata":
        X.BSAEndData(h)  # ... and the commit never comes
    print("ready", flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("where", ["mid-object", "before-commit"])
def test_client_killed(srv, where):
    copy_id, data = committed_baseline(srv)
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, srv.address, "8",
                             "enddata" if where == "before-commit" else "no"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline:
        running = [j for j in jobs(srv) if j["state_name"] != "Done"]
        if not running and len(storage_files(srv)) == 1:
            break
        time.sleep(0.1)
    job = jobs(srv)[0]
    assert (job["type"], job["state_name"], job["status"]) == ("Backup", "Done", 50)
    assert len(storage_files(srv)) == 1
    h = init(srv)
    assert find(h, query("/crash/client"))[0] == X.BSA_RC_NO_MATCH
    assert restore(h, copy_id) == data
    X.BSATerminate(h)
    # the server kept serving and still does after a restart
    srv.stop()
    srv.start()
    h = init(srv)
    assert restore(h, copy_id) == data
    X.BSATerminate(h)


def test_recovery_sweeps_every_storage_unit(srv, tmp_path):
    other = tmp_path / "unit2"
    assert srv.cli("stu", "add", "second", "--path", str(other)).returncode == 0
    assert srv.cli("policy", "add", "to-second", "--stunit", "second").returncode == 0
    h = init(srv, extra=["NBBSA_POLICY=to-second"])
    kept = backup(h, "/crash/second", b"kept on the second unit")
    X.BSATerminate(h)
    stray = other / "client" / "stray.img"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"left by a crash")
    srv.kill()
    srv.start()
    assert not stray.exists()
    h = init(srv)
    assert restore(h, kept.copyId) == b"kept on the second unit"
    X.BSATerminate(h)
