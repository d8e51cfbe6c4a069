"""The catalog's tables, in SQLAlchemy Core; migrations in ``migrations/`` build the same schema.

Portable SQL only: the same statements run on SQLite (embedded default) and PostgreSQL.
Times are UNIX seconds (UTC) in BigInteger columns; 64-bit unsigned XBSA values that can
exceed a signed BIGINT (estimatedSize) are kept as decimal text.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger, Boolean, Column, ForeignKey, Index, Integer, LargeBinary, MetaData, String,
    Table, Text,
)

metadata = MetaData()

counters = Table(
    "counters", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

host_secrets = Table(
    "host_secrets", metadata,
    Column("host", String(255), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("created", BigInteger, nullable=False),
)

policies = Table(
    "policies", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("policy_type", Integer, nullable=False),     # 24 = DataStore
    Column("active", Boolean, nullable=False),
    Column("keyword", String(256), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("stunit", String(128), nullable=False),
    Column("limit_jobs", Integer, nullable=False, server_default="0"),   # 0 = unlimited
    Column("multiple_streams", Boolean, nullable=False, server_default=sa.false()),
)

policy_clients = Table(
    "policy_clients", metadata,
    Column("policy_id", Integer, ForeignKey("policies.id", ondelete="CASCADE"), primary_key=True),
    Column("client", String(255), primary_key=True),
)

policy_includes = Table(                                  # backup selections: scripts, in order
    "policy_includes", metadata,
    Column("policy_id", Integer, ForeignKey("policies.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("path", Text, nullable=False),
)

schedules = Table(
    "schedules", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("policy_id", Integer, ForeignKey("policies.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("sched_type", Integer, nullable=False),      # 2 = UBAK (Application Backup), 0 = FULL
    Column("retention_level", Integer, nullable=False),
    Column("frequency", Integer, nullable=False, server_default="0"),   # seconds; 0 = calendar
    Column("calendar", String(64), nullable=False, server_default=""),  # e.g. "MON,WED,FRI"
    Column("windows", Text, nullable=False),           # JSON: 7 [start, duration], Sunday first
)

storage_units = Table(
    "storage_units", metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("path", Text, nullable=False),
    Column("max_jobs", Integer, nullable=False),
)

jobs = Table(
    "jobs", metadata,
    Column("job_id", Integer, primary_key=True, autoincrement=True),
    Column("job_type", Integer, nullable=False),        # 0 backup, 2 restore, 17 image delete
    Column("state", Integer, nullable=False),           # 0 queued, 1 active, 3 done
    Column("status", Integer),                          # NetBackup status code once done
    Column("policy", String(128), nullable=False),
    Column("schedule", String(128), nullable=False),
    Column("sched_type", Integer),
    Column("client", String(255), nullable=False),
    Column("server", String(255), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("stunit", String(128), nullable=False),
    Column("started", BigInteger, nullable=False),
    Column("ended", BigInteger),
    Column("kbytes", BigInteger, nullable=False),
    Column("files", BigInteger, nullable=False),
    Column("backup_id", String(300)),
    Column("parent_job", Integer),
    Column("try_count", Integer, nullable=False),
    Column("current_object", Text),
    Column("pid", Integer),
    Column("queue_reason", Text),
    Column("scheduled", Boolean, nullable=False, server_default=sa.false()),  # a policy run
    Column("cancel_requested", Boolean, nullable=False, server_default=sa.false()),
    Column("streams", Integer, nullable=False, server_default="0"),  # >0: a multi-stream parent
    Column("bytes_received", BigInteger),       # backups: what the client sent ...
    Column("bytes_after_dedup", BigInteger),    # ... what was new to the storage unit ...
    Column("bytes_stored", BigInteger),         # ... and what it stored (compressed)
)

job_events = Table(
    "job_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_job_events_job", "job_id"),
)

images = Table(
    "images", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("backup_id", String(300), nullable=False, unique=True),
    Column("client", String(255), nullable=False),
    Column("ctime", BigInteger, nullable=False),
    Column("os_user", String(128), nullable=False),
    Column("policy", String(128), nullable=False),
    Column("schedule", String(128), nullable=False),
    Column("sched_type", Integer, nullable=False),
    Column("retention_level", Integer, nullable=False),
    Column("expiration", BigInteger, nullable=False),
    Column("keyword", String(256), nullable=False),
    Column("job_id", Integer, nullable=False),
    Column("state", Integer, nullable=False),           # 0 being written (invisible), 1 committed
    Column("stunit", String(128), nullable=False),
    Column("location", Text, nullable=False),
    Column("kbytes", BigInteger, nullable=False),
    Column("num_objects", Integer, nullable=False),
    Column("media_id", String(6), nullable=False),
    Column("bytes_received", BigInteger),
    Column("bytes_after_dedup", BigInteger),
    Column("bytes_stored", BigInteger),
    Index("ix_images_client_ctime", "client", "ctime"),
)

objects = Table(
    "objects", metadata,
    Column("copy_id", BigInteger, primary_key=True, autoincrement=False),
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("os_user", String(128), nullable=False),
    Column("client_host", String(255), nullable=False),
    Column("bsa_owner", String(64), nullable=False),
    Column("app_owner", String(64), nullable=False),
    Column("space_name", String(1024), nullable=False),
    Column("path_name", String(1024), nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("copy_type", Integer, nullable=False),
    Column("object_type", Integer, nullable=False),
    Column("resource_type", String(31), nullable=False),
    Column("description", String(100), nullable=False),
    Column("object_info", LargeBinary, nullable=False),
    Column("estimated_size", String(20), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("checksum", String(64), nullable=False),
    Index("ix_objects_path", "path_name"),
    # a client's objects by name (then user: root may see every user's): BSAQueryObject
    # looks one name, or the names that start so, up among them; with only (client, user),
    # SQLite walked every object of the user (of the client, for root) for each query
    Index("ix_objects_client_path", "client_host", "path_name", "os_user"),
    Index("ix_objects_image", "image_id"),
)

# delete transactions that committed, remembered a day so that a client whose commit reply
# was lost can ask how its transaction ended (written with the deletions, in one transaction)
committed_txns = Table(
    "committed_txns", metadata,
    Column("token", String(32), primary_key=True),
    Column("client_host", String(255), nullable=False),
    Column("os_user", String(128), nullable=False),
    Column("committed", BigInteger, nullable=False),
    Index("ix_committed_txns_committed", "committed"),
)
