"""One XBSA session on the server (NetBackup's bprd + bpbrm for that session).

A ``Session`` reads control messages and data frames from one client connection, keeps the
XBSA state of §9.2, and owns the state of the open transaction. ``_end_transaction`` is the
one place that decides between a catalog commit and a storage abort.
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openxbsa import errors, wire
from openxbsa.catalog.store import (
    JOB_BACKUP, JOB_DONE, JOB_IMAGE_DELETE, JOB_RESTORE, ObjectRow, QueryFilter, Scope, TxnMark,
    unavailable,
)
from openxbsa.media.stream import Receiver, peer_has_spoken, send_object
from openxbsa.server import logs
from openxbsa.storage.base import ImageWriter, ObjectReader, StoredObject
from openxbsa.wire import schema

if TYPE_CHECKING:
    from openxbsa.server.service import Server

log = logging.getLogger("openxbsa.requests")
clientd_log = logging.getLogger("openxbsa.clientd")

# Session states (reference §9.2)
S1, T0, B, B_OBJ, R, R_OBJ, D, M = "S1", "T0", "B", "B*", "R", "R*", "D", "M"
DEFAULT_FEATURE = "DataStore"
LOG_SEVERITY = {0: "info", 1: "warning", 2: "error"}   # NBBSA_MS_INFO/WARNING/ERROR

VOTE_COMMIT, VOTE_ABORT, VOTE_CONDITIONAL = 1, 2, 99
QUERY_PAGE = 1000
GRANT = 1024          # copy IDs granted per answered create
PROGRESS_EVERY = 1.0  # seconds between progress records of a running job
FLUSH_ROWS = 2000     # ended objects kept in memory before they go to the catalog
PROVIDER = "OpenXBSA/OpenXBSA/0.1.0"
MULTI_MAX = 1_000_000   # objects one multiple-object restore may list
MULTI_CHECK = 50_000    # of them checked visible per catalog round
_TOKEN = re.compile(r"[0-9a-f]{32}")      # a transaction token, as op_begin makes them
OUTCOME_WAIT = 30.0   # seconds an outcome request waits for the job it asks about to end

# NetBackup status codes used for jobs that do not end in success
ST_APP_ABORT = 6       # the backup failed to back up the requested files
ST_RESTORE_FAIL = 5    # the restore failed to recover the requested files
ST_CLIENT_GONE = 50    # client process aborted
ST_NET_BROKEN = 40     # network connection broken
ST_NET_TIMEOUT = 41    # network connection timed out


@dataclass(frozen=True)
class Peer:
    """Who is on the other end, as established by the transport."""

    client_host: str
    os_user: str
    uid: int | None
    address: str


@dataclass
class BackupState:
    job_id: int
    image_id: int
    backup_id: str
    writer: ImageWriter
    policy: dict[str, Any]
    rows: list[ObjectRow] = field(default_factory=list)   # ended, not yet in the catalog
    count: int = 0             # objects ended so far (in the catalog or in rows)
    current: ObjectRow | None = None
    receiver: Receiver | None = None
    seq: int = 0               # objects created so far in this transaction
    bytes: int = 0             # bytes of the objects ended so far
    progress_at: float = 0.0   # when progress was last recorded (monotonic)
    slot_held: bool = True     # it holds one of its storage unit's concurrent-job slots
    grant_next: int = 0        # copy IDs granted to the client for pipelined creates
    grant_end: int = -1
    grant_time: float = 0.0


@dataclass
class RestoreState:
    job_id: int
    row: ObjectRow
    reader: ObjectReader | None = None
    finished: bool = False
    own_job: bool = True       # False inside a multiple-object restore (one job for all)


@dataclass
class MultiState:
    """NBBSAGetMultipleObjects: one restore job for a list of objects read in list order
    (all checked visible at the start; each row is read again when its object is)."""

    job_id: int
    copy_ids: list[int]
    pos: int = 0
    complete: int = 0
    kbytes: int = 0


class Session:
    def __init__(self, server: Server, sock: socket.socket, address: str) -> None:
        self.server = server
        self.catalog = server.catalog
        self.channel = wire.Channel(sock)
        self.address = address
        self.peer: Peer | None = None
        self.env: dict[str, str] = {}
        self.owner = ("", "")
        self.state = S1
        self.queried = False
        self.cursor: tuple[list[tuple[int, bool]], int] | None = None
        self.backup: BackupState | None = None
        self.restore: RestoreState | None = None
        self.deletes: list[int] = []
        self.multi: MultiState | None = None
        self.multi_pending: list[int] = []      # a long list, arriving in pieces (multiadd)
        self.last_job = 0
        self.doomed: errors.OpenXBSAError | None = None
        self.cancelled = ""         # why an administrator ended the session, if one did
        self.nonce = secrets.token_hex(16)
        self.txn = ""               # the open transaction's token, kept until it has ended
        self._frame_buffer: memoryview | None = None

    def frame_buffer(self) -> memoryview:
        if self._frame_buffer is None:
            self._frame_buffer = memoryview(bytearray(wire.MAX_DATA_FRAME))
        return self._frame_buffer

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        try:
            self.channel.send_message(wire.REP, {
                "hello": wire.PROTOCOL_VERSION, "nonce": self.nonce, "provider": PROVIDER,
                "delimiter": "/"})
            self._serve()
        except wire.ConnectionClosed:
            self._abandon(ST_CLIENT_GONE, "the client closed the connection during the job")
        except TimeoutError as exc:
            # the peer stopped answering (see wire.tune), or never completed BSAInit
            self._abandon(ST_NET_TIMEOUT, f"network connection timed out: {exc}")
        except OSError as exc:
            self._abandon(ST_NET_BROKEN, f"network connection broken: {exc}")
        except wire.ProtocolError as exc:
            log.warning("protocol error from %s: %s", self.address, exc)
            self._reply_error(errors.InvalidRequest(str(exc)))
            self._abandon(ST_NET_BROKEN, f"protocol violation by the client: {exc}")
        except Exception as exc:  # a bug must cost one session, never the server
            down = unavailable(exc)
            if down is None:
                log.exception("session %s failed", self.address)
                self._abandon(130, "internal error in the session; see the server log")
            else:   # the session ends, but the application's next call learns why
                log.error("session %s ended: %s", self.address, down.message)
                self._reply_error(down)
                self._abandon(down.status, down.message)
        finally:
            self.channel.close()

    def _serve(self) -> None:
        while True:
            ftype, length = self.channel.read_header()
            if ftype == wire.DATA:
                if self.state != B_OBJ or self.backup is None or self.backup.receiver is None:
                    raise wire.ProtocolError("data frame outside an object being created")
                self.backup.receiver.take(self.channel, length)
                if length >= wire.STREAM_FRAME // 2:     # a large object: progress as it flows
                    bk = self.backup
                    if time.monotonic() - bk.progress_at >= PROGRESS_EVERY and bk.current:
                        bk.progress_at = time.monotonic()
                        self.catalog.update_job(bk.job_id, files=bk.count,
                                                kbytes=(bk.bytes + bk.receiver.bytes) // 1024,
                                                current_object=bk.current.path_name)
                continue
            if ftype != wire.REQ:
                raise wire.ProtocolError(f"unexpected frame type {ftype} from the client")
            msg = wire.unpack(self.channel.read_exact(length))
            op = msg.get("op")
            if op == "cancel":      # a cancel that crossed the end of a stream: nothing to do
                continue
            handler = self.HANDLERS.get(op) if isinstance(op, str) else None
            if handler is None:
                self._reply_error(errors.InvalidRequest(f"unknown operation {op!r}"))
                continue
            if self.peer is None and op != "init":
                raise wire.ProtocolError("the first request must be init")
            try:
                reply = handler(self, msg)
            except errors.OpenXBSAError as exc:
                self._reply_error(exc)
                continue
            if reply is _CLOSE:
                self.channel.send_message(wire.REP, {"ok": True})
                return
            if reply is not _STREAMED:
                reply["ok"] = True
                self.channel.send_message(wire.REP, reply)

    def _reply_error(self, exc: errors.OpenXBSAError) -> None:
        try:
            self.channel.send_message(wire.REP, {"ok": False, "kind": exc.kind,
                                                 "status": exc.status, "msg": exc.message})
        except OSError:
            pass

    # ------------------------------------------------------------------ helpers
    def _need(self, *states: str) -> None:
        if self.state not in states:
            raise errors.CallSequenceError(f"not allowed in state {self.state}")

    def _visible(self, copy_id: int) -> ObjectRow:
        """The object, if this session's user and client may see it."""
        row = self.catalog.visible_object(self.scope, copy_id)
        if row is None:
            raise errors.ObjectNotFound(f"copy ID {copy_id} not found for this user and client")
        return row

    @property
    def scope(self) -> Scope:
        assert self.peer is not None
        host = self.peer.client_host
        wanted = self.env.get("NBBSA_CLIENT_HOST", host)
        if self.server.config.allow_redirected_restore:
            host = wanted  # another client's objects are visible only when the server allows it
        admin = self.peer.uid == 0 and self.server.config.root_sees_all_users
        return Scope(client_host=host, os_user=None if admin else self.peer.os_user)

    # ------------------------------------------------------------------ session
    def op_init(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.peer is not None:
            raise errors.CallSequenceError("a session is already open on this connection")
        parsed = _environment(msg.get("env"))
        bad_version = schema.version_problem(parsed)
        if bad_version:
            raise errors.BY_KIND[bad_version[0]](bad_version[1])
        owner = msg.get("owner")
        if (not isinstance(owner, list) or len(owner) != 2
                or any(schema.text_problem("owner", o, schema.OWNER_SIZE) for o in owner)):
            raise errors.InvalidRequest("object owner is malformed")
        self.peer = self.server.authenticate(self, msg)
        self.owner = (owner[0], owner[1])
        parsed.setdefault("BSA_DELIMITER", "/")
        parsed["BSA_SERVICE_PROVIDER"] = PROVIDER
        parsed.setdefault("BSA_SERVICE_HOST", self.server.config.listen)
        parsed.setdefault("NBBSA_CLIENT_HOST", self.peer.client_host)
        self.env = parsed
        self.channel.sock.settimeout(None)   # an open session may idle between calls
        log.info("session opened: user %s on %s from %s", self.peer.os_user,
                 self.peer.client_host, self.address)
        return {"env": self.env, "client": self.peer.client_host, "user": self.peer.os_user}

    def op_setenv(self, msg: dict[str, Any]) -> dict[str, Any]:
        updates = _environment(msg.get("env"))
        for key, value in updates.items():
            refused = schema.env_change_problem(key, self.env.get(key), value, self.state != S1)
            if refused:
                raise errors.BY_KIND[refused[0]](refused[1])
        self.env.update(updates)
        return {"env": self.env}

    def op_terminate(self, msg: dict[str, Any]) -> object:
        if self.state != S1:
            self._end_transaction(VOTE_ABORT, ST_APP_ABORT, "session terminated inside a transaction")
        return _CLOSE

    def op_begin(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._need(S1)
        feature = self.env.get("NBBSA_FEATURE_ID") or DEFAULT_FEATURE
        if feature not in self.server.config.features:
            raise errors.FeatureNotLicensed(f"feature {feature} is not licensed on this server")
        self.state = T0
        self.queried = False
        self.cursor = None
        self.doomed = None
        self.txn = secrets.token_hex(16)
        return {"txn": self.txn}

    def op_end(self, msg: dict[str, Any]) -> dict[str, Any]:
        vote = msg.get("vote")
        if vote not in (VOTE_COMMIT, VOTE_ABORT, VOTE_CONDITIONAL) or type(vote) is not int:
            raise errors.InvalidVote(f"vote {vote!r} is not COMMIT, ABORT or CONDITIONAL")
        if self.state == S1:
            raise errors.CallSequenceError("no transaction is open")
        if vote != VOTE_ABORT and (self.state in (B_OBJ, R_OBJ) or self.doomed):
            why = (str(self.doomed) if self.doomed else
                   "an object was still open when the transaction was committed")
            # the backup job fails with what doomed it (a full disk is 129, a media write
            # error 84), not as aborted by the application, which voted to commit
            status = self.doomed.status if self.doomed else ST_APP_ABORT
            self._end_transaction(VOTE_ABORT, status, f"transaction aborted: {why}")
            raise errors.TransactionAborted(why)
        self._end_transaction(vote, ST_APP_ABORT, "transaction aborted by the application")
        return {}

    # ------------------------------------------------------------------ backup
    def op_create(self, msg: dict[str, Any]) -> object:
        """Create an object. The first create of a transaction (and one per GRANT objects) is
        answered, and grants the client the next copy IDs; the others arrive pipelined with
        a granted copy ID and a createTime the client derived from the server's clock, and
        need no answer. Our library validates before sending, so a pipelined create the
        server refuses comes from a broken peer: the connection is dropped."""
        if self.state == T0 and self.queried:
            raise errors.CallSequenceError("a query transaction cannot create objects")
        granted = msg.get("p")
        if granted is not None:
            if self.state != B or self.backup is None:
                raise wire.ProtocolError("pipelined create outside a backup transaction")
            try:
                self._new_object(msg.get("d"), granted)
            except errors.OpenXBSAError as exc:
                raise wire.ProtocolError(f"pipelined create refused: {exc}") from None
            return _STREAMED
        self._need(T0, B)
        problem = schema.descriptor_problem(msg.get("d"))
        if problem:
            raise errors.InvalidDescriptor(problem)
        if self.doomed is not None:
            raise errors.OpenXBSAError(f"an earlier object of this transaction failed: "
                                       f"{self.doomed}", status=self.doomed.status)
        filled = {}
        if self.backup is None:
            self.backup = self.server.start_backup(self)
            self.last_job = self.backup.job_id
            logs.set_job(self.last_job)
            filled = {k: self.env[k] for k in ("NBBSA_POLICY", "NBBSA_SCHEDULE")}
        bk = self.backup
        bk.grant_next, bk.grant_end = self.catalog.reserve_copy_ids(GRANT)
        bk.grant_time = time.time()
        row = self._new_object(msg["d"], [bk.grant_next, int(bk.grant_time)], checked=True)
        return {"copy_id": row.copy_id, "time": row.create_time, "now": bk.grant_time,
                "grant": bk.grant_end, "order": (bk.image_id << 32) | row.seq, "job": bk.job_id,
                "env": filled}

    def _new_object(self, d: Any, granted: Any, checked: bool = False) -> ObjectRow:
        problem = None if checked else schema.descriptor_problem(d)
        if problem:
            raise errors.InvalidDescriptor(problem)
        bk = self.backup
        assert bk is not None and self.peer is not None
        if (not isinstance(granted, list) or len(granted) != 2
                or any(type(v) is not int for v in granted)):
            raise errors.InvalidRequest("malformed copy ID grant")
        copy_id, ctime = granted
        if copy_id != bk.grant_next or copy_id > bk.grant_end:
            raise errors.InvalidRequest(f"copy ID {copy_id} was not granted to this session")
        if not int(bk.grant_time) <= ctime <= time.time() + 1:
            raise errors.InvalidRequest("createTime is not the server's time")
        bk.grant_next += 1
        bk.seq += 1
        row = ObjectRow(
            copy_id=copy_id, image_id=bk.image_id, seq=bk.seq,
            os_user=self.peer.os_user, client_host=self.peer.client_host,
            bsa_owner=d["bo"], app_owner=d["ao"], space_name=d["sn"], path_name=d["pn"],
            create_time=ctime, copy_type=d["ct"], object_type=d["ot"], resource_type=d["rt"],
            description=d["de"], object_info=bytes(d["oi"]), estimated_size=d["es"], size=0,
            offset=0, checksum="")
        bk.writer.begin_object()
        bk.current = row
        bk.receiver = Receiver(bk.writer, self.frame_buffer())
        self.state = B_OBJ
        return row

    def op_enddata(self, msg: dict[str, Any]) -> object:
        """End of an object being read; posted by the client, never answered."""
        if self.state != R_OBJ:
            raise wire.ProtocolError("enddata without an object being read")
        self._end_restore_object()
        return _STREAMED

    def op_endobject(self, msg: dict[str, Any]) -> object:
        """End of a created object. Not acknowledged, so that a backup of many small objects
        costs one round trip each; a storage failure dooms the transaction and is reported
        by the next create or by the commit (TRANSACTION_ABORTED)."""
        if self.state != B_OBJ:
            raise wire.ProtocolError("endobject without an object being created")
        bk = self.backup
        assert bk is not None and bk.current is not None and bk.receiver is not None
        receiver, row = bk.receiver, bk.current
        failure = receiver.error
        try:
            stored = bk.writer.end_object()
        except errors.OpenXBSAError as exc:      # no reply is awaited: doom the transaction
            failure = failure or exc
        bk.current, bk.receiver = None, None
        self.state = B
        if failure is not None:
            self.doomed = failure
            self.server.jobs.log(bk.job_id, "error", f"object {row.path_name}: {failure}")
        else:
            row.offset, row.size, row.checksum = stored.offset, stored.size, stored.checksum
            bk.rows.append(row)
            bk.count += 1
            bk.bytes += stored.size
            if len(bk.rows) >= FLUSH_ROWS:        # bounded memory for any number of objects
                self.catalog.add_objects(bk.rows)  # (invisible until the image commits)
                bk.rows = []
        self._progress(bk, row.path_name)
        return _STREAMED

    def _progress(self, bk: BackupState, current: str) -> None:
        """Record a running backup's progress in its job, at most once a second."""
        now = time.monotonic()
        if now - bk.progress_at < PROGRESS_EVERY:
            return
        bk.progress_at = now
        self.catalog.update_job(bk.job_id, files=bk.count, kbytes=bk.bytes // 1024,
                                current_object=current)

    # ------------------------------------------------------------------ query
    def op_query(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._need(T0, R, D, M)
        q = msg.get("q")
        problem = schema.query_problem(q)
        if problem:
            raise errors.InvalidQuery(problem)
        assert isinstance(q, dict)
        flt = QueryFilter(
            bsa_owner=q["bo"], app_owner=q["ao"], space_name=q["sn"], path_name=q["pn"],
            time_from=q["tf"], time_to=q["tt"], copy_type=None if q["ct"] == 1 else q["ct"],
            object_type=None if q["ot"] == 1 else q["ot"],
            most_recent=None if q["st"] == 1 else q["st"] == 2)
        self.queried = True
        self.cursor = None
        ids = self.catalog.query_ids(self.scope, flt)
        if not ids:
            raise errors.NoMatch("no object matches the query")
        self.cursor = (ids, 0)
        return self._page()

    def _page(self) -> dict[str, Any]:
        assert self.cursor is not None
        ids, pos = self.cursor
        chunk = ids[pos:pos + QUERY_PAGE]
        self.cursor = (ids, pos + len(chunk))
        rows = self.catalog.objects_by_ids(chunk)
        return {"items": [_describe(r) for r in rows], "more": pos + len(chunk) < len(ids)}

    def op_qnext(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._need(T0, R, D, M)
        if self.cursor is None:
            raise errors.CallSequenceError("no query is active")
        return self._page()

    # ------------------------------------------------------------------ restore
    def op_get(self, msg: dict[str, Any]) -> object:
        self._need(T0, R)
        copy_id = _copy_id(msg)
        assert self.peer is not None
        multi = self.multi
        if multi is not None:
            if multi.pos >= len(multi.copy_ids) or multi.copy_ids[multi.pos] != copy_id:
                expected = (multi.copy_ids[multi.pos] if multi.pos < len(multi.copy_ids)
                            else "none: the list is exhausted")
                raise errors.CallSequenceError(
                    f"a multiple-object restore reads its list in order; next is {expected}")
        row = self._visible(copy_id)
        unit = self.server.storage(row.stunit)
        reader = unit.open_reader(row.location, StoredObject(row.offset, row.size, row.checksum))
        if multi is not None:
            multi.pos += 1
            job_id = multi.job_id
        else:
            try:
                job_id = self.server.jobs.start(
                    job_type=JOB_RESTORE, client=self.peer.client_host, owner=self.peer.os_user,
                    stunit=row.stunit, backup_id=row.backup_id, current_object=row.path_name,
                    message=f"restore of {row.path_name} (copy ID {copy_id}) from "
                            f"{row.backup_id}")
            except BaseException:
                reader.close()                # an open reader holds back a pool's repack
                raise
            self.last_job = job_id
            logs.set_job(job_id)
        self.restore = RestoreState(job_id=job_id, row=row, reader=reader, own_job=multi is None)
        self.state = R_OBJ
        self.channel.send_message(wire.REP, {"ok": True, "size": row.size, "job": job_id},
                                  flush=False)
        self._stream_restore()
        return _STREAMED

    def _stream_restore(self) -> None:
        rs = self.restore
        assert rs is not None and rs.reader is not None
        cancelled = False
        try:
            done = send_object(self.channel, rs.reader, lambda: peer_has_spoken(self.channel))
            if not done:
                cancelled = True
                self._expect_cancel()
            self.channel.send_message(wire.EOD, {"ok": True, "cancelled": cancelled})
        except errors.OpenXBSAError as exc:
            if rs.own_job:
                self.server.jobs.finish(rs.job_id, exc.status, exc.message)
            else:
                self.server.jobs.log(rs.job_id, "error", f"{rs.row.path_name}: {exc.message}")
            self.channel.send_message(wire.EOD, {"ok": False, "kind": exc.kind,
                                                 "status": exc.status, "msg": exc.message})
            self.doomed = exc
        finally:
            rs.reader.close()
            rs.reader = None
        rs.finished = not cancelled

    def _expect_cancel(self) -> None:
        ftype, length = self.channel.read_header()
        if ftype != wire.REQ:
            raise wire.ProtocolError("expected a cancel while streaming")
        msg = wire.unpack(self.channel.read_exact(length))
        if msg.get("op") != "cancel":
            raise wire.ProtocolError(f"expected a cancel while streaming, got {msg.get('op')!r}")

    def _end_restore_object(self) -> None:
        rs = self.restore
        assert rs is not None
        self.restore = None
        self.state = R
        kb = (rs.row.size + 1023) // 1024
        if not rs.own_job:
            assert self.multi is not None
            if rs.finished:
                self.multi.complete += 1
                self.multi.kbytes += kb
            return
        status = 0 if rs.finished else ST_RESTORE_FAIL
        self.server.jobs.finish(rs.job_id, status,
                                "restore complete" if status == 0 else
                                "the application ended the restore before all data was read",
                                kbytes=kb if rs.finished else 0, files=1 if rs.finished else 0)

    # ------------------------------------------------------------------ delete
    def op_delete(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._need(T0, D)
        copy_id = _copy_id(msg)
        self._visible(copy_id)
        self.deletes.append(copy_id)
        self.state = D
        return {}

    # ------------------------------------------------------------------ NetBackup extensions
    def op_multiadd(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A piece of a multiple-object restore list too long for one message; the last
        piece comes with multiget. Any failure drops the pieces gathered so far."""
        self._need(T0, R)
        try:
            if self.multi is not None:
                raise errors.CallSequenceError("a multiple-object restore is already active")
            self.multi_pending += self._multi_piece(msg, len(self.multi_pending))
        except errors.OpenXBSAError:
            self.multi_pending = []
            raise
        return {}

    @staticmethod
    def _multi_piece(msg: dict[str, Any], before: int) -> list[int]:
        ids = msg.get("copy_ids")
        if (not isinstance(ids, list) or not ids
                or not all(map(_is_id, ids))):
            raise errors.CallSequenceError("the multiple-object restore list is empty or "
                                           "holds something that is not a copy ID")
        if before + len(ids) > MULTI_MAX:
            raise errors.InvalidRequest(f"a multiple-object restore lists at most {MULTI_MAX} "
                                        "objects")
        return ids

    def op_multiget(self, msg: dict[str, Any]) -> dict[str, Any]:
        """NBBSAGetMultipleObjects: one restore job for the whole list."""
        self._need(T0, R)
        pending, self.multi_pending = self.multi_pending, []
        if self.multi is not None:
            raise errors.CallSequenceError("a multiple-object restore is already active")
        ids = pending + self._multi_piece(msg, len(pending))
        assert self.peer is not None
        first = self._visible(ids[0])                # the job is named after it
        seen: set[int] = set()
        for i in range(0, len(ids), MULTI_CHECK):    # in pieces: the rows are not kept
            seen.update(row.copy_id for row in
                        self.catalog.visible_objects(self.scope, ids[i:i + MULTI_CHECK]))
        missing = next((c for c in ids if c not in seen), None)
        if missing is not None:
            raise errors.ObjectNotFound(f"copy ID {missing} not found for this user and client")
        job_id = self.server.jobs.start(
            job_type=JOB_RESTORE, client=self.peer.client_host, owner=self.peer.os_user,
            stunit=first.stunit, backup_id=first.backup_id,
            message=f"multiple-object restore of {len(ids)} objects")
        self.multi = MultiState(job_id=job_id, copy_ids=ids)
        self.last_job = job_id
        logs.set_job(job_id)
        self.state = R
        return {"job": job_id}

    def op_multiend(self, msg: dict[str, Any]) -> dict[str, Any]:
        """NBBSAEndGetMultipleObjects."""
        if self.multi is None or self.state != R:
            raise errors.CallSequenceError("no multiple-object restore is active")
        self._finish_multi()
        return {}

    def _finish_multi(self) -> None:
        multi = self.multi
        assert multi is not None
        self.multi = None
        whole = multi.complete == len(multi.copy_ids)
        self.server.jobs.finish(
            multi.job_id, 0 if whole else 1,
            f"{multi.complete} of {len(multi.copy_ids)} objects restored",
            kbytes=multi.kbytes, files=multi.complete)

    def op_deleteimage(self, msg: dict[str, Any]) -> dict[str, Any]:
        """NBBSADeleteImage: the whole image holding the object goes now, not at commit."""
        self._need(T0, D)
        copy_id = _copy_id(msg)
        row = self._visible(copy_id)
        assert self.peer is not None
        job_id = self.server.jobs.start(
            job_type=JOB_IMAGE_DELETE, client=self.peer.client_host, owner=self.peer.os_user,
            stunit=row.stunit, backup_id=row.backup_id,
            message=f"image {row.backup_id} deleted by the application (copy ID {copy_id})")
        files = self.server.delete_image(row.image_id)
        self.server.jobs.finish(job_id, 0, f"image {row.backup_id} deleted", files=files)
        self.state = D
        return {"backup_id": row.backup_id}

    def op_mediaids(self, msg: dict[str, Any]) -> dict[str, Any]:
        """NBBSAGetMediaIds: the media IDs of the image holding the object (a media-IDs txn)."""
        self._need(T0, M)
        copy_id = _copy_id(msg)
        row = self._visible(copy_id)
        self.state = M
        return {"media": self.catalog.image_media(row.image_id)}

    def op_jobinfo(self, msg: dict[str, Any]) -> dict[str, Any]:
        job_id = msg.get("job")
        if type(job_id) is not int or job_id != self.last_job or not job_id:
            raise errors.CallSequenceError("no job belongs to this session now")
        job = self.catalog.job(job_id)
        if job is None:
            raise errors.ObjectNotFound(f"job {job_id} does not exist")
        return {"jobinfo": job}

    def op_outcome(self, msg: dict[str, Any]) -> dict[str, Any]:
        """How a transaction ended whose commit reply its client never got (the connection
        broke while the commit was under way), asked on a new session: a backup by its job
        (``job``), which the catalog ends in the same transaction that makes the image
        visible; deletions by the transaction's token (``txn``, given at BSABeginTxn), which
        the catalog records in the same transaction as the deletions. A transaction still
        under way (its session has not yet noticed that the connection is gone, or is still
        committing) is waited for, up to OUTCOME_WAIT. Only the client and user whose
        transaction it was are answered."""
        self._need(S1)
        if "txn" in msg:
            return self._txn_outcome(msg["txn"])
        assert self.peer is not None
        job_id = msg.get("job")
        if not _is_id(job_id):
            raise errors.InvalidRequest(f"job ID {job_id!r} is not valid")
        deadline = time.monotonic() + OUTCOME_WAIT
        while True:
            job = self.catalog.job(job_id)
            if (job is None or job["job_type"] != JOB_BACKUP
                    or job["client"] != self.peer.client_host
                    or job["owner"] != self.peer.os_user):
                raise errors.ObjectNotFound(f"job {job_id} is not a backup of client "
                                            f"{self.peer.client_host}, user {self.peer.os_user}")
            done = job["state"] == JOB_DONE
            if done or time.monotonic() >= deadline or self.server.stopping:
                return {"done": done, "status": job["status"] if done else None}
            time.sleep(0.05)

    def _txn_outcome(self, token: object) -> dict[str, Any]:
        assert self.peer is not None
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise errors.InvalidRequest(f"transaction token {token!r} is not valid")
        mark = TxnMark(token, self.peer.client_host, self.peer.os_user)
        deadline = time.monotonic() + OUTCOME_WAIT
        while any(s is not self and s.txn == token and s.peer is not None
                  and (s.peer.client_host, s.peer.os_user) == (mark.client_host, mark.os_user)
                  for s in self.server.sessions()):
            if time.monotonic() >= deadline or self.server.stopping:
                return {"done": False}
            time.sleep(0.05)
        return {"done": True, "committed": self.catalog.txn_committed(mark)}

    def op_logmsg(self, msg: dict[str, Any]) -> object:
        """NBBSALogMsg: the application's message into its job's log. Never answered."""
        mtype, text, source = msg.get("type"), msg.get("message"), msg.get("source")
        if type(mtype) is not int or not isinstance(text, str) or not isinstance(source, str):
            log.warning("malformed application log message from %s ignored", self.address)
            return _STREAMED
        severity = LOG_SEVERITY.get(mtype, "info")
        line = f"[{source}] {text.rstrip()}"[:4096] if source else text.rstrip()[:4096]
        if self.last_job:
            self.server.jobs.log(self.last_job, severity, line)
        else:
            log.log(logging.ERROR if severity == "error" else logging.INFO,
                    "application message from %s: %s", self.address, line)
        return _STREAMED

    def op_clientd(self, msg: dict[str, Any]) -> object:
        """The peer is its host's client daemon (bpcd/bphdb): from now on this connection
        carries scheduled runs to it, their output back into the job log, and their end."""
        assert self.peer is not None
        if self.state != S1:
            raise errors.CallSequenceError("a client daemon registers outside transactions")
        if self.peer.uid != 0:
            raise errors.AccessDenied("only root may run the client daemon")
        scheduler = self.server.scheduler
        link = scheduler.attach(self.peer.client_host)

        def send(message: dict[str, Any]) -> None:
            with link.lock:
                self.channel.send_message(wire.REP, message)

        link.send = send
        clientd_log.info("client daemon of %s registered from %s", self.peer.client_host,
                         self.address)
        self.channel.send_message(wire.REP, {"ok": True, "host": self.peer.client_host})
        try:
            while True:
                try:
                    run = link.runs.get(timeout=0.5)
                except queue.Empty:
                    if peer_has_spoken(self.channel):
                        self.channel.read_header()     # a closed connection raises here
                        raise wire.ProtocolError("the client daemon spoke out of turn")
                    continue
                self._serve_run(run, send)
                scheduler.wake()
        finally:
            scheduler.detach(link)

    def _serve_run(self, run: dict[str, Any], send: Any) -> None:
        job_id = run["job"]
        with logs.job_context(job_id):
            try:
                clientd_log.info("run %d sent to %s: %s", job_id, self.peer.client_host if
                                 self.peer else "?", ", ".join(run["scripts"]))
                send({"run": run})
                while True:
                    msg = self.channel.read_message(wire.REQ)
                    if msg.get("op") == "joblog" and isinstance(msg.get("line"), str):
                        severity = msg.get("severity") if msg.get("severity") in LOG_SEVERITY.values() \
                            else "info"
                        self.server.jobs.log(job_id, severity, msg["line"][:4096])
                    elif (msg.get("op") == "jobdone" and type(msg.get("status")) is int
                          and 0 <= msg["status"] < 2**31):
                        status = msg["status"]
                        self.server.jobs.finish(job_id, status, "the policy's scripts finished")
                        return
                    else:
                        raise wire.ProtocolError("unexpected message from the client daemon")
            except (wire.ProtocolError, OSError):
                clientd_log.error("the client daemon went away during run %d", job_id)
                self.server.jobs.finish(job_id, ST_CLIENT_GONE,
                                        "the client daemon went away during the run")
                raise

    def op_feature(self, msg: dict[str, Any]) -> dict[str, Any]:
        feature = msg.get("feature")
        if not isinstance(feature, str):
            raise errors.InvalidRequest("a feature ID is a string")
        if feature not in self.server.config.features:
            raise errors.FeatureNotLicensed(f"feature {feature} is not licensed on this server")
        return {}

    # ------------------------------------------------------------------ transaction end
    def _end_transaction(self, vote: int, abort_status: int, why: str) -> None:
        """Commit or abort everything the open transaction did — the only place that decides."""
        try:
            self._finish_transaction(vote, abort_status, why)
        finally:
            self.txn = ""           # ended: an outcome question waits no longer
            logs.set_job(None)

    def _finish_transaction(self, vote: int, abort_status: int, why: str) -> None:
        bk, rs, deletes = self.backup, self.restore, self.deletes
        self.backup, self.restore, self.deletes = None, None, []
        self.multi_pending = []
        self.state, self.cursor, self.queried = S1, None, False
        if rs is not None:
            if rs.reader is not None:
                rs.reader.close()
            if rs.own_job:      # the network's own status where it failed, as for a backup
                self.server.jobs.finish(rs.job_id, abort_status if abort_status in
                                        (ST_NET_BROKEN, ST_NET_TIMEOUT) else ST_RESTORE_FAIL, why)
        if self.multi is not None:
            self._finish_multi()
        if bk is not None:
            if vote == VOTE_ABORT:
                self.server.abort_backup(bk, abort_status, why)
            else:
                self.server.commit_backup(bk, vote == VOTE_CONDITIONAL)
        if deletes and vote != VOTE_ABORT:
            assert self.peer is not None
            self.server.delete_objects(deletes, TxnMark(self.txn, self.peer.client_host,
                                                        self.peer.os_user))

    def cancel(self, why: str = "termination requested by the administrator",
               how: int = socket.SHUT_RDWR) -> None:
        """An administrator stops this session's job: end the connection (``how``); the
        transaction is nullified and the job ends with status 150. SHUT_RD ends it at its
        next read and lets a reply under way (a commit's) still reach the client."""
        self.cancelled = why
        try:
            self.channel.sock.shutdown(how)
        except OSError:
            pass

    def _abandon(self, status: int, why: str) -> None:
        """The connection is gone: whatever the transaction did is nullified."""
        if self.cancelled:
            status, why = 150, self.cancelled
        if self.state != S1:
            try:
                self._end_transaction(VOTE_ABORT, status, why)
            except Exception:
                log.exception("cleaning up session %s failed", self.address)

    HANDLERS = {
        "init": op_init, "setenv": op_setenv, "terminate": op_terminate, "begin": op_begin,
        "end": op_end, "create": op_create, "enddata": op_enddata, "endobject": op_endobject, "query": op_query,
        "qnext": op_qnext, "get": op_get, "delete": op_delete, "multiget": op_multiget,
        "multiend": op_multiend, "multiadd": op_multiadd, "deleteimage": op_deleteimage,
        "mediaids": op_mediaids,
        "jobinfo": op_jobinfo, "logmsg": op_logmsg, "feature": op_feature, "clientd": op_clientd,
        "outcome": op_outcome,
    }


_CLOSE = object()
_STREAMED = object()  # the handler answered (or needs no answer) itself


def _environment(entries: Any) -> dict[str, str]:
    parsed, problem = schema.parse_env(entries)
    if problem:
        raise errors.InvalidEnvironment(problem)
    return parsed


def _is_id(value: Any) -> bool:
    """A catalog ID (copy ID, job ID): a positive integer SQL's 64 bits hold."""
    return type(value) is int and 0 < value < 2**63


def _copy_id(msg: dict[str, Any]) -> int:
    copy_id = msg.get("copy_id")
    if not _is_id(copy_id):
        raise errors.InvalidCopyId(f"copy ID {copy_id!r} is not valid")
    return copy_id


def _describe(r: ObjectRow) -> list[Any]:
    """An object row as the wire's compact descriptor list."""
    return [r.copy_id, r.bsa_owner, r.app_owner, r.space_name, r.path_name, r.create_time,
            r.copy_type, (r.image_id << 32) | r.seq, r.estimated_size, r.resource_type,
            r.object_type, 2 if r.most_recent else 3, r.description, r.object_info]

