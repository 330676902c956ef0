"""serving: scenes and scene versions, release records

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scenes",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scenes")),
    )
    op.create_table(
        "scene_versions",
        sa.Column("scene", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["scene"], ["scenes.name"], name=op.f("fk_scene_versions_scene_scenes")),
        sa.PrimaryKeyConstraint("scene", "version", name=op.f("pk_scene_versions")),
    )
    op.create_table(
        "scene_releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scene", sa.String(length=255), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["scene"], ["scenes.name"], name=op.f("fk_scene_releases_scene_scenes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scene_releases")),
    )
    with op.batch_alter_table("scene_releases", schema=None) as batch_op:
        batch_op.create_index("ix_scene_releases_scene", ["scene", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scene_releases", schema=None) as batch_op:
        batch_op.drop_index("ix_scene_releases_scene")
    op.drop_table("scene_releases")
    op.drop_table("scene_versions")
    op.drop_table("scenes")
