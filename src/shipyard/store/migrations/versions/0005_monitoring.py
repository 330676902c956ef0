"""monitoring: series, baselines, daily statistics, reports, labels, alerts

Revision ID: 0005
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('monitoring_alert_rules',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_monitoring_alert_rules'))
    )
    op.create_table('monitoring_alerts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('rule', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=512), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('silenced', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('resolved_at', sa.BigInteger(), nullable=True),
    sa.Column('last_notified_at', sa.BigInteger(), nullable=True),
    sa.Column('notifications', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitoring_alerts'))
    )
    with op.batch_alter_table('monitoring_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_monitoring_alerts_fingerprint', ['fingerprint', 'id'], unique=False)
        batch_op.create_index('uq_monitoring_alerts_open', ['fingerprint'], unique=True,
                              sqlite_where=sa.text("status = 'firing'"), postgresql_where=sa.text("status = 'firing'"))

    op.create_table('monitoring_baselines',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('scene', sa.String(length=255), nullable=True),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.JSON(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_monitoring_baselines'))
    )
    op.create_table('monitoring_daily_stats',
    sa.Column('scene', sa.String(length=255), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('baseline', sa.String(length=255), nullable=True),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('plugins', sa.JSON(), nullable=False),
    sa.Column('computed_at', sa.BigInteger(), nullable=False),
    sa.Column('computed_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('scene', 'day', name=op.f('pk_monitoring_daily_stats'))
    )
    op.create_table('monitoring_labels',
    sa.Column('scene', sa.String(length=255), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('label', sa.Float(), nullable=False),
    sa.Column('matched', sa.Boolean(), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=True),
    sa.Column('day', sa.String(length=10), nullable=True),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.Column('arm', sa.String(length=64), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('decision', sa.String(length=255), nullable=True),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('ingested_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('scene', 'request_id', 'row', name=op.f('pk_monitoring_labels'))
    )
    with op.batch_alter_table('monitoring_labels', schema=None) as batch_op:
        batch_op.create_index('ix_monitoring_labels_scene_day', ['scene', 'day'], unique=False)

    op.create_table('monitoring_notifiers',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_monitoring_notifiers'))
    )
    op.create_table('monitoring_reports',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('scene', sa.String(length=255), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('html_path', sa.Text(), nullable=False),
    sa.Column('json_path', sa.Text(), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitoring_reports'))
    )
    with op.batch_alter_table('monitoring_reports', schema=None) as batch_op:
        batch_op.create_index('ix_monitoring_reports_scene_day', ['scene', 'day', 'id'], unique=False)

    op.create_table('monitoring_scenes',
    sa.Column('scene', sa.String(length=255), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('scene', name=op.f('pk_monitoring_scenes'))
    )
    op.create_table('monitoring_series',
    sa.Column('scene', sa.String(length=255), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('arm', sa.String(length=64), nullable=False),
    sa.Column('minute', sa.BigInteger(), nullable=False),
    sa.Column('instance', sa.String(length=64), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('errors', sa.BigInteger(), nullable=False),
    sa.Column('fallbacks', sa.BigInteger(), nullable=False),
    sa.Column('latency_total', sa.JSON(), nullable=False),
    sa.Column('latency_features', sa.JSON(), nullable=False),
    sa.Column('latency_model', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('scene', 'version', 'arm', 'minute', 'instance', name=op.f('pk_monitoring_series'))
    )
    with op.batch_alter_table('monitoring_series', schema=None) as batch_op:
        batch_op.create_index('ix_monitoring_series_scene_minute', ['scene', 'minute'], unique=False)

    op.create_table('monitoring_silences',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('rule', sa.String(length=255), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('starts_at', sa.BigInteger(), nullable=False),
    sa.Column('ends_at', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitoring_silences'))
    )


def downgrade() -> None:
    op.drop_table('monitoring_silences')
    with op.batch_alter_table('monitoring_series', schema=None) as batch_op:
        batch_op.drop_index('ix_monitoring_series_scene_minute')

    op.drop_table('monitoring_series')
    op.drop_table('monitoring_scenes')
    with op.batch_alter_table('monitoring_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_monitoring_reports_scene_day')

    op.drop_table('monitoring_reports')
    op.drop_table('monitoring_notifiers')
    with op.batch_alter_table('monitoring_labels', schema=None) as batch_op:
        batch_op.drop_index('ix_monitoring_labels_scene_day')

    op.drop_table('monitoring_labels')
    op.drop_table('monitoring_daily_stats')
    op.drop_table('monitoring_baselines')
    with op.batch_alter_table('monitoring_alerts', schema=None) as batch_op:
        batch_op.drop_index('uq_monitoring_alerts_open')
        batch_op.drop_index('ix_monitoring_alerts_fingerprint')

    op.drop_table('monitoring_alerts')
    op.drop_table('monitoring_alert_rules')
