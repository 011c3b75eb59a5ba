"""A load and fault harness around the real parts: the engine as a process of its own, a steady stream of SIPp
callers answered by SIPp agent phones, a TCP proxy a test can sever, and the counting done once the load drained.

Used by the chaos tests (tests/chaos/) and meant for load benchmarks too. Everything here starts processes or
threads that it also stops by its own handles: ``EngineProcess.stop``, ``Load.close``, ``TcpProxy.close``.

What each SIPp phone did is written, one line per step, to a shared event log by the scenario itself (SIPp's
``exec`` action with the time of day), so that the counting knows per call when it was placed, answered by an
agent, hung up by the caller or cut by the far end, and which agent phone took it:

    1733580000.123456789 caller start 77017
    1733580000.400000000 caller answered 77017
    1733580000.900000000 agent 1003 answered 77017
    1733580009.500000000 caller done 77017
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
from pydantic import BaseModel, SecretStr
from sqlalchemy import select

from callcenter.auth.services import AuthService
from callcenter.config import Config
from callcenter.db import Database, migrate
from callcenter.secrets import agi_secret, ami_secret
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import ANSWER, BYE, OK, RINGING, SPEECH_PCAP, SippError, SippProcess, ack, invite, send
from calls.models import CallRecord
from crm_bridge.models import ServiceRecord
from recordings.models import Recording


class ChaosError(Exception):
    pass


# -- the engine as a process -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A dumped config value as TOML can hold it: secrets revealed, paths as text, None left out (by the caller)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return _plain(value.model_dump())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string for everything json.dumps writes (\", \\, \n, \uXXXX).
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise ChaosError(f"no TOML form for {value!r}")


def config_toml(config: Config) -> str:
    """The whole ``config`` as a TOML file ``callcenter --config`` reads back to an equal Config."""
    tree = _plain(config.model_dump())
    lines: list[str] = []
    for section, body in tree.items():
        if not isinstance(body, dict):
            raise ChaosError(f"config section {section} is not a table")
        tables: list[tuple[str, list[dict[str, Any]]]] = []
        lines.append(f"[{section}]")
        for key, value in body.items():
            if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
                tables.append((key, value))
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        for key, items in tables:
            for item in items:
                lines.append(f"[[{section}.{key}]]")
                lines.extend(f"{name} = {_toml_value(value)}" for name, value in item.items())
        lines.append("")
    return "\n".join(lines)


def engine_config(
    base: Config, data_dir: Path, *, ami_port: int | None = None, **sections: Mapping[str, Any]
) -> Config:
    """``base`` for an engine of its own in ``data_dir``: it logs in to the AMI of the Asterisk ``base`` rendered
    (through ``ami_port`` when given, e.g. a proxy's), keeps ``base``'s recordings directory (Asterisk writes
    there) and takes ``sections`` as overrides (``calls={"reconcile_interval": 5}``)."""
    # The secrets Asterisk was rendered with are kept in ``base``'s data directory, not in ``data_dir``.
    secret = SecretStr(ami_secret(base))
    ami = base.ami.model_copy(update={"password": secret, **({"port": ami_port} if ami_port else {})})
    url_secret = agi_secret(base)
    agi = base.agi.model_copy(update={"secret": SecretStr(url_secret)}) if url_secret else base.agi
    paths = base.paths.model_copy(update={"data_dir": data_dir, "recordings_dir": base.recordings_dir})
    update: dict[str, Any] = {"ami": ami, "agi": agi, "paths": paths}
    for name, values in sections.items():
        update[name] = getattr(base, name).model_copy(update=dict(values))
    return base.model_copy(update=update)


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    rss_kib: int
    open_files: int


def process_usage(pid: int) -> ProcessUsage:
    """Resident memory and open file descriptors of a running process, from /proc."""
    rss = 0
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
    return ProcessUsage(rss, len(os.listdir(f"/proc/{pid}/fd")))


def _callcenter_command() -> list[str]:
    beside = Path(sys.executable).parent / "callcenter"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("callcenter")
    if found is None:
        raise ChaosError("the callcenter command is not installed (make setup)")
    return [found]


class EngineProcess:
    """`callcenter run` on a config of its own, as a process that can be killed by its pid and started again on
    the same data directory. Its log (stdout and stderr) accumulates over every start in ``log_path``."""

    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "engine.toml"
        self.log_path = workdir / "engine.log"
        self.config_path.write_text(config_toml(config), encoding="utf-8")
        # It holds the AMI secret and the phones' passwords.
        self.config_path.chmod(0o600)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ChaosError("the engine was not started")
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.config.web.host}:{self.config.web.port}"

    def start(self) -> int:
        if self.running():
            raise ChaosError(f"the engine is already running (pid {self.pid})")
        env = {name: value for name, value in os.environ.items() if not name.startswith("CALLCENTER_")}
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"==== start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*_callcenter_command(), "--config", str(self.config_path), "run"],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code of the engine runs."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def usage(self) -> ProcessUsage:
        return process_usage(self.pid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, *needles: str) -> list[str]:
        """The log lines holding every one of ``needles``."""
        return [line for line in self.log_text().splitlines() if all(needle in line for needle in needles)]

    async def healthy(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http,
                http.get(self.base_url + "/healthz") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def wait_healthy(self, within: float) -> None:
        """Until /healthz is ok (AMI logged in, FastAGI listening, database reachable); else ChaosError."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.running():
                raise ChaosError(
                    f"the engine exited ({self.proc and self.proc.returncode}):\n{self.log_text()[-3000:]}"
                )
            if await self.healthy():
                return
            await asyncio.sleep(0.25)
        raise ChaosError(f"the engine was not healthy within {within:.0f} s:\n{self.log_text()[-3000:]}")


# -- the engine's API and database ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password: str
    role: str
    extension: str | None = None


async def create_users(config: Config, users: Iterable[User]) -> None:
    """Migrates ``config``'s database and adds ``users`` to it (before the engine starts)."""
    await migrate(config.database_url)
    database = Database(config.database_url)
    await database.open()
    try:
        auth = AuthService(database, config.auth)
        for user in users:
            await auth.create_user(user.username, user.password, roles=[user.role], extension=user.extension)
    finally:
        await database.close()


class EngineApi:
    """The engine's HTTP API as one logged-in user sees it; ``close`` ends the HTTP session, not the login."""

    def __init__(self, base_url: str, http: aiohttp.ClientSession, token: str) -> None:
        self.base_url = base_url
        self._http = http
        self._headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    async def login(cls, base_url: str, username: str, password: str) -> EngineApi:
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        try:
            async with http.post(
                base_url + "/api/v1/login", json={"username": username, "password": password}
            ) as response:
                body = await response.json()
                if response.status != 200:
                    raise ChaosError(f"login of {username} failed: {response.status} {body}")
        except BaseException:
            await http.close()
            raise
        return cls(base_url, http, str(body["token"]))

    async def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        async with self._http.request(method, self.base_url + path, json=body, headers=self._headers) as response:
            return response.status, await response.json()

    async def close(self) -> None:
        await self._http.close()


@dataclass(frozen=True, slots=True)
class CallRow:
    linkedid: str
    caller_number: str
    outcome: str
    agent: str | None
    talk_time: float | None
    wait_time: float | None
    source: str
    started_at: float
    ended_at: float
    ivr_flow: str | None


@dataclass(frozen=True, slots=True)
class RecordingRow:
    id: str
    kind: str
    status: str
    linkedid: str | None
    agent_interface: str | None
    file_path: str
    caller_number: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceRow:
    id: int
    type: str
    linkedid: str | None
    caller_number: str | None


@dataclass(frozen=True, slots=True)
class Tables:
    calls: list[CallRow]
    recordings: list[RecordingRow]
    service_records: list[ServiceRow]


async def read_tables(database_url: str) -> Tables:
    """What the engine wrote: every call record, recording row and service record of its database."""
    database = Database(database_url)
    await database.open()
    try:
        async with database.session() as session:
            calls = [
                CallRow(
                    row.linkedid,
                    row.caller_number,
                    row.outcome,
                    row.agent,
                    row.talk_time,
                    row.wait_time,
                    row.source,
                    row.started_at.timestamp(),
                    row.ended_at.timestamp(),
                    row.ivr_flow,
                )
                for row in (await session.scalars(select(CallRecord))).all()
            ]
            recordings = [
                RecordingRow(
                    row.id, row.kind, row.status, row.linkedid, row.agent_interface, row.file_path, row.caller_number
                )
                for row in (await session.scalars(select(Recording))).all()
            ]
            services = [
                ServiceRow(row.id, str(row.type), row.linkedid, row.caller_number)
                for row in (await session.scalars(select(ServiceRecord))).all()
            ]
    finally:
        await database.close()
    return Tables(calls, recordings, services)


def wav_rms(path: Path) -> float:
    """The RMS amplitude of a 16-bit PCM WAV file (0 for an empty one); silence is near 0, speech in the hundreds."""
    with wave.open(str(path)) as audio:
        if audio.getsampwidth() != 2:
            raise ChaosError(f"{path}: {audio.getsampwidth() * 8}-bit samples, expected 16")
        samples = array.array("h", audio.readframes(audio.getnframes()))
    if not samples:
        return 0.0
    return math.sqrt(sum(sample * sample for sample in samples) / len(samples))


@dataclass(frozen=True, slots=True)
class AsteriskChannel:
    name: str
    uniqueid: str
    state: str
    application: str


def asterisk_channels(sandbox: Sandbox) -> list[AsteriskChannel]:
    """Asterisk's own list of its channels (`core show channels concise`)."""
    output = sandbox.cli("core show channels concise", timeout=10).stdout
    channels = []
    for line in output.splitlines():
        fields = line.split("!")
        # Channel!Context!Exten!Priority!State!Application!Data!CallerID!Account!PeerAccount!AMA!Duration!Bridge!
        # Uniqueid
        if len(fields) >= 14:
            channels.append(AsteriskChannel(fields[0], fields[13], fields[4], fields[5]))
    return channels


def _port_free(kind: str, host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as probe:
        if kind == "tcp":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def stop_asterisk(sandbox: Sandbox, within: float = 30.0) -> None:
    """Stops the sandbox's Asterisk and waits until every thread of it is gone and its SIP and AMI ports are free.

    Sandbox.stop returns once the main thread is a zombie; Asterisk's other threads may still hold its sockets
    for a moment then, and a start at once finds the SIP port taken.
    """
    pid = sandbox.running_pid()
    sandbox.stop()
    sip, ami = sandbox.config.sip, sandbox.config.ami
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        gone = pid is None or not os.path.exists(f"/proc/{pid}")
        if gone and _port_free("udp", sip.host, sip.port) and _port_free("tcp", ami.host, ami.port):
            return
        time.sleep(0.1)
    raise ChaosError(f"Asterisk (pid {pid}) still holds its ports {within:.0f} s after it was stopped")


def restart_asterisk(sandbox: Sandbox) -> None:
    """Stops the sandbox's Asterisk (`core stop now`: calls in progress are hung up) and starts it again."""
    stop_asterisk(sandbox)
    sandbox.start()


def queue_members(sandbox: Sandbox, queue: str) -> set[str]:
    """The interfaces Asterisk has as members of ``queue`` (`queue show`)."""
    output = sandbox.cli(f"queue show {queue}", timeout=10).stdout
    members = set()
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("PJSIP/"):
            members.add(text.split()[0])
        elif "(PJSIP/" in text:
            members.add(text.split("(", 1)[1].split()[0].rstrip(")"))
    return members


# -- a TCP proxy the test can sever -------------------------------------------------------------------------


class TcpProxy:
    """Forwards loopback TCP connections to ``upstream``; ``cut`` closes every connection and refuses new ones
    (the port is closed), ``restore`` listens again on the same port. Threads of its own; ``close`` ends them."""

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self.accepted = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._listening = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._listening.set()
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy-accept", daemon=True)
        self._acceptor.start()
        return self.port

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sockets) // 2

    def _accept(self, listener: socket.socket) -> None:
        while self._listening.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                thread = threading.Thread(target=self._pump, args=(source, target), name="tcp-proxy-pump", daemon=True)
                self._threads.append(thread)
                thread.start()
        listener.close()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close_pair(source, target)

    def _close_pair(self, *pair: socket.socket) -> None:
        with self._lock:
            for sock in pair:
                self._sockets.discard(sock)
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        """Severs every connection (both ends see it closed) and stops listening: connects are refused."""
        self._listening.clear()
        if self._acceptor is not None:
            self._acceptor.join(2)
            self._acceptor = None
        self._listener = None
        with self._lock:
            sockets = list(self._sockets)
        self._close_pair(*sockets)
        for thread in self._threads:
            thread.join(2)
        self._threads = [thread for thread in self._threads if thread.is_alive()]

    def restore(self) -> None:
        if self._listening.is_set():
            return
        self.start()

    def close(self) -> None:
        self.cut()


# -- SIPp load: agent phones and callers that log each step --------------------------------------------------


def _log_action(log: Path, *words: str) -> str:
    """An exec action appending ``<time> words`` to ``log``; SIPp fills in its [keywords] before the shell runs."""
    command = f"echo $(date +%s.%N) {' '.join(words)} >> {shlex.quote(str(log))}"
    # SIPp's XML reader takes attribute values as written (no entities), so '>' stays as it is.
    if '"' in command or "&" in command:
        raise ChaosError(f"the event log's path cannot go into a SIPp attribute: {log}")
    return f'<nop><action><exec command="{command}"/></action></nop>'


def agent_scenario(extension: str, log: Path, ring_ms: int = 300) -> str:
    """A desk phone that rings ``ring_ms``, answers, talks (sip-tester's 7 s speech capture; the caller's may be
    over by then after a long wait) and waits for the far end's BYE, logging the caller's number (the From user
    Asterisk sends) when it answers and when the call ends."""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="chaos agent {extension}">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="sip:([^@;>]+)@" search_in="hdr" header="From:" check_it="true" assign_to="from,caller"/>
      <!-- SIPp refuses a variable referenced once: the whole match is logged (with -trace_logs only). -->
      <log message="[$from]"/>
    </action>
  </recv>
{send(RINGING)}
  <pause milliseconds="{ring_ms}"/>
{send(ANSWER, ' retrans="500"')}
  <recv request="ACK" rtd="true" crlf="true"/>
  {_log_action(log, "agent", extension, "answered", "[$caller]")}
  <nop><action><exec play_pcap_audio="{escape(str(SPEECH_PCAP))}"/></action></nop>
  <recv request="BYE"/>
{send(OK)}
  {_log_action(log, "agent", extension, "ended", "[$caller]")}
</scenario>
"""


def caller_scenario(prefix: str, talk_ms: int, log: Path, keys: Sequence[Path] = (), keys_after_ms: int = 0) -> str:
    """A caller numbered ``prefix`` + SIPp's call number (unique per call of the process) that talks (sip-tester's
    speech capture) for ``talk_ms`` after the answer and hangs up; a BYE from the far end before that is logged as
    ``cut`` and answered. With ``keys`` (RFC 4733 captures, one per key) it first waits ``keys_after_ms`` after the
    answer and presses them, 800 ms apart, and talks from the last one."""
    number = f"{prefix}[call_number]"
    pressed = "".join(
        f'  <pause milliseconds="{keys_after_ms if index == 0 else 800}"/>\n'
        f'  <nop><action><exec play_pcap_audio="{escape(str(key))}"/></action></nop>\n'
        for index, key in enumerate(keys)
    )
    # A capture starts playing at once: the speech waits for the last key's packets to be out.
    pressed += '  <pause milliseconds="800"/>\n' if keys else ""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="chaos caller">
  {_log_action(log, "caller", "start", number)}
{send(invite(number, "Chaos Caller", "8 101"), ' retrans="500"')}
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
{send(ack(number))}
  {_log_action(log, "caller", "answered", number)}
{pressed}  <nop><action><exec play_pcap_audio="{escape(str(SPEECH_PCAP))}"/></action></nop>
  <recv request="BYE" timeout="{talk_ms}" ontimeout="1"/>
{send(OK, ' next="2"')}
  <label id="1"/>
{send(BYE, ' retrans="500"')}
  <recv response="200" crlf="true"/>
  {_log_action(log, "caller", "done", number)}
  <nop next="3"/>
  <label id="2"/>
  {_log_action(log, "caller", "cut", number)}
  <label id="3"/>
</scenario>
"""


@dataclass
class CallTrace:
    """What the phones logged about one call, by the caller's number."""

    number: str
    started: float | None = None
    answered: float | None = None
    done: float | None = None
    cut: float | None = None
    agents: list[str] = field(default_factory=list)  # the agent phones that answered it, in order
    agent_answered: float | None = None  # when the last of them answered (its ACK)
    agent_ended: float | None = None  # when the far end hung up on it (its BYE)

    @property
    def talk(self) -> float | None:
        """Seconds the agent phone was in the call, as the phones saw it."""
        if self.agent_answered is None or self.agent_ended is None:
            return None
        return self.agent_ended - self.agent_answered

    @property
    def ended(self) -> float | None:
        return self.done if self.done is not None else self.cut


def read_traces(log: Path, prefix: str = "") -> dict[str, CallTrace]:
    """The event log of the phones as one trace per call whose number starts with ``prefix``."""
    traces: dict[str, CallTrace] = {}
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return traces
    for line in text.splitlines():
        words = line.split()
        if len(words) < 4:
            continue
        try:
            at = float(words[0])
        except ValueError:
            continue
        if words[1] == "caller" and len(words) == 4:
            event, number = words[2], words[3]
        elif words[1] == "agent" and len(words) == 5:
            event, number = f"agent_{words[3]}", words[4]
        else:
            continue
        if not number.startswith(prefix):
            continue
        trace = traces.setdefault(number, CallTrace(number))
        if event == "agent_answered":
            trace.agents.append(words[2])
            trace.agent_answered = at
        elif event == "agent_ended":
            trace.agent_ended = at
        elif event in ("start", "answered", "done", "cut"):
            setattr(trace, {"start": "started"}.get(event, event), at)
    return traces


@dataclass(frozen=True, slots=True)
class AgentPhone:
    extension: str
    host: str
    port: int


class Load:
    """SIPp agent phones and SIPp callers in one work directory, all logging to ``events``; ``close`` stops them."""

    def __init__(self, sip_host: str, sip_port: int, workdir: Path, media_base: int = 40000) -> None:
        if shutil.which("sipp") is None:
            raise SippError("sipp is not installed (apt-get install sip-tester)")
        self.sip_host = sip_host
        self.sip_port = sip_port
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.events = workdir / "events.log"
        self.agents: dict[str, SippProcess] = {}
        self.callers: list[SippProcess] = []
        # Media ports stay clear of Asterisk's RTP range; SIPp uses the port given and the next three.
        self._media_next = media_base

    def _media_port(self) -> int:
        port = self._media_next
        self._media_next += 4
        return port

    def _start(self, name: str, scenario: str, extra: Sequence[str]) -> SippProcess:
        path = self.workdir / f"{name}.xml"
        path.write_text(scenario, encoding="utf-8")
        args = ["sipp", "-sf", str(path), "-nostdin", "-trace_err", "-error_file", str(self.workdir / f"{name}.err")]
        return SippProcess(name, [*args, *extra], self.workdir)

    def agent(self, phone: AgentPhone, ring_ms: int = 300) -> SippProcess:
        """An agent phone answering every call at its static contact until it is stopped."""
        extra = [
            "-i", phone.host,
            "-p", str(phone.port),
            "-mi", phone.host,
            "-mp", str(self._media_port()),
            "-m", "100000",
            "-aa",
        ]  # fmt: skip
        process = self._start(f"agent-{phone.extension}", agent_scenario(phone.extension, self.events, ring_ms), extra)
        self.agents[phone.extension] = process
        return process

    def call(
        self,
        name: str,
        did: str,
        *,
        prefix: str,
        calls: int,
        rate: float,
        talk_ms: int,
        local_ip: str,
        local_port: int,
        max_wait_s: int = 60,
        limit: int | None = None,
        keys: Sequence[Path] = (),
        keys_after_ms: int = 0,
    ) -> SippProcess:
        """Places ``calls`` calls at ``rate`` a second to ``did``, numbered ``prefix`` + 1, 2, ..., at most ``limit``
        at once (default: all of them); ``keys`` as in caller_scenario."""
        extra = [
            f"{self.sip_host}:{self.sip_port}",
            "-s", did,
            "-i", local_ip,
            "-p", str(local_port),
            "-mi", local_ip,
            "-mp", str(self._media_port()),
            "-m", str(calls),
            "-r", str(rate),
            "-l", str(limit or calls),
            "-recv_timeout", str(max_wait_s * 1000),
            "-aa",
        ]  # fmt: skip
        process = self._start(name, caller_scenario(prefix, talk_ms, self.events, keys, keys_after_ms), extra)
        self.callers.append(process)
        return process

    def traces(self, prefix: str = "") -> dict[str, CallTrace]:
        return read_traces(self.events, prefix)

    def close(self) -> None:
        for process in [*self.callers, *self.agents.values()]:
            process.stop()


def aborted_calls(processes: Iterable[SippProcess]) -> list[str]:
    """The calls SIPp aborted or gave up (an unexpected message, retransmissions unanswered), from the error log
    of each process. The caller's "receive timeout ... jumping to label" events are not among them: that is how
    its talk time ends."""
    aborted = []
    for process in processes:
        path = process.workdir / f"{process.name}.err"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        # Each event starts with its date; SIPp does not always end one with a newline.
        for event in _SIPP_EVENT.split(text):
            if any(marker in event for marker in _ABORT_MARKERS):
                aborted.append(f"{process.name}: {' '.join(event.split())[:300]}")
    return aborted


_SIPP_EVENT = re.compile(r"(?=\d{4}-\d{2}-\d{2}\t\d{2}:\d{2}:\d{2}\.\d+\t)")
_ABORT_MARKERS = ("Aborting call", "Max retransmission", "Call failed", "Dead call")


# -- counting, once the load has drained ---------------------------------------------------------------------

# RMS of 16-bit samples: a silent recording is below 10, sip-tester's speech capture gives several hundred.
SILENCE_RMS = 100.0
# A call the agent talked on for less than this may hold only the first, quiet, part of the speech capture: its
# recording is checked for its row and file but not for sound.
MIN_AUDIBLE_TALK = 2.0
# Talk times are whole seconds in Asterisk's queue events; the phones log to the millisecond.
TALK_SLACK = 2.0


@dataclass(frozen=True, slots=True)
class Audit:
    """What the tables say about the calls the phones made; ``problems`` is empty when every call is right."""

    placed: int
    answered_by_agents: int
    records: int
    recordings_checked: int
    problems: list[str]

    def summary(self) -> str:
        head = (
            f"{self.placed} calls placed, {self.answered_by_agents} answered by agent phones, {self.records} call "
            f"records, {self.recordings_checked} recordings checked, {len(self.problems)} problems"
        )
        return "\n".join([head, *self.problems])


def audit(
    traces: Mapping[str, CallTrace],
    tables: Tables,
    *,
    recordings_dir: Path,
    may_be_cut: Iterable[str] = (),
    silence_rms: float = SILENCE_RMS,
) -> Audit:
    """Checks, call by call, what the engine wrote against what the phones did (``recordings_dir`` is where the
    index's file names are).

    - every call the caller placed ended well (hung up by the caller after its talk), except those in
      ``may_be_cut`` (numbers of calls a fault was allowed to cut), which may have been cut or failed;
    - exactly one call record per placed call, none for a number nobody called;
    - a call an agent phone answered is ``answered`` by that agent (``PJSIP/<extension>``) with the talk time
      the phones saw (within TALK_SLACK);
    - such a call has a complete full recording of its linkedid, filed under that agent and the caller's number,
      whose audio is not silence (when the agent talked MIN_AUDIBLE_TALK or more);
    - no service record for an answered call, none twice for one call, none for a call that is not ours.
    """
    allowed = set(may_be_cut)
    problems: list[str] = []
    by_number: dict[str, list[CallRow]] = {}
    for row in tables.calls:
        by_number.setdefault(row.caller_number, []).append(row)
    recordings: dict[str, list[RecordingRow]] = {}
    for recording in tables.recordings:
        if recording.linkedid is not None:
            recordings.setdefault(recording.linkedid, []).append(recording)
    services: dict[str | None, list[ServiceRow]] = {}
    for service in tables.service_records:
        services.setdefault(service.linkedid, []).append(service)
    placed = {number: trace for number, trace in traces.items() if trace.started is not None}
    answered_by_agents = 0
    checked = 0
    ours: set[str] = set()
    for number, trace in sorted(placed.items(), key=lambda item: item[1].started or 0.0):
        if trace.done is None and number not in allowed:
            state = "cut by the far end" if trace.cut is not None else "failed (no answer or no end)"
            problems.append(f"{number}: the SIPp call {state}")
        rows = by_number.get(number, [])
        if len(rows) != 1:
            ids = ", ".join(f"{row.linkedid} {row.outcome} agent={row.agent} source={row.source}" for row in rows)
            problems.append(f"{number}: {len(rows)} call records (expected 1){': ' + ids if ids else ''}")
        if not rows:
            continue
        row = rows[0]
        ours.add(row.linkedid)
        if trace.agents:
            answered_by_agents += 1
            if trace.agent_ended is None:
                problems.append(f"{number}: the agent phone {trace.agents[-1]} never saw the call end (no BYE)")
            expected_agent = f"PJSIP/{trace.agents[-1]}"
            if row.outcome != "answered" or row.agent != expected_agent:
                problems.append(
                    f"{number} ({row.linkedid}): record says outcome={row.outcome} agent={row.agent} "
                    f"talk={row.talk_time} source={row.source}; the phone of {expected_agent} answered it"
                )
            elif row.talk_time is None or (trace.talk is not None and abs(row.talk_time - trace.talk) > TALK_SLACK):
                phones = f"{trace.talk:.1f}" if trace.talk is not None else "?"
                problems.append(
                    f"{number} ({row.linkedid}): talk time {row.talk_time} in the record ({row.source}), "
                    f"{phones} s on the phones"
                )
            checked += 1
            problems.extend(
                _recording_problems(
                    number,
                    row.linkedid,
                    expected_agent,
                    recordings.get(row.linkedid, []),
                    recordings_dir,
                    silence_rms if trace.talk is None or trace.talk >= MIN_AUDIBLE_TALK else None,
                )
            )
            for service in services.get(row.linkedid, []):
                problems.append(
                    f"{number} ({row.linkedid}): service record {service.id} of type {service.type} for an "
                    "answered call"
                )
        else:
            if trace.done is not None:
                problems.append(f"{number} ({row.linkedid}): the caller talked to the end but no agent phone answered")
            kinds = [service.type for service in services.get(row.linkedid, [])]
            if len(kinds) != len(set(kinds)):
                problems.append(f"{number} ({row.linkedid}): service records repeated: {kinds}")
    for number in sorted(set(by_number) - set(placed)):
        for row in by_number[number]:
            problems.append(f"{number} ({row.linkedid}): a call record for a number nobody called ({row.outcome})")
    for linkedid, filed in services.items():
        if linkedid not in ours:
            problems.extend(
                f"service record {service.id} of type {service.type} for no call of this run ({linkedid})"
                for service in filed
            )
    return Audit(len(placed), answered_by_agents, len(tables.calls), checked, problems)


def _recording_problems(
    number: str, linkedid: str, agent: str, rows: list[RecordingRow], root: Path, silence_rms: float | None
) -> list[str]:
    full = [row for row in rows if row.kind == "full"]
    if not full:
        return [f"{number} ({linkedid}): no full recording in the index (rows: {[(r.kind, r.status) for r in rows]})"]
    problems = []
    complete = [row for row in full if row.status == "complete"]
    if not complete:
        problems.append(f"{number} ({linkedid}): full recording not complete: {[row.status for row in full]}")
    for row in complete:
        if row.agent_interface != agent or row.caller_number != number:
            problems.append(
                f"{number} ({linkedid}): recording {row.id} is filed under agent {row.agent_interface} and number "
                f"{row.caller_number}; {agent} answered {number}"
            )
        # The index names files relative to the recordings directory.
        path = root / row.file_path
        if not path.is_file():
            problems.append(f"{number} ({linkedid}): recording {row.id} has no file at {path}")
            continue
        if silence_rms is None:
            continue
        try:
            rms = wav_rms(path)
        except (wave.Error, EOFError, ChaosError) as exc:
            problems.append(f"{number} ({linkedid}): recording {row.id} is not a readable WAV: {exc}")
            continue
        if rms <= silence_rms:
            problems.append(f"{number} ({linkedid}): recording {row.id} is silent (RMS {rms:.0f})")
    return problems


def live_mismatch(engine_calls: Sequence[Mapping[str, Any]], channels: Sequence[AsteriskChannel]) -> list[str]:
    """How the engine's live calls (``GET /api/v1/calls`` items) differ from Asterisk's channels: a channel no live
    call of the engine has among its legs, or a live call none of whose legs Asterisk still has."""
    problems = []
    legs = {str(leg): str(call.get("linkedid")) for call in engine_calls for leg in call.get("legs", ())}
    alive = {channel.uniqueid for channel in channels}
    for channel in channels:
        if channel.uniqueid not in legs:
            problems.append(f"Asterisk has {channel.name} ({channel.uniqueid}, {channel.state}); the engine does not")
    for call in engine_calls:
        if not alive.intersection(str(leg) for leg in call.get("legs", ())):
            problems.append(
                f"the engine has a live call {call.get('linkedid')} from {call.get('caller_number')} "
                f"(agent {call.get('agent') or '-'}) that Asterisk does not"
            )
    return problems
