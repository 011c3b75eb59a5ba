"""The CRM against SQLite and PostgreSQL: schema, customer files and their lookup, service records and their
lifecycle, the knowledge base, products, and the adapters the voice menu uses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from argon2 import PasswordHasher
from blockbuster import blockbuster_ctx
from sqlalchemy import Connection, event, func, inspect, select, text, update

from callcenter.adapters import CrmCustomerDirectory, CrmProductCatalog
from callcenter.auth.services import AuthService
from callcenter.config import AuthConfig
from callcenter.db import Base, Database, alembic_config, migrate
from crm_bridge.exceptions import CustomerNotFound, InvalidCrmInput, InvalidTransition, ServiceRecordNotFound
from crm_bridge.infos import CustomerFile
from crm_bridge.models import KbArticle, Product, ServiceRecord, ServiceRecordHistory
from crm_bridge.phones import PhoneRules
from crm_bridge.schemas import (
    CustomerIn,
    CustomerPatch,
    PhoneIn,
    ServiceRecordIn,
    ServiceRecordQuery,
    TransitionIn,
)
from crm_bridge.services import CrmService
from ivr_flows.ports import DEMO_PRODUCTS

# The conftest's clock (moved by hand) and cheap argon2 parameters: the tests exercise the logic, not the cost.
FakeClock = Any
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leaves out what the migration builds with engine-specific SQL: the FTS5 table and the trigram index."""
    return not (
        type_ in ("table", "index") and bool(name) and (str(name).startswith("fts_") or str(name).endswith("_trgm"))
    )


CRM_TABLES = {
    "customers",
    "customer_phones",
    "contacts",
    "products",
    "service_records",
    "service_record_history",
    "kb_articles",
}
HOSTILE = "<script>alert('x')</script>\"; DROP TABLE customers; --\r\nRobert'); DELETE FROM users;--\t\u202e"
KILOBYTE_NAME = (HOSTILE + " 王<b>伟</b> ") * 20


@pytest.fixture
def crm(database: Database, service: AuthService, clock: FakeClock) -> CrmService:
    return CrmService(database, audit=service, clock=clock)


def customer(name: str, *numbers: str, tier: str = "standard", **extra: Any) -> CustomerIn:
    return CustomerIn.model_validate(
        {"name": name, "tier": tier, "phones": [{"number": number} for number in numbers], **extra}
    )


def record(kind: str = "fault_consultation", **extra: Any) -> ServiceRecordIn:
    return ServiceRecordIn.model_validate({"type": kind, "content": "it broke", **extra})


@pytest.fixture
def statements(database: Database) -> Iterator[list[str]]:
    """The SQL statements the database receives while the test runs."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    yield seen
    event.remove(engine, "before_cursor_execute", before)


# schema


async def test_migration_creates_the_crm_tables_as_the_models_describe_them(database: Database) -> None:
    def check(connection: Connection) -> tuple[set[str], list[Any], set[str]]:
        names = set(inspect(connection).get_table_names())
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name})
        ours = [diff for diff in compare_metadata(context, Base.metadata) if CRM_TABLES & _tables_in(diff)]
        indexes = {index["name"] for index in inspect(connection).get_indexes("customer_phones")}
        return names, ours, indexes

    async with database.engine.connect() as connection:
        names, differences, phone_indexes = await connection.run_sync(check)
        versions = set((await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars())
    assert names >= CRM_TABLES
    assert differences == []
    assert "ix_customer_phones_normalized_customer" in phone_indexes
    # The CRM branch (0002 and what follows it) is applied: every head is reached.
    assert versions == set(ScriptDirectory.from_config(alembic_config()).get_heads())


def _tables_in(diff: Any) -> set[str]:
    found: set[str] = set()
    for item in diff if isinstance(diff, list) else [diff]:
        for part in item:
            name = getattr(part, "name", None) if not isinstance(part, str) else part
            table = getattr(part, "table", None)
            if isinstance(name, str):
                found.add(name)
            if table is not None:
                found.add(table.name)
    return found


async def test_the_knowledge_base_index_exists_on_each_engine(database: Database) -> None:
    async with database.session() as session:
        if database.dialect == "sqlite":
            found = await session.scalar(text("SELECT name FROM sqlite_master WHERE name = 'fts_kb_articles'"))
            assert found == "fts_kb_articles"
        else:
            found = await session.scalar(
                text("SELECT indexname FROM pg_indexes WHERE indexname = :name"), {"name": "ix_kb_articles_search_trgm"}
            )
            assert found == "ix_kb_articles_search_trgm"


async def test_migrating_again_changes_nothing(database: Database) -> None:
    await database.migrate()
    async with database.session() as session:
        versions = set((await session.execute(text("SELECT version_num FROM alembic_version"))).scalars())
    # The CRM branch (0002 and what follows it) is applied: every head is reached.
    assert versions == set(ScriptDirectory.from_config(alembic_config()).get_heads())


# customer files


async def test_hostile_text_is_stored_and_returned_verbatim(crm: CrmService) -> None:
    assert len(KILOBYTE_NAME) > 1000
    created = await crm.customers.create(
        customer(
            KILOBYTE_NAME[:1024],
            "+86 138 0013 8000",
            company=HOSTILE,
            notes=HOSTILE * 10,
            address=HOSTILE,
            contacts=[{"name": HOSTILE, "role": HOSTILE, "email": "<x@y>"}],
        ),
        actor="alice",
    )
    again = await crm.customers.file(created.customer.id)
    assert again.customer.name == KILOBYTE_NAME[:1024]
    assert again.customer.company == HOSTILE
    assert again.customer.notes == HOSTILE * 10
    assert again.contacts[0].name == HOSTILE
    (found,) = await crm.customers.files_by_number("13800138000")
    assert found.customer.name == KILOBYTE_NAME[:1024]
    by_name = await crm.customers.files_by_name("<script>alert('x')")
    assert [item.customer.id for item in by_name] == [created.customer.id]


async def test_every_written_form_of_a_number_finds_the_customer(crm: CrmService) -> None:
    created = await crm.customers.create(customer("王伟", "+86 138 0013 8000", "010-6234 5678"))
    for caller in ("13800138000", "013800138000", "+8613800138000", "008613800138000", "8613800138000"):
        files = await crm.customers.files_by_number(caller)
        assert [item.customer.id for item in files] == [created.customer.id], caller
    assert [f.customer.id for f in await crm.customers.files_by_number("+86 10 62345678")] == [created.customer.id]


@pytest.mark.parametrize(
    "caller", ["", "unknown", "13800138001", "1' OR '1'='1", "13800138000; DROP TABLE customers", "9" * 200, "%"]
)
async def test_an_unknown_or_junk_number_finds_nobody(crm: CrmService, caller: str) -> None:
    await crm.customers.create(customer("王伟", "+86 138 0013 8000"))
    assert await crm.customers.files_by_number(caller) == []


async def test_a_shared_number_pops_every_owner_best_tier_first(crm: CrmService) -> None:
    office = "+86 21 5555 0000"
    standard = await crm.customers.create(customer("Standard Co", office))
    vip = await crm.customers.create(customer("VIP Ltd", "021-5555 0000", tier="vip"))
    gold = await crm.customers.create(customer("Gold Inc", "+862155550000", tier="gold"))
    await crm.customers.create(customer("Elsewhere", "+86 21 5555 0001", tier="vip"))
    files = await crm.customers.files_by_number("02155550000")
    assert [item.customer.id for item in files] == [vip.customer.id, gold.customer.id, standard.customer.id]
    directory = CrmCustomerDirectory(crm.customers)
    assert await directory.tier("+86 21 5555 0000") == "vip"
    assert await directory.tier("13900000000") is None
    assert await directory.tier("<b>vip</b>") is None


async def test_the_screen_pop_holds_the_latest_ten_records_and_every_open_one(
    crm: CrmService, service: AuthService, clock: FakeClock
) -> None:
    supervisor = await service.create_user("sam", "pass-word-1", roles=["supervisor"])
    created = await crm.customers.create(customer("王伟", "13800138000", contacts=[{"name": "李娜", "role": "采购"}]))
    other = await crm.customers.create(customer("Other", "13900139000"))
    ids = []
    for number in range(15):
        clock.advance(60)
        made, _ = await crm.records.create(
            record(content=f"call {number}", customer_id=created.customer.id), actor="ivr"
        )
        ids.append(made.id)
    await crm.records.create(record(customer_id=other.customer.id), actor="ivr")
    # The five oldest stay open; of the ten newest, all but the last two are archived.
    for record_id in ids[5:13]:
        for action in ("assign", "start", "resolve", "archive"):
            await crm.records.transition(record_id, TransitionIn(action=action, assigned_to=supervisor.id), actor="sam")

    (pop,) = await crm.customers.files_by_number("+86 138 0013 8000")
    assert [item.id for item in pop.recent_records] == list(reversed(ids[5:]))
    assert {item.id for item in pop.open_records} == set(ids[:5] + ids[13:])
    assert [item.name for item in pop.contacts] == ["李娜"]
    assert pop.customer.phones[0].normalized == "8613800138000"


async def test_the_screen_pop_is_three_queries_using_the_number_index(
    crm: CrmService, database: Database, statements: list[str]
) -> None:
    for number in range(3):
        await crm.customers.create(customer(f"Shared {number}", "+86 21 5555 0000", f"1380013800{number}"))
    statements.clear()
    files = await crm.customers.files_by_number("021 5555 0000")
    assert len(files) == 3
    assert len([sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]) == 3
    async with database.engine.connect() as connection:
        if database.dialect == "sqlite":
            plan = " ".join(
                str(row[-1])
                for row in await connection.execute(
                    text("EXPLAIN QUERY PLAN SELECT customer_id FROM customer_phones WHERE normalized = :key"),
                    {"key": "862155550000"},
                )
            )
        else:
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(
                str(row[0])
                for row in await connection.execute(
                    text("EXPLAIN SELECT customer_id FROM customer_phones WHERE normalized = :key"),
                    {"key": "862155550000"},
                )
            )
    assert "ix_customer_phones_normalized_customer" in plan


async def test_names_are_found_by_prefix_or_by_part_whatever_the_case(crm: CrmService) -> None:
    alice = await crm.customers.create(customer("Alice Zhang", "13800138001"))
    alicia = await crm.customers.create(customer("ALICIA Wong", "13800138002"))
    wang = await crm.customers.create(customer("王伟", "13800138003"))
    await crm.customers.create(customer("100% Real_Name", "13800138004"))
    assert [f.customer.id for f in await crm.customers.files_by_name("ali")] == [alice.customer.id, alicia.customer.id]
    assert [f.customer.id for f in await crm.customers.files_by_name("王")] == [wang.customer.id]
    assert [f.customer.id for f in await crm.customers.files_by_name("WONG", match="contains")] == [alicia.customer.id]
    # Wildcards are text: "%" does not match every name, "_" not any character.
    assert [f.customer.name for f in await crm.customers.files_by_name("%", match="contains")] == ["100% Real_Name"]
    assert [f.customer.name for f in await crm.customers.files_by_name("e_l", match="contains")] == []
    assert await crm.customers.files_by_name("zz") == []


async def test_editing_a_file_is_audited_with_every_change(
    crm: CrmService, service: AuthService, clock: FakeClock
) -> None:
    created = await crm.customers.create(customer("Bob", "13800138000"), actor="amy", remote="10.0.0.5")
    clock.advance(30)
    patch = CustomerPatch.model_validate(
        {
            "name": HOSTILE,
            "tier": "gold",
            "notes": None,
            "phones": [{"number": "+86 139 0013 9000", "kind": "landline"}],
        }
    )
    updated = await crm.customers.update(created.customer.id, patch, actor="sam", remote="10.0.0.6")
    assert updated.customer.name == HOSTILE
    assert updated.customer.tier == "gold"
    assert updated.customer.updated_at == clock.now
    assert [(p.number, p.kind) for p in updated.customer.phones] == [("+86 139 0013 9000", "landline")]
    assert await crm.customers.files_by_number("13800138000") == []
    assert [f.customer.id for f in await crm.customers.files_by_number("13900139000")] == [created.customer.id]
    assert [f.customer.id for f in await crm.customers.files_by_name("<script>")] == [created.customer.id]

    items, _ = await service.list_audit(action="customer_updated")
    (entry,) = items
    assert (entry.actor, entry.target, entry.remote_addr) == ("sam", f"customer:{created.customer.id}", "10.0.0.6")
    assert entry.details["changes"]["name"] == {"from": "Bob", "to": HOSTILE}
    assert entry.details["changes"]["tier"] == {"from": "standard", "to": "gold"}
    assert entry.details["changes"]["phones"] == {"from": ["13800138000"], "to": ["+86 139 0013 9000"]}
    assert "notes" not in entry.details["changes"]
    created_audits, _ = await service.list_audit(action="customer_created")
    assert [a.actor for a in created_audits] == ["amy"]

    # Sending what is already there changes nothing and writes no audit row.
    await crm.customers.update(created.customer.id, CustomerPatch.model_validate({"tier": "gold"}), actor="sam")
    assert len((await service.list_audit(action="customer_updated"))[0]) == 1


async def test_a_number_that_is_not_one_is_refused_naming_the_field(crm: CrmService) -> None:
    with pytest.raises(InvalidCrmInput) as caught:
        await crm.customers.create(customer("Eve", "13800138000", "<b>call me</b>"))
    assert caught.value.details == {"fields": {"phones.1.number": "not a phone number"}}
    with pytest.raises(InvalidCrmInput) as twice:
        await crm.customers.create(customer("Eve", "13800138000", "+86 138 0013 8000"))
    assert "phones.1.number" in twice.value.details["fields"]
    with pytest.raises(CustomerNotFound):
        await crm.customers.update(12345, CustomerPatch(tier="vip"))  # type: ignore[arg-type]
    with pytest.raises(CustomerNotFound):
        await crm.customers.file(12345)


# service records


async def test_an_idempotency_key_writes_a_record_once(crm: CrmService, database: Database) -> None:
    first, created = await crm.records.create(record(idempotency_key="call-1.2/voicemail"), actor="ivr")
    again, created_again = await crm.records.create(record(idempotency_key="call-1.2/voicemail"), actor="ivr")
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    racing = await asyncio.gather(*(crm.records.create(record(idempotency_key="race"), actor="ivr") for _ in range(5)))
    assert len({made.id for made, _ in racing}) == 1
    assert [fresh for _, fresh in racing].count(True) == 1
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(ServiceRecord)) == 2


async def test_a_record_from_a_known_number_is_linked_to_its_only_owner(crm: CrmService) -> None:
    owner = await crm.customers.create(customer("Owner", "13800138000"))
    await crm.customers.create(customer("One", "+86 21 5555 0000"))
    await crm.customers.create(customer("Two", "+86 21 5555 0000"))
    linked, _ = await crm.records.create(
        record("voicemail", caller_number="+8613800138000", caller_name=HOSTILE), actor="voicemail"
    )
    shared, _ = await crm.records.create(record("voicemail", caller_number="02155550000"), actor="voicemail")
    junk, _ = await crm.records.create(record("voicemail", caller_number=HOSTILE), actor="voicemail")
    assert linked.customer_id == owner.customer.id
    assert linked.caller_name == HOSTILE
    assert shared.customer_id is None
    assert junk.customer_id is None
    assert junk.caller_number == HOSTILE
    with pytest.raises(InvalidCrmInput) as caught:
        await crm.records.create(record(customer_id=999_999), actor="amy")
    assert "customer_id" in caught.value.details["fields"]


async def test_the_lifecycle_keeps_who_changed_what_and_when(
    crm: CrmService, service: AuthService, clock: FakeClock
) -> None:
    agent = await service.create_user("amy", "pass-word-1", roles=["agent"])
    booked = datetime(2030, 1, 3, 9, 0, tzinfo=UTC)
    made, _ = await crm.records.create(
        record("repair_booking", appointment_at=booked.isoformat(), follow_up="2030-01-05"), actor="amy"
    )
    assert (made.status, made.appointment_at, made.follow_up) == ("new", booked, date(2030, 1, 5))
    steps = [
        TransitionIn(action="assign", assigned_to=agent.id, note="yours"),
        TransitionIn(action="start"),
        TransitionIn(action="resolve", outcome="replaced the pump"),
        TransitionIn(action="feedback", feedback="<i>very</i> happy\r\n"),
        TransitionIn(action="archive"),
    ]
    for step in steps:
        clock.advance(60)
        await crm.records.transition(made.id, step, actor="sam")
    final, history = await crm.records.get(made.id)
    assert final.status == "archived"
    assert final.assigned_to == agent.id
    assert final.outcome == "replaced the pump"
    assert final.feedback == "<i>very</i> happy\r\n"
    assert [(h.action, h.from_status, h.to_status) for h in history] == [
        ("create", None, "new"),
        ("assign", "new", "assigned"),
        ("start", "assigned", "in_progress"),
        ("resolve", "in_progress", "resolved"),
        ("feedback", "resolved", "feedback_recorded"),
        ("archive", "feedback_recorded", "archived"),
    ]
    assert [h.actor for h in history] == ["amy"] + ["sam"] * 5
    assert history[1].changes == {"assigned_to": {"from": None, "to": agent.id}, "note": "yours"}
    assert history[3].changes == {"outcome": {"from": None, "to": "replaced the pump"}}
    assert history[-1].at == clock.now

    with pytest.raises(InvalidTransition):
        await crm.records.transition(made.id, TransitionIn(action="start"), actor="sam")
    with pytest.raises(ServiceRecordNotFound):
        await crm.records.transition(987_654, TransitionIn(action="start"), actor="sam")
    fresh, _ = await crm.records.create(record(), actor="amy")
    with pytest.raises(InvalidCrmInput) as caught:
        await crm.records.transition(fresh.id, TransitionIn(action="assign", assigned_to=424_242), actor="sam")
    assert "assigned_to" in caught.value.details["fields"]


async def test_of_two_agents_acting_at_once_one_wins(crm: CrmService, service: AuthService, database: Database) -> None:
    agent = await service.create_user("amy", "pass-word-1", roles=["agent"])
    made, _ = await crm.records.create(record(), actor="amy")
    await crm.records.transition(made.id, TransitionIn(action="assign", assigned_to=agent.id), actor="amy")
    results = await asyncio.gather(
        *(crm.records.transition(made.id, TransitionIn(action="start"), actor=f"agent{n}") for n in range(4)),
        return_exceptions=True,
    )
    assert sum(not isinstance(result, BaseException) for result in results) == 1
    assert all(isinstance(result, InvalidTransition) for result in results if isinstance(result, BaseException))
    async with database.session() as session:
        starts = await session.scalar(
            select(func.count()).select_from(ServiceRecordHistory).where(ServiceRecordHistory.action == "start")
        )
    assert starts == 1


async def test_records_are_listed_by_customer_status_and_call(crm: CrmService, clock: FakeClock) -> None:
    one = await crm.customers.create(customer("One", "13800138001"))
    two = await crm.customers.create(customer("Two", "13800138002"))
    for n in range(3):
        clock.advance(1)
        await crm.records.create(record(customer_id=one.customer.id, linkedid=f"170000000{n}.1"), actor="x")
    await crm.records.create(record(customer_id=two.customer.id), actor="x")
    mine = await crm.records.find(ServiceRecordQuery(customer_id=one.customer.id))
    assert [r.linkedid for r in mine] == ["1700000002.1", "1700000001.1", "1700000000.1"]
    assert len(await crm.records.find(ServiceRecordQuery(status="new"))) == 4  # type: ignore[arg-type]
    assert len(await crm.records.find(ServiceRecordQuery(status="archived"))) == 0  # type: ignore[arg-type]
    (call,) = await crm.records.find(ServiceRecordQuery(linkedid="1700000001.1"))
    assert call.customer_id == one.customer.id
    page = await crm.records.find(ServiceRecordQuery(limit=2, offset=1))
    assert len(page) == 2


# knowledge base and products


async def test_the_knowledge_base_finds_every_word_anywhere_whatever_the_case(
    crm: CrmService, database: Database
) -> None:
    washer = await crm.knowledge.add_article(
        "Washing machine error E21", "Clean the drain filter.", ["washer", "drain"]
    )
    ac = await crm.knowledge.add_article(
        "Air conditioner not cooling", "Clean the air filter; 空调不制冷请清洗滤网。", ["ac"]
    )
    odd = await crm.knowledge.add_article("100% refunds", "Policy for refunds_with_underscores", ["policy"])

    async def titles(query: str) -> list[int]:
        return [article.id for article in await crm.knowledge.search(query)]

    assert await titles("e21") == [washer.id]
    # Neither title holds it: the most recently updated first, then the newest.
    assert await titles("FILTER") == [ac.id, washer.id]
    assert await titles("filter drain") == [washer.id]
    assert await titles("空调") == [ac.id]
    assert await titles("滤网 filter") == [ac.id]
    # The first word in a title ranks first.
    assert (await titles("cooling filter"))[0] == ac.id
    assert await titles("%") == [odd.id]
    assert await titles("s_w") == [odd.id]
    assert await titles('" OR 1=1 --') == []
    assert await titles("' OR ''='") == []
    assert await titles("nothing-like-this") == []

    # The index follows changes and deletions.
    async with database.session() as session:
        await session.execute(update(KbArticle).where(KbArticle.id == washer.id).values(title="Dryer error D04"))
    assert await titles("e21") == []
    assert await titles("d04") == [washer.id]
    async with database.session() as session:
        await session.execute(KbArticle.__table__.delete().where(KbArticle.id == washer.id))
    assert await titles("d04") == []


async def test_products_are_found_by_the_code_a_caller_types(crm: CrmService, database: Database) -> None:
    async with database.session() as session:
        for product in DEMO_PRODUCTS:
            session.add(
                Product(
                    code=product.code,
                    name=product.name,
                    category="demo",
                    price=product.price,
                    availability=product.availability,
                    description=None,
                    spoken_en=product.spoken.get("en"),
                    spoken_zh=product.spoken.get("zh"),
                )
            )
    catalog = CrmProductCatalog(crm.knowledge)
    for product in DEMO_PRODUCTS:
        assert await catalog.find(product.code) == product
    found = await crm.knowledge.product("1002")
    assert found is not None
    assert found.price == Decimal("4599.50")
    assert found.as_json()["price"] == "4599.50"
    for code in ("9999", "1001' OR '1'='1", "1" * 200, "", "10 01", "\uff11\uff10\uff10\uff11"):
        assert await catalog.find(code) is None


async def test_the_screen_pop_never_blocks_the_event_loop(tmp_path: Any) -> None:
    # SQLite only: asyncpg itself stats files while connecting.
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'crm.sqlite3'}"
    await migrate(url)
    with blockbuster_ctx():
        database = Database(url)
        await database.open()
        try:
            crm = CrmService(database, audit=AuthService(database, AuthConfig(), password_hasher=FAST_HASHER))
            created = await crm.customers.create(customer("王伟", "13800138000"), actor="amy")
            await crm.records.create(record(customer_id=created.customer.id), actor="amy")
            files: list[CustomerFile] = await crm.customers.files_by_number("+86 138 0013 8000")
            assert [item.customer.id for item in files] == [created.customer.id]
            assert await crm.knowledge.search("anything") == []
            assert await crm.customers.best_tier("13800138000") == "standard"
        finally:
            await database.close()


async def test_phone_rules_decide_the_keys(database: Database) -> None:
    crm = CrmService(database, rules=PhoneRules(area_code="10"))
    created = await crm.customers.create(customer("Local", "6234 5678"))
    assert created.customer.phones[0].normalized == "861062345678"
    assert [f.customer.id for f in await crm.customers.files_by_number("+86 10 6234 5678")] == [created.customer.id]
    assert crm.customers.phone_key(PhoneIn(number="010 62345678").number) == "861062345678"
