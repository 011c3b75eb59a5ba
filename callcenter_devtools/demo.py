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
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from callcenter.app import build_app, serve
from callcenter.auth.services import AuthService, Principal
from callcenter.config import Config
from callcenter.db import Database, migrate
from callcenter.events import CallAnswered
from callcenter.keys import AUTH, BUS
from callcenter.runtime import run_async
from callcenter.secrets import phone_passwords
from callcenter.web.errors import ApiError
from callcenter_devtools.sandbox import Sandbox, SandboxError
from callcenter_devtools.sipp import CallerScript, Phones, SippError
from calls.keys import HANDOFF
from seats.keys import SEATS
from seats.services import QueueLogin

log = logging.getLogger("callcenter.demo")

# Desk phones answer on this address; callers come from sip.pstn_address.
PHONE_ADDRESS = "127.0.0.3"
PHONE_BASE_PORT = 5081
CALLER_BASE_PORT = 5070


# Customers seeded into an empty CRM for the demo (the callers below are among them, most of the time).
DEMO_CUSTOMERS = 2000
# One demo call in this many is handed to an expert by the agent who answers it.
HANDOFF_ONE_IN = 4
# The demo's clock cycles through opening hours: this many minutes open, then this many closed.
OPEN_MINUTES, CLOSED_MINUTES = 6, 2
# The time zone of the shipped main flow's opening hours (ivr_flows/flows/main.yaml).
DEMO_HOURS_ZONE = "Asia/Shanghai"
# What demo callers press in the main menu: mostly a service, sometimes a product code, a complaint, an agent.
_CHOICES = ("2", "3", "4", "5", "6", "7", "0", "0", "11", "6")


class DemoError(Exception):
    pass


class DemoClock:
    """The flows' clock in the demo: real time shifted so that the center is open for a few minutes, then closed
    for a couple, and again; the wallboard then shows both the day's traffic and after-hours voicemails."""

    def __init__(self, timezone: str) -> None:
        self._zone = ZoneInfo(timezone)
        self._started = time.monotonic()

    def _open(self) -> bool:
        minute = int((time.monotonic() - self._started) // 60)
        return minute % (OPEN_MINUTES + CLOSED_MINUTES) < OPEN_MINUTES

    def now(self) -> datetime:
        real = datetime.now(self._zone)
        hour = 10 if self._open() else 22
        # A weekday at that hour, in the flows' time zone (Wednesday 2026-11-25 has no holiday).
        return datetime(2026, 11, 25, hour, real.minute, real.second, real.microsecond, tzinfo=self._zone)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    password: str
    roles: tuple[str, ...]
    display_name: str
    extension: str | None = None
    teams: tuple[str, ...] = ()
    lead_of: tuple[str, ...] = ()


# The demo's teams: the supervisor leads both, so the wallboard's listen, whisper and barge work on every seat
# (a supervisor may spy only on agents of the teams they lead, see supervisor/spy.py).
AGENTS_TEAM, EXPERTS_TEAM = "agents", "experts"

DEMO_USERS = (
    DemoUser("admin", "admin-demo", ("admin",), "Ada Admin"),
    DemoUser(
        "supervisor",
        "supervisor-demo",
        ("supervisor",),
        "Sam Supervisor",
        "3001",
        lead_of=(AGENTS_TEAM, EXPERTS_TEAM),
    ),
    DemoUser("qa", "qa-demo-pw", ("qa",), "Quinn QA"),
    DemoUser("agent1", "agent1-demo", ("agent",), "Alice Agent", "1001", teams=(AGENTS_TEAM,)),
    DemoUser("agent2", "agent2-demo", ("agent",), "Bob Agent", "1002", teams=(AGENTS_TEAM,)),
    DemoUser("agent3", "agent3-demo", ("agent",), "Carol Agent", "1003", teams=(AGENTS_TEAM,)),
    DemoUser("expert1", "expert1-demo", ("expert",), "Erin Expert", "2001", teams=(EXPERTS_TEAM,)),
    DemoUser("expert2", "expert2-demo", ("expert",), "Evan Expert", "2002", teams=(EXPERTS_TEAM,)),
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
    """Gives every desk phone without a contact a static one, where a SIPp phone of the demo answers, and records
    VIP callers from the moment they are queued (a recording rule) unless the configuration has rules of its own."""
    phones = []
    for index, phone in enumerate(config.sip.phones):
        if phone.contact:
            phones.append(phone)
            continue
        contact = f"sip:{phone.extension}@{PHONE_ADDRESS}:{PHONE_BASE_PORT + index}"
        phones.append(phone.model_copy(update={"contact": contact}))
    recordings = config.recordings
    if not recordings.record_tiers and not recordings.record_queues:
        recordings = recordings.model_copy(update={"record_tiers": ["vip"]})
    return config.model_copy(update={"sip": config.sip.model_copy(update={"phones": phones}), "recordings": recordings})


async def seed_demo_users(database: Database, config: Config) -> None:
    """Adds the demo's users with their teams; users an earlier demo made are left as they are, except that one
    made before the demo had teams (no team at all) is put into its teams (a direct row, the admin API has no
    team editing), so that the supervisor of an old demo database can listen in too."""
    from sqlalchemy import select

    from callcenter.auth.models import Team, TeamMember, User

    auth = AuthService(database, config.auth)
    existing = {user.username: user for user in await auth.list_users()}
    for demo_user in DEMO_USERS:
        found = existing.get(demo_user.username)
        if found is None:
            await auth.create_user(
                demo_user.username,
                demo_user.password,
                roles=list(demo_user.roles),
                display_name=demo_user.display_name,
                extension=demo_user.extension,
                teams=demo_user.teams,
                lead_of=demo_user.lead_of,
            )
            continue
        wanted = set(demo_user.teams) | set(demo_user.lead_of)
        if found.teams or not wanted:
            continue
        async with database.session() as session:
            for name in sorted(wanted):
                team = await session.scalar(select(Team).where(Team.name == name))
                if team is None:
                    team = Team(name=name)
                    session.add(team)
                    await session.flush()
                user_id = await session.scalar(select(User.id).where(User.username == demo_user.username))
                session.add(TeamMember(team_id=team.id, user_id=user_id, is_lead=name in demo_user.lead_of))


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
        await self._seed_crm()
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
            app = build_app(self.config, clock=DemoClock(DEMO_HOURS_ZONE))
            engine = asyncio.create_task(serve(self.config, stop=stop, app=app))
            phones = Phones(self.config.sip.host, self.config.sip.port, Path(self.config.data_dir) / "demo-sipp")
            self._start_desk_phones(phones)
            await asyncio.sleep(1.0)
            if engine.done():
                return  # the engine could not start (a port taken, say): the finally block reports why
            seats = await self._log_in_seats(app)
            app[BUS].subscribe(CallAnswered, self._handoffs(app, seats))
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
            await seed_demo_users(database, self.config)
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

    async def _seed_crm(self) -> None:
        from callcenter_devtools.seed import SeedOptions, seed
        from crm_bridge.exceptions import SeedRefused
        from crm_bridge.schemas import CustomerIn, PhoneIn
        from crm_bridge.services import CrmService

        database = Database(self.config.database_url)
        await database.open()
        try:
            try:
                report = await seed(database, SeedOptions(customers=DEMO_CUSTOMERS))
            except SeedRefused:
                return  # seeded by an earlier demo run
            log.info("demo CRM seeded: %s", report)
            crm = CrmService(database)
            # The demo's callers have files too, so that their screen-pops show a customer.
            for number, name in _CALLERS[:-1]:
                tier = "vip" if number.startswith("+86139") else "gold"
                await crm.customers.create(
                    CustomerIn(name=name, tier=tier, phones=[PhoneIn(number=number)]), actor="demo"
                )
        finally:
            await database.close()

    async def _log_in_seats(self, app: web.Application) -> dict[str, Principal]:
        """Every agent and expert of the demo logs in to their seat through the seats service (as the agent
        page would), so the queues are staffed the way a real shift is."""
        queues = self.config.queues
        seats: dict[str, Principal] = {}
        for user in DEMO_USERS:
            queue = {"agent": queues.general, "expert": queues.expert}.get(user.roles[0])
            if queue is None or user.extension is None:
                continue
            try:
                _token, who = await app[AUTH].login(user.username, user.password)
                await app[SEATS].login(who, [QueueLogin(queue)])
            except ApiError as exc:
                log.warning("demo seat of %s not logged in: %s", user.username, exc.message)
                continue
            seats[f"PJSIP/{user.extension}"] = who
        return seats

    def _handoffs(self, app: web.Application, seats: dict[str, Principal]) -> Any:
        """Now and then an agent hands the answered call to an expert, with notes, as the agent page would."""
        rng = random.Random()  # noqa: S311 - demo behaviour, not security
        general = self.config.queues.general

        async def maybe_hand_over(event: CallAnswered) -> None:
            who = seats.get(event.agent)
            if event.queue != general or who is None or rng.randrange(HANDOFF_ONE_IN):
                return
            await asyncio.sleep(rng.uniform(4.0, 8.0))
            notes = rng.choice(
                (
                    "Router reboots every hour; firmware 2.1 already installed.",
                    "Customer asks about bulk pricing for 40 units.",
                    "Washing machine error E21 after the repair visit.",
                )
            )
            with contextlib.suppress(ApiError):
                await app[HANDOFF].transfer_to_expert(who, event.linkedid, notes, remote=None)

        return maybe_hand_over

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
        lines.append(f"  phones (SIP accounts on sip:{sip.host}:{sip.port}; also `callcenter asterisk phones`):")
        passwords = phone_passwords(self.config)
        for phone in sip.phones:
            lines.append(f"    {phone.extension:<11} {passwords[phone.extension]:<26} {phone.kind}")
        lines.append("  Ctrl-C stops everything the demo started.")
        print("\n".join(lines), flush=True)

    async def _traffic(self, phones: Phones, stop: asyncio.Event) -> None:
        rng = random.Random()  # noqa: S311 - demo traffic, not security
        count = 0
        while not stop.is_set():
            number, name = rng.choice(_CALLERS)
            choice = rng.choice(_CHOICES)
            if choice == "11":
                choice += rng.choice(("1001#", "1002#", "2001#", "9999#"))
            script = CallerScript(
                caller_number=number,
                caller_name=name,
                digits=choice,
                wait_before_digits_ms=rng.randint(3000, 6000),
                talk_ms=rng.randint(12000, 30000),
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
