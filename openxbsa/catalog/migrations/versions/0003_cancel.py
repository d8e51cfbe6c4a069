"""Jobs can be asked to stop (bpdbjobs -cancel).

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("cancel_requested", sa.Boolean, nullable=False,
                               server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.drop_column("cancel_requested")
