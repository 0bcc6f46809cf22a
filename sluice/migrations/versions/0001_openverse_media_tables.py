"""openverse media tables

Revision ID: 0001
Revises:
Create Date: 2026-11-22 06:55:04.407904
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import String, Text
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_deletedaudio",
        sa.Column("identifier", sa.Uuid(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_on", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identifier"),
    )
    op.create_table(
        "api_deletedimage",
        sa.Column("identifier", sa.Uuid(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_on", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identifier"),
    )
    op.create_table(
        "api_matureaudio",
        sa.Column("identifier", sa.Uuid(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identifier"),
    )
    op.create_table(
        "api_matureimage",
        sa.Column("identifier", sa.Uuid(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identifier"),
    )
    op.create_table(
        "audio",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("identifier", sa.Uuid(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("foreign_identifier", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("foreign_landing_url", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("thumbnail", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("filesize", sa.Integer(), nullable=True),
        sa.Column("license", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("license_version", sqlmodel.sql.sqltypes.AutoString(length=25), nullable=True),
        sa.Column("creator", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("creator_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("last_synced_with_source", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_from_source", sa.Boolean(), nullable=False),
        sa.Column("view_count", sa.Integer(), nullable=True),
        sa.Column("watermarked", sa.Boolean(), nullable=True),
        sa.Column("filetype", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("tags", sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"), nullable=True),
        sa.Column(
            "tags_list",
            sa.JSON().with_variant(postgresql.ARRAY(String(length=255)), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "meta_data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("audio_set_position", sa.Integer(), nullable=True),
        sa.Column(
            "genres",
            sa.JSON().with_variant(postgresql.ARRAY(String(length=255)), "postgresql"),
            nullable=True,
        ),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("bit_rate", sa.Integer(), nullable=True),
        sa.Column("sample_rate", sa.Integer(), nullable=True),
        sa.Column(
            "alt_files",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("audio_set_foreign_identifier", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column(
            "audio_set",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("standardized_popularity", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("identifier"),
        sa.UniqueConstraint("url"),
    )
    with op.batch_alter_table("audio", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audio_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_audio_foreign_identifier"), ["foreign_identifier"], unique=False)
        batch_op.create_index(batch_op.f("ix_audio_provider"), ["provider"], unique=False)
        batch_op.create_index(batch_op.f("ix_audio_source"), ["source"], unique=False)

    op.create_table(
        "image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("identifier", sa.Uuid(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("foreign_identifier", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("foreign_landing_url", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("thumbnail", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("filesize", sa.Integer(), nullable=True),
        sa.Column("license", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("license_version", sqlmodel.sql.sqltypes.AutoString(length=25), nullable=True),
        sa.Column("creator", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("creator_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("last_synced_with_source", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_from_source", sa.Boolean(), nullable=False),
        sa.Column("view_count", sa.Integer(), nullable=True),
        sa.Column("watermarked", sa.Boolean(), nullable=True),
        sa.Column("filetype", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=5000), nullable=True),
        sa.Column(
            "tags_list",
            sa.JSON().with_variant(postgresql.ARRAY(String(length=255)), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "meta_data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("tags", sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"), nullable=True),
        sa.Column("standardized_popularity", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("identifier"),
        sa.UniqueConstraint("url"),
    )
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_image_foreign_identifier"), ["foreign_identifier"], unique=False)
        batch_op.create_index(batch_op.f("ix_image_provider"), ["provider"], unique=False)
        batch_op.create_index(batch_op.f("ix_image_source"), ["source"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_source"))
        batch_op.drop_index(batch_op.f("ix_image_provider"))
        batch_op.drop_index(batch_op.f("ix_image_foreign_identifier"))
        batch_op.drop_index(batch_op.f("ix_image_category"))

    op.drop_table("image")
    with op.batch_alter_table("audio", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audio_source"))
        batch_op.drop_index(batch_op.f("ix_audio_provider"))
        batch_op.drop_index(batch_op.f("ix_audio_foreign_identifier"))
        batch_op.drop_index(batch_op.f("ix_audio_category"))

    op.drop_table("audio")
    op.drop_table("api_matureimage")
    op.drop_table("api_matureaudio")
    op.drop_table("api_deletedimage")
    op.drop_table("api_deletedaudio")
