"""the open instances in (obligation, unit, period) order: what an evaluation pass reads

Revision ID: 0010
Revises: 0009

Written by hand to match engine/state.py (InstanceRow, index ix_instances_open_key). A partial
index: it holds only the open, active instances, so reading them in the order of the notices' keys
(engine/open_items.py) does not walk every closed instance of past years.
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

def upgrade() -> None:
    op.create_index('ix_instances_open_key', 'instances', ['obligation', 'unit', 'period'], unique=False,
                    sqlite_where=sa.text("closed = 0 AND active = 1"),
                    postgresql_where=sa.text("closed = false AND active = true"))


def downgrade() -> None:
    op.drop_index('ix_instances_open_key', table_name='instances')
