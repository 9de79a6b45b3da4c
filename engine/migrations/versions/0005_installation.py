"""installation: the go-live day (written once) and the tracking start in force

Revision ID: 0005
Revises: 0004

Written by hand to match engine/state.py (InstallationRow). The row itself is written by the first
dondoc command that works on the database (engine.sync.record_installation), with that command's
"now" (--now included), not by this migration.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'installation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('installed_on', sa.Date(), nullable=False),
        sa.Column('installed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('tracking_start', sa.Date(), nullable=True),
        sa.Column('tracking_source', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('installation')
