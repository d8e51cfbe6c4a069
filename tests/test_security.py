"""Ownership, TCP host authentication and redirected restore, against real server processes."""

from __future__ import annotations

import json
import os
import socket

import pytest

from openxbsa import wire
from openxbsa import xbsa as X
from openxbsa.xbsa._client import Connection, ServerError, load_host_secret, os_user
from tests.conftest import ServerProc, backup, configured_server, find, init, query, restore

OK = X.BSA_RC_SUCCESS

def test_unix_socket_sessions_are_owned_by_the_peer_uid(server):
    import pwd
    h = init(server)
    backup(h, "/sec/peer", b"x")
    X.BSATerminate(h)
    jobs = json.loads(server.cli("jobs", "--json").stdout)
    assert jobs[0]["owner"] == pwd.getpwuid(os.getuid()).pw_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tcp_server(tmp_path_factory):
    srv = configured_server(tmp_path_factory, "[access]\nredirected_restore = true\n",
                            address=f"127.0.0.1:{free_port()}")
    yield srv
    srv.stop()


def issue(srv: ServerProc, host: str, path: str) -> str:
    out = srv.cli("secret", "issue", host, "--out", path)
    assert out.returncode == 0, out.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600
    return path


def test_tcp_without_a_secret_is_refused(tcp_server, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", str(tmp_path / "missing.secret"))
    rc, h = X.BSAInit(None, X.BSA_ObjectOwner(), tcp_server.xbsa_env)
    assert rc == X.BSA_RC_AUTHENTICATION_FAILURE and h is None
    assert "secret" in X.BSAGetLastError()[1]


def test_tcp_with_a_wrong_secret_is_refused(tcp_server, monkeypatch, tmp_path):
    path = issue(tcp_server, "hostA", str(tmp_path / "a.secret"))
    text = open(path).read()
    forged = tmp_path / "forged.secret"
    forged.write_text(text.replace(text.split('"')[3], "ab" * 32))
    os.chmod(forged, 0o600)
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", str(forged))
    assert X.BSAInit(None, X.BSA_ObjectOwner(), tcp_server.xbsa_env)[0] == X.BSA_RC_AUTHENTICATION_FAILURE


def test_tcp_secret_readable_by_others_is_refused(tcp_server, monkeypatch, tmp_path):
    path = issue(tcp_server, "hostA", str(tmp_path / "open.secret"))
    os.chmod(path, 0o644)
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", path)
    assert X.BSAInit(None, X.BSA_ObjectOwner(), tcp_server.xbsa_env)[0] == X.BSA_RC_AUTHENTICATION_FAILURE
    assert "chmod 600" in X.BSAGetLastError()[1]


def test_a_secret_that_cannot_be_written_leaves_the_old_one_working(tcp_server, monkeypatch,
                                                                     tmp_path):
    """`secret issue --out` into a place it cannot write fails before the secret changes:
    the host's installed secret still authenticates (nothing is revoked for nothing)."""
    path = issue(tcp_server, "hostK", str(tmp_path / "k.secret"))
    out = tcp_server.cli("secret", "issue", "hostK", "--out", str(tmp_path / "no-dir" / "x"))
    assert out.returncode == 1 and "unchanged" in out.stderr and "Traceback" not in out.stderr
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", path)
    monkeypatch.setattr(socket, "gethostname", lambda: "hostK")
    rc, h = X.BSAInit(None, X.BSA_ObjectOwner(), tcp_server.xbsa_env)
    assert rc == OK, X.BSAGetLastError()[1]
    X.BSATerminate(h)
    bad = tcp_server.cli("secret", "issue", 'host"K', "--out", str(tmp_path / "q.secret"))
    assert bad.returncode == 2 and "not a client name" in bad.stderr
    assert not (tmp_path / "q.secret").exists()


@pytest.mark.parametrize("content", [b"host = \"hostA\"\nsecret = ", bytes(range(128, 256)),
                                     b"host = 5\nsecret = \"x\"\n"])
def test_a_damaged_secret_file_is_an_authentication_failure(tcp_server, monkeypatch, tmp_path,
                                                           content):
    path = tmp_path / "damaged.secret"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", str(path))
    rc, h = X.BSAInit(None, X.BSA_ObjectOwner(), tcp_server.xbsa_env)
    assert rc == X.BSA_RC_AUTHENTICATION_FAILURE and h is None
    message = X.BSAGetLastError()[1]
    assert str(path) in message and "internal error" not in message


def test_raw_tcp_client_claiming_a_user_is_not_believed(tcp_server):
    from openxbsa import wire
    host, port = tcp_server.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    ch = wire.Channel(sock)
    ch.read_message(wire.REP)
    ch.send_message(wire.REQ, {"op": "init", "env": ["BSA_API_VERSION=1.1.0"], "owner": ["", ""],
                               "host": "hostA", "user": "root", "mac": "00" * 32})
    reply = ch.read_message(wire.REP)
    assert reply["ok"] is False and reply["kind"] == "auth"
    ch.close()


def test_tcp_hosts_own_their_objects_and_redirected_restore(tcp_server, monkeypatch, tmp_path):
    a = issue(tcp_server, "hostA", str(tmp_path / "a.secret"))
    b = issue(tcp_server, "hostB", str(tmp_path / "b.secret"))
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", a)
    h = init(tcp_server)
    d = backup(h, "/tcp/object", b"from A")
    assert dict(e.split("=", 1) for e in X.BSAGetEnvironment(h)[2])["NBBSA_CLIENT_HOST"] == "hostA"
    X.BSATerminate(h)
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", b)
    h = init(tcp_server)
    assert find(h, query("/tcp/object"))[0] == X.BSA_RC_NO_MATCH
    X.BSATerminate(h)
    # this server allows redirected restores: host B may act for host A
    h = init(tcp_server, extra=["NBBSA_CLIENT_HOST=hostA"])
    assert restore(h, d.copyId) == b"from A"
    X.BSATerminate(h)


def test_users_of_one_host_do_not_see_each_others_objects(tcp_server, monkeypatch, tmp_path):
    from openxbsa.xbsa import _client
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", issue(tcp_server, "hostU", str(tmp_path / "u.secret")))
    monkeypatch.setattr(_client, "os_user", lambda: (1001, "alice"))
    h = init(tcp_server)
    d = backup(h, "/users/alice-data", b"alice")
    X.BSATerminate(h)
    monkeypatch.setattr(_client, "os_user", lambda: (1002, "bob"))
    h = init(tcp_server)
    assert find(h, query("/users/*"))[0] == X.BSA_RC_NO_MATCH
    assert X.BSABeginTxn(h) == OK
    assert X.BSAGetObject(h, X.BSA_ObjectDescriptor(copyId=d.copyId), X.BSA_DataBlock32()) == \
        X.BSA_RC_OBJECT_NOT_FOUND
    assert X.BSADeleteObject(h, d.copyId) == X.BSA_RC_OBJECT_NOT_FOUND  # a failed get fixed nothing
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    mine = backup(h, "/users/bob-data", b"bob")
    assert X.BSABeginTxn(h) == OK                # nor as part of a multiple-object restore
    for copy_id in (mine.copyId, d.copyId):
        assert X.NBBSAAddToMultiObjectRestoreList(h, X.BSA_ObjectDescriptor(copyId=copy_id)) == OK
    assert X.NBBSAGetMultipleObjects(h) == X.BSA_RC_OBJECT_NOT_FOUND
    assert X.BSAEndTxn(h, X.BSA_Vote_ABORT) == OK
    X.BSATerminate(h)
    # root on that host is the administrator and sees every user's objects
    monkeypatch.setattr(_client, "os_user", lambda: (0, "root"))
    h = init(tcp_server)
    assert restore(h, d.copyId) == b"alice"
    assert X.BSABeginTxn(h) == OK
    for copy_id in (mine.copyId, d.copyId):
        assert X.NBBSAAddToMultiObjectRestoreList(h, X.BSA_ObjectDescriptor(copyId=copy_id)) == OK
    assert X.NBBSAGetMultipleObjects(h) == OK
    assert X.NBBSAEndGetMultipleObjects(h) == OK
    assert X.BSAEndTxn(h, X.BSA_Vote_COMMIT) == OK
    X.BSATerminate(h)
    monkeypatch.setattr(_client, "os_user", lambda: (1001, "alice"))
    h = init(tcp_server)
    assert restore(h, d.copyId) == b"alice"
    X.BSATerminate(h)


def test_redirected_restore_is_refused_unless_allowed(server):
    h = init(server)
    d = backup(h, "/sec/redirect", b"x")
    X.BSATerminate(h)
    h = init(server, extra=["NBBSA_CLIENT_HOST=someone-else"])
    assert find(h, query("/sec/redirect"))[0] == OK   # still its own host: the setting is ignored
    assert restore(h, d.copyId) == b"x"
    X.BSATerminate(h)


def host_session(server: ServerProc, secret_file: str, user: str | None = None) -> Connection:
    """A raw session of the host whose secret is in ``secret_file``, which says ``user``
    (by default this process's)."""
    user = user or os_user()[1]
    conn = Connection(server.address)
    host, secret = load_host_secret(secret_file)
    conn.call("init", env=server.xbsa_env, owner=["", ""], host=host, user=user,
              mac=wire.host_mac(secret, conn.hello["nonce"], host, user))
    return conn


def test_only_the_host_and_user_that_ran_a_backup_learn_how_it_ended(tcp_server, monkeypatch,
                                                                     tmp_path):
    """A library whose commit reply was lost asks, on a new session, how its backup's job
    ended ("outcome"). The server answers the client host and user that ran the job, and
    for anyone else the job does not exist; a malformed job ID is refused and the session
    goes on serving."""
    path_a = issue(tcp_server, "hostO", str(tmp_path / "o.secret"))
    path_b = issue(tcp_server, "hostP", str(tmp_path / "p.secret"))
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", path_a)
    h = init(tcp_server)
    backup(h, "/sec/outcome", b"x" * 1000)
    X.BSATerminate(h)
    (job,) = [j for j in json.loads(tcp_server.cli("jobs", "--json").stdout)
              if j["type"] == "Backup" and j["client"] == "hostO"]

    conn = host_session(tcp_server, path_a)
    try:
        assert conn.call("outcome", job=job["jobid"]) == {"done": True, "status": 0, "ok": True}
        for bad in ("1", -1, 0, None, 1.5, True, 2**63, 2**64 - 1):
            with pytest.raises(ServerError) as exc:
                conn.call("outcome", job=bad)
            assert exc.value.kind == "invalid_request", bad
        assert conn.call("outcome", job=job["jobid"])["status"] == 0     # still serving
    finally:
        conn.close()
    for other in (host_session(tcp_server, path_b), host_session(tcp_server, path_a, "someone-else")):
        try:
            with pytest.raises(ServerError) as exc:
                other.call("outcome", job=job["jobid"])
            assert exc.value.kind == "not_found" and "is not a backup of client" in str(exc.value)
        finally:
            other.close()


def test_only_the_host_and_user_that_deleted_learn_whether_the_deletions_committed(
        tcp_server, monkeypatch, tmp_path):
    """A delete transaction is asked about by the token the server gave it at BSABeginTxn.
    Its host and user learn that it committed; for any other host or user — even one that
    has the token — no such transaction committed. A token that the server could not have
    made is refused, and the session goes on serving."""
    path_a = issue(tcp_server, "hostT", str(tmp_path / "t.secret"))
    path_b = issue(tcp_server, "hostV", str(tmp_path / "v.secret"))
    monkeypatch.setenv("OPENXBSA_SECRET_FILE", path_a)
    h = init(tcp_server)
    d = backup(h, "/sec/txn", b"t" * 1000)
    X.BSATerminate(h)

    conn = host_session(tcp_server, path_a)
    try:
        token = conn.call("begin")["txn"]
        with pytest.raises(ServerError) as exc:
            conn.call("outcome", txn=token)                     # outside a transaction only
        assert exc.value.kind == "call_sequence"
        conn.call("delete", copy_id=d.copyId)
        conn.call("end", vote=X.BSA_Vote_COMMIT)
        unused = conn.call("begin")["txn"]
        conn.call("end", vote=X.BSA_Vote_ABORT)
        assert token != unused
        assert conn.call("outcome", txn=token) == {"done": True, "committed": True, "ok": True}
        assert conn.call("outcome", txn=unused)["committed"] is False     # nothing deleted
        for bad in ("", "0" * 31, "G" * 32, "0" * 33, 1, None, ["0" * 32]):
            with pytest.raises(ServerError) as exc:
                conn.call("outcome", txn=bad)
            assert exc.value.kind == "invalid_request", bad
        assert conn.call("outcome", txn=token)["committed"] is True       # still serving
    finally:
        conn.close()
    for other in (host_session(tcp_server, path_b), host_session(tcp_server, path_a, "someone-else")):
        try:
            assert other.call("outcome", txn=token) == {"done": True, "committed": False,
                                                        "ok": True}
        finally:
            other.close()


def test_a_host_presents_a_user_name_not_a_blob(tcp_server, tmp_path):
    """An authenticated client host names the OS user of its session; the server believes a
    user name (up to 128 printable characters), not kilobytes or control characters — those
    are refused as an authentication failure, and the server goes on."""
    path = issue(tcp_server, "hostU", str(tmp_path / "u.secret"))
    host, secret = load_host_secret(path)

    def init_as(user: str) -> dict:
        conn = Connection(tcp_server.address)
        try:
            return conn.call("init", env=tcp_server.xbsa_env, owner=["", ""], host=host,
                             user=user, mac=wire.host_mac(secret, conn.hello["nonce"], host, user))
        finally:
            conn.close()

    assert init_as("u" * 128)["user"] == "u" * 128
    for bad in ("u" * 129, "x" * 4096, "evil\nuser", "tab\tuser"):
        with pytest.raises(ServerError) as exc:
            init_as(bad)
        assert exc.value.kind == "auth" and "user name" in str(exc.value), bad[:20]
    assert init_as("dbadmin")["user"] == "dbadmin"
