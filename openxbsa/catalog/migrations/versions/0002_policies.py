"""Policies grow clients, backup selections, limits; schedules grow frequency, calendar, windows.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

ALWAYS = "[[0, 86400], [0, 86400], [0, 86400], [0, 86400], [0, 86400], [0, 86400], [0, 86400]]"


def upgrade() -> None:
    with op.batch_alter_table("policies") as b:
        b.add_column(sa.Column("limit_jobs", sa.Integer, nullable=False, server_default="0"))
        b.add_column(sa.Column("multiple_streams", sa.Boolean, nullable=False,
                               server_default=sa.false()))
    with op.batch_alter_table("schedules") as b:
        b.add_column(sa.Column("frequency", sa.Integer, nullable=False, server_default="0"))
        b.add_column(sa.Column("calendar", sa.String(64), nullable=False, server_default=""))
        b.add_column(sa.Column("windows", sa.Text, nullable=False, server_default=ALWAYS))
    op.create_table(
        "policy_clients",
        sa.Column("policy_id", sa.Integer, sa.ForeignKey("policies.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("client", sa.String(255), primary_key=True),
    )
    op.create_table(
        "policy_includes",
        sa.Column("policy_id", sa.Integer, sa.ForeignKey("policies.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
    )
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("queue_reason", sa.Text))
        b.add_column(sa.Column("scheduled", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.drop_column("scheduled")
        b.drop_column("queue_reason")
    op.drop_table("policy_includes")
    op.drop_table("policy_clients")
    with op.batch_alter_table("schedules") as b:
        b.drop_column("windows")
        b.drop_column("calendar")
        b.drop_column("frequency")
    with op.batch_alter_table("policies") as b:
        b.drop_column("multiple_streams")
        b.drop_column("limit_jobs")
