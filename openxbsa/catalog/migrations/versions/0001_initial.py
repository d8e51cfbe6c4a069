"""Initial catalog: policies, schedules, storage units, jobs, images, objects.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    big, s, i = sa.BigInteger, sa.String, sa.Integer
    op.create_table("counters", sa.Column("name", s(64), primary_key=True),
                    sa.Column("value", big, nullable=False))
    op.create_table("host_secrets", sa.Column("host", s(255), primary_key=True),
                    sa.Column("secret", s(128), nullable=False),
                    sa.Column("created", big, nullable=False))
    op.create_table(
        "policies",
        sa.Column("id", i, primary_key=True, autoincrement=True),
        sa.Column("name", s(128), nullable=False, unique=True),
        sa.Column("policy_type", i, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("keyword", s(256), nullable=False),
        sa.Column("priority", i, nullable=False),
        sa.Column("stunit", s(128), nullable=False),
    )
    op.create_table(
        "schedules",
        sa.Column("id", i, primary_key=True, autoincrement=True),
        sa.Column("policy_id", i, sa.ForeignKey("policies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", s(128), nullable=False),
        sa.Column("sched_type", i, nullable=False),
        sa.Column("retention_level", i, nullable=False),
    )
    op.create_table(
        "storage_units",
        sa.Column("name", s(128), primary_key=True),
        sa.Column("kind", s(32), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("max_jobs", i, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("job_id", i, primary_key=True, autoincrement=True),
        sa.Column("job_type", i, nullable=False),
        sa.Column("state", i, nullable=False),
        sa.Column("status", i),
        sa.Column("policy", s(128), nullable=False),
        sa.Column("schedule", s(128), nullable=False),
        sa.Column("sched_type", i),
        sa.Column("client", s(255), nullable=False),
        sa.Column("server", s(255), nullable=False),
        sa.Column("owner", s(128), nullable=False),
        sa.Column("stunit", s(128), nullable=False),
        sa.Column("started", big, nullable=False),
        sa.Column("ended", big),
        sa.Column("kbytes", big, nullable=False),
        sa.Column("files", big, nullable=False),
        sa.Column("backup_id", s(300)),
        sa.Column("parent_job", i),
        sa.Column("try_count", i, nullable=False),
        sa.Column("current_object", sa.Text),
        sa.Column("pid", i),
    )
    op.create_table(
        "job_events",
        sa.Column("id", i, primary_key=True, autoincrement=True),
        sa.Column("job_id", i, sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False),
        sa.Column("time", big, nullable=False),
        sa.Column("severity", s(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id"])
    op.create_table(
        "images",
        sa.Column("id", i, primary_key=True, autoincrement=True),
        sa.Column("backup_id", s(300), nullable=False, unique=True),
        sa.Column("client", s(255), nullable=False),
        sa.Column("ctime", big, nullable=False),
        sa.Column("os_user", s(128), nullable=False),
        sa.Column("policy", s(128), nullable=False),
        sa.Column("schedule", s(128), nullable=False),
        sa.Column("sched_type", i, nullable=False),
        sa.Column("retention_level", i, nullable=False),
        sa.Column("expiration", big, nullable=False),
        sa.Column("keyword", s(256), nullable=False),
        sa.Column("job_id", i, nullable=False),
        sa.Column("state", i, nullable=False),
        sa.Column("stunit", s(128), nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("kbytes", big, nullable=False),
        sa.Column("num_objects", i, nullable=False),
        sa.Column("media_id", s(6), nullable=False),
    )
    op.create_index("ix_images_client_ctime", "images", ["client", "ctime"])
    op.create_table(
        "objects",
        sa.Column("copy_id", big, primary_key=True, autoincrement=False),
        sa.Column("image_id", i, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", i, nullable=False),
        sa.Column("os_user", s(128), nullable=False),
        sa.Column("client_host", s(255), nullable=False),
        sa.Column("bsa_owner", s(64), nullable=False),
        sa.Column("app_owner", s(64), nullable=False),
        sa.Column("space_name", s(1024), nullable=False),
        sa.Column("path_name", s(1024), nullable=False),
        sa.Column("create_time", big, nullable=False),
        sa.Column("copy_type", i, nullable=False),
        sa.Column("object_type", i, nullable=False),
        sa.Column("resource_type", s(31), nullable=False),
        sa.Column("description", s(100), nullable=False),
        sa.Column("object_info", sa.LargeBinary, nullable=False),
        sa.Column("estimated_size", s(20), nullable=False),
        sa.Column("size", big, nullable=False),
        sa.Column("offset", big, nullable=False),
        sa.Column("checksum", s(64), nullable=False),
    )
    op.create_index("ix_objects_path", "objects", ["path_name"])
    op.create_index("ix_objects_owner", "objects", ["client_host", "os_user"])
    op.create_index("ix_objects_image", "objects", ["image_id"])


def downgrade() -> None:
    for table in ("objects", "images", "job_events", "jobs", "storage_units", "schedules",
                  "policies", "host_secrets", "counters"):
        op.drop_table(table)
