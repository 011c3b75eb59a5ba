"""Record raw AMI transcripts from the real sandbox, for the reducer's replay tests (tests/fixtures/ami/).

Starts the sandbox with the integration tests' ports, and for each scenario opens a fresh AMI connection (so
each transcript starts with the banner and the login reply), drives SIPp phones through the engine-down fallback
(no FastAGI server: apology, then Queue(support)), and keeps every byte Asterisk sent, CRLF and all.

    .venv/bin/python scripts/record_ami.py [--out tests/fixtures/ami] [--only answered,abandoned,status]

Run as root, with the sandbox installed and not running, and without the integration tests running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from callcenter.config import Config, Phone, load_config
from callcenter.secrets import ami_secret
from callcenter_devtools.sandbox import Sandbox, SandboxError
from callcenter_devtools.sipp import CallerScript, Phones, SippProcess

# The same addresses and ports as tests/integration/conftest.py.
PSTN = "127.0.0.2"
PHONE_IP = "127.0.0.3"
AGENT_PORTS = {"1001": 5181, "1002": 5182, "2001": 5191, "3001": 5195}
TEST_PORTS = {"sip": 5260, "ami": 5238, "agi": 4673, "web": 8281}
ROOT = Path(__file__).resolve().parent.parent


def test_config(data: Path) -> Config:
    base = load_config(environ={})
    phones = [
        Phone(extension=ext, kind=kind, password=f"phone-pw-{ext}", contact=f"sip:{ext}@{PHONE_IP}:{AGENT_PORTS[ext]}")
        for ext, kind in (("1001", "agent"), ("1002", "agent"), ("2001", "expert"), ("3001", "supervisor"))
    ]
    return base.model_copy(
        update={
            "sip": base.sip.model_copy(update={"port": TEST_PORTS["sip"], "phones": phones, "pstn_address": PSTN}),
            "ami": base.ami.model_copy(update={"port": TEST_PORTS["ami"]}),
            "agi": base.agi.model_copy(update={"port": TEST_PORTS["agi"], "read_timeout": 20.0}),
            "web": base.web.model_copy(update={"port": TEST_PORTS["web"]}),
            "paths": base.paths.model_copy(update={"data_dir": data, "recordings_dir": data / "recordings"}),
        }
    )


class Recorder:
    """One raw AMI connection: every byte received is kept in order; actions are written as they are."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.data = bytearray()
        self._task = asyncio.create_task(self._read())
        self._counter = 0

    async def _read(self) -> None:
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                return
            self.data += chunk

    async def send(self, action: str, **headers: str) -> str:
        self._counter += 1
        action_id = f"rec-{self._counter}"
        lines = [f"Action: {action}", f"ActionID: {action_id}", *(f"{k}: {v}" for k, v in headers.items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()
        return action_id

    async def wait_for(self, needle: bytes, timeout: float) -> bool:  # noqa: ASYNC109 - polls a buffer
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.data:
                return True
            await asyncio.sleep(0.05)
        return False

    async def close(self) -> bytes:
        with contextlib.suppress(Exception):
            await self.send("Logoff")
            await asyncio.wait_for(asyncio.shield(self._task), 2.0)
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        return bytes(self.data)


@contextlib.asynccontextmanager
async def recording(config: Config, out: Path) -> AsyncIterator[Recorder]:
    reader, writer = await asyncio.open_connection(config.ami.host, config.ami.port)
    recorder = Recorder(reader, writer)
    try:
        await recorder.send("Login", Username=config.ami.username, Secret=ami_secret(config), Events="on")
        if not await recorder.wait_for(b"Authentication accepted", 5):
            raise RuntimeError(f"AMI login failed: {bytes(recorder.data)[:300]!r}")
        yield recorder
        # Let the last events (hangups, queue member status) arrive before closing.
        await asyncio.sleep(2.0)
    finally:
        data = await recorder.close()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)  # noqa: ASYNC240 - a one-off script, the loop has nothing else to do
        print(f"recorded {len(data)} bytes -> {out}", flush=True)


async def wait_proc(process: SippProcess, timeout: float) -> int:  # noqa: ASYNC109 - a thread's wait
    return await asyncio.to_thread(process.wait, timeout)


async def answered(config: Config, sandbox: Sandbox, phones: Phones, out: Path, added: list[str]) -> None:
    """(a) A queued call answered by agent 1001; the caller talks about 4 s after the agent answers, then hangs up."""
    queue = config.queues.general
    async with recording(config, out):
        sandbox.cli(f"queue add member PJSIP/1001 to {queue}")
        added.append(f"1001@{queue}")
        agent = phones.desk_phone("a-agent", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
        # The fallback answers at once, plays the apology (a few seconds), then queues; talk_ms counts from answer.
        caller = phones.call(
            "a-caller",
            config.sip.dids[0],
            CallerScript(caller_number="5550101", caller_name="Ann Answered", talk_ms=12000),
            local_ip=PSTN,
            local_port=5270,
        )
        rc = await wait_proc(caller, 60)
        agent_rc = await wait_proc(agent, 15)
        print(f"answered: caller rc={rc} agent rc={agent_rc}", flush=True)
        sandbox.cli(f"queue remove member PJSIP/1001 from {queue}", check=False)
        added.remove(f"1001@{queue}")


async def abandoned(config: Config, sandbox: Sandbox, phones: Phones, out: Path, added: list[str]) -> None:
    """(b) No members: the caller waits in the queue and hangs up."""
    async with recording(config, out):
        caller = phones.call(
            "b-caller",
            config.sip.dids[0],
            CallerScript(caller_number="5550102", caller_name="Bob Abandons", talk_ms=10000),
            local_ip=PSTN,
            local_port=5271,
        )
        rc = await wait_proc(caller, 60)
        print(f"abandoned: caller rc={rc}", flush=True)


async def status(config: Config, sandbox: Sandbox, phones: Phones, out: Path, added: list[str]) -> None:
    """(c) One call talking to agent 1002, a second caller waiting; CoreShowChannels/QueueStatus/QueueSummary."""
    queue = config.queues.general
    async with recording(config, out) as recorder:
        sandbox.cli(f"queue add member PJSIP/1002 to {queue}")
        added.append(f"1002@{queue}")
        agent = phones.desk_phone("c-agent", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
        first = phones.call(
            "c-caller1",
            config.sip.dids[0],
            CallerScript(caller_number="5550103", caller_name="Cy Talking", talk_ms=16000),
            local_ip=PSTN,
            local_port=5272,
        )
        await recorder.wait_for(b"Event: AgentConnect", 30)
        second = phones.call(
            "c-caller2",
            config.sip.dids[1],
            CallerScript(caller_number="5550104", caller_name="Di Waiting", talk_ms=11000),
            local_ip=PSTN,
            local_port=5273,
        )
        # Wait until the second caller has joined the queue (two joins in the stream).
        deadline = time.monotonic() + 20
        while recorder.data.count(b"Event: QueueCallerJoin") < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        await recorder.send("CoreShowChannels")
        await recorder.wait_for(b"Event: CoreShowChannelsComplete", 5)
        await recorder.send("QueueStatus")
        await recorder.wait_for(b"Event: QueueStatusComplete", 5)
        await recorder.send("QueueSummary")
        await recorder.wait_for(b"Event: QueueSummaryComplete", 5)
        rc1 = await wait_proc(first, 60)
        rc2 = await wait_proc(second, 60)
        agent.stop()
        print(f"status: caller1 rc={rc1} caller2 rc={rc2}", flush=True)
        sandbox.cli(f"queue remove member PJSIP/1002 from {queue}", check=False)
        added.remove(f"1002@{queue}")


Scenario = Callable[[Config, Sandbox, Phones, Path, list[str]], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {"answered": answered, "abandoned": abandoned, "status": status}


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/ami")
    parser.add_argument("--only", default=",".join(SCENARIOS))
    args = parser.parse_args(argv)
    names = [name for name in args.only.split(",") if name]
    for name in names:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    with tempfile.TemporaryDirectory(prefix="cc-record-") as tmp:
        config = test_config(Path(tmp) / "data")
        sandbox = Sandbox(config)
        running = sandbox.running_pid()
        if running is not None:
            print(f"the sandbox's Asterisk already runs (pid {running}); stop it first", file=sys.stderr)
            return 2
        # Members persist in astdb (persistentmembers=yes): start empty, as the integration tests do.
        (sandbox.root / "var/lib/asterisk/astdb.sqlite3").unlink(missing_ok=True)
        added: list[str] = []
        phones = Phones(config.sip.host, config.sip.port, Path(tmp) / "sipp")
        try:
            sandbox.start()
            for name in names:
                await SCENARIOS[name](config, sandbox, phones, args.out / f"{name}.ami", added)
                phones.close()
        except SandboxError as exc:
            print(f"sandbox: {exc}", file=sys.stderr)
            return 1
        finally:
            phones.close()
            for item in added:
                extension, queue = item.split("@")
                with contextlib.suppress(SandboxError):
                    sandbox.cli(f"queue remove member PJSIP/{extension} from {queue}", check=False)
            sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
