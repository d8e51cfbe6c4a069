"""Catalog operations: every SQL statement the service runs lives here, portable across dialects."""

from __future__ import annotations

import logging
import pathlib
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from openxbsa.catalog.schema import (
    committed_txns, counters, host_secrets, images, job_events, jobs, objects, policies, policy_clients,
    policy_includes, schedules, storage_units,
)
from openxbsa.errors import CatalogError
from openxbsa.wire import schema as wire_schema

MIGRATIONS = pathlib.Path(__file__).with_name("migrations")
IN_CHUNK = 500        # values per SQL IN list (a statement's parameters are finite)
TXN_KEEP = 86400      # seconds a committed delete transaction's token is remembered
log = logging.getLogger("openxbsa.catalog")

# NetBackup's default retention-level table (levels 0..9), in seconds; 9 and above: infinity.
INFINITY = 2**31 - 1
RETENTION_SECONDS = {
    0: 7 * 86400, 1: 14 * 86400, 2: 21 * 86400, 3: 31 * 86400, 4: 62 * 86400,
    5: 92 * 86400, 6: 183 * 86400, 7: 274 * 86400, 8: 366 * 86400,
}

IMAGE_WRITING, IMAGE_COMMITTED = 0, 1
JOB_QUEUED, JOB_ACTIVE, JOB_DONE = 0, 1, 3
JOB_BACKUP, JOB_RESTORE, JOB_IMAGE_DELETE = 0, 2, 17

DEFAULT_POLICY = "openxbsa-default"
DEFAULT_SCHEDULE = "Default-Application-Backup"
DEFAULT_STUNIT = "disk-default"
# NetBackup's rule for policy, schedule and storage-unit names: letters, digits, period,
# underscore, plus and minus, not starting with a minus; no spaces (and so no path: a dedup
# pool's key file is named after its unit)
_NAME = re.compile(r"[A-Za-z0-9._+][A-Za-z0-9._+-]{0,126}")


def check_name(what: str, name: Any) -> str:
    """``name`` if it is a valid name for a ``what`` (policy, schedule, storage unit);
    otherwise ValueError saying what a name may hold."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or not name.strip("."):
        raise ValueError(f"{name!r} is not a valid {what} name: 1 to 127 letters, digits "
                         "and . _ + - (not starting with -, not only periods)")
    return name


def check_keyword(keyword: Any) -> str:
    """``keyword`` if it is a keyword phrase; otherwise ValueError saying why."""
    problem = ("the keyword phrase must be text" if not isinstance(keyword, str)
               else wire_schema.keyword_problem(keyword))
    if problem:
        raise ValueError(problem)
    return keyword


# a client is named as NetBackup names hosts: a host name, FQDN or IP address
_CLIENT = re.compile(r"[A-Za-z0-9_:][A-Za-z0-9._:-]{0,254}")


def check_client(name: Any) -> str:
    """``name`` if it can name a client host; otherwise ValueError."""
    if not isinstance(name, str) or not _CLIENT.fullmatch(name):
        raise ValueError(f"{name!r} is not a client name: a host name, FQDN or IP address "
                         "(letters, digits and . _ : -, at most 255)")
    return name


def check_script(path: Any) -> str:
    """``path`` if it can be a backup selection (a script the client daemon runs): an
    absolute path, as NetBackup requires, of printable characters; otherwise ValueError."""
    if not isinstance(path, str) or not path.startswith("/") or len(path.encode()) > 1023 \
            or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ValueError(f"{path!r} is not a backup selection: the absolute path of a script "
                         "on the client (at most 1023 bytes, no control characters)")
    return path


ALWAYS_OPEN = "[[0, 86400], [0, 86400], [0, 86400], [0, 86400], [0, 86400], [0, 86400], [0, 86400]]"
SCHED_FULL, SCHED_APPLICATION = 0, 2


def expiration_for(level: int, ctime: int) -> int:
    if level == 25:
        return ctime
    period = RETENTION_SECONDS.get(level)
    return INFINITY if period is None else ctime + period


@dataclass(frozen=True)
class Scope:
    """Whose objects a session may see: one client host, one OS user (None = every user)."""

    client_host: str
    os_user: str | None


@dataclass(frozen=True)
class TxnMark:
    """An XBSA transaction as the catalog remembers it: the token the server gave it at
    BSABeginTxn, and the client host and OS user whose it is."""

    token: str
    client_host: str
    os_user: str


@dataclass(frozen=True)
class QueryFilter:
    bsa_owner: str
    app_owner: str
    space_name: str
    path_name: str
    time_from: int | None
    time_to: int | None
    copy_type: int | None       # None = ANY
    object_type: int | None     # None = ANY
    most_recent: bool | None    # None = ANY


@dataclass
class ObjectRow:
    copy_id: int
    image_id: int
    seq: int
    os_user: str
    client_host: str
    bsa_owner: str
    app_owner: str
    space_name: str
    path_name: str
    create_time: int
    copy_type: int
    object_type: int
    resource_type: str
    description: str
    object_info: bytes
    estimated_size: int
    size: int
    offset: int
    checksum: str
    most_recent: bool = True
    location: str = ""
    stunit: str = ""
    backup_id: str = ""

    def insert_values(self) -> dict[str, Any]:
        return {
            "copy_id": self.copy_id, "image_id": self.image_id, "seq": self.seq,
            "os_user": self.os_user, "client_host": self.client_host,
            "bsa_owner": self.bsa_owner, "app_owner": self.app_owner,
            "space_name": self.space_name, "path_name": self.path_name,
            "create_time": self.create_time, "copy_type": self.copy_type,
            "object_type": self.object_type, "resource_type": self.resource_type,
            "description": self.description, "object_info": self.object_info,
            "estimated_size": str(self.estimated_size), "size": self.size,
            "offset": self.offset, "checksum": self.checksum,
        }


def _like(pattern: str) -> tuple[bool, str]:
    """XBSA wildcards (* any string, ? one character) -> (has_wildcards, LIKE pattern)."""
    out = []
    wild = False
    for ch in pattern:
        if ch == "*":
            out.append("%")
            wild = True
        elif ch == "?":
            out.append("_")
            wild = True
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return wild, "".join(out)


def _match(column: sa.ColumnElement[Any], pattern: str) -> sa.ColumnElement[bool]:
    wild, like = _like(pattern)
    if not wild:
        return column == pattern
    return column.like(like, escape="\\")


def _prefix_range(column: sa.ColumnElement[Any], pattern: str) -> list[sa.ColumnElement[bool]]:
    """For a pattern with a literal start ("/db/2026*"), the range of values that start so,
    which an index on ``column`` can seek to (SQLite does not use an index for a LIKE with
    an ESCAPE clause). Only where text compares by code point, as SQLite's BINARY collation
    does: a database's linguistic collation may order "/db/2026-x" outside that range."""
    cut = min([i for i in (pattern.find("*"), pattern.find("?")) if i >= 0], default=-1)
    prefix = pattern[:cut] if cut >= 0 else ""
    while prefix and ord(prefix[-1]) == 0x10FFFF:
        prefix = prefix[:-1]
    if not prefix:
        return []
    after = ord(prefix[-1]) + 1
    if 0xD800 <= after <= 0xDFFF:       # surrogates are not text: the next character is
        after = 0xE000
    return [column >= prefix, column < prefix[:-1] + chr(after)]


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")      # a committed backup survives power loss
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA case_sensitive_like=ON")  # XBSA names are case-sensitive
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("begin_mode", "")
        conn.exec_driver_sql(f"BEGIN {mode}")


def unavailable(exc: BaseException) -> CatalogError | None:
    """If ``exc`` says the catalog's database cannot be used now (its server down or
    restarting, the network to it gone, SQLite locked past its timeout) rather than a bug:
    that as a CatalogError (status 220) in one line, for the application."""
    if not isinstance(exc, sa.exc.OperationalError):
        return None
    cause = str(exc.orig or exc).strip().splitlines() or ["unknown error"]
    return CatalogError(f"the catalog database cannot be used: {cause[0]}")


def _safe_url(url: str) -> str:
    """``url`` with any password hidden, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return repr(url)


class Catalog:
    """The image and job catalog. Thread-safe: each call uses its own pooled connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["poolclass"] = sa.pool.QueuePool
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 32
        else:       # a database server restarted under us: reconnect, not fail the next call
            kwargs["pool_pre_ping"] = True
        try:
            self.engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as exc:   # NoSuchModuleError is both
            raise CatalogError(f"the catalog URL {_safe_url(url)} cannot be used: {exc}") \
                from None
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
            self._writer = self.engine.execution_options(begin_mode="IMMEDIATE")
            self._reader = self.engine
        else:
            self._writer = self.engine
            # a read is one statement (or several, each needing only its own snapshot, as
            # READ COMMITTED gives them anyway): in autocommit it costs no BEGIN and no
            # ROLLBACK, two of the four round trips of a lookup (a BSADeleteObject's, a
            # BSAGetObject's) on a database server
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    # ------------------------------------------------------------------ set-up
    def migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise CatalogError(f"cannot open the catalog "
                               f"{self.engine.url.render_as_string(hide_password=True)}: "
                               f"{reason}") from None
        log.debug("catalog %s is at the newest schema", self.engine.url.render_as_string())

    def bootstrap(self, stunit_path: str) -> None:
        """Create the default storage unit, DataStore policy and Application Backup schedule."""
        with self._writer.begin() as conn:
            if conn.execute(select(storage_units.c.name).where(
                    storage_units.c.name == DEFAULT_STUNIT)).first() is None:
                conn.execute(storage_units.insert().values(
                    name=DEFAULT_STUNIT, kind="disk", path=stunit_path, max_jobs=16))
            if conn.execute(select(policies.c.id).where(
                    policies.c.name == DEFAULT_POLICY)).first() is None:
                pid = conn.execute(policies.insert().values(
                    name=DEFAULT_POLICY, policy_type=24, active=True, keyword="",
                    priority=0, stunit=DEFAULT_STUNIT)).inserted_primary_key[0]
                conn.execute(schedules.insert().values(
                    policy_id=pid, name=DEFAULT_SCHEDULE, sched_type=2, retention_level=1,
                    windows=ALWAYS_OPEN))
            if conn.execute(select(counters.c.name).where(
                    counters.c.name == "copy_id")).first() is None:
                conn.execute(counters.insert().values(name="copy_id", value=0))

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ ids
    def reserve_copy_ids(self, count: int) -> tuple[int, int]:
        """A contiguous range [first, last] of fresh, non-zero copy IDs unique in this catalog."""
        with self._writer.begin() as conn:
            conn.execute(counters.update().where(counters.c.name == "copy_id")
                         .values(value=counters.c.value + count))
            top = conn.execute(select(counters.c.value).where(
                counters.c.name == "copy_id")).scalar_one()
        return top - count + 1, top

    # ------------------------------------------------------------------ host secrets
    def issue_secret(self, host: str) -> str:
        secret = secrets.token_hex(32)
        with self._writer.begin() as conn:
            conn.execute(host_secrets.delete().where(host_secrets.c.host == host))
            conn.execute(host_secrets.insert().values(host=host, secret=secret,
                                                      created=int(time.time())))
        return secret

    def host_secret(self, host: str) -> str | None:
        with self._reader.connect() as conn:
            return conn.execute(select(host_secrets.c.secret).where(
                host_secrets.c.host == host)).scalar_one_or_none()

    # ------------------------------------------------------------------ policies
    def resolve_policy(self, policy: str | None, schedule: str | None,
                       client: str | None = None) -> dict[str, Any] | None:
        """The DataStore policy and Application Backup schedule a backup runs under: the
        named ones, else the first active policy that lists the client (by priority), else
        one that lists no clients at all (as the default policy)."""
        q = (select(policies.c.id, policies.c.name.label("policy"), policies.c.keyword,
                    policies.c.stunit, schedules.c.name.label("schedule"),
                    schedules.c.sched_type, schedules.c.retention_level, schedules.c.windows)
             .join(schedules, schedules.c.policy_id == policies.c.id)
             .where(policies.c.active.is_(True), policies.c.policy_type == 24,
                    schedules.c.sched_type == SCHED_APPLICATION)
             .order_by(policies.c.priority.desc(), policies.c.id, schedules.c.id))
        if policy:
            q = q.where(policies.c.name == policy)
        if schedule:
            q = q.where(schedules.c.name == schedule)
        with self._reader.connect() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
            if policy or not client:
                return rows[0] if rows else None
            members: dict[int, set[str]] = {}
            for pid, host in conn.execute(select(policy_clients.c.policy_id, policy_clients.c.client)):
                members.setdefault(pid, set()).add(host)
        listed = [r for r in rows if client in members.get(r["id"], set())]
        open_to_all = [r for r in rows if not members.get(r["id"])]
        found = listed or open_to_all
        return found[0] if found else None

    # ------------------------------------------------------------------ configuration
    def policy_id(self, conn: Connection, name: str) -> int:
        pid = conn.execute(select(policies.c.id).where(policies.c.name == name)).scalar()
        if pid is None:
            raise KeyError(f"policy {name} does not exist")
        return int(pid)

    def add_policy(self, name: str, *, keyword: str = "", priority: int = 0, limit_jobs: int = 0,
                   stunit: str = DEFAULT_STUNIT, active: bool = True,
                   multiple_streams: bool = False) -> None:
        """A DataStore policy, with its Default-Application-Backup schedule as NetBackup adds."""
        check_name("policy", name)
        check_keyword(keyword)
        with self._writer.begin() as conn:
            if conn.execute(select(storage_units.c.name).where(
                    storage_units.c.name == stunit)).first() is None:
                raise KeyError(f"storage unit {stunit} does not exist")
            try:
                pid = conn.execute(policies.insert().values(
                    name=name, policy_type=24, active=active, keyword=keyword, priority=priority,
                    stunit=stunit, limit_jobs=limit_jobs,
                    multiple_streams=multiple_streams)).inserted_primary_key[0]
            except IntegrityError:
                raise KeyError(f"policy {name} already exists") from None
            conn.execute(schedules.insert().values(
                policy_id=pid, name=DEFAULT_SCHEDULE, sched_type=SCHED_APPLICATION,
                retention_level=1, windows=ALWAYS_OPEN))

    def modify_policy(self, name: str, **values: Any) -> None:
        if "keyword" in values:
            check_keyword(values["keyword"])
        with self._writer.begin() as conn:
            pid = self.policy_id(conn, name)
            if values:
                conn.execute(policies.update().where(policies.c.id == pid).values(**values))

    def delete_policy(self, name: str) -> None:
        with self._writer.begin() as conn:
            pid = self.policy_id(conn, name)
            for table in (schedules, policy_clients, policy_includes):
                conn.execute(table.delete().where(table.c.policy_id == pid))
            conn.execute(policies.delete().where(policies.c.id == pid))

    def set_policy_client(self, policy: str, client: str, present: bool) -> None:
        if present:
            check_client(client)
        with self._writer.begin() as conn:
            pid = self.policy_id(conn, policy)
            conn.execute(policy_clients.delete().where(policy_clients.c.policy_id == pid,
                                                       policy_clients.c.client == client))
            if present:
                conn.execute(policy_clients.insert().values(policy_id=pid, client=client))

    def set_policy_include(self, policy: str, path: str, present: bool) -> None:
        if present:
            check_script(path)
        with self._writer.begin() as conn:
            pid = self.policy_id(conn, policy)
            rows = [r[0] for r in conn.execute(
                select(policy_includes.c.path).where(policy_includes.c.policy_id == pid)
                .order_by(policy_includes.c.seq)) if r[0] != path]
            if present:
                rows.append(path)
            conn.execute(policy_includes.delete().where(policy_includes.c.policy_id == pid))
            for i, p in enumerate(rows):
                conn.execute(policy_includes.insert().values(policy_id=pid, seq=i, path=p))

    def set_schedule(self, policy: str, name: str, *, sched_type: int, retention_level: int,
                     frequency: int, calendar: str, windows: str) -> None:
        check_name("schedule", name)
        with self._writer.begin() as conn:
            pid = self.policy_id(conn, policy)
            conn.execute(schedules.delete().where(schedules.c.policy_id == pid,
                                                  schedules.c.name == name))
            conn.execute(schedules.insert().values(
                policy_id=pid, name=name, sched_type=sched_type, retention_level=retention_level,
                frequency=frequency, calendar=calendar, windows=windows))

    def delete_schedule(self, policy: str, name: str) -> None:
        with self._writer.begin() as conn:
            pid = self.policy_id(conn, policy)
            done = conn.execute(schedules.delete().where(schedules.c.policy_id == pid,
                                                         schedules.c.name == name))
            if not done.rowcount:
                raise KeyError(f"schedule {name} does not exist in policy {policy}")

    def list_policies(self) -> list[dict[str, Any]]:
        """Every policy with its clients, backup selections and schedules."""
        with self._reader.connect() as conn:
            out = []
            for p in conn.execute(select(policies).order_by(policies.c.name)).mappings():
                pid = p["id"]
                item = {k: p[k] for k in ("name", "policy_type", "active", "keyword", "priority",
                                          "stunit", "limit_jobs", "multiple_streams")}
                item["clients"] = [r[0] for r in conn.execute(
                    select(policy_clients.c.client).where(policy_clients.c.policy_id == pid)
                    .order_by(policy_clients.c.client))]
                item["include"] = [r[0] for r in conn.execute(
                    select(policy_includes.c.path).where(policy_includes.c.policy_id == pid)
                    .order_by(policy_includes.c.seq))]
                item["schedules"] = [
                    {k: sch[k] for k in ("name", "sched_type", "retention_level", "frequency",
                                         "calendar", "windows")}
                    for sch in conn.execute(select(schedules).where(schedules.c.policy_id == pid)
                                            .order_by(schedules.c.id)).mappings()]
                out.append(item)
        return out

    def clean_jobs(self, before: int) -> int:
        """Remove the finished jobs that ended before ``before`` (UNIX seconds), with their
        logs, as bpdbjobs -clean does; returns how many. Kept whatever their age: jobs not
        yet done, and the newest successful run of each (policy, schedule, client), which
        a schedule's frequency counts from."""
        newest = (select(func.max(jobs.c.job_id))
                  .where(jobs.c.scheduled.is_(True), jobs.c.parent_job.is_(None),
                         jobs.c.status.in_([0, 1]))
                  .group_by(jobs.c.policy, jobs.c.schedule, jobs.c.client))
        with self._writer.begin() as conn:
            old = [r[0] for r in conn.execute(select(jobs.c.job_id).where(
                jobs.c.state == JOB_DONE, jobs.c.ended < before,
                jobs.c.job_id.notin_(newest.scalar_subquery())))]
            for i in range(0, len(old), IN_CHUNK):
                part = old[i:i + IN_CHUNK]
                conn.execute(job_events.delete().where(job_events.c.job_id.in_(part)))
                conn.execute(jobs.delete().where(jobs.c.job_id.in_(part)))
        return len(old)

    def last_success(self, policy: str, schedule: str, client: str) -> int | None:
        """When the newest successful scheduled run of (policy, schedule, client) started."""
        with self._reader.connect() as conn:
            return conn.execute(select(func.max(jobs.c.started)).where(
                jobs.c.scheduled.is_(True), jobs.c.policy == policy, jobs.c.schedule == schedule,
                jobs.c.client == client, jobs.c.parent_job.is_(None),
                jobs.c.status.in_([0, 1]))).scalar()

    def failed_attempts(self, policy: str, schedule: str, client: str, since: int) -> list[int]:
        """Start times of the failed scheduled runs of (policy, schedule, client) since then
        (runs, not their streams).
        Runs the server's own stop interrupted (130) or that never started (196) are not
        failed attempts: they are simply due again."""
        with self._reader.connect() as conn:
            return [r[0] for r in conn.execute(select(jobs.c.started).where(
                jobs.c.scheduled.is_(True), jobs.c.policy == policy, jobs.c.schedule == schedule,
                jobs.c.client == client, jobs.c.state == JOB_DONE, jobs.c.started >= since,
                jobs.c.parent_job.is_(None), jobs.c.status.notin_([0, 1, 130, 196])))]

    def children(self, job_id: int) -> list[int]:
        with self._reader.connect() as conn:
            return [r[0] for r in conn.execute(select(jobs.c.job_id).where(
                jobs.c.parent_job == job_id).order_by(jobs.c.job_id))]

    def cancel_requested(self) -> list[dict[str, Any]]:
        with self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(select(jobs).where(
                jobs.c.cancel_requested.is_(True), jobs.c.state != JOB_DONE)).mappings()]

    def open_scheduled_jobs(self) -> list[dict[str, Any]]:
        with self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(select(jobs).where(
                jobs.c.scheduled.is_(True), jobs.c.state != JOB_DONE)
                .order_by(jobs.c.job_id)).mappings()]

    def active_parent(self, client: str) -> dict[str, Any] | None:
        """The scheduled run now active on this client: its backups are the run's children."""
        with self._reader.connect() as conn:
            row = conn.execute(select(jobs).where(
                jobs.c.scheduled.is_(True), jobs.c.state == JOB_ACTIVE, jobs.c.client == client,
                jobs.c.streams == 0).order_by(jobs.c.job_id.desc())).mappings().first()
        return dict(row) if row else None

    def expired_images(self, now: int) -> list[dict[str, Any]]:
        with self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(select(images).where(
                images.c.state == IMAGE_COMMITTED, images.c.expiration <= now)).mappings()]

    def set_expiration(self, backup_id: str, expiration: int) -> bool:
        with self._writer.begin() as conn:
            done = conn.execute(images.update().where(images.c.backup_id == backup_id)
                                .values(expiration=expiration))
        return bool(done.rowcount)

    def list_storage_units(self) -> list[dict[str, Any]]:
        with self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(storage_units).order_by(storage_units.c.name)).mappings()]

    def set_storage_unit(self, name: str, *, kind: str, path: str, max_jobs: int,
                         create: bool) -> None:
        if create:
            check_name("storage unit", name)
        with self._writer.begin() as conn:
            exists = conn.execute(select(storage_units.c.name).where(
                storage_units.c.name == name)).first() is not None
            if create and exists:
                raise KeyError(f"storage unit {name} already exists")
            if not create and not exists:
                raise KeyError(f"storage unit {name} does not exist")
            conn.execute(storage_units.delete().where(storage_units.c.name == name))
            conn.execute(storage_units.insert().values(name=name, kind=kind, path=path,
                                                       max_jobs=max_jobs))

    def storage_unit(self, name: str) -> dict[str, Any] | None:
        with self._reader.connect() as conn:
            row = conn.execute(select(storage_units).where(
                storage_units.c.name == name)).mappings().first()
        return dict(row) if row else None

    # ------------------------------------------------------------------ jobs
    def create_job(self, event: tuple[str, str] | None = None, **values: Any) -> int:
        """A new job; with ``event`` (severity, message), its first log line, written in the
        same transaction (one commit, one sync, per job started)."""
        row = {"state": JOB_ACTIVE, "status": None, "policy": "", "schedule": "",
               "sched_type": None, "server": "", "owner": "", "stunit": "",
               "started": int(time.time()), "kbytes": 0, "files": 0, "try_count": 1}
        row.update(values)
        with self._writer.begin() as conn:
            job_id = int(conn.execute(jobs.insert().values(**row)).inserted_primary_key[0])
            if event is not None:
                self._log_job(conn, job_id, *event)
            return job_id

    def update_job(self, job_id: int, **values: Any) -> None:
        with self._writer.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.job_id == job_id).values(**values))

    def finish_job(self, job_id: int, status: int, conn: Connection | None = None,
                   event: tuple[str, str] | None = None, **values: Any) -> None:
        """End a job (one already Done stays as it ended); with ``event`` (severity,
        message), its last log line, in the same transaction."""
        values.update(state=JOB_DONE, status=status, ended=int(time.time()))
        stmt = jobs.update().where(jobs.c.job_id == job_id, jobs.c.state != JOB_DONE).values(**values)
        if conn is not None:
            conn.execute(stmt)
            if event is not None:
                self._log_job(conn, job_id, *event)
            return
        with self._writer.begin() as c:
            c.execute(stmt)
            if event is not None:
                self._log_job(c, job_id, *event)

    def log_job(self, job_id: int, severity: str, message: str) -> None:
        with self._writer.begin() as conn:
            self._log_job(conn, job_id, severity, message)

    @staticmethod
    def _log_job(conn: Connection, job_id: int, severity: str, message: str) -> None:
        conn.execute(job_events.insert().values(job_id=job_id, time=int(time.time()),
                                                severity=severity, message=message))

    def job(self, job_id: int) -> dict[str, Any] | None:
        with self._reader.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        return dict(row) if row else None

    def list_jobs(self, job_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        q = select(jobs).order_by(jobs.c.job_id.desc())
        if job_ids:
            q = q.where(jobs.c.job_id.in_(list(job_ids)))
        with self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def job_log(self, job_id: int) -> list[dict[str, Any]]:
        with self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(job_events).where(job_events.c.job_id == job_id)
                .order_by(job_events.c.id)).mappings()]

    # ------------------------------------------------------------------ images
    def create_image(self, *, client: str, os_user: str, policy: dict[str, Any], job_id: int,
                     location_for: Any, media_id: str) -> tuple[int, str, int]:
        """Insert an invisible image row with a unique backup ID ``client_ctime``.

        NetBackup backup IDs are unique to the second; when this client already has an
        image at or after now, the next free second after it keeps IDs in creation order."""
        ctime = int(time.time())
        with self._reader.connect() as conn:
            newest = conn.execute(select(func.max(images.c.ctime))
                                  .where(images.c.client == client)).scalar()
        if newest is not None and newest >= ctime:
            ctime = newest + 1
        while True:
            backup_id = f"{client}_{ctime}"
            try:
                with self._writer.begin() as conn:
                    image_id = conn.execute(images.insert().values(
                        backup_id=backup_id, client=client, ctime=ctime, os_user=os_user,
                        policy=policy["policy"], schedule=policy["schedule"],
                        sched_type=policy["sched_type"],
                        retention_level=policy["retention_level"],
                        expiration=expiration_for(policy["retention_level"], ctime),
                        keyword=policy.get("keyword") or "", job_id=job_id,
                        state=IMAGE_WRITING, stunit=policy["stunit"],
                        location=location_for(backup_id), kbytes=0, num_objects=0,
                        media_id=media_id)).inserted_primary_key[0]
                    conn.execute(jobs.update().where(jobs.c.job_id == job_id)
                                 .values(backup_id=backup_id))
                return int(image_id), backup_id, ctime
            except IntegrityError:
                ctime += 1  # NetBackup backup IDs are unique to the second

    def add_objects(self, rows: Sequence[ObjectRow]) -> None:
        """Record objects of an image still being written: invisible until its commit."""
        if rows:
            with self._writer.begin() as conn:
                conn.execute(objects.insert(), [r.insert_values() for r in rows])

    def commit_backup(self, image_id: int, rows: Iterable[ObjectRow], job_id: int,
                      status: int, count: int, total: int,
                      stats: dict[str, int] | None = None,
                      events: Sequence[tuple[str, str]] = ()) -> None:
        """The one catalog transaction that makes a backup visible: the last objects, the
        image's state, the job's end and its last log lines (``events``, severity and
        message each). ``count``/``total`` cover every object of the image; ``stats`` are
        the storage unit's bytes received, after dedup and stored."""
        rows = list(rows)
        sizes = {} if stats is None else {
            "bytes_received": stats["received"], "bytes_after_dedup": stats["after_dedup"],
            "bytes_stored": stats["stored"]}
        try:
            with self._writer.begin() as conn:
                if rows:
                    conn.execute(objects.insert(), [r.insert_values() for r in rows])
                conn.execute(images.update().where(images.c.id == image_id).values(
                    state=IMAGE_COMMITTED, kbytes=(total + 1023) // 1024, num_objects=count,
                    **sizes))
                self.finish_job(job_id, status, conn=conn, kbytes=(total + 1023) // 1024,
                                files=count, **sizes)
                for event in events:
                    self._log_job(conn, job_id, *event)
        except sa.exc.SQLAlchemyError as exc:
            log.error("catalog commit of image %d failed: %s", image_id, exc)
            raise CatalogError(f"catalog commit failed: {exc}") from exc

    def drop_image(self, image_id: int) -> None:
        with self._writer.begin() as conn:
            conn.execute(objects.delete().where(objects.c.image_id == image_id))
            conn.execute(images.delete().where(images.c.id == image_id))

    def image(self, image_id: int) -> dict[str, Any] | None:
        with self._reader.connect() as conn:
            row = conn.execute(select(images).where(images.c.id == image_id)).mappings().first()
        return dict(row) if row else None

    def image_media(self, image_id: int) -> list[str]:
        """The media IDs holding an image's fragments (a disk image: its volume's ID)."""
        img = self.image(image_id)
        return [img["media_id"]] if img and img["media_id"] else []

    def writing_images(self) -> list[dict[str, Any]]:
        with self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(images).where(images.c.state == IMAGE_WRITING)).mappings()]

    def image_locations(self, stunit: str) -> set[str]:
        """Where the images of one storage unit live (the rest of it is orphaned)."""
        with self._reader.connect() as conn:
            return {r[0] for r in conn.execute(
                select(images.c.location).where(images.c.stunit == stunit))}

    def stored_objects(self, stunit: str) -> dict[str, dict[int, tuple[int, str]]]:
        """What the committed images of one storage unit hold: location -> {offset in the
        image (a dedup pool's object number): (size, checksum)}."""
        out: dict[str, dict[int, tuple[int, str]]] = {}
        with self._reader.connect() as conn:
            for loc, off, size, checksum in conn.execute(
                    select(images.c.location, objects.c.offset, objects.c.size,
                           objects.c.checksum)
                    .join(images, objects.c.image_id == images.c.id)
                    .where(images.c.stunit == stunit, images.c.state == IMAGE_COMMITTED)):
                out.setdefault(loc, {})[int(off)] = (int(size), checksum)
        return out

    def fail_active_jobs(self, status: int, message: str) -> list[int]:
        with self._writer.begin() as conn:
            ids = [r[0] for r in conn.execute(
                select(jobs.c.job_id).where(jobs.c.state != JOB_DONE))]
            now = int(time.time())
            for jid in ids:
                conn.execute(jobs.update().where(jobs.c.job_id == jid).values(
                    state=JOB_DONE, status=status, ended=now))
                conn.execute(job_events.insert().values(job_id=jid, time=now,
                                                        severity="error", message=message))
        return ids

    def list_images(self, client: str | None = None, backup_id: str | None = None
                    ) -> list[dict[str, Any]]:
        q = select(images).where(images.c.state == IMAGE_COMMITTED).order_by(images.c.ctime.desc())
        if client:
            q = q.where(images.c.client == client)
        if backup_id:
            q = q.where(images.c.backup_id == backup_id)
        with self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    # ------------------------------------------------------------------ objects
    def _visible(self, scope: Scope) -> list[sa.ColumnElement[bool]]:
        conds = [images.c.state == IMAGE_COMMITTED, objects.c.client_host == scope.client_host]
        if scope.os_user is not None:
            conds.append(objects.c.os_user == scope.os_user)
        return conds

    @staticmethod
    def _owned(scope: Scope, row: Any) -> bool:
        """_visible's owner conditions on a fetched row (an image already known committed)."""
        return row["client_host"] == scope.client_host and (
            scope.os_user is None or row["os_user"] == scope.os_user)

    def query_ids(self, scope: Scope, flt: QueryFilter) -> list[tuple[int, bool]]:
        """(copy ID, is MOST_RECENT) of every object matching a query, in copy-ID order.

        MOST_RECENT is derived, never stored: the newest copy (by createTime, then copy ID)
        among the visible copies with the same owner and name."""
        o = objects
        identity = [o.c.client_host, o.c.os_user, o.c.bsa_owner, o.c.app_owner,
                    o.c.space_name, o.c.path_name]
        rank = func.row_number().over(
            partition_by=identity, order_by=[o.c.create_time.desc(), o.c.copy_id.desc()]
        ).label("rank")
        inner_where = self._visible(scope) + [
            _match(o.c.bsa_owner, flt.bsa_owner), _match(o.c.app_owner, flt.app_owner),
            _match(o.c.space_name, flt.space_name), _match(o.c.path_name, flt.path_name),
        ]
        if self.engine.dialect.name == "sqlite":
            inner_where += _prefix_range(o.c.path_name, flt.path_name)
        if flt.copy_type is not None:
            inner_where.append(o.c.copy_type == flt.copy_type)
        inner = (select(o.c.copy_id, o.c.create_time, o.c.object_type, rank)
                 .join(images, images.c.id == o.c.image_id).where(*inner_where).subquery())
        outer_where: list[sa.ColumnElement[bool]] = []
        if flt.time_from is not None:
            outer_where.append(inner.c.create_time >= flt.time_from)
        if flt.time_to is not None:
            outer_where.append(inner.c.create_time <= flt.time_to)
        if flt.object_type is not None:
            outer_where.append(inner.c.object_type == flt.object_type)
        if flt.most_recent is True:
            outer_where.append(inner.c.rank == 1)
        elif flt.most_recent is False:
            outer_where.append(inner.c.rank > 1)
        q = select(inner.c.copy_id, inner.c.rank).where(*outer_where).order_by(inner.c.copy_id)
        with self._reader.connect() as conn:
            return [(r[0], r[1] == 1) for r in conn.execute(q)]

    def objects_by_ids(self, ids: Sequence[tuple[int, bool]]) -> list[ObjectRow]:
        """Full rows for query results, in the given order; rows deleted meanwhile are skipped."""
        wanted = dict(ids)
        q = (select(objects, images.c.location, images.c.stunit, images.c.backup_id)
             .join(images, images.c.id == objects.c.image_id)
             .where(objects.c.copy_id.in_(list(wanted))))
        with self._reader.connect() as conn:
            found = {r["copy_id"]: self._row(r) for r in conn.execute(q).mappings()}
        out = []
        for copy_id, _ in ids:
            row = found.get(copy_id)
            if row is not None:
                row.most_recent = wanted[copy_id]
                out.append(row)
        return out

    @staticmethod
    def _row(r: Any) -> ObjectRow:
        return ObjectRow(
            copy_id=r["copy_id"], image_id=r["image_id"], seq=r["seq"], os_user=r["os_user"],
            client_host=r["client_host"], bsa_owner=r["bsa_owner"], app_owner=r["app_owner"],
            space_name=r["space_name"], path_name=r["path_name"],
            create_time=r["create_time"], copy_type=r["copy_type"],
            object_type=r["object_type"], resource_type=r["resource_type"],
            description=r["description"], object_info=bytes(r["object_info"]),
            estimated_size=int(r["estimated_size"]), size=r["size"], offset=r["offset"],
            checksum=r["checksum"],
            location=r.get("location", ""), stunit=r.get("stunit", ""),
            backup_id=r.get("backup_id", ""))

    def visible_object(self, scope: Scope, copy_id: int) -> ObjectRow | None:
        q = (select(objects, images.c.location, images.c.stunit, images.c.backup_id)
             .join(images, images.c.id == objects.c.image_id)
             .where(objects.c.copy_id == copy_id, *self._visible(scope)))
        with self._reader.connect() as conn:
            r = conn.execute(q).mappings().first()
        return self._row(r) if r else None

    def visible_objects(self, scope: Scope, copy_ids: Sequence[int]) -> list[ObjectRow]:
        """The objects among ``copy_ids`` this scope may see (in chunks: SQL IN lists are
        finite). The rows are found by copy ID alone and the scope is checked here: given the
        owner's columns too, SQLite walks the (client, user) index — every object of that
        user for each chunk — rather than look the IDs up."""
        out: list[ObjectRow] = []
        ids = list(dict.fromkeys(copy_ids))
        with self._reader.connect() as conn:
            for i in range(0, len(ids), IN_CHUNK):
                q = (select(objects, images.c.location, images.c.stunit, images.c.backup_id)
                     .join(images, images.c.id == objects.c.image_id)
                     .where(objects.c.copy_id.in_(ids[i:i + IN_CHUNK]),
                            images.c.state == IMAGE_COMMITTED))
                out += [self._row(r) for r in conn.execute(q).mappings()
                        if self._owned(scope, r)]
        return out

    def delete_objects(self, copy_ids: Sequence[int], txn: TxnMark | None = None
                       ) -> tuple[list[ObjectRow], list[dict[str, Any]]]:
        """Delete objects in one transaction; returns (deleted rows, images left empty and removed).
        The IDs go to the database IN_CHUNK at a time: a statement takes a bounded number of
        parameters (65,535 on PostgreSQL), a delete transaction any number of objects.
        ``txn``, the XBSA transaction doing it, is remembered as committed in the same
        database transaction (for TXN_KEEP seconds; see ``txn_committed``)."""
        if not copy_ids:
            return [], []
        ids = list(dict.fromkeys(copy_ids))
        rows: list[ObjectRow] = []
        with self._writer.begin() as conn:
            if txn is not None:
                now = int(time.time())
                conn.execute(committed_txns.delete().where(
                    committed_txns.c.committed < now - TXN_KEEP))
                conn.execute(committed_txns.insert().values(
                    token=txn.token, client_host=txn.client_host, os_user=txn.os_user,
                    committed=now))
            for i in range(0, len(ids), IN_CHUNK):
                part = ids[i:i + IN_CHUNK]
                q = (select(objects, images.c.location, images.c.stunit, images.c.backup_id)
                     .join(images, images.c.id == objects.c.image_id)
                     .where(objects.c.copy_id.in_(part)))
                rows += [self._row(r) for r in conn.execute(q).mappings()]
                conn.execute(objects.delete().where(objects.c.copy_id.in_(part)))
            # the images they were in: those left empty go, the others get their new counts
            # (IN_CHUNK images a statement; most deleted objects are alone in their image)
            emptied: list[dict[str, Any]] = []
            touched = sorted({r.image_id for r in rows})
            for i in range(0, len(touched), IN_CHUNK):
                part = touched[i:i + IN_CHUNK]
                left = {image_id: (n, size) for image_id, n, size in conn.execute(
                    select(objects.c.image_id, func.count(),
                           func.coalesce(func.sum(objects.c.size), 0))
                    .where(objects.c.image_id.in_(part)).group_by(objects.c.image_id))}
                gone = [image_id for image_id in part if image_id not in left]
                if gone:
                    emptied += [dict(r) for r in conn.execute(
                        select(images).where(images.c.id.in_(gone))).mappings()]
                    conn.execute(images.delete().where(images.c.id.in_(gone)))
                for image_id, (n, size) in left.items():
                    conn.execute(images.update().where(images.c.id == image_id).values(
                        num_objects=n, kbytes=(int(size) + 1023) // 1024))
        return rows, emptied

    def txn_committed(self, txn: TxnMark) -> bool:
        """Whether ``txn`` (its token, of that client and user) committed its deletions in
        the last TXN_KEEP seconds."""
        with self._reader.connect() as conn:
            return conn.execute(select(committed_txns.c.token).where(
                committed_txns.c.token == txn.token,
                committed_txns.c.client_host == txn.client_host,
                committed_txns.c.os_user == txn.os_user)).first() is not None

    def list_objects(self, client: str | None = None, pattern: str = "*",
                     backup_id: str | None = None) -> list[dict[str, Any]]:
        q = (select(objects, images.c.backup_id).join(images, images.c.id == objects.c.image_id)
             .where(images.c.state == IMAGE_COMMITTED, _match(objects.c.path_name, pattern))
             .order_by(objects.c.copy_id))
        if client:
            q = q.where(objects.c.client_host == client)
        if backup_id:
            q = q.where(images.c.backup_id == backup_id)
        with self._reader.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

