"""deliveries.file_name: the .eml file a digest was written to in the pickup folder

Revision ID: 0006
Revises: 0005

Written by hand to match engine/state.py (DeliveryRow.file_name). Named by date and recipient
(``2026-12-02_0930_so-tai-chinh_<short id>.eml``), chosen on the digest's first try and kept on
retries, so `dondoc outbox` can show which file holds which digest. Empty for SMTP and webhooks.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('file_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('file_name')
