"""The read ports, on SQLite and PostgreSQL: what each owner gives other packages of its tables, as plain values.

- the core's user directory (callcenter.auth.directory): users by ids, extension and name; teams and leads;
- the seats (seats.reads): who sits where, every login and pause;
- the calls (calls.reads): one call's record, the calls of a range, a caller's earlier calls;
- the CRM (crm_bridge.reads): service records created in a range, by type and status.

Rows are written here as their owners write them, so every answer is known exactly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from callcenter.auth.directory import UserDirectory, UserEntry
from callcenter.auth.permissions import Role
from callcenter.auth.services import AuthService
from callcenter.db import Database
from calls.models import CallRecord
from calls.ports import CallFigures, FinishedCall, PastCall
from calls.reads import CallReads
from crm_bridge.models import ServiceRecord
from crm_bridge.ports import RecordCount
from crm_bridge.reads import CrmReads
from seats.models import AgentInterval, AgentSeat
from seats.ports import Seat, SeatInterval
from seats.reads import SeatReads

PASSWORD = "ports-password-1"
DAY = datetime(2031, 5, 6, tzinfo=UTC)
HOSTILE = "13800138000' OR '1'='1'; DROP TABLE call_records;--"


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


# -- the user directory (core) ----------------------------------------------------------------------------------


async def test_the_user_directory_finds_users_by_id_and_name_and_extensions_owners(
    service: AuthService, database: Database
) -> None:
    ann = await service.create_user("Ann", PASSWORD, roles=[Role.AGENT], extension="1001", display_name="Ann Lee")
    bob = await service.create_user("bob", PASSWORD, roles=[Role.AGENT], extension="1002", is_active=False)
    twin = await service.create_user("twin", PASSWORD, roles=[Role.AGENT], extension="1002")
    root = await service.create_user("root", PASSWORD, roles=[Role.ADMIN])
    users = UserDirectory(database)

    found = await users.users([ann.id, root.id, 999_999, ann.id])

    assert found == {
        ann.id: UserEntry(ann.id, "ann", "Ann Lee", "1001", True),
        root.id: UserEntry(root.id, "root", "root", None, True),
    }
    assert await users.users([]) == {}
    # An extension is one active user's: a disabled user keeps theirs, but it is not theirs to answer.
    assert await users.extension_owners() == {"1001": ann.id, "1002": twin.id}
    assert (await users.users([bob.id]))[bob.id] == UserEntry(bob.id, "bob", "bob", "1002", False)
    # Names compare as they are stored: NFKC, case-folded.
    assert await users.by_username("ANN") == found[ann.id]
    assert await users.by_username("\uff32\uff4f\uff4f\uff54") == found[root.id]  # fullwidth "Root"
    assert await users.by_username("nobody") is None
    assert await users.by_username("ann' OR '1'='1") is None


async def test_the_user_directory_knows_each_user_s_teams_and_the_teams_they_lead(
    service: AuthService, database: Database
) -> None:
    boss = await service.create_user(
        "boss", PASSWORD, roles=[Role.SUPERVISOR], teams=["night"], lead_of=["red", "blue"]
    )
    ann = await service.create_user("ann", PASSWORD, roles=[Role.AGENT], teams=["red", "night", "Ärzte"])
    loner = await service.create_user("loner", PASSWORD, roles=[Role.AGENT])
    users = UserDirectory(database)

    teams = await users.teams_of([boss.id, ann.id, loner.id])

    # A lead is in the teams they lead; a user in no team is left out; names sorted by code point.
    assert teams == {boss.id: ("blue", "night", "red"), ann.id: ("night", "red", "Ärzte")}
    assert await users.teams_of([]) == {}
    assert await users.teams_led_by(boss.id) == ("blue", "red")
    assert await users.teams_led_by(ann.id) == ()
    assert await users.teams_led_by(999_999) == ()


# -- the seats --------------------------------------------------------------------------------------------------


def _seat(user_id: int, extension: str) -> AgentSeat:
    return AgentSeat(
        user_id=user_id,
        interface=f"PJSIP/{extension}",
        extension=extension,
        queues='[{"queue": "support", "penalty": 0}]',
        logged_in_at=at(8),
        paused=False,
    )


def _interval(
    user_id: int, username: str, kind: str, start: datetime, end: datetime | None, reason: str | None = None
) -> AgentInterval:
    return AgentInterval(
        user_id=user_id,
        username=username,
        interface="PJSIP/1001" if username == "ann" else "PJSIP/1002",
        kind=kind,
        reason=reason,
        queues=None,
        started_at=start,
        ended_at=end,
    )


async def test_the_seats_say_who_sits_where(service: AuthService, database: Database) -> None:
    ann = await service.create_user("ann", PASSWORD, roles=[Role.AGENT], extension="1001")
    bob = await service.create_user("bob", PASSWORD, roles=[Role.AGENT], extension="1002")
    away = await service.create_user("away", PASSWORD, roles=[Role.AGENT], extension="1003")
    async with database.session() as session:
        session.add_all([_seat(bob.id, "1002"), _seat(ann.id, "1001")])
    seats = SeatReads(database)

    assert await seats.seated() == [Seat("PJSIP/1001", ann.id), Seat("PJSIP/1002", bob.id)]
    assert await seats.user_at("PJSIP/1002") == bob.id
    assert await seats.user_at("PJSIP/1003") is None
    assert await seats.user_at("PJSIP/1002' OR '1'='1") is None
    assert await seats.seat_of(ann.id) == "PJSIP/1001"
    assert await seats.seat_of(away.id) is None


async def test_a_phone_is_the_person_logged_in_on_it_and_its_owner_only_while_nobody_is(
    service: AuthService, database: Database
) -> None:
    ann = await service.create_user("ann", PASSWORD, roles=[Role.AGENT], extension="1001")
    eve = await service.create_user("eve", PASSWORD, roles=[Role.AGENT], extension="1005")
    dan = await service.create_user("dan", PASSWORD, roles=[Role.AGENT], extension="1003")
    gone = await service.create_user("gone", PASSWORD, roles=[Role.AGENT], extension="1006", is_active=False)
    # Ann sits at 1001 and is given 1004; Eve is given 1001 while Ann still sits there.
    async with database.session() as session:
        session.add(_seat(ann.id, "1001"))
    await service.update_user("ann", extension="1004")
    await service.update_user("eve", extension="1001")
    seats = SeatReads(database)

    assert await seats.person_at("PJSIP/1001") == ann.id
    assert await seats.phone_of(ann.id) == "PJSIP/1001"
    # Eve's phone is someone else's seat, and Ann's new extension is not where Ann is.
    assert await seats.phone_of(eve.id) is None
    assert await seats.person_at("PJSIP/1004") is None
    # Nobody sits at Dan's phone: it is his, and he is on it.
    assert await seats.person_at("PJSIP/1003") == dan.id
    assert await seats.phone_of(dan.id) == "PJSIP/1003"
    # A disabled user's extension names nobody; an unknown phone neither.
    assert await seats.person_at("PJSIP/1006") is None
    assert await seats.phone_of(gone.id) is None
    assert await seats.person_at("PJSIP/1009") is None
    assert await seats.person_at("PJSIP/1001' OR '1'='1") is None


async def test_a_listing_serves_a_moment_or_until_a_seat_changes_and_then_the_database_is_read_again(
    service: AuthService, database: Database
) -> None:
    ann = await service.create_user("ann", PASSWORD, roles=[Role.AGENT], extension="1001")
    bob = await service.create_user("bob", PASSWORD, roles=[Role.AGENT], extension="1002")
    now = [100.0]
    seats = SeatReads(database, max_age=2.0, clock=lambda: now[0])
    assert await seats.person_at("PJSIP/1001") == ann.id
    async with database.session() as session:
        session.add(_seat(bob.id, "1001"))
    # Within the listing's age the seat login is not seen, unless the seat service says so...
    assert await seats.person_at("PJSIP/1001") == ann.id
    seats.forget()
    assert await seats.person_at("PJSIP/1001") == bob.id
    # ...and an extension given to someone else shows once the listing is old.
    await service.update_user("ann", extension="1005")
    assert await seats.phone_of(ann.id) is None
    now[0] += 2.5
    assert await seats.phone_of(ann.id) == "PJSIP/1005"


async def test_the_seats_give_the_intervals_that_overlap_a_range(database: Database) -> None:
    async with database.session() as session:
        session.add_all(
            [
                _interval(1, "ann", "login", at(8, 45), at(10, 45)),
                _interval(1, "ann", "pause", at(9, 30), at(9, 45), "break"),
                _interval(2, "bob", "login", at(9), None),  # still logged in
                _interval(2, "bob", "pause", at(8), at(9)),  # ends as the range starts: not in it
                _interval(2, "bob", "login", at(11), at(12)),  # starts as the range ends: not in it
                _interval(1, "ann", "login", at(9) - timedelta(days=2), at(10) - timedelta(days=2)),
            ]
        )
    seats = SeatReads(database)

    found = await seats.intervals(at(9), at(11))

    assert found == [
        SeatInterval(1, "ann", "PJSIP/1001", "login", None, at(8, 45), at(10, 45)),
        SeatInterval(2, "bob", "PJSIP/1002", "login", None, at(9), None),
        SeatInterval(1, "ann", "PJSIP/1001", "pause", "break", at(9, 30), at(9, 45)),
    ]
    assert all(interval.started_at.tzinfo is not None for interval in found)
    assert await seats.intervals(at(20), at(21)) == [SeatInterval(2, "bob", "PJSIP/1002", "login", None, at(9), None)]


# -- the calls --------------------------------------------------------------------------------------------------


def _call(
    linkedid: str,
    number: str,
    started: datetime,
    *,
    direction: str = "inbound",
    outcome: str = "answered",
    segments: str = "[]",
) -> CallRecord:
    return CallRecord(
        linkedid=linkedid,
        direction=direction,
        caller_number=number,
        caller_name=f"name of {linkedid}",
        did="4000",
        started_at=started,
        ended_at=started + timedelta(minutes=3),
        outcome=outcome,
        ivr_flow="hotline",
        ivr_outcome="queued",
        ivr_choice="fault",
        ivr_path="[]",
        queues='["support"]',
        segments=segments,
        wait_time=4.5,
        talk_time=170.25,
        agent="PJSIP/1001",
        expert="PJSIP/2001",
        handoff_notes=f"notes of {linkedid}",
        recording_ids="[]",
        service_record_id=None,
        source="live",
        created_at=started + timedelta(minutes=3),
    )


async def test_the_calls_give_one_call_s_record(database: Database) -> None:
    segments = json.dumps([{"queue": "support", "agent": "PJSIP/1001", "wait_time": 4.5, "talk_time": 170.25}])
    async with database.session() as session:
        session.add(_call("c1", HOSTILE, at(9, 2), outcome="abandoned", segments=segments))
    calls = CallReads(database)

    record = await calls.record("c1")

    assert record == FinishedCall(
        linkedid="c1",
        direction="inbound",
        caller_number=HOSTILE,
        caller_name="name of c1",
        did="4000",
        started_at=at(9, 2),
        ended_at=at(9, 5),
        outcome="abandoned",
        ivr_choice="fault",
        wait_time=4.5,
        talk_time=170.25,
        agent="PJSIP/1001",
        expert="PJSIP/2001",
        handoff_notes="notes of c1",
        segments=segments,
    )
    assert record.started_at.tzinfo is not None
    assert await calls.record("unknown") is None
    assert await calls.record("c1' OR '1'='1") is None


async def test_the_calls_give_the_calls_started_in_a_range(database: Database) -> None:
    async with database.session() as session:
        session.add_all(
            [
                _call("late", "1", at(10, 59), segments='[{"queue": "support"}]'),
                _call("early", "2", at(9), outcome="voicemail"),
                _call("desk", "3", at(9, 30), direction="internal", outcome="failed"),
                _call("before", "4", at(8, 59)),
                _call("after", "5", at(11)),
            ]
        )
    calls = CallReads(database)

    found = await calls.started_between(at(9), at(11))

    assert found == [
        CallFigures("early", at(9), "inbound", "voicemail", "[]"),
        CallFigures("desk", at(9, 30), "internal", "failed", "[]"),
        CallFigures("late", at(10, 59), "inbound", "answered", '[{"queue": "support"}]'),
    ]
    inbound = await calls.started_between(at(9), at(11), direction="inbound")
    assert [call.linkedid for call in inbound] == ["early", "late"]
    # No end: up to now.
    assert [call.linkedid for call in await calls.started_between(at(10))] == ["late", "after"]
    assert await calls.started_between(at(12), at(13)) == []


async def test_a_caller_s_earlier_calls_are_found_however_the_number_was_written_newest_first(
    database: Database,
) -> None:
    async with database.session() as session:
        session.add_all(
            [
                _call("intl", "+86 138 0013 8000", at(9)),
                _call("national", "013800138000", at(10)),
                _call("plain", "13800138000", at(11)),
                # The same last eight digits, another number: a candidate the caller's own rules must drop.
                _call("other-country", "+44 20 1380 0138 000", at(12)),
                _call("landline", "010-6234 5678", at(13)),
                _call("stranger", "13999999999", at(14)),
                _call("hostile", HOSTILE, at(15)),
                _call("short", "12", at(16)),
            ]
        )
    calls = CallReads(database)

    found = await calls.calls_from(["13800138000"], 50)

    assert [call.linkedid for call in found] == ["other-country", "plain", "national", "intl"]
    assert found[1] == PastCall(
        linkedid="plain",
        started_at=at(11),
        caller_number="13800138000",
        outcome="answered",
        ivr_choice="fault",
        agent="PJSIP/1001",
        expert="PJSIP/2001",
        talk_time=170.25,
        handoff_notes="notes of plain",
    )
    assert all(call.started_at.utcoffset() == timedelta(0) for call in found)
    # Several numbers at once, at most ``limit`` of them.
    both = await calls.calls_from(["+8613800138000", "01062345678"], 3)
    assert [call.linkedid for call in both] == ["landline", "other-country", "plain"]
    # Hostile text is data: its digits make its tail, which finds the call from exactly that text and no other;
    # every row is still there afterwards.
    assert [call.linkedid for call in await calls.calls_from([HOSTILE], 50)] == ["hostile"]
    # Numbers with fewer than three digits have no tail: nothing is read for them.
    assert await calls.calls_from(["12", "", "anonymous"], 50) == []
    assert await calls.calls_from([], 50) == []
    assert await calls.calls_from(["13800138000"], 0) == []
    assert [call.linkedid for call in await calls.started_between(at(0))] == [
        "intl",
        "national",
        "plain",
        "other-country",
        "landline",
        "stranger",
        "hostile",
        "short",
    ]


# -- the CRM ----------------------------------------------------------------------------------------------------


async def test_the_crm_counts_service_records_created_in_a_range_by_type_and_status(database: Database) -> None:
    rows = [
        ("repair_booking", "assigned", at(10, 59)),
        ("complaint", "new", at(9)),
        ("complaint", "resolved", at(10)),
        ("complaint", "new", at(9, 30)),
        ("repair_booking", "assigned", at(11)),  # the end is not in the range
        ("suggestion", "new", at(8, 59)),  # nor before the start
    ]
    async with database.session() as session:
        session.add_all(
            ServiceRecord(type=kind, status=status, content="x", created_by="ann", created_at=made, updated_at=made)
            for kind, status, made in rows
        )
    crm = CrmReads(database)

    assert await crm.record_counts(at(9), at(11)) == [
        RecordCount("complaint", "new", 2),
        RecordCount("complaint", "resolved", 1),
        RecordCount("repair_booking", "assigned", 1),
    ]
    assert await crm.record_counts(at(12), at(13)) == []


@pytest.mark.parametrize("limit", [1, 2])
async def test_the_history_limit_keeps_the_newest(database: Database, limit: int) -> None:
    async with database.session() as session:
        session.add_all([_call(f"call.{n}", "13800138000", at(n)) for n in range(5)])
    found = await CallReads(database).calls_from(["13800138000"], limit)
    assert [call.linkedid for call in found] == [f"call.{n}" for n in range(4, 4 - limit, -1)]
