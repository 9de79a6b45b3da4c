"""the web console: accounts, sessions, unit links, unit confirmations, attachments

Revision ID: 0007
Revises: 0006

Written by hand to match engine/state.py (UserRow, WebSessionRow, UnitLinkRow, ConfirmationRow,
AttachmentRow; InstanceRow.awaiting_since and chase_paused).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('awaiting_since', sa.Date(), nullable=True))
        batch.add_column(sa.Column('chase_paused', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        'users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('username', S(length=80), nullable=False),
        sa.Column('full_name', S(length=200), nullable=False),
        sa.Column('role', S(length=20), nullable=False),
        sa.Column('password_hash', sa.Text(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', T(), nullable=False),
        sa.Column('updated_at', T(), nullable=False),
        sa.Column('last_login_at', T(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('username'),
    )
    op.create_table(
        'web_sessions',
        sa.Column('token_hash', S(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('csrf', S(length=64), nullable=False),
        sa.Column('created_at', T(), nullable=False),
        sa.Column('expires_at', T(), nullable=False),
        sa.Column('revoked', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('token_hash'),
    )
    op.create_index('ix_web_sessions_user_id', 'web_sessions', ['user_id'])
    op.create_table(
        'unit_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('unit', S(length=80), nullable=False),
        sa.Column('delivery_id', sa.Integer(), nullable=True),
        sa.Column('instance_ids', sa.Text(), nullable=False),
        sa.Column('nonce', S(length=32), nullable=False),
        sa.Column('purpose', S(length=20), nullable=False),
        sa.Column('created_at', T(), nullable=False),
        sa.Column('expires_at', T(), nullable=False),
        sa.Column('revoked_at', T(), nullable=True),
        sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('delivery_id', 'unit', name='uq_unit_link_delivery'),
    )
    op.create_index('ix_unit_links_unit', 'unit_links', ['unit'])
    op.create_table(
        'confirmations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('unit', S(length=80), nullable=False),
        sa.Column('link_id', sa.Integer(), nullable=True),
        sa.Column('submitted_on', sa.Date(), nullable=False),
        sa.Column('ref', S(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('state', S(length=12), nullable=False),
        sa.Column('created_at', T(), nullable=False),
        sa.Column('decided_at', T(), nullable=True),
        sa.Column('decided_by', S(length=80), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('submission_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id']),
        sa.ForeignKeyConstraint(['link_id'], ['unit_links.id']),
        sa.ForeignKeyConstraint(['submission_id'], ['submissions.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_confirmations_instance_id', 'confirmations', ['instance_id'])
    op.create_index('ix_confirmations_unit', 'confirmations', ['unit'])
    op.create_table(
        'attachments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=False),
        sa.Column('unit', S(length=80), nullable=False),
        sa.Column('confirmation_id', sa.Integer(), nullable=True),
        sa.Column('submission_id', sa.Integer(), nullable=True),
        sa.Column('filename', S(length=255), nullable=False),
        sa.Column('stored_name', S(length=80), nullable=False),
        sa.Column('content_type', S(length=120), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('sha256', S(length=64), nullable=False),
        sa.Column('created_at', T(), nullable=False),
        sa.Column('created_by', S(length=80), nullable=False),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id']),
        sa.ForeignKeyConstraint(['confirmation_id'], ['confirmations.id']),
        sa.ForeignKeyConstraint(['submission_id'], ['submissions.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('stored_name'),
    )
    op.create_index('ix_attachments_instance_id', 'attachments', ['instance_id'])
    op.create_index('ix_attachments_sha256', 'attachments', ['sha256'])


def downgrade() -> None:
    for t in ('attachments', 'confirmations', 'unit_links', 'web_sessions', 'users'):
        op.drop_table(t)
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('chase_paused')
        batch.drop_column('awaiting_since')
