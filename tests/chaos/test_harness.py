"""The chaos harness itself (callcenter_devtools.chaos), without Asterisk: what it counts must be right for the
chaos tests to mean anything."""

from __future__ import annotations

import array
import socket
import threading
import wave
from pathlib import Path

import pytest

from callcenter.config import Phone, load_config
from callcenter_devtools.chaos import (
    AsteriskChannel,
    CallRow,
    CallTrace,
    RecordingRow,
    ServiceRow,
    Tables,
    TcpProxy,
    audit,
    config_toml,
    engine_config,
    live_mismatch,
    read_traces,
)


def test_the_engine_reads_back_the_config_it_is_given_secrets_and_phones_included(tmp_path: Path) -> None:
    base = load_config(environ={})
    phones = [Phone(extension="1001", password="pw-1001-x", contact="sip:1001@127.0.0.3:5181")]
    config = base.model_copy(
        update={
            "sip": base.sip.model_copy(update={"phones": phones}),
            "paths": base.paths.model_copy(update={"data_dir": tmp_path / "base"}),
        }
    )
    engine = engine_config(config, tmp_path / "engine", ami_port=40123, calls={"reconcile_interval": 5.0})
    path = tmp_path / "engine.toml"
    path.write_text(config_toml(engine), encoding="utf-8")
    again = load_config(path, environ={})
    assert again == engine
    assert again.ami.port == 40123
    assert again.ami.password.get_secret_value() == (tmp_path / "base/ami.secret").read_text().strip()
    assert again.sip.phones[0].password.get_secret_value() == "pw-1001-x"
    assert again.data_dir == (tmp_path / "engine").resolve()
    # Asterisk writes the recordings where the base config says; the engine must look there.
    assert again.recordings_dir == config.recordings_dir
    assert again.calls.reconcile_interval == 5.0


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(5)

    def serve() -> None:
        for _ in range(2):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_the_proxy_forwards_severs_refuses_and_forwards_again() -> None:
    server, thread = _echo_server()
    proxy = TcpProxy(server.getsockname())
    port = proxy.start()
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"ping")
        assert client.recv(16) == b"ping"
        proxy.cut()
        # The client sees its connection closed, and a new one is refused.
        assert client.recv(16) == b""
        client.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        proxy.restore()
        again = socket.create_connection(("127.0.0.1", port), timeout=5)
        again.sendall(b"pong")
        assert again.recv(16) == b"pong"
        again.close()
        assert proxy.accepted == 2
    finally:
        proxy.close()
        server.close()
        thread.join(5)


def test_the_phones_event_log_becomes_one_trace_per_call(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_text(
        "10.0 caller start 77011\n"
        "10.1 caller answered 77011\n"
        "10.5 agent 1003 answered 77011\n"
        "19.1 agent 1003 ended 77011\n"
        "19.1 caller done 77011\n"
        "11.0 caller start 77012\n"
        "11.1 caller answered 77012\n"
        "12.0 caller cut 77012\n"
        "garbage\n",
        encoding="utf-8",
    )
    traces = read_traces(log)
    assert set(traces) == {"77011", "77012"}
    first = traces["77011"]
    assert first.agents == ["1003"]
    assert first.talk == pytest.approx(8.6)
    assert first.ended == 19.1
    assert traces["77012"].cut == 12.0
    assert traces["77012"].done is None


def _row(number: str, linkedid: str, outcome: str = "answered", agent: str | None = "PJSIP/1003") -> CallRow:
    return CallRow(linkedid, number, outcome, agent, 8.0, 0.0, "live", 0.0, 9.0, "main")


def test_the_audit_names_every_wrong_call_and_passes_right_ones(tmp_path: Path) -> None:
    wav = tmp_path / "full/a.wav"
    wav.parent.mkdir()
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(array.array("h", [3000, -3000] * 4000).tobytes())
    traces = {
        number: CallTrace(number, started=1.0, answered=1.1, done=10.0, agents=["1003"], agent_answered=1.5,
                          agent_ended=9.5)
        for number in ("771", "772", "773")
    }  # fmt: skip
    traces["774"] = CallTrace("774", started=2.0, answered=2.1)  # never ended, never answered by an agent
    tables = Tables(
        calls=[
            _row("771", "a"),
            _row("772", "b", outcome="abandoned", agent=None),
            _row("773", "c"),
            _row("773", "d"),
            _row("999", "e"),
        ],
        recordings=[
            RecordingRow("r1", "full", "complete", "a", "PJSIP/1003", "full/a.wav", "771"),
            RecordingRow("r3", "full", "complete", "c", None, "full/a.wav", "773"),
        ],
        service_records=[ServiceRow(1, "callback_visit", "b", "772"), ServiceRow(2, "complaint", "zz", "5550")],
    )
    result = audit(traces, tables, recordings_dir=tmp_path)
    text = "\n".join(result.problems)
    assert result.placed == 4
    assert "771" not in text
    assert "772 (b): record says outcome=abandoned" in text
    assert "772 (b): no full recording" in text
    assert "773: 2 call records" in text
    assert "773 (c): recording r3 is filed under agent None and number 773; PJSIP/1003 answered 773" in text
    assert "774: the SIPp call failed" in text
    assert "774: 0 call records" in text
    assert "999 (e): a call record for a number nobody called" in text
    assert "772 (b): service record 1 of type callback_visit for an answered call" in text
    assert "service record 2 of type complaint for no call of this run (zz)" in text
    # A call the fault was allowed to cut is not a SIPp failure, but still needs its one record.
    allowed = audit(traces, tables, recordings_dir=tmp_path, may_be_cut={"774"})
    assert "774: the SIPp call failed" not in "\n".join(allowed.problems)
    assert "774: 0 call records" in "\n".join(allowed.problems)


def test_the_live_model_is_compared_with_asterisks_channels_both_ways() -> None:
    calls = [{"linkedid": "1.1", "legs": ["1.1", "1.2"], "caller_number": "771", "agent": "PJSIP/1003"}]
    same = [AsteriskChannel("PJSIP/pstn-1", "1.1", "Up", "Queue")]
    assert live_mismatch(calls, same) == []
    extra = [*same, AsteriskChannel("PJSIP/1004-2", "2.1", "Up", "AppQueue")]
    assert live_mismatch(calls, extra) == ["Asterisk has PJSIP/1004-2 (2.1, Up); the engine does not"]
    assert live_mismatch(calls, []) == [
        "the engine has a live call 1.1 from 771 (agent PJSIP/1003) that Asterisk does not"
    ]


def test_a_silent_recording_is_named_unless_the_agent_talked_too_briefly_to_hear(tmp_path: Path) -> None:
    silent = tmp_path / "full/silent.wav"
    silent.parent.mkdir()
    with wave.open(str(silent), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(2 * 8000))
    traces = {
        "771": CallTrace("771", started=1.0, done=10.0, agents=["1003"], agent_answered=1.5, agent_ended=9.5),
        "772": CallTrace("772", started=2.0, done=10.0, agents=["1003"], agent_answered=9.0, agent_ended=9.5),
    }
    tables = Tables(
        calls=[
            CallRow("a", "771", "answered", "PJSIP/1003", 8.0, 0.0, "live", 0.0, 9.0, "main"),
            CallRow("b", "772", "answered", "PJSIP/1003", 0.5, 7.0, "live", 0.0, 9.0, "main"),
        ],
        recordings=[
            RecordingRow("r1", "full", "complete", "a", "PJSIP/1003", "full/silent.wav", "771"),
            RecordingRow("r2", "full", "complete", "b", "PJSIP/1003", "full/silent.wav", "772"),
        ],
        service_records=[],
    )
    assert audit(traces, tables, recordings_dir=tmp_path).problems == ["771 (a): recording r1 is silent (RMS 0)"]
