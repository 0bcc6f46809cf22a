"""connector source streams (discover)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connector_source", schema=None) as batch_op:
        batch_op.add_column(sa.Column("streams", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("discovered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connector_source", schema=None) as batch_op:
        batch_op.drop_column("discovered_at")
        batch_op.drop_column("streams")
