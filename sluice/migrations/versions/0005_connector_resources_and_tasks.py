"""connector resources and tasks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:40:28.265917
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connector_authentication",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("platform", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("input_public", sa.JSON(), nullable=False),
        sa.Column("input_secret", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant"],
            ["tenant.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("connector_authentication", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connector_authentication_deleted_at"), ["deleted_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_connector_authentication_tenant"), ["tenant"], unique=False)

    op.create_table(
        "connector_destination",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("authentication_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["authentication_id"],
            ["connector_authentication.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant"],
            ["tenant.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("connector_destination", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connector_destination_deleted_at"), ["deleted_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_connector_destination_tenant"), ["tenant"], unique=False)

    op.create_table(
        "connector_source",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("authentication_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["authentication_id"],
            ["connector_authentication.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant"],
            ["tenant.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("connector_source", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connector_source_deleted_at"), ["deleted_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_connector_source_tenant"), ["tenant"], unique=False)

    op.create_table(
        "connector_task",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("destination_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("trigger_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("cron", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("failure_threshold", sa.Integer(), nullable=True),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("last_run", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["connector_destination.id"],
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["connector_source.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant"],
            ["tenant.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("connector_task", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connector_task_deleted_at"), ["deleted_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_connector_task_destination_id"), ["destination_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_connector_task_source_id"), ["source_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_connector_task_tenant"), ["tenant"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("connector_task", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connector_task_tenant"))
        batch_op.drop_index(batch_op.f("ix_connector_task_source_id"))
        batch_op.drop_index(batch_op.f("ix_connector_task_destination_id"))
        batch_op.drop_index(batch_op.f("ix_connector_task_deleted_at"))

    op.drop_table("connector_task")
    with op.batch_alter_table("connector_source", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connector_source_tenant"))
        batch_op.drop_index(batch_op.f("ix_connector_source_deleted_at"))

    op.drop_table("connector_source")
    with op.batch_alter_table("connector_destination", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connector_destination_tenant"))
        batch_op.drop_index(batch_op.f("ix_connector_destination_deleted_at"))

    op.drop_table("connector_destination")
    with op.batch_alter_table("connector_authentication", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connector_authentication_tenant"))
        batch_op.drop_index(batch_op.f("ix_connector_authentication_deleted_at"))

    op.drop_table("connector_authentication")
