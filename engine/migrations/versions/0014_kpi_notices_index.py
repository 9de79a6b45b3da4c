"""the outbox's KPI notices indexed by what a pass asks of them

Revision ID: 0014
Revises: 0013

Written by hand to match engine/state.py (NoticeRow, index ix_notices_kpi_subject). Each evaluation
pass asks which stages of today's slipping KPI items are already in the outbox
(engine/pipeline.py, ``_kpi_sent_stages``). It read every KPI notice ever written (those without an
instance), a set that grows every month for as long as dondoc runs; with this index it reads the
stages of today's items only. Partial (WHERE instance_id IS NULL), so the reports' notices — almost
all of the outbox — are not in it and their inserts do not maintain it.
"""
from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_WHERE = dict(sqlite_where=sa.text("instance_id IS NULL"), postgresql_where=sa.text("instance_id IS NULL"))


def upgrade() -> None:
    op.create_index('ix_notices_kpi_subject', 'notices', ['obligation', 'unit', 'period', 'stage'],
                    unique=False, **_WHERE)


def downgrade() -> None:
    op.drop_index('ix_notices_kpi_subject', table_name='notices')
