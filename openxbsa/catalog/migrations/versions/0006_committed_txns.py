"""Committed delete transactions, so a client whose commit reply was lost can ask.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "committed_txns",
        sa.Column("token", sa.String(32), primary_key=True),
        sa.Column("client_host", sa.String(255), nullable=False),
        sa.Column("os_user", sa.String(128), nullable=False),
        sa.Column("committed", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_committed_txns_committed", "committed_txns", ["committed"])


def downgrade() -> None:
    op.drop_index("ix_committed_txns_committed", "committed_txns")
    op.drop_table("committed_txns")
