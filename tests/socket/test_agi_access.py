"""Only Asterisk talks to the FastAGI port (issue 16): allowed peers, a per-peer cap on silent connections in the
header phase, and the shared secret in the AGI URL. The test plays Asterisk (and the stranger) over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callcenter.agi import server as server_module
from callcenter.agi.server import AccessPolicy, parse_peers
from callcenter.agi.session import AgiSession
from callcenter.metrics import Metrics
from tests.socket import test_agi_server as base
from tests.socket.test_agi_server import (
    ANSWER_ONLY,
    LINKEDID,
    FakeAsterisk,
    StartServer,
    answer_and_hang_up,
    eventually,
    run_call,
)

# The servers these tests start, stopped after each test (the fixture of tests/socket/test_agi_server.py).
start_server = base.start_server

SECRET = "Zx9-shared_secret.for~agi"


@contextlib.asynccontextmanager
async def asterisk_from(port: int, local_ip: str) -> AsyncIterator[FakeAsterisk]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local_ip, 0))
    channel = FakeAsterisk(reader, writer)
    try:
        yield channel
    finally:
        await channel.close()


async def _closed(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closed (or reset) this connection within ``timeout``."""
    try:
        data = await asyncio.wait_for(reader.read(1), timeout)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""


# -- allowed peers ---------------------------------------------------------------------------------------


async def test_a_peer_not_in_allowed_peers_is_closed_at_once_and_counted(start_server: StartServer) -> None:
    seen: list[str] = []

    async def ivr(session: AgiSession) -> None:
        seen.append(session.linkedid)
        await session.answer()

    metrics = Metrics()
    server, _ = await start_server({"ivr": ivr}, access=AccessPolicy(parse_peers(["127.0.0.1"])), observer=metrics)
    async with asterisk_from(server.port, "127.0.0.2") as stranger:
        # Closed before it says anything: no header is read, no route runs, no slot is held.
        assert await _closed(stranger.reader, 1.0)
    assert seen == []
    assert metrics.agi_rejected.labels(reason="peer")._value.get() == 1
    assert server.active_sessions == 0
    # Asterisk's own address is served as before.
    async with asterisk_from(server.port, "127.0.0.1") as asterisk:
        await asterisk.send_header()
        await asterisk.play(ANSWER_ONLY)
        await asterisk.expect_closed()
    assert seen == [LINKEDID]


async def test_allowed_peers_take_networks_and_ipv4_mapped_addresses() -> None:
    policy = AccessPolicy(parse_peers(["10.1.2.0/24", "127.0.0.1"]))
    assert policy.allows("10.1.2.77")
    assert policy.allows("::ffff:127.0.0.1")
    assert not policy.allows("10.1.3.1")
    assert not policy.allows("127.0.0.2")
    assert not policy.allows("")
    assert not policy.allows("not-an-address")
    assert AccessPolicy().allows("127.0.0.1")
    assert AccessPolicy().allows("::1")
    assert not AccessPolicy().allows("127.0.0.9")


# -- silent connections in the header phase ------------------------------------------------------------------


async def test_idle_sockets_from_one_peer_cannot_make_the_server_refuse_a_real_call(start_server: StartServer) -> None:
    """The issue's finding, scaled down: more idle sockets than max_sessions, all from Asterisk's own address
    (one local process), then a real call. Without the cap every slot is held for the header timeout."""
    server, observer = await start_server(
        {"ivr": answer_and_hang_up}, max_sessions=30, max_pending_per_peer=5, header_grace=0.2, header_timeout=30.0
    )
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(40)]
    try:
        await eventually(lambda: server.active_sessions + observer.rejected.count("limit") == 40)
        await asyncio.sleep(0.3)  # past the grace: they are silent, not Asterisk at work
        await run_call(server.port, ANSWER_ONLY)
        await eventually(lambda: observer.outcomes == ["completed"])
        # The silent ones beyond the cap were closed to make room; at most the cap is still open.
        closed = await asyncio.gather(*(_closed(reader, 0.5) for reader, _writer in idle))
        assert closed.count(False) <= 5
        assert "idle" in observer.rejected
    finally:
        for _reader, writer in idle:
            writer.close()
    await eventually(lambda: server.active_sessions == 0)


async def test_at_max_sessions_a_silent_connection_makes_room_for_a_real_call(start_server: StartServer) -> None:
    """Many allowed peers (127.0.0.2-127.0.0.7), each under its own cap, together fill max_sessions."""
    server, observer = await start_server(
        {"ivr": answer_and_hang_up},
        access=AccessPolicy(parse_peers(["127.0.0.0/8"])),
        max_sessions=12,
        max_pending_per_peer=3,
        header_grace=0.2,
        header_timeout=30.0,
    )
    idle = []
    for host in range(2, 8):
        for _ in range(2):
            idle.append(await asyncio.open_connection("127.0.0.1", server.port, local_addr=(f"127.0.0.{host}", 0)))
    try:
        await eventually(lambda: server.active_sessions == 12)
        await asyncio.sleep(0.3)
        await run_call(server.port, ANSWER_ONLY)
        await eventually(lambda: observer.outcomes == ["completed"])
        assert observer.rejected.count("idle") == 1
        assert "limit" not in observer.rejected
    finally:
        for _reader, writer in idle:
            writer.close()


async def test_a_burst_of_real_calls_is_never_cut_by_the_per_peer_cap(start_server: StartServer) -> None:
    server, observer = await start_server({"ivr": answer_and_hang_up}, max_pending_per_peer=2, header_grace=0.5)
    await asyncio.gather(*(run_call(server.port, ANSWER_ONLY) for _ in range(25)))
    await eventually(lambda: len(observer.ended) == 25)
    assert observer.outcomes == ["completed"] * 25
    assert observer.rejected == []


async def test_a_header_must_be_complete_within_header_timeout(start_server: StartServer) -> None:
    server, observer = await start_server({"ivr": answer_and_hang_up}, read_timeout=30.0, header_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        assert await _closed(reader, 2.0)
    finally:
        writer.close()
    assert observer.rejected == ["header"]


# -- the shared secret -------------------------------------------------------------------------------------


def _with_secret(secret: str) -> str:
    return f"ivr?linkedid={LINKEDID}&did=4000&secret={secret}"


@pytest.mark.parametrize(
    "script",
    [
        f"ivr?linkedid={LINKEDID}&did=4000",
        _with_secret("wrong-secret-of-some-length"),
        _with_secret(SECRET[:-1]),
        _with_secret(SECRET + "x"),
        _with_secret(""),
        f"{_with_secret(SECRET)}&secret={SECRET}",
    ],
    ids=["none", "wrong", "prefix", "longer", "empty", "twice"],
)
async def test_a_session_without_the_right_secret_is_refused_before_any_route(
    start_server: StartServer, script: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    async def ivr(session: AgiSession) -> None:
        seen.append(session.linkedid)
        await session.answer()

    server, observer = await start_server({"ivr": ivr}, access=AccessPolicy(secret=SECRET))
    async with asterisk_from(server.port, "127.0.0.1") as asterisk:
        await asterisk.send_header(script)
        await asterisk.expect_closed(timeout=2.0)
    assert seen == []
    assert observer.rejected == ["secret"]
    assert server.active_sessions == 0
    assert SECRET not in caplog.text


async def test_the_right_secret_is_served_and_no_route_ever_sees_it(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, Any] = {}

    async def ivr(session: AgiSession) -> None:
        seen["script"] = session.env.network_script
        seen["request"] = session.env.get("request")
        seen["params"] = session.env.params
        await session.answer()

    compared: list[bytes] = []
    real_compare = server_module.hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real_compare(a, b)

    # The comparison is hmac.compare_digest (constant time), not ==.
    monkeypatch.setattr(server_module.hmac, "compare_digest", compare)
    server, observer = await start_server({"ivr": ivr}, access=AccessPolicy(secret=SECRET))
    await run_call(server.port, ANSWER_ONLY, network_script=_with_secret(SECRET))
    await eventually(lambda: observer.outcomes == ["completed"])
    assert compared == [SECRET.encode()]
    assert seen["params"] == {"linkedid": LINKEDID, "did": "4000"}
    assert SECRET not in seen["script"]
    assert SECRET not in seen["request"]
    assert seen["script"] == f"ivr?linkedid={LINKEDID}&did=4000"
    assert SECRET not in caplog.text


async def test_without_a_configured_secret_a_secret_in_the_url_is_still_stripped(start_server: StartServer) -> None:
    seen: list[str] = []

    async def ivr(session: AgiSession) -> None:
        seen.append(session.env.network_script)
        await session.answer()

    server, observer = await start_server({"ivr": ivr})
    await run_call(server.port, ANSWER_ONLY, network_script=_with_secret(SECRET))
    await eventually(lambda: observer.outcomes == ["completed"])
    assert seen == [f"ivr?linkedid={LINKEDID}&did=4000"]
