"""collection image vectors

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("collection_image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("embedding", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("image_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))
    with op.batch_alter_table("image_collection", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finetune_run_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_collection", schema=None) as batch_op:
        batch_op.drop_column("finetune_run_id")
    with op.batch_alter_table("collection_image", schema=None) as batch_op:
        batch_op.drop_column("error")
        batch_op.drop_column("image_sha256")
        batch_op.drop_column("embedding")
