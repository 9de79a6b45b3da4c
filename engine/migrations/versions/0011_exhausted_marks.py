"""exhausted instances are not read again; the unused index of notices by recipient goes

Revision ID: 0011
Revises: 0010

Written by hand to match engine/state.py. (Lead's migration for the evaluation pass; a migration for
the instance sync goes on top of it as 0012.)

* ``instances.exhausted_rules`` / ``exhausted_on``: an open instance with nothing left to send under
  the rules whose exhaustion marker it carries, from that day on (engine/open_items.py).
* ``ix_notices_recipient``: no query looks notices up by recipient (digests group them in Python,
  deliveries have their own index); maintaining it cost an evaluation pass 15 % of its writing
  (benchmarks/bench_evaluation_pass.py).
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('exhausted_rules', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('exhausted_on', sa.Date(), nullable=True))
    op.drop_index('ix_notices_recipient', table_name='notices')


def downgrade() -> None:
    op.create_index('ix_notices_recipient', 'notices', ['recipient'], unique=False)
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('exhausted_on')
        batch_op.drop_column('exhausted_rules')
