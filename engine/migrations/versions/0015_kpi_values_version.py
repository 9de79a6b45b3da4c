"""a token that changes with every write to kpi_values

Revision ID: 0015
Revises: 0014

Written by hand to match engine/kpi/state.py (KpiValuesVersionRow). Every evaluation pass asks
whether the KPI values changed since it last classified the targets (engine/kpi/report.py,
``kpi_items``); it read every value to know, and values only accumulate (thousands after a few
years). A trigger now gives the single row of ``kpi_values_version`` a new random token in the
same transaction as any insert, update or delete of ``kpi_values`` — whatever code or SQL writes
it —, so one read of one row answers. Random, not a counter: a rolled-back write takes its token
with it, and the next write can never produce a token that was seen before.

SQLite drops a table's triggers when Alembic's batch mode copies the table: a migration that
alters kpi_values that way must create these triggers again (tests/test_kpi_values.py checks
they exist at the head).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_SQLITE_TOKEN = "lower(hex(randomblob(16)))"
_EVENTS = ("insert", "update", "delete")


def upgrade() -> None:
    op.create_table('kpi_values_version',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('token', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"INSERT INTO kpi_values_version (id, token) VALUES (1, {_SQLITE_TOKEN})")
        for event in _EVENTS:
            op.execute(f"CREATE TRIGGER kpi_values_{event} AFTER {event.upper()} ON kpi_values "
                       f"BEGIN UPDATE kpi_values_version SET token = {_SQLITE_TOKEN} WHERE id = 1; END")
    else:
        op.execute("INSERT INTO kpi_values_version (id, token) VALUES (1, md5(random()::text || clock_timestamp()::text))")
        op.execute("CREATE FUNCTION dondoc_kpi_values_touched() RETURNS trigger LANGUAGE plpgsql AS $$ "
                   "BEGIN UPDATE kpi_values_version SET token = md5(random()::text || clock_timestamp()::text) "
                   "WHERE id = 1; RETURN NULL; END $$")
        op.execute("CREATE TRIGGER kpi_values_touched AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON kpi_values "
                   "FOR EACH STATEMENT EXECUTE FUNCTION dondoc_kpi_values_touched()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in _EVENTS:
            op.execute(f"DROP TRIGGER kpi_values_{event}")
    else:
        op.execute("DROP TRIGGER kpi_values_touched ON kpi_values")
        op.execute("DROP FUNCTION dondoc_kpi_values_touched()")
    op.drop_table('kpi_values_version')
