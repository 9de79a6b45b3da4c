"""installation: what the last instance sync worked from, for the next one to start there

Revision ID: 0012
Revises: 0011

Written by hand to match engine/state.py (InstallationRow). All nullable: a database that has not
synced since this migration runs its next sync in full (engine/sync.py), which fills them.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('installation') as batch:
        batch.add_column(sa.Column('synced_on', sa.Date(), nullable=True))
        batch.add_column(sa.Column('synced_until', sa.Date(), nullable=True))
        batch.add_column(sa.Column('synced_rules', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('synced_instances', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('installation') as batch:
        batch.drop_column('synced_instances')
        batch.drop_column('synced_rules')
        batch.drop_column('synced_until')
        batch.drop_column('synced_on')
