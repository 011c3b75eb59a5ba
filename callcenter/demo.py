"""`callcenter demo`: the sandboxed Asterisk, the engine, SIPp desk phones and a steady stream of demo calls.

Everything it starts it stops again on Ctrl-C (or SIGTERM): the SIPp phones by their handles, the engine by
its stop event, and Asterisk by the sandbox's pid file, but only if the demo was the one that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from dataclasses import dataclass
from pathlib import Path

from callcenter.app import build_app, serve
from callcenter.auth.services import AuthService
from callcenter.config import Config
from callcenter.db import Database, migrate
from callcenter.runtime import run_async
from callcenter.sandbox import Sandbox, SandboxError
from callcenter.sipp import CallerScript, Phones, SippError

log = logging.getLogger("callcenter.demo")

# Desk phones answer on this address; callers come from sip.pstn_address.
PHONE_ADDRESS = "127.0.0.3"
PHONE_BASE_PORT = 5081
CALLER_BASE_PORT = 5070


class DemoError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    password: str
    roles: tuple[str, ...]
    display_name: str
    extension: str | None = None


DEMO_USERS = (
    DemoUser("admin", "admin-demo", ("admin",), "Ada Admin"),
    DemoUser("supervisor", "supervisor-demo", ("supervisor",), "Sam Supervisor", "3001"),
    DemoUser("qa", "qa-demo-pw", ("qa",), "Quinn QA"),
    DemoUser("agent1", "agent1-demo", ("agent",), "Alice Agent", "1001"),
    DemoUser("agent2", "agent2-demo", ("agent",), "Bob Agent", "1002"),
    DemoUser("agent3", "agent3-demo", ("agent",), "Carol Agent", "1003"),
    DemoUser("expert1", "expert1-demo", ("expert",), "Erin Expert", "2001"),
    DemoUser("expert2", "expert2-demo", ("expert",), "Evan Expert", "2002"),
)

_CALLERS = (
    ("+8613800138000", "Wang Fang"),
    ("+8613911112222", "Li Wei"),
    ("02055501234", "Guangzhou Hardware Co"),
    ("5550101", "Chen Jie"),
    ("5550102", "Zhang Min"),
    ("5550199", ""),
)


def demo_config(config: Config) -> Config:
    """Gives every desk phone without a contact a static one, where a SIPp phone of the demo answers."""
    phones = []
    for index, phone in enumerate(config.sip.phones):
        if phone.contact:
            phones.append(phone)
            continue
        contact = f"sip:{phone.extension}@{PHONE_ADDRESS}:{PHONE_BASE_PORT + index}"
        phones.append(phone.model_copy(update={"contact": contact}))
    return config.model_copy(update={"sip": config.sip.model_copy(update={"phones": phones})})


class Demo:
    def __init__(self, config: Config, calls_every: float = 8.0) -> None:
        self.config = demo_config(config)
        self.calls_every = calls_every
        self.sandbox = Sandbox(self.config)

    def run(self) -> None:
        try:
            self.sandbox.install()
        except SandboxError as exc:
            raise DemoError(str(exc)) from exc
        run_async(self._main())

    async def _main(self) -> None:
        await migrate(self.config.database_url)
        await self._seed_users()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started_asterisk = self.sandbox.running_pid() is None
        if not started_asterisk:
            raise DemoError(
                f"the sandbox's Asterisk is already running (pid {self.sandbox.running_pid()}) with another "
                "configuration; stop it with `callcenter asterisk stop` and run the demo again"
            )
        try:
            await asyncio.to_thread(self.sandbox.start)
        except SandboxError as exc:
            raise DemoError(str(exc)) from exc
        phones: Phones | None = None
        engine: asyncio.Task[None] | None = None
        try:
            app = build_app(self.config)
            engine = asyncio.create_task(serve(self.config, stop=stop, app=app))
            phones = Phones(self.config.sip.host, self.config.sip.port, Path(self.config.data_dir) / "demo-sipp")
            self._start_desk_phones(phones)
            await asyncio.to_thread(self._staff_queues)
            await asyncio.sleep(0.5)
            if engine.done():
                return  # the engine could not start (a port taken, say): the finally block reports why
            self._print_banner()
            traffic = asyncio.create_task(self._traffic(phones, stop)) if self.calls_every > 0 else None
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({engine, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if engine.done() and not stop.is_set():
                log.error("the engine stopped unexpectedly; stopping the demo")
            if traffic is not None:
                traffic.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await traffic
        finally:
            print("\nstopping the demo ...", flush=True)
            stop.set()
            if phones is not None:
                phones.close()
            engine_error: BaseException | None = None
            if engine is not None:
                try:
                    await engine
                except Exception as exc:
                    engine_error = exc
            if started_asterisk:
                await asyncio.to_thread(self.sandbox.stop)
            print("demo stopped: phones, engine and Asterisk are down", flush=True)
            if engine_error is not None:
                raise DemoError(f"the engine failed: {engine_error}") from engine_error

    async def _seed_users(self) -> None:
        database = Database(self.config.database_url)
        await database.open()
        try:
            auth = AuthService(database, self.config.auth)
            existing = {user.username for user in await auth.list_users()}
            for user in DEMO_USERS:
                if user.username in existing:
                    continue
                await auth.create_user(
                    user.username,
                    user.password,
                    roles=list(user.roles),
                    display_name=user.display_name,
                    extension=user.extension,
                )
        finally:
            await database.close()

    def _start_desk_phones(self, phones: Phones) -> None:
        for phone in self.config.sip.phones:
            host_port = phone.contact.rsplit("@", 1)[1]
            host, port = host_port.split(":")
            phones.desk_phone(
                f"phone-{phone.extension}",
                local_ip=host,
                local_port=int(port),
                calls=100_000,
                ring_ms=1500,
                speech=True,
            )

    def _staff_queues(self) -> None:
        # Until seats are managed through the API, the demo puts its phones into the queues directly.
        queues = self.config.queues
        for phone in self.config.sip.phones:
            queue = {"agent": queues.general, "expert": queues.expert}.get(phone.kind)
            if queue is None:
                continue
            self.sandbox.cli(f"queue add member PJSIP/{phone.extension} to {queue}", check=False)

    def _print_banner(self) -> None:
        web = f"http://{self.config.web.host}:{self.config.web.port}"
        sip, ami = self.config.sip, self.config.ami
        lines = [
            "",
            "callcenter demo is running",
            f"  engine:      {web}  (health {web}/healthz, metrics {web}/metrics, API {web}/api/v1/openapi.json)",
            f"  hotline:     DIDs {', '.join(sip.dids)} on sip:{sip.host}:{sip.port} (callers from {sip.pstn_address})",
            f"  asterisk:    `callcenter asterisk cli` for its console; AMI on {ami.host}:{ami.port}",
            "  logins:",
        ]
        for user in DEMO_USERS:
            lines.append(f"    {user.username:<11} {user.password:<16} {', '.join(user.roles)}")
        lines.append("  Ctrl-C stops everything the demo started.")
        print("\n".join(lines), flush=True)

    async def _traffic(self, phones: Phones, stop: asyncio.Event) -> None:
        rng = random.Random()  # noqa: S311 - demo traffic, not security
        count = 0
        while not stop.is_set():
            number, name = rng.choice(_CALLERS)
            script = CallerScript(
                caller_number=number,
                caller_name=name,
                digits=rng.choice("1234567890"),
                talk_ms=rng.randint(8000, 25000),
                speech=True,
            )
            # Ports are reused after 40 calls; a demo call ends well before that.
            port = CALLER_BASE_PORT + (count % 40)
            count += 1
            try:
                process = phones.call(
                    f"caller-{count}",
                    rng.choice(self.config.sip.dids),
                    script,
                    local_ip=self.config.sip.pstn_address,
                    local_port=port,
                    timeout_s=120,
                )
            except SippError as exc:
                log.warning("demo call not placed: %s", exc)
            else:
                self._reap(phones, keep=process)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.calls_every)

    @staticmethod
    def _reap(phones: Phones, keep: object) -> None:
        for process in list(phones.processes):
            if process is not keep and process.name.startswith("caller-") and not process.running():
                process.stop()
                phones.processes.remove(process)
