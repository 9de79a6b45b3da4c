"""versions of the rule folder: who applied what, when, why; hand edits recorded too

Revision ID: 0008
Revises: 0007

Written by hand to match engine/state.py (RuleVersionRow).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        'rule_versions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('content_hash', S(length=64), nullable=False),
        sa.Column('kind', S(length=20), nullable=False),
        sa.Column('author', S(length=200), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('base_number', sa.Integer(), nullable=True),
        sa.Column('restored_from', sa.Integer(), nullable=True),
        sa.Column('created_at', T(), nullable=False),
        sa.Column('diff', sa.Text(), nullable=False),
        sa.Column('files', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('number'),
    )
    op.create_index('ix_rule_versions_content_hash', 'rule_versions', ['content_hash'])


def downgrade() -> None:
    op.drop_index('ix_rule_versions_content_hash', table_name='rule_versions')
    op.drop_table('rule_versions')
