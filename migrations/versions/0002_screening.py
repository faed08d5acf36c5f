"""Training-data screening: a summary on each training file and on each job.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('files') as batch:
        batch.add_column(sa.Column('screening', sa.JSON(), nullable=True))
    with op.batch_alter_table('fine_tuning_jobs') as batch:
        batch.add_column(sa.Column('screening', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('fine_tuning_jobs') as batch:
        batch.drop_column('screening')
    with op.batch_alter_table('files') as batch:
        batch.drop_column('screening')
