"""Frames and messages shared by the XBSA client library and the server.

A session is one stream socket carrying length-prefixed frames: a 5-byte header
(type, length) followed by the payload. Control messages are msgpack maps; object
data travels in raw DATA frames with no per-frame acknowledgement — the socket's own
flow control is the back-pressure, and errors surface at the next control reply.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import os
import socket
import struct
from typing import Any

import msgpack

PROTOCOL_VERSION = 1

HEADER = struct.Struct("!BI")
REQ = 1   # client -> server control message
REP = 2   # server -> client control reply
DATA = 3  # raw object bytes, either direction
EOD = 4   # server -> client: end of an object's data stream (payload: msgpack map)

MAX_CONTROL = 1 << 20      # a control message larger than this is hostile
MAX_DATA_FRAME = 8 << 20   # data frames are at most this large
STREAM_FRAME = 1 << 20     # frame size the server uses when streaming a restore
SOCKET_BUFFER = 1 << 20
WRITE_BUFFER = 256 * 1024  # small frames gather here until a flush
IOV_MAX = 1024             # pieces one sendmsg takes (Linux's UIO_MAXIOV)
# Sends to a peer that has gone fail with EPIPE rather than raise SIGPIPE: the client side
# runs inside C agents (libxbsa64.so), whose SIGPIPE is not ignored as Python's is, and
# whose process the signal would kill instead of a call answering an error.
NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
TCP_CLOSE = 7              # tcpi_state of a connection the kernel has closed (linux/tcp.h)


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame or message."""


class ConnectionClosed(ProtocolError):
    """The peer closed the connection."""


def pack(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(payload: bytes) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"undecodable control message: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("control message is not a map")
    return obj


PEER_TIMEOUT = 120.0       # seconds a TCP peer may stop answering before its session fails


def tune(sock: socket.socket, peer_timeout: float | None) -> None:
    """Large kernel buffers: the data path moves megabytes per call. On TCP, a peer that
    stops answering — its host lost power, the network between went down — is given up
    after about ``peer_timeout`` seconds (None: never): keepalive probes find it while the
    session idles or waits for data, and TCP_USER_TIMEOUT while bytes we sent wait for its
    acknowledgement. A live peer answers both from its kernel, however long the
    application on it stays quiet. (A Unix socket needs neither: the kernel tells of a dead
    peer at once.)"""
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 * SOCKET_BUFFER)
        except OSError:
            pass
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not peer_timeout:
        return
    idle = max(1, int(peer_timeout / 3))              # quiet this long: start probing,
    interval = max(1, int(peer_timeout / 9))          # six probes over the rest
    for level, opt, value in (
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), idle),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), interval),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), 6),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None),
             int(peer_timeout * 1000))):
        if opt is not None:                           # not every platform has them all
            sock.setsockopt(level, opt, value)


def peer_timeout_from_env() -> float | None:
    """The client's ``peer_timeout``: $OPENXBSA_PEER_TIMEOUT seconds, 1 to 86400 (0: wait
    for ever); PEER_TIMEOUT when unset or anything else."""
    try:
        value = float(os.environ.get("OPENXBSA_PEER_TIMEOUT", PEER_TIMEOUT))
    except ValueError:
        return PEER_TIMEOUT
    if value == 0:
        return None
    return value if 1 <= value <= 86400 else PEER_TIMEOUT


class Channel:
    """Buffered frame I/O over one connected stream socket.

    Outgoing bytes gather in a buffer of the channel's own, sent only by ``flush`` (or when
    it fills), never by garbage collection: a process forked from a client shares the
    socket, and must be able to drop its copy (``abandon``) without sending the parent's
    unflushed frames a second time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile: io.BufferedReader = sock.makefile("rb", buffering=256 * 1024)  # type: ignore[assignment]
        self._out = bytearray()

    # ---- reading
    def read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) != n:
            raise ConnectionClosed("peer closed the connection")
        return data

    def readinto_exact(self, view: memoryview) -> None:
        got = 0
        total = len(view)
        while got < total:
            n = self.rfile.readinto(view[got:])
            if not n:
                raise ConnectionClosed("peer closed the connection")
            got += n

    def read_header(self) -> tuple[int, int]:
        ftype, length = HEADER.unpack(self.read_exact(HEADER.size))
        if ftype in (REQ, REP, EOD):
            if length > MAX_CONTROL:
                raise ProtocolError(f"control message of {length} bytes exceeds {MAX_CONTROL}")
        elif ftype == DATA:
            if length > MAX_DATA_FRAME:
                raise ProtocolError(f"data frame of {length} bytes exceeds {MAX_DATA_FRAME}")
        else:
            raise ProtocolError(f"unknown frame type {ftype}")
        return ftype, length

    def read_message(self, expect: int) -> dict[str, Any]:
        ftype, length = self.read_header()
        if ftype != expect:
            raise ProtocolError(f"expected frame type {expect}, got {ftype}")
        return unpack(self.read_exact(length))

    def skip(self, n: int) -> None:
        while n:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                raise ConnectionClosed("peer closed the connection")
            n -= len(chunk)

    # ---- writing
    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if len(self._out) + len(data) <= WRITE_BUFFER:
            self._out += data
        elif len(data) < WRITE_BUFFER:
            self.flush()
            self._out += data
        else:                            # a large frame body leaves at once, with what waits
            self._send_all([memoryview(bytes(self._out)), memoryview(data)])
            self._out.clear()

    def _send_all(self, parts: list[memoryview]) -> None:
        """Send every byte of ``parts`` with gathering sendmsg calls."""
        while parts:
            n = self.sock.sendmsg(parts[:IOV_MAX], (), NOSIGNAL)
            while parts and n >= len(parts[0]):
                n -= len(parts[0])
                parts.pop(0)
            if parts and n:
                parts[0] = parts[0][n:]

    def send_message(self, ftype: int, obj: dict[str, Any], flush: bool = True) -> None:
        payload = pack(obj)
        self._write(HEADER.pack(ftype, len(payload)))
        self._write(payload)
        if flush:
            self.flush()

    def send_data(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            part = view[:MAX_DATA_FRAME]
            self._write(HEADER.pack(DATA, len(part)))
            self._write(part)
            view = view[len(part):]

    def send_data_views(self, views: list[memoryview]) -> None:
        """One DATA frame made of ``views`` (at most MAX_DATA_FRAME bytes in all), gathered
        by the kernel from where they lie: no copy into one buffer first."""
        total = sum(len(v) for v in views)
        if total > MAX_DATA_FRAME:
            raise ValueError("a DATA frame larger than MAX_DATA_FRAME")
        self.flush()
        self._send_all([memoryview(HEADER.pack(DATA, total)), *views])

    def sendfile(self, fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of file ``fd`` from ``offset`` as DATA frames, zero-copy."""
        while count:
            part = min(count, STREAM_FRAME)
            self._write(HEADER.pack(DATA, part))
            self.flush()
            sent_total = 0
            while sent_total < part:
                try:
                    sent = os.sendfile(self.sock.fileno(), fd, offset + sent_total,
                                       part - sent_total)
                except BrokenPipeError as exc:
                    raise self._send_failure(exc) from None
                if sent == 0:
                    raise ConnectionClosed("short file while streaming")
                sent_total += sent
            offset += part
            count -= part

    def _send_failure(self, exc: BrokenPipeError) -> OSError:
        """What ended a connection that sendfile(2) reports as EPIPE. Linux gives EPIPE for
        any socket that can no longer send — the timeout's own error went to an earlier call
        that returned a partial count — so a peer that stopped answering (TCP_USER_TIMEOUT or
        keepalive gave it up: see tune) would read as a broken connection. The kernel's TCP
        state tells them apart: a connection it closed while its data or keepalive probes
        went unanswered timed out; one the peer reset or closed did not."""
        if self.sock.family not in (socket.AF_INET, socket.AF_INET6):
            return exc
        try:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except (OSError, AttributeError):        # AttributeError: no TCP_INFO here
            return exc
        state, _ca_state, retransmits, probes = info[:4]
        if code == errno.ETIMEDOUT or (state == TCP_CLOSE and (retransmits or probes)):
            return TimeoutError(errno.ETIMEDOUT, "the peer stopped answering")
        return exc

    def flush(self) -> None:
        if self._out:
            self.sock.sendall(self._out, NOSIGNAL)
            self._out.clear()

    def close(self) -> None:
        try:
            self.flush()
        except OSError:
            pass
        self.abandon()

    def abandon(self) -> None:
        """Drop this process's hold on the connection without sending anything more (what
        is buffered is discarded): what a forked child does with its parent's session.
        Closing the descriptor does not end the connection while another process holds
        it."""
        self._out.clear()
        try:
            self.rfile.close()
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


DEFAULT_PORT = 13724   # a bare host name means this TCP port (NetBackup's vnetd port)


def parse_address(address: str) -> tuple[int, Any]:
    """``unix:/path``, ``HOST:PORT`` or a bare ``HOST`` -> (family, sockaddr).

    A bare host name is what NetBackup agents put in BSA_SERVICE_HOST: it means that host's
    default port, or the local server's Unix socket when it names this machine and one
    listens there."""
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ValueError("empty unix socket path")
        return socket.AF_UNIX, path
    if not address or any(c.isspace() for c in address):
        raise ValueError(f"address {address!r} is not unix:/path, HOST:PORT or HOST")
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and (host.count(":") == 0 or host.startswith("[")):
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return family, (host, int(port))
    if sep and not port.isdigit() and address.count(":") == 1:
        raise ValueError(f"address {address!r} has a port that is not a number")
    host = address.strip("[]")
    local = default_address()[5:]
    if host in ("localhost", socket.gethostname(), socket.getfqdn()) and os.path.exists(local):
        return socket.AF_UNIX, local
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, DEFAULT_PORT)


def host_mac(secret: str, nonce: str, host: str, user: str) -> str:
    """The proof a TCP client sends: HMAC-SHA256 keyed by the host's secret over the
    server's one-time nonce, the host name and the OS user it vouches for."""
    return hmac.new(bytes.fromhex(secret), f"{nonce}\n{host}\n{user}".encode(),
                    hashlib.sha256).hexdigest()


def default_home() -> str:
    """The server home used when none is named: $OPENXBSA_HOME or ~/.openxbsa."""
    return os.environ.get("OPENXBSA_HOME") or os.path.expanduser("~/.openxbsa")


def default_address(home: str | None = None) -> str:
    """The address a client uses when BSA_SERVICE_HOST is not set: the default home's socket."""
    return "unix:" + os.path.join(home or default_home(), "xbsa.sock")
