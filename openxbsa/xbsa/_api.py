"""The 16 XBSA 1.1 calls, faithful to C425 and NetBackup's XBSA 1.1.0.

Python convention: the C call's output-only arguments (a handle, a size, a string) are
returned after the rc; structures the C call fills through a pointer are passed and filled
in place; everything else returns just the rc. No exception escapes: misuse is answered
with the BSA_RC_* code a C library would return, and BSAGetLastError() says why.
"""

from __future__ import annotations

import collections
import datetime as _dt
import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from openxbsa import wire
from openxbsa.wire import schema
from openxbsa.xbsa import _constants as C
from openxbsa.xbsa import _debuglog
from openxbsa.xbsa._client import AuthError, Connection, RequestNotSent, ServerError
from openxbsa.xbsa._structs import (
    BSA_ApiVersion, BSA_DataBlock32, BSA_ObjectDescriptor, BSA_ObjectOwner,
    BSA_QueryDescriptor,
)

PROVIDER = "OpenXBSA/OpenXBSA/0.1.0"
DELIMITER = "/"
PREFERRED_BUFFER = 1 << 20
OUTCOME_TIMEOUT = 45.0      # seconds to ask how a commit ended (the server waits up to 30)

S1, T0, B, B_OBJ, R, R_OBJ, D, M = "S1", "T0", "B", "B*", "R", "R*", "D", "M"

KIND_RC = {
    "call_sequence": C.BSA_RC_INVALID_CALL_SEQUENCE,
    "invalid_descriptor": C.BSA_RC_INVALID_OBJECTDESCRIPTOR,
    "invalid_query": C.BSA_RC_INVALID_QUERYDESCRIPTOR,
    "invalid_env": C.BSA_RC_INVALID_ENV,
    "version": C.BSA_RC_VERSION_NOT_SUPPORTED,
    "auth": C.BSA_RC_AUTHENTICATION_FAILURE,
    "not_found": C.BSA_RC_OBJECT_NOT_FOUND,
    "no_match": C.BSA_RC_NO_MATCH,
    "invalid_copyid": C.BSA_RC_INVALID_COPYID,
    "access": C.BSA_RC_ACCESS_FAILURE,
    "txn_aborted": C.BSA_RC_TRANSACTION_ABORTED,
    "invalid_datablock": C.BSA_RC_INVALID_DATABLOCK,
    "buffer_too_small": C.BSA_RC_BUFFER_TOO_SMALL,
    "invalid_vote": C.BSA_RC_INVALID_VOTE,
    "not_licensed": C.NBBSA_RC_FEATURE_NOT_LICENSED,
}


class _Opening:
    """How a session was opened: where, with which environment and owner — to open
    another on its behalf (asking how a commit whose reply was lost ended)."""

    def __init__(self, address: str, env: list[str], owner: list[str]) -> None:
        self.address, self.env, self.owner = address, env, owner

    def init(self, conn: Connection) -> dict[str, Any]:
        """Authenticate on ``conn``; the server's reply, or AuthError, ServerError, OSError,
        wire.ProtocolError."""
        return conn.call("init", env=self.env, owner=self.owner, **conn.credentials())


class _Session:
    def __init__(self, handle: int, conn: Connection, owner: BSA_ObjectOwner,
                 env: dict[str, str], opening: _Opening) -> None:
        self.handle = handle
        self.conn = conn
        self.opening = opening
        self.owner = owner
        self.env = env
        self.pid = os.getpid()
        self.state = S1
        self.queried = False
        self.results: collections.deque[list[Any]] = collections.deque()
        self.more = False
        self.cursor = False
        self.obj_zero = False       # object being created has estimatedSize 0
        self.short_sent = False     # a non-full buffer was sent: it must be the last
        self.obj_size = 0           # object being read: its size
        self.received = 0
        self.ended = False          # NO_MORE_DATA already returned for the object being read
        self.doomed = False         # the transaction can only be aborted ...
        self.doom_cause = (0, "")   # ... for this server status and message, if one
        self.broken = False         # the connection is gone ...
        self.unsent = False         # ... and the request that found it so never left
        self.job_id = 0             # the job of the open transaction (NBBSAGetJobId)
        self.txn = ""               # the server's token for the open transaction
        self.last_job_id = 0        # ... or of the last one (NBBSAGetJobInfo)
        self.multi_list: list[int] = []   # NBBSAAddToMultiObjectRestoreList
        self.multi_active = False
        self.pending_logs: list[tuple[int, str, str]] = []   # NBBSALogMsg during a stream
        self.grant_next = 0         # copy IDs the server granted for pipelined creates
        self.grant_end = -1
        self.grant_time = 0.0       # the server's clock at the grant ...
        self.grant_mono = 0.0       # ... and ours
        self.image_seq = (0, 0)     # (image, objects created) for restoreOrder
        self.server_status = 0
        self.server_message = ""


class _Process:
    """Per-process XBSA state: C425 allows one session per address space."""

    lock = threading.RLock()
    session: _Session | None = None
    last_error = ""
    next_handle = 1


def _drop_inherited() -> None:
    """In a forked child the parent's session is not ours: drop our copy of its connection,
    sending nothing — no second copy of the parent's unflushed frames, and the server still
    sees the connection end when the parent's does."""
    s = _Process.session
    if s is not None and s.pid != os.getpid():
        _Process.session = None
        s.conn.abandon()


def _after_fork_in_child() -> None:
    _Process.lock = threading.RLock()   # the thread that held it at the fork is not here
    _drop_inherited()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _set_error(message: str) -> None:
    _Process.last_error = message


def _fail(rc: int, message: str) -> int:
    _set_error(f"{C.RC_NAMES.get(rc, rc)}: {message}")
    return rc


def _xbsa_call(outputs: int = 0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Serialise calls, and turn any unexpected exception into ABORT_SYSTEM_ERROR."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            with _Process.lock:
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:  # the C contract: never an exception
                    rc = _fail(C.BSA_RC_ABORT_SYSTEM_ERROR,
                               f"internal error in {fn.__name__}: {exc!r}")
                    result = (rc,) + (None,) * outputs if outputs else rc
                if _debuglog._logger is not None:
                    rc = result[0] if isinstance(result, tuple) else result
                    _debuglog.call(fn.__name__, rc, _Process.last_error)
                return result

        return call

    return wrap


def _session(handle: Any) -> _Session | None:
    s = _Process.session
    if s is None or type(handle) is not int or handle != s.handle or s.pid != os.getpid():
        return None
    return s


def _bad_handle(handle: Any) -> int:
    return _fail(C.BSA_RC_INVALID_HANDLE, f"handle {handle!r} does not denote an open session")


def _sequence(s: _Session, call: str) -> int:
    return _fail(C.BSA_RC_INVALID_CALL_SEQUENCE, f"{call} is not allowed in state {s.state}")


def _lost(s: _Session, exc: BaseException) -> int:
    """The connection broke: the transaction is doomed and the session unusable."""
    s.broken = True
    s.unsent = isinstance(exc, RequestNotSent)
    if s.state != S1:
        s.doomed = True
    try:
        s.conn.close()
    except Exception:
        pass
    return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, f"connection to the backup service lost: {exc}")


def _server_error(s: _Session, exc: ServerError) -> int:
    s.server_status = exc.status
    s.server_message = str(exc)
    rc = KIND_RC.get(exc.kind, C.BSA_RC_ABORT_SYSTEM_ERROR)
    if rc == C.BSA_RC_ABORT_SYSTEM_ERROR and s.state != S1:
        s.doomed = True
        s.doom_cause = (s.server_status, s.server_message)
    return _fail(rc, f"{exc} (NetBackup status {exc.status})")


def _request(s: _Session, op: str, **fields: Any) -> tuple[int, dict[str, Any] | None]:
    if s.broken:
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, "the connection to the backup service is "
                                                  "lost; terminate the session"), None
    try:
        reply = s.conn.call(op, **fields)
    except ServerError as exc:
        return _server_error(s, exc), None
    except (OSError, wire.ProtocolError) as exc:
        return _lost(s, exc), None
    s.server_status, s.server_message = 0, ""
    return C.BSA_RC_SUCCESS, reply


def _flush_logs(s: _Session) -> None:
    """Send the application's log messages; they need no answer."""
    while s.pending_logs:
        mtype, text, source = s.pending_logs.pop(0)
        s.conn.post("logmsg", type=mtype, message=text, source=source)


def _text(value: Any) -> str | None:
    """``value`` as text (str, or UTF-8 bytes up to a NUL); None if it is not text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")      # lone surrogates cannot travel (nor be C strings)
        except UnicodeEncodeError:
            return None
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).split(b"\x00", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _utc(value: Any) -> int | None | bool:
    """A query time bound as UNIX seconds; None if unset; False if invalid."""
    if value is None:
        return None
    if not isinstance(value, _dt.datetime) or value.tzinfo is None:
        return False
    return int(value.timestamp())


# ====================================================================== session-less calls
@_xbsa_call(outputs=1)
def BSAQueryApiVersion() -> tuple[int, BSA_ApiVersion]:
    """The XBSA specification issue, version and implementation level: 1, 1, 0."""
    return C.BSA_RC_SUCCESS, BSA_ApiVersion(issue=1, version=1, level=0)


@_xbsa_call(outputs=2)
def BSAQueryServiceProvider() -> tuple[int, str, str]:
    """The hierarchical-name delimiter and the provider's vendor/product/version string."""
    return C.BSA_RC_SUCCESS, DELIMITER, PROVIDER


@_xbsa_call(outputs=1)
def BSAGetLastError() -> tuple[int, str]:
    """Words describing the cause of the most recent failure in this process ('' if none)."""
    return C.BSA_RC_SUCCESS, _Process.last_error


# ====================================================================== session
def _parse_env(env: Any) -> tuple[int, dict[str, str] | str]:
    if not isinstance(env, (list, tuple)):
        return C.BSA_RC_INVALID_ENV, "the environment must be a list of 'KEY=value' strings"
    entries = []
    for entry in env:
        if entry is None:        # a C array ends at its NULL entry
            break
        text = _text(entry)
        entries.append(text if text is not None else entry)
    parsed, problem = schema.parse_env(entries)
    return (C.BSA_RC_INVALID_ENV, problem) if problem else (C.BSA_RC_SUCCESS, parsed)


@_xbsa_call(outputs=1)
def BSAInit(token: Any, owner: BSA_ObjectOwner | None, env: Any) -> tuple[int, int | None]:
    """Authenticate with the backup service and open a session; returns (rc, handle)."""
    if owner is None or env is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "BSAInit needs an object owner and an environment"), None
    if _Process.session is not None and _Process.session.pid == os.getpid():
        return _fail(C.BSA_RC_INVALID_CALL_SEQUENCE,
                     "a session is already open in this process (C425 allows one)"), None
    _drop_inherited()     # a C program's fork() runs no Python fork hook
    if token is not None and not isinstance(token, (str, bytes, bytearray)):
        return _fail(C.BSA_RC_INVALID_ENV, "the security token must be a string or None"), None
    bsa_owner, app_owner = _text(getattr(owner, "bsa_ObjectOwner", None)), _text(
        getattr(owner, "app_ObjectOwner", None))
    for name, value in (("bsa_ObjectOwner", bsa_owner), ("app_ObjectOwner", app_owner)):
        if value is None or schema.text_problem(name, value, schema.OWNER_SIZE):
            return _fail(C.BSA_RC_INVALID_ENV, schema.text_problem(name, value, schema.OWNER_SIZE)
                         or f"{name} must be a string"), None
    rc, parsed = _parse_env(env)
    if rc != C.BSA_RC_SUCCESS:
        return _fail(rc, str(parsed)), None
    assert isinstance(parsed, dict)
    bad_version = schema.version_problem(parsed)
    if bad_version:
        return _fail(KIND_RC[bad_version[0]], bad_version[1]), None
    delim = parsed.get("BSA_DELIMITER")
    if delim is not None and (len(delim) != 1 or not delim.isascii()):
        return _fail(C.BSA_RC_INVALID_ENV, "BSA_DELIMITER must be one ASCII character"), None
    address = parsed.get("BSA_SERVICE_HOST") or wire.default_address()
    try:
        wire.parse_address(address)
    except ValueError as exc:
        return _fail(C.BSA_RC_INVALID_ENV, f"BSA_SERVICE_HOST: {exc}"), None
    try:
        conn = Connection(address)
    except (OSError, wire.ProtocolError) as exc:
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR,
                     f"cannot reach the backup service at {address}: {exc}"), None
    opening = _Opening(address, [f"{k}={v}" for k, v in parsed.items()],
                       [bsa_owner or "", app_owner or ""])
    try:
        reply = opening.init(conn)
    except AuthError as exc:
        conn.close()
        return _fail(C.BSA_RC_AUTHENTICATION_FAILURE, str(exc)), None
    except ServerError as exc:
        conn.close()
        return _fail(KIND_RC.get(exc.kind, C.BSA_RC_ABORT_SYSTEM_ERROR), str(exc)), None
    except (OSError, wire.ProtocolError) as exc:
        conn.close()
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, f"session set-up failed: {exc}"), None
    log_dir = parsed.get("NBBSA_LOG_DIRECTORY")
    if log_dir:
        problem = _debuglog.start(log_dir, parsed.get("NBBSA_LOG_LEVEL") or "DEBUG")
        if problem:
            conn.close()
            return _fail(C.BSA_RC_INVALID_ENV, f"NBBSA_LOG_DIRECTORY: {problem}"), None
    handle = _Process.next_handle
    _Process.next_handle += 1
    _Process.session = _Session(handle, conn, BSA_ObjectOwner(bsa_owner or "", app_owner or ""),
                                dict(reply.get("env", parsed)), opening)
    return C.BSA_RC_SUCCESS, handle


@_xbsa_call()
def BSATerminate(bsaHandle: int) -> int:
    """End the session; an open transaction is aborted."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    _Process.session = None
    _debuglog.stop()
    if not s.broken:
        try:
            if s.state == R_OBJ:
                s.conn.cancel_stream()
            _flush_logs(s)
            s.conn.call("terminate")
        except (ServerError, OSError, wire.ProtocolError):
            pass  # the server aborts whatever was open when the connection goes
    s.conn.close()
    return C.BSA_RC_SUCCESS


@_xbsa_call(outputs=2)
def BSAGetEnvironment(bsaHandle: int) -> tuple[int, BSA_ObjectOwner | None, list[str] | None]:
    """The session's object owner and environment, including values the service filled in."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle), None, None
    owner = BSA_ObjectOwner(s.owner.bsa_ObjectOwner, s.owner.app_ObjectOwner)
    return C.BSA_RC_SUCCESS, owner, [f"{k}={v}" for k, v in s.env.items()]


# ====================================================================== transactions
@_xbsa_call()
def BSABeginTxn(bsaHandle: int) -> int:
    """Start a transaction; its type is fixed by the first create, delete or get."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if s.state != S1:
        return _sequence(s, "BSABeginTxn (transactions do not nest)")
    rc, reply = _request(s, "begin")
    if rc != C.BSA_RC_SUCCESS:
        return rc
    token = reply.get("txn") if isinstance(reply, dict) else None
    s.txn = token if isinstance(token, str) else ""
    s.state, s.queried, s.cursor, s.doomed = T0, False, False, False
    s.doom_cause = (0, "")
    s.results.clear()
    s.job_id = 0
    s.grant_next, s.grant_end = 0, -1
    return C.BSA_RC_SUCCESS


@_xbsa_call()
def BSAEndTxn(bsaHandle: int, vote: int) -> int:
    """Commit (or conditionally commit) or abort everything the transaction did."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if s.state == S1:
        return _sequence(s, "BSAEndTxn without BSABeginTxn")
    if type(vote) is not int or vote not in (C.BSA_Vote_COMMIT, C.BSA_Vote_ABORT,
                                             C.NBBSA_Vote_CONDITIONAL):
        return _fail(C.BSA_RC_INVALID_VOTE, f"vote {vote!r} is not COMMIT, ABORT or CONDITIONAL")
    was = s.state
    doomed = s.doomed
    job_id = s.job_id
    if s.broken:
        s.state = S1
        if vote == C.BSA_Vote_ABORT:
            return C.BSA_RC_SUCCESS
        return _fail(C.BSA_RC_TRANSACTION_ABORTED,
                     "the connection was lost, so the transaction was aborted")
    if was == R_OBJ:
        try:
            s.conn.cancel_stream()
            _flush_logs(s)
        except (OSError, wire.ProtocolError) as exc:
            s.state = S1
            _lost(s, exc)
            return C.BSA_RC_SUCCESS if vote == C.BSA_Vote_ABORT else C.BSA_RC_TRANSACTION_ABORTED
    rc, _ = _request(s, "end", vote=vote)
    s.state = S1
    s.results.clear()
    s.cursor = False
    s.job_id = 0
    s.multi_list, s.multi_active = [], False
    if rc == C.BSA_RC_SUCCESS and vote != C.BSA_Vote_ABORT and (was in (B_OBJ, R_OBJ) or doomed):
        status, message = s.doom_cause      # (0, "") unless a server status doomed it
        if status:      # NBBSAGetServerError tells why, not how the abort itself went
            s.server_status, s.server_message = status, message
            return _fail(C.BSA_RC_TRANSACTION_ABORTED, f"the transaction had to be aborted: "
                                                       f"{message} (NetBackup status {status})")
        return _fail(C.BSA_RC_TRANSACTION_ABORTED, "the transaction had to be aborted")
    if rc == C.BSA_RC_ABORT_SYSTEM_ERROR and s.broken:
        if vote == C.BSA_Vote_ABORT:    # the server nullifies a lost session's transaction
            return C.BSA_RC_SUCCESS
        if s.unsent:                    # the server never had the commit to act on
            return _fail(C.BSA_RC_TRANSACTION_ABORTED, "the connection was lost before the "
                                                       "commit was sent; the transaction was "
                                                       "not committed")
        if was == B and not doomed and job_id:
            return _commit_outcome(s, _BackupOutcome(job_id))
        if was == D:
            return _commit_outcome(s, _DeleteOutcome(s.txn))
        return _fail(C.BSA_RC_TRANSACTION_ABORTED, "the connection was lost during commit; "
                                                   "the transaction was not committed")
    return rc


class _BackupOutcome:
    """How to ask whether a backup transaction committed: by its job."""

    def __init__(self, job_id: int) -> None:
        self.ask = {"job": job_id}
        self.unknown = (f"the connection was lost during commit, and whether backup job "
                        f"{job_id} committed is not known")
        self.look = f"'openxbsa jobs --jobid {job_id}' shows status 0 or 1 for a committed backup"
        self.job_id = job_id

    def committed(self, reply: dict[str, Any]) -> int:
        status = reply.get("status")
        if type(status) is not int:
            return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, f"{self.unknown}: the service's answer "
                                                      f"had no status; {self.look}")
        if status in (0, 1):
            return C.BSA_RC_SUCCESS
        return _fail(C.BSA_RC_TRANSACTION_ABORTED,
                     f"the connection was lost during commit; backup job {self.job_id} ended "
                     f"with status {status}: the transaction was not committed")


class _DeleteOutcome:
    """How to ask whether a delete transaction committed: by the token the server gave it
    at BSABeginTxn (none from a server that gives none: then it cannot be asked)."""

    def __init__(self, token: str) -> None:
        self.ask = {"txn": token} if token else None
        self.unknown = ("the connection was lost during commit, and whether the deletions "
                        "were made is not known")
        self.look = "query the objects again"

    @staticmethod
    def committed(reply: dict[str, Any]) -> int:
        if reply.get("committed") is True:
            return C.BSA_RC_SUCCESS
        return _fail(C.BSA_RC_TRANSACTION_ABORTED, "the connection was lost during commit; "
                                                   "the deletions were not made")


def _commit_outcome(s: _Session, asked: _BackupOutcome | _DeleteOutcome) -> int:
    """The connection broke after the commit was asked for, so the server may have
    committed: ask the service, on a session of its own, how the transaction ended (a
    backup by its job, deletions by the transaction's token). Committed is SUCCESS; ended
    otherwise is TRANSACTION_ABORTED; and when the service cannot say (it is down, or the
    transaction has not ended), ABORT_SYSTEM_ERROR — never an abort reported for a
    transaction whose work was kept."""
    unknown, look = asked.unknown, asked.look
    if asked.ask is None:
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, f"{unknown}: {look}")
    try:                    # bounded: a link that is down must not hold the call for minutes
        conn = Connection(s.opening.address, timeout=OUTCOME_TIMEOUT)
    except (OSError, wire.ProtocolError) as exc:
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, f"{unknown}: the service cannot be reached "
                                                  f"({exc}); once it is back, {look}")
    try:
        s.opening.init(conn)
        reply = conn.call("outcome", **asked.ask)
    except (AuthError, ServerError, OSError, wire.ProtocolError) as exc:
        conn.close()
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, f"{unknown}: asking the service failed "
                                                  f"({exc}); {look}")
    try:
        conn.call("terminate")
    except (ServerError, OSError, wire.ProtocolError):
        pass                            # the answer is in: a failed goodbye changes nothing
    conn.close()
    if not reply.get("done"):
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, f"{unknown}: the transaction is still "
                                                  f"under way on the server; {look}")
    return asked.committed(reply)


# ====================================================================== backup
def _descriptor_map(d: BSA_ObjectDescriptor) -> dict[str, Any] | str:
    owner, name = getattr(d, "objectOwner", None), getattr(d, "objectName", None)
    fields = {
        "bo": _text(getattr(owner, "bsa_ObjectOwner", None)),
        "ao": _text(getattr(owner, "app_ObjectOwner", None)),
        "sn": _text(getattr(name, "objectSpaceName", None)),
        "pn": _text(getattr(name, "pathName", None)),
        "ct": getattr(d, "copyType", None), "es": getattr(d, "estimatedSize", None),
        "rt": _text(getattr(d, "resourceType", None)), "ot": getattr(d, "objectType", None),
        "de": _text(getattr(d, "objectDescription", None)),
        "oi": getattr(d, "objectInfo", None),
    }
    if isinstance(fields["oi"], (bytearray, memoryview)):
        fields["oi"] = bytes(fields["oi"])
    return schema.descriptor_problem(fields) or fields


def _prepare_block(block: BSA_DataBlock32) -> None:
    """Tell the application what the service needs: no header, no trailer, 1 MiB buffers."""
    block.headerBytes = 0
    block.numBytes = 0
    block.shareId = 0
    block.shareOffset = 0
    if not isinstance(block.bufferLen, int) or block.bufferLen <= 0:
        block.bufferLen = PREFERRED_BUFFER


@_xbsa_call()
def BSACreateObject(bsaHandle: int, objectDescriptorPtr: BSA_ObjectDescriptor | None,
                    dataBlockPtr: BSA_DataBlock32 | None) -> int:
    """Create a new object (a new copy with a new copyId) and open its data stream."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if objectDescriptorPtr is None or dataBlockPtr is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "BSACreateObject needs a descriptor and a data block")
    if s.state not in (T0, B) or (s.state == T0 and s.queried):
        return _sequence(s, "BSACreateObject" + (" after a query" if s.queried else ""))
    fields = _descriptor_map(objectDescriptorPtr)
    if isinstance(fields, str):
        return _fail(C.BSA_RC_INVALID_OBJECTDESCRIPTOR, fields)
    d = objectDescriptorPtr
    if s.state == B and s.grant_next <= s.grant_end and not s.broken:
        # pipelined: a copy ID the server granted, createTime from the server's clock
        copy_id = s.grant_next
        ctime = int(s.grant_time + (time.monotonic() - s.grant_mono))
        try:
            s.conn.post("create", d=fields, p=[copy_id, ctime])
        except (OSError, wire.ProtocolError) as exc:
            return _lost(s, exc)
        s.grant_next += 1
        image, seq = s.image_seq[0], s.image_seq[1] + 1
    else:
        rc, reply = _request(s, "create", d=fields)
        if rc != C.BSA_RC_SUCCESS or reply is None:
            return rc
        copy_id, ctime = reply["copy_id"], reply["time"]
        s.grant_next, s.grant_end = copy_id + 1, reply["grant"]
        s.grant_time, s.grant_mono = reply["now"], time.monotonic()
        image, seq = reply["order"] >> 32, reply["order"] & 0xFFFFFFFF
        s.job_id = s.last_job_id = reply.get("job", 0)
        s.env.update(reply.get("env") or {})
    s.image_seq = (image, seq)
    d.copyId = copy_id
    d.createTime = schema.from_epoch(ctime)
    d.restoreOrder = (image << 32) | seq
    d.objectStatus = C.BSA_ObjectStatus_MOST_RECENT
    _prepare_block(dataBlockPtr)
    s.state = B_OBJ
    s.obj_zero = fields["es"] == 0
    s.short_sent = False
    return C.BSA_RC_SUCCESS


def _block_problem(block: Any, writable: bool) -> str | None:
    for name in ("bufferLen", "numBytes", "headerBytes", "shareOffset"):
        v = getattr(block, name, None)
        if type(v) is not int or not 0 <= v < 2**32:
            return f"{name} must be a 32-bit unsigned integer"
    buf = getattr(block, "bufferPtr", None)
    if buf is None:
        return "bufferPtr is NULL"
    try:
        view = memoryview(buf)
    except TypeError:
        return "bufferPtr is not a buffer"
    if writable and view.readonly:
        return "bufferPtr must be writable (a bytearray) to receive data"
    if block.headerBytes > block.bufferLen:
        return "headerBytes exceeds bufferLen"
    if writable:
        if block.bufferLen - block.headerBytes == 0:
            return "the buffer has no room for data after headerBytes"
        if view.nbytes < block.bufferLen:
            return f"bufferPtr holds {view.nbytes} bytes, fewer than bufferLen {block.bufferLen}"
    else:
        if block.headerBytes + block.numBytes > block.bufferLen:
            return "headerBytes + numBytes exceeds bufferLen"
        if view.nbytes < block.headerBytes + block.numBytes:
            return f"bufferPtr holds {view.nbytes} bytes, fewer than headerBytes + numBytes"
    return None


@_xbsa_call()
def BSASendData(bsaHandle: int, dataBlockPtr: BSA_DataBlock32 | None) -> int:
    """Send one buffer of the object being created; every buffer but the last must be full."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if dataBlockPtr is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "BSASendData needs a data block")
    if s.state != B_OBJ:
        return _sequence(s, "BSASendData without an object being created")
    if s.obj_zero:
        return _fail(C.BSA_RC_INVALID_CALL_SEQUENCE,
                     "the object was created with estimatedSize 0 and takes no data")
    problem = _block_problem(dataBlockPtr, writable=False)
    if problem:
        return _fail(C.BSA_RC_INVALID_DATABLOCK, problem)
    n, h = dataBlockPtr.numBytes, dataBlockPtr.headerBytes
    if n == 0:
        return C.BSA_RC_SUCCESS
    if s.short_sent:
        return _fail(C.BSA_RC_INVALID_DATABLOCK,
                     "a buffer that was not full was sent before; only the last may be short")
    if n < dataBlockPtr.bufferLen - h:
        s.short_sent = True
    if s.broken:
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, "the connection to the backup service is lost")
    try:
        s.conn.send_data(memoryview(dataBlockPtr.bufferPtr).cast("B")[h:h + n])
    except (OSError, wire.ProtocolError) as exc:
        return _lost(s, exc)
    return C.BSA_RC_SUCCESS


@_xbsa_call()
def BSAEndData(bsaHandle: int) -> int:
    """Close the object being created or read."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if s.state == B_OBJ:
        # Not acknowledged: a storage failure on the server dooms the transaction and is
        # reported by the next BSACreateObject or by BSAEndTxn (TRANSACTION_ABORTED).
        s.state = B
        if s.broken:
            return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, "the connection to the backup service is lost")
        try:
            s.conn.post("endobject")
        except (OSError, wire.ProtocolError) as exc:
            return _lost(s, exc)
        return C.BSA_RC_SUCCESS
    if s.state == R_OBJ:
        s.state = R
        if s.broken:
            return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, "the connection to the backup service is lost")
        try:
            s.conn.cancel_stream()
            _flush_logs(s)
            s.conn.post("enddata", flush=True)   # needs no answer
        except (OSError, wire.ProtocolError) as exc:
            return _lost(s, exc)
        return C.BSA_RC_SUCCESS
    return _sequence(s, "BSAEndData without an open object")


# ====================================================================== query
def _fill(d: BSA_ObjectDescriptor, item: list[Any]) -> None:
    (copy_id, bo, ao, sn, pn, ctime, ctype, order, est, rtype, otype, status, desc,
     info) = item
    d.rsv1 = 0
    d.objectOwner = BSA_ObjectOwner(bo, ao)
    d.objectName.objectSpaceName, d.objectName.pathName = sn, pn
    d.createTime = schema.from_epoch(ctime)
    d.copyType, d.copyId, d.restoreOrder = ctype, copy_id, order
    d.rsv2 = d.rsv3 = d.rsv4 = ""
    d.estimatedSize, d.resourceType, d.objectType = est, rtype, otype
    d.objectStatus, d.objectDescription, d.objectInfo = status, desc, bytes(info)


def _query_map(q: BSA_QueryDescriptor) -> dict[str, Any] | str:
    owner, name = getattr(q, "objectOwner", None), getattr(q, "objectName", None)
    tf, tt = _utc(getattr(q, "createTime_from", None)), _utc(getattr(q, "createTime_to", None))
    if tf is False or tt is False:
        return "createTime_from/createTime_to must be timezone-aware datetimes or None"
    fields = {
        "bo": _text(getattr(owner, "bsa_ObjectOwner", None)),
        "ao": _text(getattr(owner, "app_ObjectOwner", None)),
        "sn": _text(getattr(name, "objectSpaceName", None)),
        "pn": _text(getattr(name, "pathName", None)),
        "tf": tf, "tt": tt, "ct": getattr(q, "copyType", None),
        "ot": getattr(q, "objectType", None), "st": getattr(q, "objectStatus", None),
    }
    return schema.query_problem(fields) or fields


@_xbsa_call()
def BSAQueryObject(bsaHandle: int, queryDescriptorPtr: BSA_QueryDescriptor | None,
                   objectDescriptorPtr: BSA_ObjectDescriptor | None) -> int:
    """Search the catalog; the first match fills the descriptor, the rest follow by
    BSAGetNextQueryObject. Not allowed in a backup transaction."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if queryDescriptorPtr is None or objectDescriptorPtr is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "BSAQueryObject needs a query and a descriptor")
    if s.state not in (T0, R, D, M):
        return _sequence(s, "BSAQueryObject")
    fields = _query_map(queryDescriptorPtr)
    if isinstance(fields, str):
        return _fail(C.BSA_RC_INVALID_QUERYDESCRIPTOR, fields)
    s.queried = True
    s.cursor = False
    s.results.clear()
    rc, reply = _request(s, "query", q=fields)
    if rc != C.BSA_RC_SUCCESS or reply is None:
        return rc
    s.results.extend(reply["items"])
    s.more = bool(reply["more"])
    s.cursor = True
    rc = _refill(s)                   # a first page can be empty: objects deleted meanwhile
    if rc != C.BSA_RC_SUCCESS:
        return rc
    if not s.results:
        return _fail(C.BSA_RC_NO_MATCH, "no object matches the query")
    _fill(objectDescriptorPtr, s.results.popleft())
    return C.BSA_RC_SUCCESS


def _refill(s: _Session) -> int:
    """Fetch result pages until one has descriptors or the results are exhausted."""
    while not s.results and s.more:
        rc, reply = _request(s, "qnext")
        if rc != C.BSA_RC_SUCCESS or reply is None:
            return rc
        s.results.extend(reply["items"])
        s.more = bool(reply["more"])
    return C.BSA_RC_SUCCESS


@_xbsa_call()
def BSAGetNextQueryObject(bsaHandle: int,
                          objectDescriptorPtr: BSA_ObjectDescriptor | None) -> int:
    """The next match of the active query; BSA_RC_NO_MORE_DATA when there is none."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if objectDescriptorPtr is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "BSAGetNextQueryObject needs a descriptor")
    if s.state not in (T0, R, D, M) or not s.cursor:
        return _sequence(s, "BSAGetNextQueryObject without an active query")
    rc = _refill(s)
    if rc != C.BSA_RC_SUCCESS:
        return rc
    if not s.results:
        return _fail(C.BSA_RC_NO_MORE_DATA, "the query has no more results")
    _fill(objectDescriptorPtr, s.results.popleft())
    return C.BSA_RC_SUCCESS


# ====================================================================== restore
def _copy_id(value: Any) -> int | None:
    return value if type(value) is int and 0 < value < 2**64 else None


@_xbsa_call()
def BSAGetObject(bsaHandle: int, objectDescriptorPtr: BSA_ObjectDescriptor | None,
                 dataBlockPtr: BSA_DataBlock32 | None) -> int:
    """Start reading the object whose copyId is in the descriptor (one restore job)."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if objectDescriptorPtr is None or dataBlockPtr is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "BSAGetObject needs a descriptor and a data block")
    if s.state not in (T0, R):
        return _sequence(s, "BSAGetObject")
    copy_id = _copy_id(getattr(objectDescriptorPtr, "copyId", None))
    if copy_id is None:
        return _fail(C.BSA_RC_INVALID_COPYID,
                     f"copyId {getattr(objectDescriptorPtr, 'copyId', None)!r} is not valid")
    rc, reply = _request(s, "get", copy_id=copy_id)
    if rc != C.BSA_RC_SUCCESS or reply is None:
        return rc
    s.conn.start_stream()
    s.obj_size = reply["size"]
    s.received = 0
    s.ended = False
    s.job_id = s.last_job_id = reply.get("job", 0)
    _prepare_block(dataBlockPtr)
    s.state = R_OBJ
    return C.BSA_RC_SUCCESS


@_xbsa_call()
def BSAGetData(bsaHandle: int, dataBlockPtr: BSA_DataBlock32 | None) -> int:
    """Fill the buffer after headerBytes and set numBytes; BSA_RC_NO_MORE_DATA comes with
    the last bytes of the object."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if dataBlockPtr is None:
        return _fail(C.BSA_RC_NULL_ARGUMENT, "BSAGetData needs a data block")
    if s.state != R_OBJ:
        return _sequence(s, "BSAGetData without an object being read")
    problem = _block_problem(dataBlockPtr, writable=True)
    if problem:
        return _fail(C.BSA_RC_INVALID_DATABLOCK, problem)
    if s.broken:
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, "the connection to the backup service is lost")
    if s.ended:
        dataBlockPtr.numBytes = 0
        return _fail(C.BSA_RC_NO_MORE_DATA, "all of the object's data was already returned")
    h, cap = dataBlockPtr.headerBytes, dataBlockPtr.bufferLen - dataBlockPtr.headerBytes
    view = memoryview(dataBlockPtr.bufferPtr).cast("B")[h:h + cap]
    conn = s.conn
    try:
        n = conn.read_stream(view)
        s.received += n
        done = conn.at_end(s.received, s.obj_size)
    except (OSError, wire.ProtocolError) as exc:
        return _lost(s, exc)
    dataBlockPtr.numBytes = n
    if conn.stream_error is not None:
        err = conn.stream_error
        s.doomed = True
        s.server_status = int(err.get("status", 130))
        s.doom_cause = (s.server_status, str(err.get("msg")))
        return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR,
                     f"{err.get('msg')} (NetBackup status {s.server_status})")
    if done:
        if s.received != s.obj_size:
            s.doomed = True
            return _fail(C.BSA_RC_ABORT_SYSTEM_ERROR, "the object stream ended early")
        s.ended = True
        _set_error("")
        return C.BSA_RC_NO_MORE_DATA
    return C.BSA_RC_SUCCESS


# ====================================================================== delete
@_xbsa_call()
def BSADeleteObject(bsaHandle: int, copyId: int) -> int:
    """Delete the object copy at commit; the space it used is reclaimed."""
    s = _session(bsaHandle)
    if s is None:
        return _bad_handle(bsaHandle)
    if s.state not in (T0, D):
        return _sequence(s, "BSADeleteObject")
    copy_id = _copy_id(copyId)
    if copy_id is None:
        return _fail(C.BSA_RC_INVALID_COPYID, f"copyId {copyId!r} is not valid")
    rc, _ = _request(s, "delete", copy_id=copy_id)
    if rc == C.BSA_RC_SUCCESS:
        s.state = D
    return rc
