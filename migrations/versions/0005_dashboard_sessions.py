"""Dashboard sessions: browsers signed in with an organization's API key (token hash only).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dashboard_sessions',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('org_id', sa.String(length=40), nullable=False),
        sa.Column('api_key_id', sa.String(length=40), nullable=False),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], ondelete='CASCADE',
                                name='fk_dashboard_sessions_org_id_organizations'),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], ondelete='CASCADE',
                                name='fk_dashboard_sessions_api_key_id_api_keys'),
        sa.PrimaryKeyConstraint('token_hash', name='pk_dashboard_sessions'),
    )
    op.create_index('ix_dashboard_sessions_org_id', 'dashboard_sessions', ['org_id'])
    op.create_index('ix_dashboard_sessions_api_key_id', 'dashboard_sessions', ['api_key_id'])
    op.create_index('ix_dashboard_sessions_expires_at', 'dashboard_sessions', ['expires_at'])


def downgrade() -> None:
    op.drop_table('dashboard_sessions')
