"""CRM: customers, their numbers and contacts, products, service records with history, knowledge base

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("crm",)
depends_on: str | Sequence[str] | None = None

# Frozen copies of what crm_bridge.models says today; later changes get migrations of their own.
_TIERS = ("vip", "gold", "silver", "standard")
_PHONE_KINDS = ("mobile", "landline", "fax", "other")
_AVAILABILITY = ("in_stock", "out_of_stock", "discontinued")
_RECORD_TYPES = (
    "product_guide",
    "fault_consultation",
    "business_consultation",
    "repair_booking",
    "installation_booking",
    "complaint",
    "suggestion",
    "callback_visit",
    "voicemail",
)
_RECORD_STATUSES = ("new", "assigned", "in_progress", "resolved", "feedback_recorded", "archived")
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_NAME_KEY = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")

# The knowledge base's text search: a case-insensitive substring match of each query word in the article's
# document (title, body and tags), the same on both engines. SQLite: a contentless FTS5 table with the trigram
# tokenizer, kept in sync by triggers. PostgreSQL: a pg_trgm GIN index over the very expression the search uses.
_DOCUMENT = "title || ' ' || body || ' ' || tags"
_FTS_INSERT = (
    "INSERT INTO fts_kb_articles(rowid, document) VALUES (new.id, new.title || ' ' || new.body || ' ' || new.tags);"
)
_FTS_DELETE = (
    "INSERT INTO fts_kb_articles(fts_kb_articles, rowid, document) "
    "VALUES ('delete', old.id, old.title || ' ' || old.body || ' ' || old.tags);"
)
_FTS_SQLITE = (
    "CREATE VIRTUAL TABLE fts_kb_articles USING fts5(document, content='', tokenize='trigram')",
    f"CREATE TRIGGER fts_kb_articles_insert AFTER INSERT ON kb_articles BEGIN {_FTS_INSERT} END",
    f"CREATE TRIGGER fts_kb_articles_delete AFTER DELETE ON kb_articles BEGIN {_FTS_DELETE} END",
    "CREATE TRIGGER fts_kb_articles_update AFTER UPDATE OF title, body, tags ON kb_articles "
    f"BEGIN {_FTS_DELETE} {_FTS_INSERT} END",
)
# Serialises creating the pg_trgm extension between engines (and migrations) installing it at the same moment.
_TRGM_LOCK = 7_418_230_411


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("name_key", _NAME_KEY, nullable=False),
        sa.Column("company", sa.String(500), nullable=True),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("address", sa.String(1000), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("account_manager", sa.String(200), nullable=True),
        sa.Column("first_contact", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_contact", sa.DateTime(timezone=True), nullable=True),
        sa.Column("churn_risk", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("tier", _TIERS), name=op.f("ck_customers_tier_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_index(op.f("ix_customers_name_key"), "customers", ["name_key"])
    op.create_table(
        "customer_phones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("normalized", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.CheckConstraint(_in("kind", _PHONE_KINDS), name=op.f("ck_customer_phones_kind_known")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_phones_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_phones")),
        sa.UniqueConstraint("customer_id", "normalized", name=op.f("uq_customer_phones_customer_id")),
    )
    op.create_index(op.f("ix_customer_phones_normalized_customer"), "customer_phones", ["normalized", "customer_id"])
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("role", sa.String(200), nullable=True),
        sa.Column("phone", sa.String(64), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_contacts_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    op.create_index(op.f("ix_contacts_customer_id"), "contacts", ["customer_id"])
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("availability", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("spoken_en", sa.Text(), nullable=True),
        sa.Column("spoken_zh", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("availability", _AVAILABILITY), name=op.f("ck_products_availability_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("code", name=op.f("uq_products_code")),
    )
    op.create_table(
        "service_records",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("linkedid", sa.String(64), nullable=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("follow_up", sa.Date(), nullable=True),
        sa.Column("appointment_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_to", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(150), nullable=False),
        sa.Column("caller_number", sa.String(255), nullable=True),
        sa.Column("caller_name", sa.String(1024), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("type", _RECORD_TYPES), name=op.f("ck_service_records_type_known")),
        sa.CheckConstraint(_in("status", _RECORD_STATUSES), name=op.f("ck_service_records_status_known")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_service_records_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["assigned_to"], ["users.id"], name=op.f("fk_service_records_assigned_to_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_records")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_service_records_idempotency_key")),
    )
    op.create_index(op.f("ix_service_records_linkedid"), "service_records", ["linkedid"])
    op.create_index(op.f("ix_service_records_assigned_to"), "service_records", ["assigned_to"])
    op.create_index(op.f("ix_service_records_customer_status"), "service_records", ["customer_id", "status"])
    op.create_index(op.f("ix_service_records_customer_created"), "service_records", ["customer_id", "created_at"])
    op.create_index(op.f("ix_service_records_status_created"), "service_records", ["status", "created_at"])
    op.create_table(
        "service_record_history",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("record_id", _BIG_ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(150), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("changes", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["service_records.id"],
            name=op.f("fk_service_record_history_record_id_service_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_record_history")),
    )
    op.create_index(op.f("ix_service_record_history_record_id"), "service_record_history", ["record_id"])
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("tags", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_articles")),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _FTS_SQLITE:
            op.execute(statement)
    elif dialect == "postgresql":
        _postgresql_search()


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _postgresql_search() -> None:
    bind = op.get_bind()
    bind.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TRGM_LOCK})
    where = sa.text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
    )
    schema = bind.execute(where).scalar()
    if schema is None:
        # Into public when there is one: made inside a per-tenant (or per-test) schema it would go when that does.
        public = bind.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = 'public'")).scalar()
        home = "public" if public else str(bind.execute(sa.text("SELECT current_schema()")).scalar())
        op.execute(f"CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA {_quoted(home)}")
        schema = bind.execute(where).scalar()
    op.execute(
        f"CREATE INDEX ix_kb_articles_search_trgm ON kb_articles USING gin "
        f"(({_DOCUMENT}) {_quoted(str(schema))}.gin_trgm_ops)"
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("fts_kb_articles_update", "fts_kb_articles_delete", "fts_kb_articles_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS fts_kb_articles")
    op.drop_table("kb_articles")
    op.drop_table("service_record_history")
    op.drop_table("service_records")
    op.drop_table("products")
    op.drop_table("contacts")
    op.drop_table("customer_phones")
    op.drop_table("customers")
