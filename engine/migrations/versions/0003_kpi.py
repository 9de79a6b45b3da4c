"""kpi values: reported values of the plans' indicators, corrections kept

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 18:00:00

Written by hand to match engine/kpi/state.py (KpiValueRow).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kpi_values',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('indicator', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('replaces_id', sa.Integer(), nullable=True),
    sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('recorded_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.ForeignKeyConstraint(['replaces_id'], ['kpi_values.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('kpi_values', schema=None) as batch_op:
        batch_op.create_index('ix_kpi_values_indicator_as_of', ['indicator', 'as_of', 'active'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('kpi_values', schema=None) as batch_op:
        batch_op.drop_index('ix_kpi_values_indicator_as_of')
    op.drop_table('kpi_values')
