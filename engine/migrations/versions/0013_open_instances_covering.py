"""the open instances' index carries everything an evaluation pass reads of them

Revision ID: 0013
Revises: 0012

Written by hand to match engine/state.py (InstanceRow, index ix_instances_open_key). The pass's
reader (engine/open_items.py) walks this partial index in (obligation, unit, period) order; with the
due day, the pause flag, the exhaustion mark and the id in the index too, it no longer looks up
each instance's row in the table (≈200 bytes a row, of which it needs 40): at 100,000 open
instances its reading costs half the CPU (benchmarks/bench_evaluation_pass.py), and the backlog of
exhausted instances is skipped inside the index.
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_WHERE = dict(sqlite_where=sa.text("closed = 0 AND active = 1"),
              postgresql_where=sa.text("closed = false AND active = true"))


def upgrade() -> None:
    op.drop_index('ix_instances_open_key', table_name='instances')
    op.create_index('ix_instances_open_key', 'instances',
                    ['obligation', 'unit', 'period', 'due', 'chase_paused', 'exhausted_rules', 'exhausted_on', 'id', 'closed',
                     'active'],
                    unique=False, **_WHERE)


def downgrade() -> None:
    op.drop_index('ix_instances_open_key', table_name='instances')
    op.create_index('ix_instances_open_key', 'instances', ['obligation', 'unit', 'period'], unique=False, **_WHERE)
