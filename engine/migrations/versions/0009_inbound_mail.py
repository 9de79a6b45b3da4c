"""reports that arrive by e-mail: the messages read from the mailbox, and the mail a confirmation came from

Revision ID: 0009
Revises: 0008

Written by hand to match engine/state.py (InboundMailRow, ConfirmationRow.inbound_id).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'inbound_mails',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('message_id', S(length=300), nullable=False),
        sa.Column('raw_sha256', S(length=64), nullable=False),
        sa.Column('raw_size', sa.Integer(), nullable=False),
        sa.Column('stored_name', S(length=80), nullable=True),
        sa.Column('folder', S(length=200), nullable=False),
        sa.Column('uid', sa.Integer(), nullable=True),
        sa.Column('received_at', T(), nullable=False),
        sa.Column('sender', S(length=320), nullable=False),
        sa.Column('sender_name', S(length=200), nullable=False),
        sa.Column('subject', sa.Text(), nullable=False),
        sa.Column('state', S(length=12), nullable=False),
        sa.Column('via', S(length=10), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('ref', S(length=80), nullable=True),
        sa.Column('units', sa.Text(), nullable=False),
        sa.Column('candidates', sa.Text(), nullable=False),
        sa.Column('files', sa.Text(), nullable=False),
        sa.Column('problems', sa.Text(), nullable=False),
        sa.Column('created_at', T(), nullable=False),
        sa.Column('decided_at', T(), nullable=True),
        sa.Column('decided_by', S(length=80), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_id'),
    )
    op.create_index('ix_inbound_mails_raw_sha256', 'inbound_mails', ['raw_sha256'])
    op.create_index('ix_inbound_mails_state', 'inbound_mails', ['state'])
    with op.batch_alter_table('confirmations') as batch:
        batch.add_column(sa.Column('inbound_id', sa.Integer(), nullable=True))
        batch.create_index('ix_confirmations_inbound_id', ['inbound_id'])


def downgrade() -> None:
    with op.batch_alter_table('confirmations') as batch:
        batch.drop_index('ix_confirmations_inbound_id')
        batch.drop_column('inbound_id')
    op.drop_index('ix_inbound_mails_state', table_name='inbound_mails')
    op.drop_index('ix_inbound_mails_raw_sha256', table_name='inbound_mails')
    op.drop_table('inbound_mails')
