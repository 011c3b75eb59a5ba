"""Service records that calls leave on their own (crm_bridge.from_calls) against SQLite and PostgreSQL: abandoned
calls, complaints chosen in the voice menu, expert voicemails and callbacks, written once through the outbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

# tests/db is on sys.path (pytest's prepend import mode, no __init__.py): the outbox tests are a module there.
import test_crm_outbox
from sqlalchemy import func, select

from callcenter.bus import Bus
from callcenter.db import Database, DatabaseUnavailable
from callcenter.model import Call, LiveModel
from calls.events import CallRecorded, ExpertOutcome
from calls.models import CallRecord
from calls.reads import CallReads
from crm_bridge.from_calls import CallServiceRecords
from crm_bridge.infos import ServiceRecordInfo
from crm_bridge.models import RecordType, ServiceRecord
from crm_bridge.outbox import ServiceRecordOutbox
from crm_bridge.schemas import CustomerIn, PhoneIn, ServiceRecordQuery
from crm_bridge.services import CrmService

# The outbox tests' database that can be taken away (SQLite: its directory vanishes; PostgreSQL: a relay is cut).
switchable = test_crm_outbox.switchable

STARTED = datetime(2030, 3, 1, 8, 0, tzinfo=UTC)
HOSTILE_NOTES = "E4 after reset.\r\n<script>alert(1)</script> '; DROP TABLE service_records;--"
KILOBYTE_NAME = ("王<b>伟</b> \"'; --\r\n\t\u202e" * 64)[:1024]


@dataclass
class Records:
    crm: CrmService
    outbox: ServiceRecordOutbox
    database: Database
    bus: Bus
    service: CallServiceRecords
    live: dict[str, Call] = field(default_factory=dict)

    async def recorded(self, linkedid: str, outcome: str = "abandoned", *, times: int = 1) -> None:
        """Publishes ``CallRecorded`` with the call's record as the call recorder does (``times`` times before
        anything runs)."""
        call = await CallReads(self.database).record(linkedid)
        assert call is not None, f"no record of {linkedid}"
        for _ in range(times):
            self.bus.publish(CallRecorded(linkedid=linkedid, outcome=outcome, source="live", call=call))
        await self.bus.drain()

    async def expert_outcome(self, linkedid: str, outcome: str, **extra: Any) -> None:
        """Publishes ``ExpertOutcome`` as the handoff service does on the dialplan's user event."""
        data: dict[str, Any] = {
            "linkedid": linkedid,
            "handoff_id": f"ho-{linkedid}",
            "outcome": outcome,
            "caller_number": "",
            "voicemail_path": f"/var/spool/expert/{linkedid}.wav" if outcome == "voicemail" else None,
            "notes": HOSTILE_NOTES,
            "from_user": "agent1",
        }
        self.bus.publish(ExpertOutcome(**{**data, **extra}))
        await self.bus.drain()

    async def of_call(self, linkedid: str) -> list[ServiceRecordInfo]:
        return await self.crm.records.find(ServiceRecordQuery(linkedid=linkedid))


def make_records(database: Database, outbox_dir: Path) -> Records:
    crm = CrmService(database)
    outbox = ServiceRecordOutbox(crm.records, outbox_dir)
    bus = Bus()
    live: dict[str, Call] = {}
    service = CallServiceRecords(crm, outbox, CallReads(database), bus, lambda: LiveModel(calls=dict(live)))
    service.start()
    return Records(crm, outbox, database, bus, service, live)


@pytest.fixture
async def records(database: Database, tmp_path: Path) -> AsyncIterator[Records]:
    made = make_records(database, tmp_path / "outbox")
    yield made
    made.service.close()
    await made.outbox.close()


async def add_customer(crm: CrmService, name: str, *numbers: str) -> int:
    created = await crm.customers.create(CustomerIn(name=name, phones=[PhoneIn(number=n) for n in numbers]))
    return created.customer.id


async def add_call(
    database: Database,
    linkedid: str,
    number: str,
    name: str = "WANG WEI",
    *,
    outcome: str = "abandoned",
    choice: str | None = None,
    wait_time: float | None = 42.0,
    handoff_notes: str | None = None,
) -> None:
    """A finished call as the call recorder writes it."""
    async with database.session() as session:
        session.add(
            CallRecord(
                linkedid=linkedid,
                direction="inbound",
                caller_number=number,
                caller_name=name,
                did="4000",
                started_at=STARTED,
                ended_at=STARTED + timedelta(minutes=2),
                outcome=outcome,
                ivr_flow="hotline",
                ivr_outcome="queued",
                ivr_choice=choice,
                ivr_path="[]",
                queues=json.dumps(["general"]),
                segments="[]",
                wait_time=wait_time,
                talk_time=None if outcome == "abandoned" else 60.0,
                agent=None if outcome == "abandoned" else "PJSIP/1001",
                expert=None,
                handoff_notes=handoff_notes,
                recording_ids="[]",
                service_record_id=None,
                source="live",
                created_at=STARTED + timedelta(minutes=2),
            )
        )


async def count_records(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(ServiceRecord)) or 0)


# -- abandoned calls ---------------------------------------------------------------------------------------------


async def test_an_abandoned_call_leaves_a_callback_task_filed_under_the_numbers_one_owner(records: Records) -> None:
    owner = await add_customer(records.crm, "王伟", "+86 138 0013 8000")
    await add_customer(records.crm, "Neighbour", "+86 138 0013 8001")
    await add_call(records.database, "ab.1", "13800138000", "WANG WEI", wait_time=42.4)

    await records.recorded("ab.1")

    [record] = await records.of_call("ab.1")
    assert record.type == RecordType.CALLBACK_VISIT
    assert record.status == "new"
    assert (record.caller_number, record.caller_name, record.linkedid) == ("13800138000", "WANG WEI", "ab.1")
    assert record.customer_id == owner
    assert record.created_by == "system"
    assert "42 s" in record.content
    assert records.outbox.pending == 0


async def test_an_abandoned_call_from_a_shared_or_unknown_number_is_filed_under_nobody(records: Records) -> None:
    await add_customer(records.crm, "Family member", "+86 139 1234 5678")
    await add_customer(records.crm, "Small shop", "+86 139 1234 5678")
    await add_call(records.database, "shared.1", "13912345678", "Switchboard")
    await add_call(records.database, "unknown.1", "13700000000", "Zhang San", wait_time=None)
    await add_call(records.database, "anonymous.1", "", "")

    for linkedid in ("shared.1", "unknown.1", "anonymous.1"):
        await records.recorded(linkedid)

    [shared] = await records.of_call("shared.1")
    [unknown] = await records.of_call("unknown.1")
    [anonymous] = await records.of_call("anonymous.1")
    assert (shared.customer_id, shared.caller_number, shared.caller_name) == (None, "13912345678", "Switchboard")
    assert (unknown.customer_id, unknown.caller_number, unknown.caller_name) == (None, "13700000000", "Zhang San")
    assert (anonymous.customer_id, anonymous.caller_number, anonymous.caller_name) == (None, None, None)
    assert all(item.type == RecordType.CALLBACK_VISIT for item in (shared, unknown, anonymous))


async def test_an_answered_call_without_a_complaint_leaves_no_record(records: Records) -> None:
    await add_customer(records.crm, "王伟", "+86 138 0013 8000")
    await add_call(records.database, "ok.1", "13800138000", outcome="answered", choice="fault")

    await records.recorded("ok.1", "answered")

    assert await count_records(records.database) == 0
    assert records.service.written == []


@pytest.mark.parametrize("name", ["<b>Wang</b><img src=x onerror=alert(1)>", "Robert'); DROP TABLE calls;--", "A\r\nB"])
async def test_caller_names_are_stored_verbatim(records: Records, name: str) -> None:
    await add_call(records.database, "name.1", "13700000000", name)

    await records.recorded("name.1")

    [record] = await records.of_call("name.1")
    assert record.caller_name == name


async def test_a_kilobyte_caller_name_is_stored_whole(records: Records) -> None:
    await add_call(records.database, "long.1", "13700000000", KILOBYTE_NAME)

    await records.recorded("long.1")

    [record] = await records.of_call("long.1")
    assert record.caller_name == KILOBYTE_NAME


# -- complaints --------------------------------------------------------------------------------------------------


async def test_a_complaint_chosen_in_the_menu_leaves_a_complaint_record(records: Records) -> None:
    owner = await add_customer(records.crm, "王伟", "+86 138 0013 8000")
    await add_call(records.database, "c.1", "13800138000", outcome="answered", choice="complaint")
    await add_call(records.database, "c.2", "13800138000", outcome="abandoned", choice="complaint")
    # After hours the IVR's voicemail sink files the complaint; the call leaves no second one.
    await add_call(records.database, "c.3", "13800138000", outcome="voicemail", choice="complaint")

    await records.recorded("c.1", "answered")
    await records.recorded("c.2", "abandoned")
    await records.recorded("c.3", "voicemail")

    [answered] = await records.of_call("c.1")
    assert (answered.type, answered.customer_id, answered.caller_number) == ("complaint", owner, "13800138000")
    assert answered.linkedid == "c.1"
    assert sorted(record.type for record in await records.of_call("c.2")) == ["callback_visit", "complaint"]
    assert await records.of_call("c.3") == []


# -- written once ------------------------------------------------------------------------------------------------


async def test_the_same_event_twice_leaves_one_record(records: Records) -> None:
    await add_customer(records.crm, "王伟", "+86 138 0013 8000")
    await add_call(records.database, "twice.1", "13800138000", choice="complaint")
    await add_call(records.database, "twice.2", "13800138000")

    # Seen twice at once (both handlers run together), then again later.
    await records.recorded("twice.1", times=2)
    await records.recorded("twice.1")
    await records.recorded("twice.2")
    await records.recorded("twice.2")
    await records.expert_outcome("twice.2", "voicemail")
    await records.expert_outcome("twice.2", "voicemail")

    assert sorted(record.type for record in await records.of_call("twice.1")) == ["callback_visit", "complaint"]
    assert sorted(record.type for record in await records.of_call("twice.2")) == ["callback_visit", "voicemail"]
    assert await count_records(records.database) == 4
    assert records.outbox.pending == 0


# -- expert outcomes ---------------------------------------------------------------------------------------------


async def test_an_expert_voicemail_leaves_a_voicemail_record_with_the_agents_notes(records: Records) -> None:
    owner = await add_customer(records.crm, "王伟", "+86 138 0013 8000")
    # The voicemail is left while the call still runs: no call record yet, the live model knows the caller.
    records.live["vm.1"] = Call(linkedid="vm.1", started=0.0, caller_number="13800138000", caller_name="WANG")

    await records.expert_outcome("vm.1", "voicemail")

    [record] = await records.of_call("vm.1")
    assert record.type == RecordType.VOICEMAIL
    assert HOSTILE_NOTES in record.content
    assert "/var/spool/expert/vm.1.wav" in record.content
    assert (record.customer_id, record.caller_number) == (owner, "13800138000")


async def test_an_expert_voicemail_after_the_call_record_uses_its_number_and_notes(records: Records) -> None:
    await add_call(records.database, "vm.2", "13700000000", outcome="voicemail", handoff_notes="Notes kept with call")

    await records.expert_outcome("vm.2", "voicemail", notes="")

    [record] = await records.of_call("vm.2")
    assert record.type == RecordType.VOICEMAIL
    assert "Notes kept with call" in record.content
    assert (record.customer_id, record.caller_number) == (None, "13700000000")


async def test_an_expert_callback_leaves_a_callback_task_and_an_answered_expert_leaves_nothing(
    records: Records,
) -> None:
    records.live["cb.1"] = Call(linkedid="cb.1", started=0.0, caller_number="13700000000")
    records.live["ans.1"] = Call(linkedid="ans.1", started=0.0, caller_number="13700000001")

    await records.expert_outcome("cb.1", "callback")
    await records.expert_outcome("ans.1", "answered", expert="PJSIP/2001")

    [callback] = await records.of_call("cb.1")
    assert callback.type == RecordType.CALLBACK_VISIT
    assert HOSTILE_NOTES in callback.content
    assert callback.caller_number == "13700000000"
    assert await records.of_call("ans.1") == []


# -- the database down -------------------------------------------------------------------------------------------


async def test_a_record_waits_in_the_outbox_while_the_database_is_down_and_is_written_once(
    switchable: test_crm_outbox.Switchable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = make_records(switchable.database, tmp_path / "outbox")
    owner = await add_customer(records.crm, "王伟", "+86 138 0013 8000")
    await add_call(records.database, "down.1", "13800138000", "WANG WEI")
    # The database goes away right after the call's row was read, before the record is written.
    lookup = records.crm.customers.owners_of

    async def owners_then_outage(number: str, *, limit: int = 2) -> list[int]:
        await switchable.down()
        return await lookup(number, limit=limit)

    monkeypatch.setattr(records.crm.customers, "owners_of", owners_then_outage)
    try:
        await records.recorded("down.1")
        assert records.outbox.pending == 1
        assert records.service.written == ["abandoned:down.1"]
        assert await records.outbox.drain() is False
    finally:
        monkeypatch.setattr(records.crm.customers, "owners_of", lookup)
        await switchable.up()

    assert await records.outbox.drain() is True
    assert records.outbox.pending == 0
    # The same event again once the database is back: the idempotency key finds the record already written.
    await records.recorded("down.1")
    assert await records.outbox.drain() is True
    [record] = await records.of_call("down.1")
    assert record.type == RecordType.CALLBACK_VISIT
    # Filed under the number's one owner when written, though the lookup failed during the outage.
    assert (record.customer_id, record.caller_name) == (owner, "WANG WEI")
    assert await count_records(records.database) == 1
    records.service.close()


async def test_an_expert_voicemail_during_an_outage_is_queued_and_written_when_back(
    switchable: test_crm_outbox.Switchable, tmp_path: Path
) -> None:
    records = make_records(switchable.database, tmp_path / "outbox")
    records.live["vm.down"] = Call(linkedid="vm.down", started=0.0, caller_number="13800138000")
    await switchable.down()
    try:
        await records.expert_outcome("vm.down", "voicemail", caller_number="13800138000")
        assert records.outbox.pending == 1
    finally:
        await switchable.up()
        records.service.close()
    assert await records.outbox.drain() is True
    [record] = await records.of_call("vm.down")
    assert HOSTILE_NOTES in record.content


class _Unreadable:
    """The calls' port over a database that went away right after the record was written."""

    def __init__(self) -> None:
        self.reads = 0

    async def record(self, linkedid: str) -> Any:
        self.reads += 1
        raise DatabaseUnavailable("the database is unavailable")

    async def started_between(self, *args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailable("the database is unavailable")


async def test_a_record_that_cannot_be_read_back_still_decides_its_service_record(
    database: Database, tmp_path: Path
) -> None:
    # The event carries the record as written: nothing needs to read it back.
    made = make_records(database, tmp_path / "outbox")
    made.service.close()
    port = _Unreadable()
    service = CallServiceRecords(made.crm, made.outbox, port, made.bus, LiveModel)
    service.start()
    try:
        await add_call(database, "ab.down", "13800138000")
        await made.recorded("ab.down")
        assert port.reads == 0
        [record] = await made.of_call("ab.down")
        assert record.type == RecordType.CALLBACK_VISIT
    finally:
        service.close()
        await made.outbox.close()
