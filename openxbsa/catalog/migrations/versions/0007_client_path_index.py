"""Objects indexed by (client, name, user), not (client, user): a query for one name no
longer walks every object of its user (of its client, for root).

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_index("ix_objects_client_path", "objects", ["client_host", "path_name", "os_user"])
    op.drop_index("ix_objects_owner", "objects")


def downgrade() -> None:
    op.create_index("ix_objects_owner", "objects", ["client_host", "os_user"])
    op.drop_index("ix_objects_client_path", "objects")
