"""document processing bookkeeping

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 09:14:27.243316
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.add_column(sa.Column("indexed_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rights_version", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("rights_pending", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index(batch_op.f("ix_document_rights_pending"), ["rights_pending"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_document_rights_pending"))
        batch_op.drop_column("rights_pending")
        batch_op.drop_column("rights_version")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("indexed_version")
