"""documents

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 08:38:40.887714
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "document",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("index_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("document_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("is_indexable", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("uri", sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=True),
        sa.Column("authors", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("image_urls", sa.JSON(), nullable=True),
        sa.Column("logo_url", sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=True),
        sa.Column("custom_metadata", sa.JSON(), nullable=True),
        sa.Column("allow_access_rights", sa.JSON(), nullable=True),
        sa.Column("content_source_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("content_ingestion_job_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("content_url", sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=True),
        sa.Column("has_content", sa.Boolean(), nullable=False),
        sa.Column("error_codes", sa.JSON(), nullable=True),
        sa.Column("error_message", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("request_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_last_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant"],
            ["tenant.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "index_id", "document_id"),
    )
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_document_content_ingestion_job_id"), ["content_ingestion_job_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_document_content_source_id"), ["content_source_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_document_request_last_updated_at"), ["request_last_updated_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_document_status"), ["status"], unique=False)

    op.create_table(
        "document_content",
        sa.Column("document_pk", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_pk"],
            ["document.id"],
        ),
        sa.PrimaryKeyConstraint("document_pk"),
    )


def downgrade() -> None:
    op.drop_table("document_content")
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_document_status"))
        batch_op.drop_index(batch_op.f("ix_document_request_last_updated_at"))
        batch_op.drop_index(batch_op.f("ix_document_content_source_id"))
        batch_op.drop_index(batch_op.f("ix_document_content_ingestion_job_id"))

    op.drop_table("document")
