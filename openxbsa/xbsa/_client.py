"""The client end of one session: connect, authenticate, exchange control messages, stream data."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import tomllib
from collections.abc import Callable
from typing import Any

from openxbsa import wire

DEFAULT_SECRET_FILE = "/etc/openxbsa/host.secret"


class ServerError(Exception):
    """The server answered a request with an error."""

    def __init__(self, kind: str, status: int, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class RequestNotSent(OSError):
    """The connection failed before the whole request was handed to the kernel: the
    server cannot have acted on it (it acts only on a complete frame)."""


class AuthError(Exception):
    """The client could not present credentials (secret file missing or unsafe)."""


def load_host_secret(path: str | None = None) -> tuple[str, str]:
    """(host, secret) from the host-secret file, which must be private to its owner (0600)."""
    path = path or os.environ.get("OPENXBSA_SECRET_FILE") or DEFAULT_SECRET_FILE
    try:
        st = os.stat(path)
    except OSError as exc:
        raise AuthError(f"no host secret at {path}: {exc.strerror}; issue one with "
                        "'openxbsa secret issue HOST' on the server") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError(f"host secret {path} is readable by others; chmod 600 it")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise AuthError(f"host secret {path} cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AuthError(f"host secret {path} is not a secret file ({exc}); issue a new one "
                        "with 'openxbsa secret issue HOST' on the server") from None
    host, secret = data.get("host"), data.get("secret")
    if not isinstance(host, str) or not isinstance(secret, str):
        raise AuthError(f"host secret {path} lacks host or secret")
    return host, secret


def os_user() -> tuple[int, str]:
    """The real OS user of this process (not $USER, which anyone can set)."""
    uid = os.getuid()
    try:
        return uid, pwd.getpwuid(uid).pw_name
    except KeyError:
        return uid, str(uid)


# Set by the C library (openxbsa.cabi.glue): told each connection's descriptor once it is
# up and -1 once it is closed, so that its fork handler can drop a child's copy.
watch_connection: Callable[[int], None] | None = None


class Connection:
    def __init__(self, address: str, timeout: float | None = None) -> None:
        """Connect and read the server's hello; ``timeout`` bounds every wait on this
        connection (connect included), None none."""
        family, addr = wire.parse_address(address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        wire.tune(sock, wire.peer_timeout_from_env())
        self.family = family
        self.channel = wire.Channel(sock)
        self.hello = self.channel.read_message(wire.REP)
        if self.hello.get("hello") != wire.PROTOCOL_VERSION:
            self.close()
            raise wire.ProtocolError("the server speaks another protocol version")
        if watch_connection is not None:
            watch_connection(sock.fileno())
        # restore stream state
        self.frame_left = 0
        self.stream_done = True
        self.stream_error: dict[str, Any] | None = None

    def credentials(self) -> dict[str, Any]:
        """What a TCP session presents; a Unix-socket session is known by its peer credentials."""
        if self.family == socket.AF_UNIX:
            return {}
        host, secret = load_host_secret()
        uid, user = os_user()
        return {"host": host, "user": user, "uid": uid,
                "mac": wire.host_mac(secret, self.hello["nonce"], host, user)}

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        fields["op"] = op
        try:
            self.channel.send_message(wire.REQ, fields)
        except OSError as exc:
            raise RequestNotSent(exc.errno, f"{exc.strerror or exc} (the request was not "
                                 "sent)") from exc
        reply = self.channel.read_message(wire.REP)
        if not reply.get("ok"):
            raise ServerError(str(reply.get("kind", "system")), int(reply.get("status", 130)),
                              str(reply.get("msg", "the server reported an error")))
        return reply

    def post(self, op: str, flush: bool = False, **fields: Any) -> None:
        """A request that gets no reply; unless flushed, it leaves with the next flush."""
        fields["op"] = op
        self.channel.send_message(wire.REQ, fields, flush=flush)

    def send_data(self, data: Any) -> None:
        self.channel.send_data(data)

    # ---- restore stream
    def start_stream(self) -> None:
        self.frame_left = 0
        self.stream_done = False
        self.stream_error = None

    def read_stream(self, view: memoryview) -> int:
        """Fill ``view`` from the object stream; fewer bytes only at the end of the object."""
        filled = 0
        ch = self.channel
        total = len(view)
        while filled < total and not self.stream_done:
            if self.frame_left == 0:
                self._next_frame()
                continue
            n = min(total - filled, self.frame_left)
            ch.readinto_exact(view[filled:filled + n])
            filled += n
            self.frame_left -= n
        return filled

    def _next_frame(self) -> None:
        ftype, length = self.channel.read_header()
        if ftype == wire.DATA:
            self.frame_left = length
        elif ftype == wire.EOD:
            end = wire.unpack(self.channel.read_exact(length))
            self.stream_done = True
            if not end.get("ok"):
                self.stream_error = end
        else:
            raise wire.ProtocolError(f"unexpected frame type {ftype} in an object stream")

    def at_end(self, received: int, size: int) -> bool:
        """True once the whole object arrived (the end-of-data frame is read eagerly)."""
        if not self.stream_done and received >= size and self.frame_left == 0:
            self._next_frame()
            if not self.stream_done:  # a server sending more than announced is broken
                raise wire.ProtocolError("the server sent more data than the object holds")
        return self.stream_done

    def cancel_stream(self) -> None:
        if self.stream_done:
            return
        self.channel.send_message(wire.REQ, {"op": "cancel"})
        while not self.stream_done:
            if self.frame_left:
                self.channel.skip(self.frame_left)
                self.frame_left = 0
            else:
                self._next_frame()

    def close(self) -> None:
        self._unwatch()
        self.channel.close()

    def abandon(self) -> None:
        """Let go of a connection inherited through fork, sending nothing on it."""
        self._unwatch()
        self.channel.abandon()

    def _unwatch(self) -> None:
        if watch_connection is not None:
            watch_connection(-1)
