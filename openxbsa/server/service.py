"""The server process: listener, recovery after a crash, and the backup commit/abort steps.

One thread per session over blocking sockets: each XBSA session is a strict request/reply
conversation, and the measured data path (1 MiB frames, sendfile) runs at socket speed
without an event loop. SQLite, file I/O and hashing release the GIL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import gc
import logging
import os
import pwd
import socket
import stat
import struct
import threading
import time
from typing import Any

from openxbsa import errors, wire
from openxbsa.catalog.store import JOB_ACTIVE, JOB_BACKUP, JOB_QUEUED, Catalog, TxnMark
from openxbsa.server import faults, schedule
from openxbsa.server.config import ServerConfig
from openxbsa.server.jobs import JobManager
from openxbsa.server.requests import BackupState, Peer, Session
from openxbsa.server.scheduler import Scheduler
from openxbsa.storage import StorageUnit, StoredObject, open_unit
from openxbsa.storage.base import dedup_rate

log = logging.getLogger("openxbsa.server")

UNIX_PATH_MAX = 107                     # sun_path holds 108 bytes with the terminating NUL
USER_MAX = 128                          # characters of the user name a TCP client presents


class ListenError(RuntimeError):
    """The server cannot listen on the address it was given (the message says why)."""


def keep_freed_memory() -> None:
    """Keep freed buffers in the process (glibc): the data path allocates and frees MiB-sized
    buffers, and by default each would go back to the kernel and fault back in page by page
    (measured: a quarter of a million page faults per GiB stored)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.mallopt(-3, 64 << 20)      # M_MMAP_THRESHOLD: heap, not mmap, up to 64 MiB
        libc.mallopt(-1, 256 << 20)     # M_TRIM_THRESHOLD: keep up to 256 MiB free in heap
    except (OSError, AttributeError):
        pass


def dedup_summary(stats: dict[str, int]) -> str:
    """NetBackup's job-details line for a deduplicated backup."""
    received, new, stored = stats["received"], stats["after_dedup"], stats["stored"]
    return (f"deduplication rate: {dedup_rate(received, new) or 0.0:.1f}% ({received} bytes "
            f"received, {new} new after deduplication, {stored} stored after compression "
            f"and encryption)")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class UnitSlots:
    """How many backups write to each storage unit; at most its max concurrent jobs."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.busy: dict[str, int] = {}
        self.cond = threading.Condition()

    def _limit(self, name: str) -> int:
        row = self.catalog.storage_unit(name)
        return int(row["max_jobs"]) if row else 1

    def try_take(self, name: str) -> bool:
        with self.cond:
            if self.busy.get(name, 0) < self._limit(name):
                self.busy[name] = self.busy.get(name, 0) + 1
                return True
            return False

    def take(self, name: str) -> None:
        with self.cond:
            while self.busy.get(name, 0) >= self._limit(name):
                self.cond.wait(1.0)      # also notices a raised limit
            self.busy[name] = self.busy.get(name, 0) + 1

    def give(self, name: str) -> None:
        with self.cond:
            self.busy[name] = max(0, self.busy.get(name, 0) - 1)
            self.cond.notify_all()


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        os.makedirs(config.home, exist_ok=True)
        self.hostname = socket.gethostname()
        self.catalog = Catalog(config.catalog_url)
        self.catalog.migrate()
        self.catalog.bootstrap(config.storage_path)
        self.jobs = JobManager(self.catalog, self.hostname)
        self.scheduler = Scheduler(self, config.scheduler_interval, config.max_jobs_per_client,
                                   config.backup_attempts, config.attempt_period,
                                   config.retry_delay, config.keep_jobs_hours)
        self._units: dict[str, StorageUnit] = {}
        self.units = UnitSlots(self.catalog)
        self._units_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._sessions: set[Session] = set()

    @property
    def stopping(self) -> bool:
        """SIGTERM arrived: the server is ending its sessions."""
        return self._stopping.is_set()

    def sessions(self) -> list[Session]:
        """The sessions open now (a copy: sessions come and go on their own threads)."""
        return list(self._sessions)

    def now(self) -> dt.datetime:
        """The server's local wall-clock time (windows and calendars are in it)."""
        return dt.datetime.now().astimezone()

    # ------------------------------------------------------------------ storage
    def storage(self, name: str) -> StorageUnit:
        with self._units_lock:
            unit = self._units.get(name)
            if unit is None:
                row = self.catalog.storage_unit(name)
                if row is None:
                    raise errors.OpenXBSAError(f"storage unit {name} does not exist", status=219)
                unit = open_unit(row, self.config.home)
                self._units[name] = unit
            return unit

    # ------------------------------------------------------------------ recovery
    def recover(self) -> None:
        """After a crash: fail the jobs that were running and remove half-written images."""
        failed = self.catalog.fail_active_jobs(
            130, "the server stopped while this job was active; nothing of it was kept")
        for img in self.catalog.writing_images():
            try:
                self.storage(img["stunit"]).delete_image(img["location"])
            finally:
                self.catalog.drop_image(img["id"])
        removed: list[str] = []
        for unit in self.catalog.list_storage_units():      # every unit, not just the default
            live = self.catalog.image_locations(unit["name"])
            try:
                removed += self.storage(unit["name"]).sweep(live)
            except errors.OpenXBSAError as exc:      # one unusable unit stops no other
                log.error("storage unit %s cannot be recovered: %s", unit["name"], exc.message)
        if failed or removed:
            log.warning("recovery: %d interrupted jobs failed, %d orphaned files removed",
                        len(failed), len(removed))

    # ------------------------------------------------------------------ authentication
    def authenticate(self, session: Session, msg: dict[str, Any]) -> Peer:
        sock = session.channel.sock
        if sock.family == socket.AF_UNIX:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            return Peer(self.hostname, _user_name(uid), uid, session.address)
        host, user, mac = msg.get("host"), msg.get("user"), msg.get("mac")
        uid = msg.get("uid")
        if not (isinstance(host, str) and isinstance(user, str) and isinstance(mac, str)
                and host and user and (uid is None or type(uid) is int)):
            raise errors.AuthenticationFailed("this TCP session presented no host credentials")
        if len(user) > USER_MAX or not user.isprintable():
            raise errors.AuthenticationFailed(f"the user name this TCP session presented is "
                                              f"not one (printable, at most {USER_MAX} "
                                              "characters)")
        secret = self.catalog.host_secret(host)
        if secret is None or not wire.hmac.compare_digest(
                wire.host_mac(secret, session.nonce, host, user), mac):
            log.warning("authentication failed for host %r from %s", host, session.address)
            raise errors.AuthenticationFailed(f"host {host} could not be authenticated")
        return Peer(host, user, uid, session.address)

    # ------------------------------------------------------------------ backup lifecycle
    def start_backup(self, session: Session) -> BackupState:
        peer = session.peer
        assert peer is not None
        parent = self.catalog.active_parent(peer.client_host)
        wanted = session.env.get("NBBSA_POLICY") or (parent["policy"] if parent else None)
        policy = self.catalog.resolve_policy(wanted, session.env.get("NBBSA_SCHEDULE"),
                                             peer.client_host)
        if policy is None:
            raise errors.NoPolicy("no active DataStore policy with an Application Backup "
                                  "schedule matches NBBSA_POLICY/NBBSA_SCHEDULE")
        if not schedule.window_open(schedule.parse_windows(policy["windows"]), self.now()):
            raise errors.WindowClosed(
                f"the window of {policy['policy']}/{policy['schedule']} is closed now")
        if session.env.get("NBBSA_KEYWORD"):
            policy["keyword"] = session.env["NBBSA_KEYWORD"]
        unit = self.storage(policy["stunit"])
        parent_job = parent["job_id"] if parent and parent["policy"] == policy["policy"] else None
        free = self.units.try_take(unit.name)
        try:
            job_id = self.jobs.start(
                job_type=JOB_BACKUP, client=peer.client_host, owner=peer.os_user,
                policy=policy["policy"], schedule=policy["schedule"], parent_job=parent_job,
                sched_type=policy["sched_type"], stunit=unit.name,
                state=JOB_ACTIVE if free else JOB_QUEUED,
                queue_reason=None if free else f"storage unit {unit.name} is busy (all its "
                                               f"concurrent jobs are running)",
                message=f"backup {'started' if free else 'queued'} for client "
                        f"{peer.client_host}, user {peer.os_user}, policy {policy['policy']}, "
                        f"schedule {policy['schedule']}")
        except BaseException:
            if free:                      # no job: the slot it took goes back
                self.units.give(unit.name)
            raise
        if not free:      # wait, as NetBackup queues a job for its storage unit
            self.units.take(unit.name)
        image_id = None
        try:              # from here on the job holds a slot of the unit
            if not free:
                self.catalog.update_job(job_id, state=JOB_ACTIVE, queue_reason=None,
                                        started=int(dt.datetime.now().timestamp()))
                self.jobs.log(job_id, "info", f"storage unit {unit.name} free: backup started")
            faults.point("backup:start")
            image_id, backup_id, _ = self.catalog.create_image(
                client=peer.client_host, os_user=peer.os_user, policy=policy, job_id=job_id,
                location_for=unit.location_for, media_id=unit.media_id)
            writer = unit.open_writer(backup_id)
        except Exception as exc:     # whatever failed, the job ends and the slot is free again
            status, why = ((exc.status, exc.message) if isinstance(exc, errors.OpenXBSAError)
                           else (130, f"internal error: {exc}"))
            try:
                if image_id is not None:
                    self.catalog.drop_image(image_id)
                self.jobs.finish(job_id, status, f"backup could not start: {why}")
            finally:
                self.units.give(unit.name)
            raise
        session.env["NBBSA_POLICY"] = policy["policy"]
        session.env["NBBSA_SCHEDULE"] = policy["schedule"]
        return BackupState(job_id=job_id, image_id=image_id, backup_id=backup_id,
                           writer=writer, policy=policy)

    def _release(self, bk: BackupState) -> None:
        """Give the backup's storage-unit slot back, once."""
        if bk.slot_held:
            bk.slot_held = False
            self.units.give(bk.policy["stunit"])

    def commit_backup(self, bk: BackupState, conditional: bool) -> None:
        status = 1 if conditional else 0
        self._release(bk)
        try:
            bk.writer.commit()                     # data durable first ...
            faults.point("commit:before_catalog")
            stats = bk.writer.stats()
            events = [("info", f"image {bk.backup_id} committed: {bk.count} objects, "
                               f"{bk.bytes} bytes (status {status})")]
            if stats["received"] and stats["after_dedup"] != stats["received"]:
                events.append(("info", dedup_summary(stats)))
            self.catalog.commit_backup(bk.image_id, bk.rows, bk.job_id, status,  # ... then visible
                                       bk.count, bk.bytes, stats, events)
            faults.point("commit:after_catalog")
        except errors.OpenXBSAError as exc:
            self.abort_backup(bk, exc.status, f"commit failed: {exc.message}")
            raise errors.TransactionAborted(f"commit failed: {exc.message}") from exc
        for severity, message in events:
            self.jobs.say(bk.job_id, severity, message)

    def abort_backup(self, bk: BackupState, status: int, why: str) -> None:
        self._release(bk)
        bk.writer.abort()
        self.catalog.drop_image(bk.image_id)
        self.jobs.finish(bk.job_id, status, why)

    def delete_objects(self, copy_ids: list[int], txn: TxnMark | None = None) -> None:
        faults.point("delete:before_catalog")
        rows, emptied = self.catalog.delete_objects(copy_ids, txn)
        faults.point("delete:after_catalog")
        gone = {img["id"] for img in emptied}
        for img in emptied:
            self.storage(img["stunit"]).delete_image(img["location"])
        for r in rows:
            if r.image_id not in gone:
                self.storage(r.stunit).release(r.location,
                                               StoredObject(r.offset, r.size, r.checksum))

    def maintain(self) -> None:
        """Housekeeping of the storage units in use (a dedup pool's garbage collection)."""
        with self._units_lock:
            units = list(self._units.values())
        for unit in units:
            try:
                unit.maintain()
            except errors.OpenXBSAError as exc:
                log.error("maintenance of storage unit %s failed: %s", unit.name, exc)

    def delete_image(self, image_id: int) -> int:
        """Remove an image from the catalog, then its bytes; returns how many objects it held."""
        img = self.catalog.image(image_id)
        if img is None:
            return 0
        self.catalog.drop_image(image_id)
        self.storage(img["stunit"]).delete_image(img["location"])
        return int(img["num_objects"])

    # ------------------------------------------------------------------ listening
    def bind(self) -> socket.socket:
        """Listen on the configured address; an address that cannot be used raises
        ListenError saying which and why (no socket is left open)."""
        listen = self.config.listen
        try:
            family, addr = wire.parse_address(listen)
        except ValueError as exc:
            raise ListenError(f"cannot listen on {listen}: {exc}") from None
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family == socket.AF_UNIX:
                if len(os.fsencode(addr)) > UNIX_PATH_MAX:
                    raise ListenError(
                        f"cannot listen on {listen}: a Unix socket path is at most "
                        f"{UNIX_PATH_MAX} bytes, this one is {len(os.fsencode(addr))}")
                if os.path.exists(addr):
                    if not stat.S_ISSOCK(os.stat(addr).st_mode):
                        raise ListenError(
                            f"cannot listen on {listen}: {addr} exists and is not a socket")
                    os.unlink(addr)
                os.makedirs(os.path.dirname(addr) or ".", exist_ok=True)
                sock.bind(addr)
                os.chmod(addr, 0o666)  # every local user may connect; SO_PEERCRED says who
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
            sock.listen(128)
        except ListenError:
            sock.close()
            raise
        except (OSError, OverflowError) as exc:
            sock.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ListenError(f"cannot listen on {listen}: {reason}") from None
        self._listener = sock
        return sock

    def serve_forever(self) -> None:
        sock = self._listener or self.bind()
        log.info("OpenXBSA server listening on %s (home %s)", self.config.listen,
                 self.config.home)
        self.scheduler.start()
        # what start-up made (configuration, catalog engine, imported modules: most of the
        # heap) stays for the server's life; frozen, the collector no longer walks it, which
        # it did on every full collection — about 3 % of the CPU of a text backup in perf
        gc.collect()
        gc.freeze()
        while not self._stopping.is_set():
            try:
                conn, addr = sock.accept()
            except OSError:
                if self._stopping.is_set():
                    break
                raise
            wire.tune(conn, self.config.peer_timeout)
            name = addr if isinstance(addr, str) and addr else (
                f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else "local")
            if len(self._threads) >= self.config.max_sessions:
                log.warning("refusing %s: %d sessions are open (max_sessions)", name,
                            len(self._threads))
                self._refuse(conn, "the server has too many sessions open; try again later")
                continue
            conn.settimeout(self.config.handshake_timeout)   # until BSAInit completes
            t = threading.Thread(target=self._run_session, args=(conn, name), daemon=True)
            self._threads.add(t)
            t.start()
        self._drain(self.config.stop_grace)

    def _drain(self, grace: float) -> None:
        """The server is stopping: end every session as an administrator's cancel would
        (its transaction nullified, its job Done with status 150) and wait for them, up to
        ``grace`` seconds, so that a stopped server leaves no job Active in its catalog.
        Each session ends at its next read, so a commit under way still answers."""
        sessions = self.sessions()
        for session in sessions:
            session.cancel("the server was stopped while this job was active; nothing of "
                           "it was kept", socket.SHUT_RD)
        deadline = time.monotonic() + grace
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))
        if sessions:
            log.info("stopped: %d sessions ended", len(sessions))

    @staticmethod
    def _refuse(conn: socket.socket, why: str) -> None:
        try:
            conn.settimeout(1)
            wire.Channel(conn).send_message(wire.REP, {"ok": False, "kind": "system",
                                                       "status": 134, "msg": why})
        except OSError:
            pass
        finally:
            conn.close()

    def cancel_session(self, job_id: int) -> bool:
        """End the session whose transaction is this job; False if none is."""
        for session in self.sessions():
            if session.last_job == job_id and session.state != "S1":
                session.cancel()
                return True
        return False

    def _run_session(self, conn: socket.socket, name: str) -> None:
        session = Session(self, conn, name)
        self._sessions.add(session)
        try:
            session.run()
        finally:
            self._sessions.discard(session)
            self._threads.discard(threading.current_thread())

    def stop(self) -> None:
        self._stopping.set()
        self.scheduler.stop()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
