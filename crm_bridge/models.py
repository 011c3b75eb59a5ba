"""Tables of the CRM: customers and their numbers and contacts, products, service records with their history, and
knowledge-base articles.

The migration ``0002_crm`` creates exactly these (a test compares the two on SQLite and PostgreSQL), plus what
the models cannot say: the knowledge base's full-text index, an FTS5 table kept in sync by triggers on SQLite and
a GIN index over a tsvector expression on PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.db import Base, UtcDateTime


class Tier(StrEnum):
    VIP = "vip"
    GOLD = "gold"
    SILVER = "silver"
    STANDARD = "standard"


# Best first: a number shared by a VIP and a standard customer queues with the VIP's priority.
TIER_RANK: dict[str, int] = {tier.value: rank for rank, tier in enumerate(Tier)}


class Availability(StrEnum):
    IN_STOCK = "in_stock"
    OUT_OF_STOCK = "out_of_stock"
    DISCONTINUED = "discontinued"


class PhoneKind(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"
    FAX = "fax"
    OTHER = "other"


class RecordType(StrEnum):
    PRODUCT_GUIDE = "product_guide"
    FAULT_CONSULTATION = "fault_consultation"
    BUSINESS_CONSULTATION = "business_consultation"
    REPAIR_BOOKING = "repair_booking"
    INSTALLATION_BOOKING = "installation_booking"
    COMPLAINT = "complaint"
    SUGGESTION = "suggestion"
    CALLBACK_VISIT = "callback_visit"
    VOICEMAIL = "voicemail"


class RecordStatus(StrEnum):
    NEW = "new"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    FEEDBACK_RECORDED = "feedback_recorded"
    ARCHIVED = "archived"


# Still someone's work: shown as "open" on the screen-pop.
OPEN_STATUSES = (RecordStatus.NEW, RecordStatus.ASSIGNED, RecordStatus.IN_PROGRESS)

# Text bounds. Names hold a kilobyte so that a hostile caller ID name is kept whole; the indexed name key is short
# because a PostgreSQL btree entry cannot exceed about 2.7 kB.
NAME_MAX = 1024
NAME_KEY_MAX = 64
COMPANY_MAX = 500
ADDRESS_MAX = 1000
PERSON_MAX = 200
ROLE_TEXT_MAX = 200
NUMBER_MAX = 64
PHONE_KEY_MAX = 16
EMAIL_MAX = 254
PRODUCT_CODE_MAX = 32
PRODUCT_NAME_MAX = 255
CATEGORY_MAX = 100
LINKEDID_MAX = 64
CALLER_NUMBER_MAX = 255
ACTOR_MAX = 150
IDEMPOTENCY_KEY_MAX = 128
TITLE_MAX = 500
TAGS_MAX = 500
ENUM_MAX = 32
REGION_MAX = 100
FAULT_TYPE_MAX = 64

# SQLite only auto-increments an INTEGER PRIMARY KEY; service records and their history grow without bound.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Prefix search compares the name key by code point, as SQLite does by default; PostgreSQL's database collation
# may order by language rules, under which a range scan would not find every name with the prefix.
NameKey = String(NAME_KEY_MAX).with_variant(String(NAME_KEY_MAX, collation="C"), "postgresql")


def _one_of(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value.value}'" for value in values) + ")"


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (CheckConstraint(_one_of("tier", Tier), name="tier_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    # NFKC, case-folded, first NAME_KEY_MAX characters of the name: what a name search compares, indexed.
    name_key: Mapped[str] = mapped_column(NameKey, index=True)
    company: Mapped[str | None] = mapped_column(String(COMPANY_MAX))
    tier: Mapped[str] = mapped_column(String(ENUM_MAX))
    address: Mapped[str | None] = mapped_column(String(ADDRESS_MAX))
    notes: Mapped[str | None] = mapped_column(Text)
    account_manager: Mapped[str | None] = mapped_column(String(PERSON_MAX))
    first_contact: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_contact: Mapped[datetime | None] = mapped_column(UtcDateTime)
    churn_risk: Mapped[bool] = mapped_column(Boolean)
    # Where the customer is served (a city, a district): repair and installation orders go to an outlet there.
    region: Mapped[str | None] = mapped_column(String(REGION_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CustomerPhone(Base):
    __tablename__ = "customer_phones"
    __table_args__ = (
        CheckConstraint(_one_of("kind", PhoneKind), name="kind_known"),
        UniqueConstraint("customer_id", "normalized"),
        # The screen-pop's first query: every customer owning a number, answered from the index alone.
        Index("ix_customer_phones_normalized_customer", "normalized", "customer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    # As the customer or agent wrote it, shown back as such.
    number: Mapped[str] = mapped_column(String(NUMBER_MAX))
    # crm_bridge.phones.normalize(number): the key a caller ID is looked up by.
    normalized: Mapped[str] = mapped_column(String(PHONE_KEY_MAX))
    kind: Mapped[str] = mapped_column(String(ENUM_MAX))


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    role: Mapped[str | None] = mapped_column(String(ROLE_TEXT_MAX))
    phone: Mapped[str | None] = mapped_column(String(NUMBER_MAX))
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX))


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (CheckConstraint(_one_of("availability", Availability), name="availability_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What a caller types on the keypad; unique, so the lookup is one index probe.
    code: Mapped[str] = mapped_column(String(PRODUCT_CODE_MAX), unique=True)
    name: Mapped[str] = mapped_column(String(PRODUCT_NAME_MAX))
    category: Mapped[str] = mapped_column(String(CATEGORY_MAX))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    availability: Mapped[str] = mapped_column(String(ENUM_MAX))
    description: Mapped[str | None] = mapped_column(Text)
    # Read to callers after name, price and availability, per language of the voice menu.
    spoken_en: Mapped[str | None] = mapped_column(Text)
    spoken_zh: Mapped[str | None] = mapped_column(Text)


class ServiceRecord(Base):
    __tablename__ = "service_records"
    __table_args__ = (
        CheckConstraint(_one_of("type", RecordType), name="type_known"),
        CheckConstraint(_one_of("status", RecordStatus), name="status_known"),
        # A customer's open records, and a customer's latest records: both on the screen-pop.
        Index("ix_service_records_customer_status", "customer_id", "status"),
        Index("ix_service_records_customer_created", "customer_id", "created_at"),
        Index("ix_service_records_status_created", "status", "created_at"),
        # The work queue: the newest records of all, those of a type, the soonest follow-ups and appointments
        # (migration 0013).
        Index("ix_service_records_created", "created_at"),
        Index("ix_service_records_type_created", "type", "created_at"),
        Index("ix_service_records_follow_up", "follow_up"),
        Index("ix_service_records_appointment_at", "appointment_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    # The call the record belongs to (Asterisk's linkedid); none for records made outside a call.
    linkedid: Mapped[str | None] = mapped_column(String(LINKEDID_MAX), index=True)
    type: Mapped[str] = mapped_column(String(ENUM_MAX))
    status: Mapped[str] = mapped_column(String(ENUM_MAX))
    content: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    feedback: Mapped[str | None] = mapped_column(Text)
    follow_up: Mapped[date | None] = mapped_column(Date)
    appointment_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The product the record is about, and a short code of the fault (no_power): what business statistics count.
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"), index=True)
    fault_type: Mapped[str | None] = mapped_column(String(FAULT_TYPE_MAX))
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    # A username, or the part of the engine that wrote it (ivr, voicemail).
    created_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    caller_number: Mapped[str | None] = mapped_column(String(CALLER_NUMBER_MAX))
    caller_name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    # Chosen by the writer (the outbox, an API client): a replayed write finds the record and adds nothing.
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ServiceRecordHistory(Base):
    """Every change of a service record: who, when, the status before and after, and the fields changed."""

    __tablename__ = "service_record_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int] = mapped_column(BigId, ForeignKey("service_records.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    action: Mapped[str] = mapped_column(String(ENUM_MAX))
    from_status: Mapped[str | None] = mapped_column(String(ENUM_MAX))
    to_status: Mapped[str] = mapped_column(String(ENUM_MAX))
    # JSON object {field: {"from": old, "to": new}}; TEXT behaves the same on both backends.
    changes: Mapped[str | None] = mapped_column(Text)


# The knowledge base's text search is a case-insensitive substring match of every query word in this text, the same
# on both engines. The migration makes the index, which the models cannot describe (schema comparisons skip both
# by name, callcenter.db.include_name): on SQLite the FTS5 trigram table fts_kb_articles, kept in sync by
# triggers; on PostgreSQL a pg_trgm GIN index over this very expression, which a search must repeat to use it.
KB_FTS_TABLE = "fts_kb_articles"
KB_SEARCH_INDEX = "ix_kb_articles_search_trgm"
KB_DOCUMENT_SQL = "title || ' ' || body || ' ' || tags"


class KbArticle(Base):
    __tablename__ = "kb_articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    body: Mapped[str] = mapped_column(Text)
    # Space-separated words, searched with the title and the body.
    tags: Mapped[str] = mapped_column(String(TAGS_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
