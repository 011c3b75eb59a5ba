"""crm: what the service desk needs of a record and a customer (product, fault type, region)

Revision ID: 0010
Revises: 0002
Create Date: 2026-12-07 18:00:00

``service_records.product_id`` (the product the record is about), ``service_records.fault_type`` (a short code such
as ``no_power``) and ``customers.region`` (where the customer is served): work orders are dispatched to an outlet
by region and product category, and the statistics count by product and fault type.

SQLite adds a foreign key to an existing table only by copying the table, and dropping the old copy deletes its
rows first, which would cascade to ``service_record_history``: the history is set aside in a temporary table and
put back (see :func:`_sqlite_rebuild`). Alembic's batch mode would lose the history the same way.
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


def _sqlite_rebuild(edit: Callable[[str], str], columns: Sequence[str]) -> None:
    """Copies ``service_records`` into a table made by ``edit`` from its CREATE statement, keeping ``columns``,
    with its indexes, and keeps its history (deleted by the cascade when the old table is dropped) as it was."""
    bind = op.get_bind()
    create = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'service_records'")
    table_sql = str(create.scalar_one())
    indexes = [
        str(sql)
        for (sql,) in bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'service_records' AND sql IS NOT NULL"
        )
    ]
    listed = ", ".join(columns)
    op.execute("CREATE TEMP TABLE history_0010 AS SELECT * FROM service_record_history")
    # Once renamed by SQLite, the statement names the table in quotes.
    op.execute(re.sub(r'^CREATE TABLE "?service_records"?', "CREATE TABLE service_records_0010", edit(table_sql)))
    op.execute(f"INSERT INTO service_records_0010 ({listed}) SELECT {listed} FROM service_records")  # noqa: S608
    op.execute("DROP TABLE service_records")
    op.execute("ALTER TABLE service_records_0010 RENAME TO service_records")
    for sql in indexes:
        op.execute(sql)
    op.execute("DELETE FROM service_record_history")
    op.execute("INSERT INTO service_record_history SELECT * FROM temp.history_0010")
    op.execute("DROP TABLE temp.history_0010")


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
