"""The screen-pop (crm_bridge.screenpop) against SQLite and PostgreSQL: what the ringing agent's pages receive on
``CallOffered``, built from the CRM, the call records, earlier bus events and the live model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiosqlite
import pytest

# tests/db is on sys.path (pytest's prepend import mode, no __init__.py): the outbox tests are a module there.
import test_crm_outbox
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from seating import sit
from sqlalchemy import event, func, select

from callcenter.auth.middleware import auth_middleware
from callcenter.auth.permissions import Permission, Role
from callcenter.auth.services import AuthService
from callcenter.bus import Bus
from callcenter.db import Database
from callcenter.events import CallEnded, CallOffered
from callcenter.keys import AUTH, HUB
from callcenter.model import Call, LiveModel, QueueSegment
from callcenter.web.errors import error_middleware
from callcenter.web.ws import Hub, frame, ws_routes
from calls.events import ExpertRequested
from calls.models import CallRecord
from calls.reads import CallReads
from crm_bridge.models import Customer, RecordStatus, RecordType, ServiceRecord
from crm_bridge.schemas import ContactIn, CustomerIn, CustomerPatch, PhoneIn, ServiceRecordIn
from crm_bridge.screenpop import HISTORY, ScreenPop
from crm_bridge.services import CrmService
from ivr_flows.events import IvrEnded
from seats.ports import Seat, SeatDirectory
from seats.reads import SeatReads

# The outbox tests' database that can be taken away (SQLite: its directory vanishes; PostgreSQL: a relay is cut).
switchable = test_crm_outbox.switchable

GENERAL = "general"
EXPERT = "expert"
# The live model's clock (epoch seconds), fixed so that waits come out exact.
NOW = 1_900_000_000.0
PASSWORD = "screen-pop-password-1"
HTML_NAME = "<img src=x onerror=alert(1)><b>Wang</b>"
SQL_NAME = "Robert'); DROP TABLE customers;--"
CRLF_NAME = "Evil\r\nX-Injected: 1\r\n\r\n<script>alert(2)</script>"
KILOBYTE_NAME = ("王<b>伟</b> \"'; --\r\n\t\u202e" * 64)[:1024]


class CapturingHub(Hub):
    """The real hub; it also keeps every frame it is asked to send as a page would parse it (JSON and back)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[int | None, dict[str, Any]]] = []

    def send(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        user_id: int | None = None,
        permission: Permission | None = None,
        extension: str | None = None,
        coalesce: float | None = None,
    ) -> int:
        self.frames.append((user_id, json.loads(frame(event_type, data))))
        return super().send(
            event_type, data, user_id=user_id, permission=permission, extension=extension, coalesce=coalesce
        )


class Phones:
    """Who is on which phone, as the seats' port says: here the user whose id is the extension's number (user 1001
    on PJSIP/1001), except on the phones in ``empty``."""

    def __init__(self, empty: tuple[str, ...] = ("PJSIP/1009",)) -> None:
        self.empty = empty

    async def seated(self) -> list[Seat]:
        return []

    async def user_at(self, interface: str) -> int | None:
        return await self.person_at(interface)

    async def seat_of(self, user_id: int) -> str | None:
        return None

    async def person_at(self, interface: str) -> int | None:
        return None if interface in self.empty else int(interface.removeprefix("PJSIP/"))

    async def phone_of(self, user_id: int) -> str | None:
        return f"PJSIP/{user_id}"


@dataclass
class Live:
    """Stands in for the live service: the screen-pop reads ``model`` through a getter."""

    model: LiveModel = field(default_factory=LiveModel)

    def add_call(
        self,
        linkedid: str,
        number: str,
        name: str = "",
        *,
        did: str = "4000",
        segments: tuple[QueueSegment, ...] = (),
        queued_at: float | None = None,
    ) -> Call:
        call = Call(
            linkedid=linkedid,
            started=NOW - 300,
            caller_number=number,
            caller_name=name,
            did=did,
            queue=segments[-1].queue if segments else "",
            queued_at=queued_at if queued_at is not None else (segments[-1].entered if segments else None),
            segments=segments,
        )
        self.model = replace(self.model, calls={**self.model.calls, linkedid: call})
        return call


@dataclass
class Pop:
    crm: CrmService
    database: Database
    bus: Bus
    hub: CapturingHub
    live: Live
    screen: ScreenPop

    async def offer(self, linkedid: str, *, agent: str = "PJSIP/1001", queue: str = GENERAL) -> dict[str, Any]:
        """Publishes ``CallOffered`` as the live service does and returns the one frame it caused."""
        before = len(self.hub.frames)
        self.bus.publish(CallOffered(linkedid=linkedid, queue=queue, agent=agent, channel=f"{agent}-0001", at=NOW))
        await self.bus.drain()
        sent = self.hub.frames[before:]
        assert len(sent) == 1, sent
        user_id, body = sent[0]
        assert user_id == int(agent.removeprefix("PJSIP/"))
        assert body["type"] == "screen_pop"
        assert body["agent"] == agent
        return body


def make_pop(database: Database, seats: SeatDirectory | None = None) -> Pop:
    """A started screen-pop on ``database`` (the caller closes ``screen``); who is on which phone from ``seats``
    (by default :class:`Phones`)."""
    bus, hub, live = Bus(), CapturingHub(), Live()
    crm = CrmService(database)
    screen = ScreenPop(
        crm,
        database,
        bus,
        hub,
        lambda: live.model,
        history=CallReads(database),
        seats=seats or Phones(),
        expert_queue=EXPERT,
        clock=lambda: NOW,
    )
    screen.start()
    return Pop(crm, database, bus, hub, live, screen)


@pytest.fixture
def pop(database: Database) -> Iterator[Pop]:
    made = make_pop(database)
    yield made
    made.screen.close()


async def add_customer(
    crm: CrmService, name: str, *numbers: str, tier: str = "standard", contacts: tuple[ContactIn, ...] = ()
) -> int:
    created = await crm.customers.create(
        CustomerIn.model_validate(
            {"name": name, "tier": tier, "phones": [PhoneIn(number=n) for n in numbers], "contacts": list(contacts)}
        )
    )
    return created.customer.id


BASE = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)


async def add_call_records(database: Database, *calls: tuple[str, str, datetime]) -> None:
    """Finished calls (linkedid, caller number, start) as the call recorder writes them."""
    async with database.session() as session:
        for linkedid, number, started in calls:
            session.add(
                CallRecord(
                    linkedid=linkedid,
                    direction="inbound",
                    caller_number=number,
                    caller_name="",
                    did="4000",
                    started_at=started,
                    ended_at=started + timedelta(minutes=3),
                    outcome="answered",
                    ivr_flow="hotline",
                    ivr_outcome="queued",
                    ivr_choice="fault",
                    ivr_path="[]",
                    queues=json.dumps([GENERAL]),
                    segments="[]",
                    wait_time=4.0,
                    talk_time=170.0,
                    agent="PJSIP/1001",
                    expert=None,
                    handoff_notes=f"notes of {linkedid}",
                    recording_ids="[]",
                    service_record_id=None,
                    source="live",
                    created_at=started + timedelta(minutes=3),
                )
            )


def queued(queue: str = GENERAL, entered: float = NOW - 20) -> tuple[QueueSegment, ...]:
    return (QueueSegment(queue=queue, entered=entered),)


# -- customer files -------------------------------------------------------------------------------------------


async def test_a_known_caller_pops_the_customer_file_with_contacts_and_records(pop: Pop) -> None:
    customer_id = await add_customer(
        pop.crm,
        "王伟",
        "+86 138 0013 8000",
        "010-6234 5678",
        tier="gold",
        contacts=(ContactIn(name="李娜", role="purchasing", phone="139 1111 2222", email="li.na@example.com"),),
    )
    open_record, _ = await pop.crm.records.create(
        ServiceRecordIn(type=RecordType.REPAIR_BOOKING, content="The washer leaks", customer_id=customer_id),
        actor="amy",
    )
    async with pop.database.session() as session:
        archived = ServiceRecord(
            customer_id=customer_id,
            type=RecordType.FAULT_CONSULTATION.value,
            status=RecordStatus.ARCHIVED.value,
            content="Old fault, fixed",
            created_by="seed",
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
            updated_at=datetime(2025, 1, 2, tzinfo=UTC),
        )
        session.add(archived)
        await session.flush()
        archived_id = archived.id
    pop.live.add_call("1700000000.1", "13800138000", "WANG WEI", did="4008", segments=queued())

    body = await pop.offer("1700000000.1")

    assert body["linkedid"] == "1700000000.1"
    assert body["queue"] == GENERAL
    assert body["expert_call"] is False
    assert body["caller"] == {"number": "13800138000", "name": "WANG WEI", "did": "4008"}
    assert body["unknown_caller"] is False
    assert body["new_customer"] is None
    assert body["handoff"] is None
    [file] = body["customers"]
    profile = file["customer"]
    assert (profile["id"], profile["name"], profile["tier"]) == (customer_id, "王伟", "gold")
    assert [phone["number"] for phone in profile["phones"]] == ["+86 138 0013 8000", "010-6234 5678"]
    assert [phone["normalized"] for phone in profile["phones"]] == ["8613800138000", "861062345678"]
    assert [(c["name"], c["role"], c["email"]) for c in file["contacts"]] == [
        ("李娜", "purchasing", "li.na@example.com")
    ]
    assert [record["id"] for record in file["recent_records"]] == [open_record.id, archived_id]
    assert [record["id"] for record in file["open_records"]] == [open_record.id]
    assert file["open_records"][0]["content"] == "The washer leaks"
    assert pop.screen.popped == 1
    assert pop.screen.last_latency is not None


async def test_a_number_shared_by_several_customers_pops_them_all_best_tier_first(pop: Pop) -> None:
    shared = "+86 139 1234 5678"
    standard = await add_customer(pop.crm, "Family member", shared)
    gold = await add_customer(pop.crm, "Small shop", shared, tier="gold")
    vip = await add_customer(pop.crm, "Big account", shared, "+86 137 0000 0001", tier="vip")
    await add_customer(pop.crm, "Someone else", "+86 139 1234 5679", tier="vip")
    pop.live.add_call("shared.1", "13912345678", "Switchboard", segments=queued())

    body = await pop.offer("shared.1")

    assert [file["customer"]["id"] for file in body["customers"]] == [vip, gold, standard]
    assert [file["customer"]["tier"] for file in body["customers"]] == ["vip", "gold", "standard"]
    assert body["unknown_caller"] is False


async def test_an_unknown_caller_pops_a_new_customer_form_with_number_and_name(pop: Pop) -> None:
    await add_customer(pop.crm, "Known", "+86 138 0013 8000")
    await add_call_records(pop.database, ("earlier.1", "13700000000", BASE))
    pop.live.add_call("unknown.1", "13700000000", "Zhang San", segments=queued())
    pop.live.add_call("anonymous.1", "", "", segments=queued())

    body = await pop.offer("unknown.1")
    anonymous = await pop.offer("anonymous.1", agent="PJSIP/1002")

    assert body["customers"] == []
    assert body["unknown_caller"] is True
    assert body["new_customer"] == {"number": "13700000000", "name": "Zhang San"}
    # An unknown caller who called before still shows that call.
    assert [call["linkedid"] for call in body["history"]] == ["earlier.1"]
    assert anonymous["unknown_caller"] is True
    assert anonymous["new_customer"] == {"number": "", "name": ""}
    assert anonymous["history"] == []


@pytest.mark.parametrize(
    "caller_id", ["+8613800138000", "008613800138000", "8613800138000", "013800138000", "13800138000"]
)
async def test_every_way_a_trunk_writes_the_number_finds_the_same_customer(pop: Pop, caller_id: str) -> None:
    customer_id = await add_customer(pop.crm, "王伟", "+86 138 0013 8000")
    await add_customer(pop.crm, "Neighbour", "+86 138 0013 8001")
    pop.live.add_call("variant.1", caller_id, "WANG", segments=queued())

    body = await pop.offer("variant.1")

    assert [file["customer"]["id"] for file in body["customers"]] == [customer_id]
    assert body["caller"]["number"] == caller_id


async def test_the_pops_read_gives_the_same_files_as_the_crm_service(pop: Pop) -> None:
    """The screen-pop reads on the raw driver; what it gives must be what the CRM's ORM path gives."""
    shared = "+86 139 1234 5678"
    first = await add_customer(
        pop.crm,
        HTML_NAME,
        shared,
        "010-6234 5678",
        tier="gold",
        contacts=(ContactIn(name=SQL_NAME, role="boss", phone="139 1111 2222", email="a@example.com"),),
    )
    second = await add_customer(pop.crm, "Shop", shared, tier="vip")
    await pop.crm.customers.update(
        first,
        CustomerPatch(
            churn_risk=True,
            notes=CRLF_NAME,
            first_contact=datetime(2029, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
            last_contact=datetime(2030, 2, 1, tzinfo=UTC),
        ),
    )
    for index in range(20):
        await pop.crm.records.create(
            ServiceRecordIn(
                type=RecordType.REPAIR_BOOKING,
                content=f"visit {index}",
                customer_id=first if index % 3 else second,
                follow_up=date(2030, 4, 1 + index),
                appointment_at=datetime(2030, 4, 2, 9, index, 30, 250000, tzinfo=UTC),
                caller_number=shared,
                caller_name=KILOBYTE_NAME,
            ),
            actor="amy",
        )
    async with pop.database.session() as session:
        session.add(
            ServiceRecord(
                customer_id=first,
                type=RecordType.FAULT_CONSULTATION.value,
                status=RecordStatus.ARCHIVED.value,
                content="Old fault, fixed",
                outcome="fixed",
                feedback="<i>happy</i>",
                created_by="seed",
                created_at=datetime(2030, 4, 1, 9, 5, 30, 250000, tzinfo=UTC),
                updated_at=datetime(2030, 4, 2, tzinfo=UTC),
            )
        )

    for number in ("13912345678", "+861062345678", "13700000000"):
        read = await pop.screen.reader.read(number)
        expected = await pop.crm.customers.files_by_number(number)
        assert [file.as_json() for file in read.files] == [file.as_json() for file in expected]
    assert [file.customer.id for file in (await pop.screen.reader.read("13912345678")).files] == [second, first]


async def test_a_change_to_the_customer_is_in_the_next_pop(pop: Pop) -> None:
    customer_id = await add_customer(pop.crm, "Old name", "13800138000")
    pop.live.add_call("edit.1", "13800138000", "WANG", segments=queued())
    before = await pop.offer("edit.1")
    await pop.crm.customers.update(
        customer_id,
        CustomerPatch(
            name="New name",
            phones=[PhoneIn(number="13800138000"), PhoneIn(number="01062345678")],
            contacts=[ContactIn(name="Assistant")],
        ),
    )
    record, _ = await pop.crm.records.create(
        ServiceRecordIn(type=RecordType.COMPLAINT, content="Late delivery", customer_id=customer_id), actor="amy"
    )
    await add_call_records(pop.database, ("landline.1", "01062345678", BASE))

    after = await pop.offer("edit.1")

    assert before["customers"][0]["customer"]["name"] == "Old name"
    [file] = after["customers"]
    assert file["customer"]["name"] == "New name"
    assert [phone["number"] for phone in file["customer"]["phones"]] == ["13800138000", "01062345678"]
    assert [contact["name"] for contact in file["contacts"]] == ["Assistant"]
    assert [open_["id"] for open_ in file["open_records"]] == [record.id]
    assert [call["linkedid"] for call in after["history"]] == ["landline.1"]


async def test_on_sqlite_a_pop_is_one_trip_to_the_drivers_thread_for_the_files_and_one_for_the_calls(
    pop: Pop, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pop.database.dialect != "sqlite":
        pytest.skip("aiosqlite's thread is SQLite's")
    await add_customer(pop.crm, "王伟", "+86 138 0013 8000", contacts=(ContactIn(name="Li"),))
    await add_call_records(pop.database, ("earlier.1", "13800138000", BASE))
    await pop.screen.reader.read("13800138000")  # the pool has its connection
    trips: list[str] = []
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    found = await pop.screen.reader.read("13800138000")

    assert [file.customer.name for file in found.files] == ["王伟"]
    assert [call["linkedid"] for call in found.history] == ["earlier.1"]
    # The reads themselves and nothing else: the CRM's files, then the calls' history (through its port); the pool
    # rolls back only an open transaction (it was 20 trips before).
    assert trips == ["_files_sqlite", "_history_sqlite"]


async def test_on_sqlite_a_connection_given_back_inside_a_transaction_is_still_rolled_back(
    database: Database,
) -> None:
    if database.dialect != "sqlite":
        pytest.skip("the skipped reset is SQLite's")
    async with database.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        # Straight to the driver, as the pop's reader does: SQLAlchemy knows of no transaction to end.
        await raw.driver_connection.execute(
            "INSERT INTO customers (name, name_key, tier, churn_risk, created_at, updated_at) "
            "VALUES ('x', 'x', 'vip', 0, '2030-01-01 00:00:00', '2030-01-01 00:00:00')"
        )
        assert raw.driver_connection.in_transaction
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(Customer)) == 0


# -- call history ---------------------------------------------------------------------------------------------


async def test_history_is_the_last_ten_calls_newest_first_from_all_the_customers_numbers(pop: Pop) -> None:
    # The customer's numbers written the way the trunk presents them, so call records match them as they are.
    await add_customer(pop.crm, "Li Lei", "13800138000", "01062345678")
    mobile = [(f"mobile.{n:02d}", "13800138000", BASE + timedelta(hours=n)) for n in range(12)]
    landline = [
        ("landline.a", "01062345678", BASE + timedelta(hours=5, minutes=30)),
        ("landline.b", "01062345678", BASE + timedelta(hours=20)),
    ]
    stranger = [(f"stranger.{n}", "13999999999", BASE + timedelta(hours=30 + n)) for n in range(3)]
    await add_call_records(pop.database, *mobile, *landline, *stranger)
    pop.live.add_call("now.1", "13800138000", "Li Lei", segments=queued())

    body = await pop.offer("now.1")

    calls = sorted([*mobile, *landline], key=lambda call: call[2], reverse=True)[:HISTORY]
    assert [entry["linkedid"] for entry in body["history"]] == [call[0] for call in calls]
    assert body["history"][0]["linkedid"] == "landline.b"
    assert "landline.a" in [entry["linkedid"] for entry in body["history"]]
    started = [datetime.fromisoformat(entry["started_at"]) for entry in body["history"]]
    assert started == sorted(started, reverse=True)
    first = body["history"][0]
    assert first["caller_number"] == "01062345678"
    assert (first["outcome"], first["choice"], first["agent"], first["talk_time"]) == (
        "answered",
        "fault",
        "PJSIP/1001",
        170.0,
    )
    assert first["notes"] == "notes of landline.b"


async def test_history_finds_earlier_calls_whatever_way_the_number_was_written(pop: Pop) -> None:
    await add_customer(pop.crm, "王伟", "+86 138 0013 8000", "010-6234 5678")
    await add_call_records(
        pop.database,
        ("intl.1", "+8613800138000", BASE),
        ("landline.1", "01062345678", BASE + timedelta(hours=1)),
        ("national.1", "13800138000", BASE + timedelta(hours=2)),
    )
    pop.live.add_call("now.2", "13800138000", "WANG", segments=queued())

    body = await pop.offer("now.2")

    assert [entry["linkedid"] for entry in body["history"]] == ["national.1", "landline.1", "intl.1"]


async def test_a_shared_number_with_more_than_fifty_numbers_behind_it_shows_the_calls_of_fifty(pop: Pop) -> None:
    shared = "13800000000"
    for block in range(3):
        await add_customer(pop.crm, f"Branch {block}", shared, *(f"139000{block:03d}{n:02d}" for n in range(19)))
    # Sorted, the numbers past the fiftieth are the last branch's last eight: their calls are not read.
    await add_call_records(
        pop.database,
        ("kept.1", "13900000005", BASE),
        ("past-fifty.1", "13900000218", BASE + timedelta(hours=1)),
        ("shared.1", shared, BASE + timedelta(hours=2)),
    )
    pop.live.add_call("many.1", shared, "Switchboard", segments=queued())

    body = await pop.offer("many.1")

    assert len(body["customers"]) == 3
    assert [call["linkedid"] for call in body["history"]] == ["shared.1", "kept.1"]


# -- what the call itself brings: IVR path, wait, handoff notes ---------------------------------------------------


async def test_the_ivr_choice_and_path_come_from_the_earlier_ivr_ended_event(pop: Pop) -> None:
    path = [
        {"flow": "hotline", "node": "welcome", "step": "menu", "index": 0, "digits": "3", "result": "ok"},
        {"flow": "hotline", "node": "service", "step": "menu", "index": 1, "digits": "2", "result": "ok"},
        {"flow": "hotline", "node": "to_queue", "step": "queue", "index": 2, "digits": None, "result": "queued"},
    ]
    pop.bus.publish(
        IvrEnded(
            uniqueid="ivr.1",
            linkedid="ivr.1",
            caller_number="13800138000",
            flow="hotline",
            outcome="queued",
            path=path,
            language="zh",
            queue=GENERAL,
            priority=5,
            choice="complaint",
            voicemails=[],
            started_at=NOW - 40,
            ended_at=NOW - 10,
            duration=30.0,
            error=None,
        )
    )
    pop.bus.publish(
        IvrEnded(
            uniqueid="other.1",
            linkedid="other.1",
            caller_number="13800138009",
            flow="after_hours",
            outcome="voicemail",
            path=[],
            language="en",
            queue=None,
            priority=None,
            choice="suggestion",
            voicemails=[],
            started_at=NOW - 40,
            ended_at=NOW - 10,
            duration=30.0,
            error=None,
        )
    )
    pop.live.add_call("ivr.1", "13800138000", "WANG", segments=queued())
    pop.live.add_call("no-ivr.1", "13800138001", "LI", segments=queued())

    body = await pop.offer("ivr.1")
    plain = await pop.offer("no-ivr.1")

    assert body["ivr"] == {
        "flow": "hotline",
        "choice": "complaint",
        "language": "zh",
        "path": [
            {"node": "welcome", "step": "menu", "digits": "3"},
            {"node": "service", "step": "menu", "digits": "2"},
            {"node": "to_queue", "step": "queue", "digits": None},
        ],
    }
    assert plain["ivr"] == {"flow": None, "choice": None, "language": None, "path": []}
    # Once a call is over nobody is offered it: what its IVR said is not kept (a soak's memory stays flat).
    assert pop.screen.held() == 2
    pop.bus.publish(CallEnded(call=pop.live.model.calls["ivr.1"]))
    await pop.bus.drain()
    assert pop.screen.held() == 1


async def test_the_wait_is_counted_from_the_calls_last_queue_segment(pop: Pop) -> None:
    segments = (
        QueueSegment(queue=GENERAL, entered=NOW - 400, agent="PJSIP/1001", answered_at=NOW - 380, wait_time=20.0),
        QueueSegment(queue=EXPERT, entered=NOW - 12.5),
    )
    pop.live.add_call("wait.1", "13800138000", "WANG", segments=segments)
    pop.live.add_call("wait.2", "13800138001", "LI", queued_at=NOW - 7.0)

    waited = await pop.offer("wait.1", agent="PJSIP/2001", queue=EXPERT)
    no_segment = await pop.offer("wait.2")

    assert waited["waited"] == pytest.approx(12.5)
    assert no_segment["waited"] == pytest.approx(7.0)


async def test_an_expert_call_carries_the_first_agents_handoff_notes(pop: Pop) -> None:
    notes = "Customer says the E4 error persists after reset.\r\n<b>bold</b> '; DROP TABLE expert_handoffs;--"
    pop.live.add_call("expert.1", "13800138000", "WANG", segments=queued())
    first = await pop.offer("expert.1", agent="PJSIP/1001", queue=GENERAL)
    pop.bus.publish(
        ExpertRequested(
            linkedid="expert.1",
            handoff_id="ho-abc",
            from_user="agent1",
            from_interface="PJSIP/1001",
            notes=notes,
            requested_at="2030-03-01T08:00:00+00:00",
            voicemail_recording_id=None,
        )
    )
    pop.live.add_call(
        "expert.1",
        "13800138000",
        "WANG",
        segments=(QueueSegment(queue=GENERAL, entered=NOW - 90, answered_at=NOW - 80), *queued(EXPERT, NOW - 3)),
    )

    second = await pop.offer("expert.1", agent="PJSIP/2001", queue=EXPERT)

    assert (first["expert_call"], first["handoff"]) == (False, None)
    assert second["expert_call"] is True
    assert second["queue"] == EXPERT
    assert second["handoff"] == {
        "from_user": "agent1",
        "notes": notes,
        "requested_at": "2030-03-01T08:00:00+00:00",
    }
    assert second["waited"] == pytest.approx(3.0)


# -- delivery ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def pages(
    database: Database, service: AuthService
) -> AsyncIterator[tuple[Pop, TestClient[web.Request, web.Application]]]:
    """The screen-pop feeding the real hub behind the real websocket route, with the real seats' reads."""
    pop = make_pop(database, SeatReads(database))
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[HUB] = pop.hub
    app.add_routes(ws_routes)
    await service.create_user("agent1", PASSWORD, roles=[Role.AGENT], extension="1001")
    await service.create_user("agent2", PASSWORD, roles=[Role.AGENT], extension="1002")
    await service.create_user("boss", PASSWORD, roles=[Role.SUPERVISOR], extension="3001")
    async with TestClient(TestServer(app)) as client:
        yield pop, client
    await pop.hub.close()
    pop.screen.close()


async def _receive(socket: Any, timeout: float = 3.0) -> dict[str, Any]:
    message = await socket.receive(timeout=timeout)
    assert message.type is WSMsgType.TEXT, message
    data: dict[str, Any] = json.loads(message.data)
    return data


async def test_the_frame_reaches_only_the_ringing_agents_pages(
    pages: tuple[Pop, TestClient[web.Request, web.Application]], service: AuthService
) -> None:
    pop, client = pages
    sockets = {}
    for username in ("agent1", "agent2", "boss"):
        token, _ = await service.login(username, PASSWORD)
        sockets[username] = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {token}"})
        assert (await _receive(sockets[username]))["type"] == "hello"
    # agent1 has a second page open: both get the pop.
    token, _ = await service.login("agent1", PASSWORD)
    second_page = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {token}"})
    assert (await _receive(second_page))["type"] == "hello"
    async with asyncio.timeout(5):
        while pop.hub.connections < 4:
            await asyncio.sleep(0.02)
    customer_id = await add_customer(pop.crm, "王伟", "+86 138 0013 8000")
    pop.live.add_call("ws.1", "13800138000", CRLF_NAME, segments=queued())

    pop.bus.publish(CallOffered(linkedid="ws.1", queue=GENERAL, agent="PJSIP/1001", channel="PJSIP/1001-01", at=NOW))
    # Not a seat's phone (a Local channel): nobody's pages.
    pop.bus.publish(CallOffered(linkedid="ws.1", queue=GENERAL, agent="Local/1002@agents", channel="x", at=NOW))
    await pop.bus.drain()

    for page in (sockets["agent1"], second_page):
        got = await _receive(page)
        assert got["type"] == "screen_pop"
        assert got["agent"] == "PJSIP/1001"
        assert got["caller"]["name"] == CRLF_NAME
        assert [file["customer"]["id"] for file in got["customers"]] == [customer_id]
    for username in ("agent2", "boss"):
        with pytest.raises(asyncio.TimeoutError):
            await sockets[username].receive(timeout=0.3)
    assert pop.screen.popped == 1
    for socket in (*sockets.values(), second_page):
        await socket.close()


async def test_the_pop_for_a_phone_nobody_is_on_goes_nowhere(pop: Pop) -> None:
    pop.live.add_call("nobody.1", "13800138000", "WANG", segments=queued())
    pop.bus.publish(CallOffered(linkedid="nobody.1", queue=GENERAL, agent="PJSIP/1009", channel="PJSIP/1009-1", at=NOW))
    await pop.bus.drain()
    assert pop.hub.frames == []
    assert pop.screen.popped == 0


async def test_the_pop_goes_to_the_person_logged_in_on_the_phone_not_to_whoever_has_its_extension(
    pages: tuple[Pop, TestClient[web.Request, web.Application]], service: AuthService, database: Database
) -> None:
    pop, client = pages
    # agent1 sat down at 1001, then was given 1004; agent3 is given 1001 while agent1 still sits there.
    agent1 = next(user for user in await service.list_users() if user.username == "agent1")
    await sit(database, agent1.id, "PJSIP/1001")
    await service.update_user("agent1", extension="1004")
    await service.create_user("agent3", PASSWORD, roles=[Role.AGENT], extension="1001")
    sockets = {}
    for username in ("agent1", "agent3"):
        token, _ = await service.login(username, PASSWORD)
        sockets[username] = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {token}"})
        assert (await _receive(sockets[username]))["type"] == "hello"
    async with asyncio.timeout(5):
        while pop.hub.connections < 2:
            await asyncio.sleep(0.02)
    pop.live.add_call("moved.1", "13800138000", "WANG", segments=queued())
    pop.bus.publish(CallOffered(linkedid="moved.1", queue=GENERAL, agent="PJSIP/1001", channel="PJSIP/1001-1", at=NOW))
    await pop.bus.drain()
    got = await _receive(sockets["agent1"])
    assert (got["type"], got["linkedid"]) == ("screen_pop", "moved.1")
    with pytest.raises(asyncio.TimeoutError):
        await sockets["agent3"].receive(timeout=0.3)
    for socket in sockets.values():
        await socket.close()


# -- hostile caller text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [HTML_NAME, SQL_NAME, CRLF_NAME, KILOBYTE_NAME], ids=["html", "sql", "crlf", "1kb"])
async def test_caller_names_go_out_verbatim(pop: Pop, name: str) -> None:
    await add_customer(pop.crm, "王伟", "+86 138 0013 8000")
    pop.live.add_call("known.1", "13800138000", name, segments=queued())
    pop.live.add_call("unknown.1", "13700000000", name, segments=queued())

    known = await pop.offer("known.1")
    unknown = await pop.offer("unknown.1")

    assert len(name) <= 1024
    assert known["caller"]["name"] == name
    assert unknown["caller"]["name"] == name
    assert unknown["new_customer"] == {"number": "13700000000", "name": name}


async def test_a_hostile_caller_number_is_data_not_sql(pop: Pop) -> None:
    customer_id = await add_customer(pop.crm, "王伟", "+86 138 0013 8000")
    hostile = "13800138000' OR '1'='1'; DROP TABLE customers;--"
    await add_call_records(pop.database, ("hostile.before", hostile, BASE), ("plain.before", "13800138000", BASE))
    pop.live.add_call("hostile.1", hostile, SQL_NAME, segments=queued())

    body = await pop.offer("hostile.1")

    assert body["unknown_caller"] is True
    assert body["new_customer"] == {"number": hostile, "name": SQL_NAME}
    # Only the call from exactly that text: the quote did not widen the query.
    assert [entry["linkedid"] for entry in body["history"]] == ["hostile.before"]
    assert body["history"][0]["caller_number"] == hostile
    async with pop.database.session() as session:
        assert await session.scalar(select(func.count()).select_from(Customer)) == 1
    assert [file.customer.id for file in await pop.crm.customers.files_by_number("13800138000")] == [customer_id]


# -- the CRM down ----------------------------------------------------------------------------------------------


async def test_a_crm_database_failure_still_pops_a_frame_saying_so(switchable: test_crm_outbox.Switchable) -> None:
    pop = make_pop(switchable.database)
    await add_customer(pop.crm, "王伟", "+86 138 0013 8000")
    pop.live.add_call("down.1", "13800138000", HTML_NAME, segments=queued())
    await switchable.down()
    try:
        body = await pop.offer("down.1")
    finally:
        await switchable.up()
    assert body["crm_unavailable"] is True
    assert body["linkedid"] == "down.1"
    assert "customers" not in body
    # Who is calling is known without the CRM, and goes out as given like all caller text.
    assert body["caller"] == {"number": "13800138000", "name": HTML_NAME, "did": "4000"}
    # Back again: the next pop is whole.
    again = await pop.offer("down.1")
    assert "crm_unavailable" not in again
    assert again["customers"][0]["customer"]["name"] == "王伟"
    assert again["caller"]["name"] == HTML_NAME
    assert pop.screen.popped == 2
    pop.screen.close()


async def test_a_pop_reads_the_files_and_the_calls_on_one_pooled_connection(pop: Pop) -> None:
    await add_customer(pop.crm, "王伟", "+86 138 0013 8000")
    await add_call_records(pop.database, ("earlier.2", "13800138000", BASE))
    checkouts: list[int] = []
    event.listen(pop.database.engine.sync_engine.pool, "checkout", lambda *_args: checkouts.append(1))
    found = await pop.screen.reader.read("13800138000")
    assert [call["linkedid"] for call in found.history] == ["earlier.2"]
    # The calls' port reads on the connection the CRM's read holds (Database.driver): one checkout, one ping.
    assert len(checkouts) == 1
