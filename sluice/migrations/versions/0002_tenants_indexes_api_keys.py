"""tenants indexes api keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:25:42.805407
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "api_key",
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant"],
            ["tenant.name"],
        ),
        sa.PrimaryKeyConstraint("key_id"),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_tenant"), ["tenant"], unique=False)

    op.create_table(
        "document_index",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("index_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("allowed_metadata_keys", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant"],
            ["tenant.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "index_id"),
    )
    with op.batch_alter_table("document_index", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_document_index_tenant"), ["tenant"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("document_index", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_document_index_tenant"))

    op.drop_table("document_index")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_key_tenant"))

    op.drop_table("api_key")
    op.drop_table("tenant")
