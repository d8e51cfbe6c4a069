"""Bytes received, left after deduplication and stored, per job and per image.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

COLUMNS = ("bytes_received", "bytes_after_dedup", "bytes_stored")


def upgrade() -> None:
    for table in ("jobs", "images"):
        with op.batch_alter_table(table) as b:
            for name in COLUMNS:
                b.add_column(sa.Column(name, sa.BigInteger, nullable=True))


def downgrade() -> None:
    for table in ("jobs", "images"):
        with op.batch_alter_table(table) as b:
            for name in COLUMNS:
                b.drop_column(name)
