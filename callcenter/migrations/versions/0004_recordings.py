"""recordings index, erasure tombstones and the word/number search structures

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-23 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("recordings",)
depends_on: str | Sequence[str] | None = None

# Frozen copies of what recordings/models.py says today.
_KINDS = ("full", "on_demand", "voicemail")
_STATUSES = ("recording", "complete", "missing", "tampered", "erased")
_DIRECTIONS = ("inbound", "outbound")
_SIZE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Serialises the creation of pg_trgm between engines migrating the same PostgreSQL database at once.
_TRGM_LOCK = 7_418_230_411


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("file_path", sa.String(255), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=True),
        sa.Column("uniqueid", sa.String(64), nullable=True),
        sa.Column("agent_interface", sa.String(80), nullable=True),
        sa.Column("agent_user_id", sa.Integer(), nullable=True),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("ended_at", _time(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("caller_number", sa.String(80), nullable=True),
        sa.Column("called_number", sa.String(80), nullable=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("did", sa.String(32), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("service_record_id", sa.Integer(), nullable=True),
        sa.Column("service_record_type", sa.String(64), nullable=True),
        sa.Column("intent", sa.String(64), nullable=True),
        sa.Column("size", _SIZE, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("paused_intervals", sa.Text(), nullable=False),
        sa.Column("erased_at", _time(), nullable=True),
        sa.Column("erasure_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(_one_of("kind", _KINDS), name=op.f("ck_recordings_kind_known")),
        sa.CheckConstraint(_one_of("status", _STATUSES), name=op.f("ck_recordings_status_known")),
        sa.CheckConstraint(_one_of("direction", _DIRECTIONS), name=op.f("ck_recordings_direction_known")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_recordings")),
        sa.UniqueConstraint("id", name=op.f("uq_recordings_id")),
    )
    for name, columns in (
        ("ix_recordings_started", ["started_at", "pk"]),
        ("ix_recordings_duration", ["duration", "pk"]),
        ("ix_recordings_kind_started", ["kind", "started_at", "pk"]),
        ("ix_recordings_agent_started", ["agent_interface", "started_at", "pk"]),
        ("ix_recordings_agent_user_started", ["agent_user_id", "started_at", "pk"]),
        ("ix_recordings_queue_started", ["queue", "started_at", "pk"]),
        ("ix_recordings_service_type_started", ["service_record_type", "started_at", "pk"]),
        ("ix_recordings_caller", ["caller_number"]),
        ("ix_recordings_called", ["called_number"]),
        ("ix_recordings_linkedid", ["linkedid"]),
        ("ix_recordings_status_started", ["status", "started_at"]),
    ):
        op.create_index(name, "recordings", columns)

    op.create_table(
        "recording_erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("actor", sa.String(150), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("recording_ids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_erasures")),
    )

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite_search()
    elif dialect == "postgresql":
        _postgresql_search()


# Two contentless FTS5 tables fed by triggers. Text: the word tokens the service writes to search_text (one
# space apart), searched by word prefix, as PostgreSQL's tsvector index does. Numbers: caller and called
# number joined by a newline (no search term may contain one, so no match spans the two), with the trigram
# tokenizer for partial-number (substring) search, as pg_trgm does.
_TEXT_INSERT = "INSERT INTO fts_recordings(rowid, search_text) VALUES (new.pk, new.search_text);"
_TEXT_DELETE = (
    "INSERT INTO fts_recordings(fts_recordings, rowid, search_text) VALUES ('delete', old.pk, old.search_text);"
)
_NUMBERS_INSERT = (
    "INSERT INTO fts_recording_numbers(rowid, numbers) VALUES (new.pk, "
    "coalesce(new.caller_number, '') || char(10) || coalesce(new.called_number, ''));"
)
_NUMBERS_DELETE = (
    "INSERT INTO fts_recording_numbers(fts_recording_numbers, rowid, numbers) VALUES ('delete', old.pk, "
    "coalesce(old.caller_number, '') || char(10) || coalesce(old.called_number, ''));"
)
_TRIGGERS = {
    "fts_recordings_ai": f"AFTER INSERT ON recordings BEGIN {_TEXT_INSERT} {_NUMBERS_INSERT} END",
    "fts_recordings_ad": f"AFTER DELETE ON recordings BEGIN {_TEXT_DELETE} {_NUMBERS_DELETE} END",
    "fts_recordings_au_text": f"AFTER UPDATE OF search_text ON recordings BEGIN {_TEXT_DELETE} {_TEXT_INSERT} END",
    "fts_recordings_au_numbers": (
        f"AFTER UPDATE OF caller_number, called_number ON recordings BEGIN {_NUMBERS_DELETE} {_NUMBERS_INSERT} END"
    ),
}


def _sqlite_search() -> None:
    # Diacritics are kept (PostgreSQL's 'simple' configuration keeps them too); prefix indexes make short
    # prefixes ("re*") cheap.
    op.execute(
        "CREATE VIRTUAL TABLE fts_recordings USING fts5(search_text, content='', "
        "tokenize='unicode61 remove_diacritics 0', prefix='1 2 3')"
    )
    op.execute("CREATE VIRTUAL TABLE fts_recording_numbers USING fts5(numbers, content='', tokenize='trigram')")
    for name, body in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _postgresql_search() -> None:
    bind = op.get_bind()
    bind.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TRGM_LOCK})
    find = sa.text(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
    )
    schema = bind.execute(find).scalar()
    if schema is None:
        # A fixed, shared schema: installed into a per-test or per-tenant schema it would vanish with it.
        has_public = bind.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = 'public'")).scalar()
        target = "public" if has_public else bind.execute(sa.text("SELECT current_schema()")).scalar()
        op.execute(f"CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA {_quote(str(target))}")
        schema = bind.execute(find).scalar()
    opclass = f"{_quote(str(schema))}.gin_trgm_ops"
    for name, column in (
        ("ix_recordings_caller_trgm", "caller_number"),
        ("ix_recordings_called_trgm", "called_number"),
    ):
        op.execute(f"CREATE INDEX {name} ON recordings USING gin ({column} {opclass})")
    # Word search: a narrow table of the recordings that have text (a tenth of them, or fewer) with the
    # tsvector stored, and the columns searches filter and sort on repeated beside it, kept by a trigger.
    # Matches are counted and paged there, in a table that stays in memory, instead of visiting the wide
    # recordings rows one by one (and PostgreSQL's estimates for prefix tsqueries are too poor to plan joins).
    op.execute(
        """
        CREATE TABLE fts_recordings (
            pk integer PRIMARY KEY,
            document tsvector NOT NULL,
            started_at timestamptz NOT NULL,
            duration double precision,
            kind varchar(16) NOT NULL,
            status varchar(16) NOT NULL,
            direction varchar(8) NOT NULL,
            agent_interface varchar(80),
            agent_user_id integer,
            queue varchar(64),
            service_record_type varchar(64)
        )
        """
    )
    op.execute("CREATE INDEX ix_fts_recordings_document ON fts_recordings USING gin (document)")
    # No index on started_at here, on purpose: with one, the planner (misjudging prefix tsqueries) walks the
    # whole table in time order; through GIN the cost follows the number of matches.
    # SET search_path FROM CURRENT: the function finds its table whatever the search_path of the writer.
    op.execute(
        """
        CREATE FUNCTION fts_recordings_sync() RETURNS trigger LANGUAGE plpgsql
        SET search_path FROM CURRENT AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                DELETE FROM fts_recordings WHERE pk = OLD.pk;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.search_text <> '' THEN
                INSERT INTO fts_recordings (
                    pk, document, started_at, duration, kind, status, direction,
                    agent_interface, agent_user_id, queue, service_record_type
                ) VALUES (
                    NEW.pk, strip(to_tsvector('simple', NEW.search_text)), NEW.started_at, NEW.duration, NEW.kind,
                    NEW.status, NEW.direction, NEW.agent_interface, NEW.agent_user_id, NEW.queue,
                    NEW.service_record_type
                );
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER fts_recordings_sync AFTER INSERT OR DELETE OR UPDATE OF search_text, started_at, duration, "
        "kind, status, direction, agent_interface, agent_user_id, queue, service_record_type "
        "ON recordings FOR EACH ROW EXECUTE FUNCTION fts_recordings_sync()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in _TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS fts_recordings")
        op.execute("DROP TABLE IF EXISTS fts_recording_numbers")
    else:
        op.execute("DROP TRIGGER IF EXISTS fts_recordings_sync ON recordings")
        op.execute("DROP FUNCTION IF EXISTS fts_recordings_sync()")
        op.execute("DROP TABLE IF EXISTS fts_recordings")
    op.drop_table("recording_erasures")
    op.drop_table("recordings")
