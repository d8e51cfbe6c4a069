"""Malformed, oversize and hostile traffic gets an error, and the server keeps serving."""

from __future__ import annotations

import os
import socket
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openxbsa import wire
from openxbsa import xbsa as X
from tests.conftest import backup, init, restore


def connect(server) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(server.address[5:])
    return s


def read_reply(s: socket.socket) -> dict | None:
    """The server's next control reply, or None once it has closed the connection."""
    f = s.makefile("rb")
    try:
        head = f.read(5)
        if len(head) < 5:
            return None
        ftype, length = struct.unpack("!BI", head)
        return msgpack.unpackb(f.read(length))
    finally:
        f.close()


def hello(s: socket.socket) -> None:
    assert read_reply(s)["hello"] == wire.PROTOCOL_VERSION


def frame(ftype: int, payload: bytes) -> bytes:
    return struct.pack("!BI", ftype, len(payload)) + payload


def still_serving(server) -> None:
    h = init(server)
    data = os.urandom(100_000)
    d = backup(h, "/hostile/check", data)
    assert restore(h, d.copyId) == data
    X.BSATerminate(h)


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("traffic", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                      # not our protocol at all
    struct.pack("!BI", wire.REQ, 512 << 20),                    # oversize control message
    struct.pack("!BI", wire.DATA, 1 << 30),                     # oversize data frame
    frame(9, b"xx"),                                            # unknown frame type
    frame(wire.REQ, b"\xc1\xc1\xc1"),                           # undecodable msgpack
    frame(wire.REQ, msgpack.packb([1, 2, 3])),                  # not a map
    frame(wire.REQ, msgpack.packb({"op": "begin"})),            # before init
    frame(wire.DATA, b"data before any object"),
])
def test_protocol_violations_get_an_error_and_a_closed_connection(server, traffic):
    s = connect(server)
    hello(s)
    s.sendall(traffic)
    reply = read_reply(s)
    assert reply is None or (reply["ok"] is False and reply["msg"])
    assert closed(s)
    s.close()
    still_serving(server)


@pytest.mark.parametrize("request_", [
    {"op": "init", "env": "BSA_API_VERSION=1.1.0", "owner": ["", ""]},
    {"op": "init", "env": ["BSA_API_VERSION=1.1.0"], "owner": "nobody"},
    {"op": "init", "env": [1, 2], "owner": ["", ""]},
    {"op": "init", "env": ["BSA_API_VERSION=1.1.0"], "owner": ["x" * 100, ""]},
    {"op": 42},
    {"op": "no-such-operation"},
])
def test_bad_requests_are_answered_and_the_session_goes_on(server, request_):
    s = connect(server)
    hello(s)
    s.sendall(frame(wire.REQ, msgpack.packb(request_)))
    reply = read_reply(s)
    assert reply is not None and reply["ok"] is False
    # the same connection can still open a proper session
    s.sendall(frame(wire.REQ, msgpack.packb({"op": "init", "env": ["BSA_API_VERSION=1.1.0"],
                                             "owner": ["", ""]})))
    assert read_reply(s)["ok"] is True
    s.close()


@pytest.mark.parametrize("request_", [
    {"op": "create", "d": {"pn": "/x"}},
    {"op": "create", "d": {"bo": 1, "ao": "", "sn": "", "pn": "/x", "ct": 3, "es": 1,
                           "rt": "r", "ot": 2, "de": "", "oi": b""}},
    {"op": "query", "q": None},
    {"op": "get", "copy_id": "1"},
    {"op": "delete", "copy_id": -5},
    {"op": "end", "vote": "commit"},
])
def test_hostile_requests_inside_a_transaction(server, request_):
    s = connect(server)
    hello(s)
    for req in ({"op": "init", "env": ["BSA_API_VERSION=1.1.0"], "owner": ["", ""]},
                {"op": "begin"}):
        s.sendall(frame(wire.REQ, msgpack.packb(req)))
        assert read_reply(s)["ok"] is True
    s.sendall(frame(wire.REQ, msgpack.packb(request_, use_bin_type=True)))
    reply = read_reply(s)
    assert reply is not None and reply["ok"] is False
    s.close()
    still_serving(server)


def test_peer_vanishing_mid_header(server):
    s = connect(server)
    hello(s)
    s.sendall(b"\x01\x00")
    s.close()
    still_serving(server)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=300))
def test_random_bytes_never_take_the_server_down(server, junk):
    s = connect(server)
    hello(s)
    s.sendall(junk)
    s.shutdown(socket.SHUT_WR)
    read_reply(s)
    s.close()
    probe = connect(server)          # the server still accepts and greets
    hello(probe)
    probe.close()


def test_pipelined_create_with_a_copy_id_never_granted_is_dropped(server):
    s = connect(server)
    hello(s)
    d = {"bo": "", "ao": "", "sn": "", "pn": "/hostile/p", "ct": 3, "es": 1, "rt": "r", "ot": 2,
         "de": "", "oi": b""}
    for req in ({"op": "init", "env": ["BSA_API_VERSION=1.1.0"], "owner": ["", ""]},
                {"op": "begin"}, {"op": "create", "d": d}):
        s.sendall(frame(wire.REQ, msgpack.packb(req, use_bin_type=True)))
        reply = read_reply(s)
        assert reply["ok"] is True
    s.sendall(frame(wire.REQ, msgpack.packb({"op": "endobject"})))
    s.sendall(frame(wire.REQ, msgpack.packb({"op": "create", "d": d, "p": [reply["copy_id"] + 500,
                                                                          reply["time"]]},
                                            use_bin_type=True)))
    refusal = read_reply(s)
    assert refusal is not None and refusal["ok"] is False and "granted" in refusal["msg"]
    assert closed(s)
    s.close()
    still_serving(server)
    h = init(server)
    from tests.conftest import find, query
    assert find(h, query("/hostile/p"))[0] == X.BSA_RC_NO_MATCH
    X.BSATerminate(h)


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    from tests.conftest import configured_server
    srv = configured_server(tmp_path_factory, "[limits]\nhandshake_timeout = 1\nmax_sessions = 3\n")
    yield srv
    srv.stop()


def test_a_peer_that_never_completes_bsainit_is_dropped(strict_server):
    import time
    s = connect(strict_server)
    hello(s)
    start = time.time()
    assert closed(s)                               # nothing sent: the server gives up
    assert time.time() - start < 8
    s.close()
    still_serving(strict_server)


def test_sessions_beyond_the_limit_are_refused_and_the_others_go_on(strict_server):
    import time
    held = []
    for _ in range(3):
        s = connect(strict_server)
        hello(s)
        s.sendall(frame(wire.REQ, msgpack.packb({"op": "init", "env": ["BSA_API_VERSION=1.1.0"],
                                                 "owner": ["", ""]})))
        assert read_reply(s)["ok"] is True
        held.append(s)
    extra = connect(strict_server)
    refusal = read_reply(extra)
    assert refusal["ok"] is False and "too many sessions" in refusal["msg"]
    extra.close()
    for s in held:
        s.close()
    time.sleep(0.5)
    still_serving(strict_server)
