"""image collections

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image_collection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("heidicon_tag", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_finetuned", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finetuning_progess", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "collection_image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("image_url", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
        sa.Column("repo_url", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["image_collection.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("collection_image", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_collection_image_collection_id"), ["collection_id"], unique=False)


def downgrade() -> None:
    op.drop_table("collection_image")
    op.drop_table("image_collection")
