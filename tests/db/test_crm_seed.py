"""Seed data against SQLite and PostgreSQL: realistic, the same for the same seed, findable by the services, and
never poured twice into a database by accident; and the `callcenter db seed` command."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from callcenter.adapters import CrmProductCatalog
from callcenter.cli.common import pass_context_options
from callcenter.cli.db_cmd import db as db_group
from callcenter.db import Database
from callcenter_devtools.seed import SeedOptions, seed
from crm_bridge.exceptions import SeedRefused
from crm_bridge.models import (
    TIER_RANK,
    Customer,
    CustomerPhone,
    KbArticle,
    Product,
    ServiceRecord,
    ServiceRecordHistory,
)
from crm_bridge.phones import normalize
from crm_bridge.schemas import CustomerIn, ServiceRecordIn
from crm_bridge.services import CrmService
from crm_bridge.text import name_key
from ivr_flows.ports import DEMO_PRODUCTS

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


async def _rows(database: Database, *columns: Any) -> list[tuple[Any, ...]]:
    async with database.session() as session:
        return [tuple(row) for row in await session.execute(select(*columns).order_by(columns[0]))]


async def _count(database: Database, model: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_small_seed_makes_findable_realistic_data(database: Database) -> None:
    report = await seed(database, SeedOptions(customers=400, products=30, seed=7, chunk=150, now=NOW))
    assert report.customers == 400
    assert await _count(database, Customer) == 400
    assert await _count(database, Product) == report.products == 30
    assert await _count(database, KbArticle) == report.articles > 0
    assert await _count(database, CustomerPhone) == report.phones >= 400
    records = await _count(database, ServiceRecord)
    assert records == report.service_records > 0
    # Every record says how it arrived.
    assert await _count(database, ServiceRecordHistory) == records

    customers = await _rows(database, Customer.id, Customer.name, Customer.name_key, Customer.tier)
    assert all(key == name_key(name) for _, name, key, _ in customers)
    tiers = [tier for *_, tier in customers]
    assert set(tiers) <= set(TIER_RANK)
    assert tiers.count("vip") < tiers.count("gold") < tiers.count("standard")
    assert any(ord(name[0]) > 0x4E00 for _, name, _, _ in customers)
    assert any(name[0].isascii() for _, name, _, _ in customers)

    phones = await _rows(
        database, CustomerPhone.id, CustomerPhone.customer_id, CustomerPhone.number, CustomerPhone.normalized
    )
    assert all(normalize(number) == key for _, _, number, key in phones)
    assert any(number.startswith("+") for *_, number, _ in phones)
    assert any(not number.startswith("+") for *_, number, _ in phones)

    crm = CrmService(database)
    _, owner, number, _ = phones[len(phones) // 2]
    files = await crm.customers.files_by_number(number)
    assert owner in [item.customer.id for item in files]
    one = await crm.customers.file(owner)
    assert one.customer.first_contact is not None
    assert one.customer.first_contact <= (one.customer.last_contact or NOW) <= NOW
    assert all(item.created_at <= NOW for item in one.recent_records)
    assert await crm.knowledge.search("E21")


async def test_the_demo_products_are_the_flows_demo_products(database: Database) -> None:
    await seed(database, SeedOptions(customers=0, products=3, now=NOW))
    catalog = CrmProductCatalog(CrmService(database).knowledge)
    for product in DEMO_PRODUCTS:
        assert await catalog.find(product.code) == product


async def test_the_same_seed_gives_the_same_data(database: Database, tmp_path: Path) -> None:
    other = Database(f"sqlite+aiosqlite:///{tmp_path / 'other' / 'crm.sqlite3'}")
    await other.open()
    await other.migrate()
    try:
        await seed(database, SeedOptions(customers=120, products=12, seed=3, chunk=50, now=NOW))
        await seed(other, SeedOptions(customers=120, products=12, seed=3, chunk=40, now=NOW))
        columns = (Customer.id, Customer.name, Customer.tier, Customer.first_contact, Customer.company)
        assert await _rows(database, *columns) == await _rows(other, *columns)
        numbers = (CustomerPhone.customer_id, CustomerPhone.number)
        assert sorted(await _rows(database, *numbers)) == sorted(await _rows(other, *numbers))
        record_columns = (ServiceRecord.id, ServiceRecord.customer_id, ServiceRecord.type, ServiceRecord.status)
        assert await _rows(database, *record_columns) == await _rows(other, *record_columns)
        products = (Product.code, Product.name, Product.price)
        assert sorted(await _rows(database, *products)) == sorted(await _rows(other, *products))
    finally:
        await other.close()


async def test_seeding_a_database_with_customers_needs_force(database: Database) -> None:
    first = await seed(database, SeedOptions(customers=50, products=10, now=NOW))
    with pytest.raises(SeedRefused, match="already has 50 customers"):
        await seed(database, SeedOptions(customers=50, products=10, now=NOW))
    more = await seed(database, SeedOptions(customers=30, products=10, seed=2, force=True, now=NOW))
    assert (first.products, more.products, more.articles) == (10, 0, 0)
    assert await _count(database, Customer) == 80
    # Ids given by the seed are behind the sequences: what is made next does not collide.
    crm = CrmService(database)
    made = await crm.customers.create(CustomerIn(name="After the seed"))
    assert made.customer.id == 81
    created, _ = await crm.records.create(ServiceRecordIn(type="complaint"), actor="x")  # type: ignore[arg-type]
    assert created.id == await _count(database, ServiceRecord)


def _cli() -> click.Group:
    @click.group()
    @pass_context_options
    def root() -> None:
        pass

    root.add_command(db_group)
    return root


def test_the_seed_command_fills_the_database_once(tmp_path: Path) -> None:
    runner = CliRunner()
    environ = {"CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "data"), "CALLCENTER_DATABASE_URL": ""}
    first = runner.invoke(_cli(), ["db", "seed", "--customers", "25", "--products", "5", "--seed", "9"], env=environ)
    assert first.exit_code == 0, first.output
    assert "seeded 25 customers" in first.output
    again = runner.invoke(_cli(), ["db", "seed", "--customers", "25"], env=environ)
    assert again.exit_code == 1
    assert "already has 25 customers" in again.output
    forced = runner.invoke(_cli(), ["db", "seed", "--customers", "5", "--force"], env=environ)
    assert forced.exit_code == 0, forced.output
    assert "seeded 5 customers" in forced.output
    bad = runner.invoke(_cli(), ["db", "seed", "--customers", "-1"], env=environ)
    assert bad.exit_code == 2
    helped = runner.invoke(_cli(), ["db", "seed", "--help"], env=environ)
    assert "--customers" in helped.output
    assert "--force" in helped.output
