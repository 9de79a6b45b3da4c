"""the console's reads by due day, and the inbox's and confirmations' queues, indexed

Revision ID: 0016
Revises: 0015

Written by hand to match engine/state.py. An audit of the reads that grow with an installation's
age (benchmarks/README.md, "Stop 25: an audit …") found the console's pages reading every
instance of every year to show one year, one week or what is due from today: no index led on
``due``. At 20 years of a 1,073-unit province (258,000 instances) the overview took 224 ms, the
matrix 232, the reports list 283, the units list 185; with these indexes each reads about one
year's rows. ``ix_instances_unit`` becomes ``(unit, due)`` (a unit's year; everything the old index
served, it serves). The daily sync reads a report's periods from today on: ``(obligation, period)``
(the unique key has the unit between them, so each read took the report's rows of every year:
85–103 ms each at 20 years, four to ten a day).

The inbox's tabs list mails newest first (``state, received_at, id``: a page read off the index
instead of a sort of every mail of the tab, replacing the index on ``state`` alone); the
confirmations queue reads the pending ones (``state``) and their files (``confirmation_id``).
"""
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_instances_due', 'instances', ['due'], unique=False)
    op.create_index('ix_instances_obligation_due', 'instances', ['obligation', 'due'], unique=False)
    op.create_index('ix_instances_unit_due', 'instances', ['unit', 'due'], unique=False)
    op.create_index('ix_instances_obligation_period', 'instances', ['obligation', 'period'], unique=False)
    op.drop_index('ix_instances_unit', table_name='instances')
    op.create_index('ix_inbound_mails_state_received', 'inbound_mails', ['state', 'received_at', 'id'], unique=False)
    op.drop_index('ix_inbound_mails_state', table_name='inbound_mails')
    op.create_index('ix_confirmations_state', 'confirmations', ['state'], unique=False)
    op.create_index('ix_attachments_confirmation_id', 'attachments', ['confirmation_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_attachments_confirmation_id', table_name='attachments')
    op.drop_index('ix_confirmations_state', table_name='confirmations')
    op.create_index('ix_inbound_mails_state', 'inbound_mails', ['state'], unique=False)
    op.drop_index('ix_inbound_mails_state_received', table_name='inbound_mails')
    op.create_index('ix_instances_unit', 'instances', ['unit'], unique=False)
    op.drop_index('ix_instances_obligation_period', table_name='instances')
    op.drop_index('ix_instances_unit_due', table_name='instances')
    op.drop_index('ix_instances_obligation_due', table_name='instances')
    op.drop_index('ix_instances_due', table_name='instances')
