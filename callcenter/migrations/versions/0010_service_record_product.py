"""crm: what the service desk needs of a record and a customer (product, fault type, region)

Revision ID: 0010
Revises: 0002
Create Date: 2026-12-07 18:00:00

``service_records.product_id`` (the product the record is about), ``service_records.fault_type`` (a short code such
as ``no_power``) and ``customers.region`` (where the customer is served): work orders are dispatched to an outlet
by region and product category, and the statistics count by product and fault type.

SQLite adds a foreign key to an existing table only by copying the table, and dropping the old copy deletes its
rows first, which would cascade to ``service_record_history`` and the desk's tables: their rows are set aside and
put back (see :func:`_sqlite_rebuild`). Alembic's batch mode would lose them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_service_records_product_id_products"
_FK_SQL = f"CONSTRAINT {_FK} FOREIGN KEY(product_id) REFERENCES products (id) ON DELETE SET NULL"
_INDEX = "ix_service_records_product_id"
_COLUMNS = ("product_id", "fault_type")


def _referrers(bind: sa.Connection) -> list[str]:
    """The tables that refer to ``service_records``, directly or through one another, parents before children."""
    tables = [
        str(name)
        for (name,) in bind.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    parents = {
        table: {str(row[2]) for row in bind.exec_driver_sql(f'PRAGMA foreign_key_list("{table}")')} - {table}
        for table in tables
    }
    reached = {"service_records"}
    changed = True
    while changed:
        changed = False
        for table in tables:
            if table not in reached and parents[table] & reached:
                reached.add(table)
                changed = True
    ordered: list[str] = []
    placed = {"service_records"}
    waiting = [table for table in tables if table in reached and table != "service_records"]
    while waiting:
        ready = [table for table in waiting if parents[table] & reached <= placed]
        if not ready:
            raise RuntimeError(f"tables that refer to one another in a cycle: {', '.join(waiting)}")
        for table in ready:
            ordered.append(table)
            placed.add(table)
            waiting.remove(table)
    return ordered


def _sqlite_rebuild(edit: Callable[[str], str], columns: Sequence[str]) -> None:
    """Copies ``service_records`` into a table made by ``edit`` from its CREATE statement, keeping ``columns``, with
    its indexes; every table that refers to it keeps its rows.

    SQLite deletes a dropped table's rows first, which cascades (ON DELETE) to the tables that refer to it: the
    history, the desk's tables. They are set aside in temporary tables and put back once the copy has its old
    name. (Foreign keys cannot be switched off inside the migration's transaction, and renaming the old table
    aside would carry the other tables' references with it.)"""
    bind = op.get_bind()
    create = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'service_records'")
    table_sql = str(create.scalar_one())
    indexes = [
        str(sql)
        for (sql,) in bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'service_records' AND sql IS NOT NULL"
        )
    ]
    referrers = _referrers(bind)
    for table in referrers:
        op.execute(f'CREATE TEMP TABLE "kept_0010_{table}" AS SELECT * FROM "{table}"')  # noqa: S608
    listed = ", ".join(columns)
    # Once renamed by SQLite, the statement names the table in quotes.
    op.execute(re.sub(r'^CREATE TABLE "?service_records"?', "CREATE TABLE service_records_0010", edit(table_sql)))
    op.execute(f"INSERT INTO service_records_0010 ({listed}) SELECT {listed} FROM service_records")  # noqa: S608
    op.execute("DROP TABLE service_records")
    op.execute("ALTER TABLE service_records_0010 RENAME TO service_records")
    for sql in indexes:
        op.execute(sql)
    for table in reversed(referrers):
        op.execute(f'DELETE FROM "{table}"')  # noqa: S608
    for table in referrers:
        op.execute(f'INSERT INTO "{table}" SELECT * FROM temp."kept_0010_{table}"')  # noqa: S608
        op.execute(f'DROP TABLE temp."kept_0010_{table}"')


def _columns_now() -> list[str]:
    return [str(row[1]) for row in op.get_bind().exec_driver_sql("PRAGMA table_info(service_records)")]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE service_records ADD COLUMN product_id INTEGER")
        op.execute("ALTER TABLE service_records ADD COLUMN fault_type VARCHAR(64)")
        # The key as a table constraint, named as the models name it (a column's inline key is reflected unnamed).
        _sqlite_rebuild(lambda sql: sql.rstrip().removesuffix(")").rstrip() + f", \n\t{_FK_SQL}\n)", _columns_now())
    else:
        op.add_column("service_records", sa.Column("product_id", sa.Integer(), nullable=True))
        op.add_column("service_records", sa.Column("fault_type", sa.String(64), nullable=True))
        op.create_foreign_key(_FK, "service_records", "products", ["product_id"], ["id"], ondelete="SET NULL")
    op.create_index(_INDEX, "service_records", ["product_id"])
    op.add_column("customers", sa.Column("region", sa.String(100), nullable=True))


def _without_product(sql: str) -> str:
    sql = sql.replace(f", \n\t{_FK_SQL}\n", "\n")
    return re.sub(r",\s*(product_id INTEGER|fault_type VARCHAR\(64\))", "", sql)


def downgrade() -> None:
    op.drop_column("customers", "region")
    op.drop_index(_INDEX, "service_records")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild(_without_product, [name for name in _columns_now() if name not in _COLUMNS])
    else:
        op.drop_constraint(_FK, "service_records", type_="foreignkey")
        op.drop_column("service_records", "fault_type")
        op.drop_column("service_records", "product_id")
