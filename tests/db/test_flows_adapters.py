"""The IVR flows on the engine's own adapters (callcenter.adapters) over the CRM, on SQLite and PostgreSQL.

The real flow engine walks the shipped flows with a scripted caller (ivr_flows.simulator); products and tiers
come from the CRM tables, and after-hours messages become CRM service records.
"""

from __future__ import annotations

import math
import struct
import wave
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, select

from callcenter.adapters import RECORD_TYPES, CrmCustomerDirectory, CrmProductCatalog, VoicemailFiler, flow_ports
from callcenter.auth.services import AuthService
from callcenter.config import Config, load_config
from callcenter.db import Database
from crm_bridge.models import Product, ServiceRecord
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.schemas import CustomerIn
from crm_bridge.services import CrmService
from ivr_flows.ports import FlowPorts, VoicemailMessage
from ivr_flows.route import SHIPPED_FLOWS
from ivr_flows.schema import FlowSet
from ivr_flows.simulator import Script, Simulation, simulate
from ivr_flows.steps import Outcome
from ivr_flows.validator import load_flows
from recordings.models import Recording
from recordings.plugin import build_recordings
from recordings.services import RecordingService

SHANGHAI = ZoneInfo("Asia/Shanghai")
OPEN = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
CLOSED = datetime(2026, 11, 23, 22, 0, tzinfo=SHANGHAI)
CALLER = "13800138000"


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    return load_flows(SHIPPED_FLOWS, entry="main")


@pytest.fixture
def crm(database: Database, service: AuthService) -> CrmService:
    return CrmService(database, audit=service)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "recordings").mkdir()
    return load_config(
        environ={
            "CALLCENTER_PATHS_RECORDINGS_DIR": str(tmp_path / "recordings"),
            "CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "data"),
        }
    )


@pytest.fixture
def recordings(config: Config, database: Database, service: AuthService) -> RecordingService:
    return build_recordings(config, database, service)


class AsteriskWrites(VoicemailFiler):
    """The engine's filer, with the file Asterisk would have recorded written first (one second of a tone)."""

    async def store(self, message: VoicemailMessage) -> None:
        with wave.open(str(message.path), "wb") as audio:
            audio.setnchannels(1)
            audio.setsampwidth(2)
            audio.setframerate(8000)
            tone = (int(8000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(8000))
            audio.writeframes(b"".join(struct.pack("<h", sample) for sample in tone))
        await super().store(message)


@pytest.fixture
def ports(crm: CrmService, recordings: RecordingService, tmp_path: Path) -> FlowPorts:
    outbox = ServiceRecordOutbox(crm.records, tmp_path / "outbox")
    made = flow_ports(crm=crm, outbox=outbox, recordings=recordings)
    return replace(made, voicemail=AsteriskWrites(recordings.lifecycle, outbox))


@pytest.fixture
def statements(database: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    yield seen
    event.remove(engine, "before_cursor_execute", before)


async def add_product(database: Database, code: str = "2718") -> None:
    async with database.session() as session:
        session.add(
            Product(
                code=code,
                name="Tide water purifier",
                category="demo",
                price=Decimal("899.00"),
                availability="out_of_stock",
                description=None,
                spoken_en="Five stage filter.",
                spoken_zh="五级过滤。",
            )
        )


async def call(flows: FlowSet, ports: FlowPorts, inputs: list[str], *, at: datetime = OPEN, **kw: Any) -> Simulation:
    script = kw.pop("script", None) or Script(inputs=inputs)
    return await simulate(flows, "main", at=at, caller=kw.pop("caller", CALLER), ports=ports, script=script)


async def test_the_engine_s_adapters_are_the_crm_s_and_the_recordings(
    crm: CrmService, recordings: RecordingService, tmp_path: Path
) -> None:
    ports = flow_ports(crm=crm, outbox=ServiceRecordOutbox(crm.records, tmp_path / "outbox"), recordings=recordings)
    assert isinstance(ports.catalog, CrmProductCatalog)
    assert isinstance(ports.directory, CrmCustomerDirectory)
    assert isinstance(ports.voicemail, VoicemailFiler)


async def test_a_product_code_keyed_in_is_read_back_from_the_crm(
    flows: FlowSet, ports: FlowPorts, database: Database
) -> None:
    await add_product(database)
    sim = await call(flows, ports, ["1", "1", "2718#", "H"])
    lookup = next(entry for entry in sim.result.path if entry.step == "lookup")
    assert (lookup.result, lookup.digits, lookup.detail) == ("found", "2718", "Tide water purifier")
    spoken = [text for _name, text in sim.played_prompts()]
    assert "Tide water purifier. Price: 899 yuan. Currently out of stock. Five stage filter." in spoken
    unknown = await call(flows, ports, ["1", "1", "3141#", "H"])
    assert [e.result for e in unknown.result.path if e.step == "lookup"] == ["not_found"]


async def test_keys_carrying_sql_never_reach_the_database(
    flows: FlowSet, ports: FlowPorts, database: Database, statements: list[str]
) -> None:
    await add_product(database)
    statements.clear()
    # As Asterisk could never send them, but as a hostile peer might: the input step refuses them first.
    script = Script(inputs=["1", "1", "2718' OR '1'='1", "1;DROP TABLE products", "0"], raw=True)
    sim = await call(flows, ports, [], script=script)
    assert [e.result for e in sim.result.path if e.step == "input"][:2] == ["too_long", "too_long"]
    assert not any("products" in statement for statement in statements)
    # The catalog itself binds whatever it is given: a code carrying SQL is just not found.
    assert await ports.catalog.find("2718' OR '1'='1") is None
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(Product)) == 1


async def test_a_vip_customer_calling_is_queued_first(flows: FlowSet, ports: FlowPorts, crm: CrmService) -> None:
    await crm.customers.create(
        CustomerIn.model_validate({"name": "Wang Wei", "tier": "vip", "phones": [{"number": CALLER}]})
    )
    vip = await call(flows, ports, ["2"])
    assert (vip.result.outcome, vip.result.priority, vip.result.choice) == (Outcome.QUEUED, 10, "fault_consultation")
    stranger = await call(flows, ports, ["2"], caller="5550199")
    assert stranger.result.priority == 0


@pytest.mark.parametrize(("key", "intent"), [("1", "complaint"), ("2", "suggestion"), ("3", "repair_request")])
async def test_an_after_hours_message_is_stored_indexed_and_filed_as_a_new_service_record_of_its_intent(
    flows: FlowSet, ports: FlowPorts, crm: CrmService, database: Database, config: Config, key: str, intent: str
) -> None:
    owner = await crm.customers.create(
        CustomerIn.model_validate({"name": "Li Na", "tier": "gold", "phones": [{"number": CALLER}]})
    )
    sim = await call(flows, ports, [key], at=CLOSED)
    assert sim.result.outcome is Outcome.VOICEMAIL
    (message,) = sim.result.voicemails
    assert message.intent == intent
    # In the recordings store, under voicemail/<year>/<month>/<day>/, named by the store.
    assert message.path.is_relative_to(config.recordings_dir / "voicemail")
    async with database.session() as session:
        (row,) = list(await session.scalars(select(ServiceRecord)))
        (indexed,) = list(await session.scalars(select(Recording)))
    assert row.type == RECORD_TYPES[intent]
    assert row.status == "new"
    assert row.customer_id == owner.customer.id
    assert row.caller_number == CALLER
    assert row.linkedid == message.linkedid
    assert message.path.name in row.content
    # Indexed as a voicemail with its intent, the caller's number, the time and the duration of the file.
    assert (indexed.kind, indexed.status, indexed.intent) == ("voicemail", "complete", intent)
    assert (indexed.caller_number, indexed.did, indexed.linkedid) == (CALLER, "4000", message.linkedid)
    assert indexed.started_at == message.recorded_at
    assert indexed.duration == pytest.approx(1.0)
    assert (indexed.service_record_id, indexed.service_record_type) == (row.id, RECORD_TYPES[intent])
    assert config.recordings_dir / indexed.file_path == message.path
    # Filed and indexed once, however often the sink hears of it (an idempotency key per message file; the
    # file's name is its recording id).
    await ports.voicemail.store(message)
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(ServiceRecord)) == 1
        assert await session.scalar(select(func.count()).select_from(Recording)) == 1


async def test_a_caller_who_hangs_up_while_speaking_still_leaves_the_record(
    flows: FlowSet, ports: FlowPorts, database: Database
) -> None:
    sim = await call(flows, ports, ["1", "H"], at=CLOSED, caller="5550142")
    assert sim.result.outcome is Outcome.VOICEMAIL
    (message,) = sim.result.voicemails
    assert message.ended_by == "hangup"
    async with database.session() as session:
        (row,) = list(await session.scalars(select(ServiceRecord)))
    assert (row.type, row.status, row.customer_id, row.caller_number) == ("complaint", "new", None, "5550142")
