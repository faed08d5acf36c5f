"""Worker heartbeats: which workers are alive (for /metrics and operators).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'worker_heartbeats',
        sa.Column('name', sa.String(length=300), primary_key=True),
        sa.Column('hostname', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('queues', sa.String(length=200), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_worker_heartbeats_last_seen', 'worker_heartbeats', ['last_seen'])


def downgrade() -> None:
    op.drop_index('ix_worker_heartbeats_last_seen', table_name='worker_heartbeats')
    op.drop_table('worker_heartbeats')
