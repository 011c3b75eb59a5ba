"""The real parts as fixtures: the sandboxed Asterisk 22 and SIPp phones, one sandbox for the whole session.

Registered by tests/conftest.py (so tests/browser and tests/integration share them: two session fixtures would
each take the sandbox's lock and the second would wait for the first forever). One Asterisk for the session, on
ports of its own so that a running demo is not disturbed (but the sandbox has one /etc/asterisk: while the demo's
Asterisk runs, these tests refuse to start and say so). Two test runs on one machine take turns through a lock.
In CI (CI=true) a sandbox that cannot start fails the run; elsewhere the tests are skipped with the reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter.config import Config, Phone, load_config
from callcenter_devtools.sandbox import Sandbox, SandboxError
from callcenter_devtools.sipp import Phones
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS


def in_ci() -> bool:
    # tests.conftest has the same test; importing it from here would import the conftest twice.
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"the Asterisk sandbox is required in CI: {reason}")
    pytest.skip(f"no Asterisk sandbox: {reason}")


@pytest.fixture(scope="session")
def integration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="session")
def config(integration_dir: Path) -> Config:
    base = load_config(environ={})
    phones = [
        Phone(extension=ext, kind=kind, password=f"phone-pw-{ext}", contact=f"sip:{ext}@{PHONE_IP}:{AGENT_PORTS[ext]}")
        for ext, kind in (("1001", "agent"), ("1002", "agent"), ("2001", "expert"), ("3001", "supervisor"))
    ]
    data = integration_dir / "data"
    return base.model_copy(
        update={
            "sip": base.sip.model_copy(update={"port": TEST_PORTS["sip"], "phones": phones, "pstn_address": PSTN}),
            "ami": base.ami.model_copy(update={"port": TEST_PORTS["ami"]}),
            "agi": base.agi.model_copy(update={"port": TEST_PORTS["agi"], "read_timeout": 20.0}),
            "web": base.web.model_copy(update={"port": TEST_PORTS["web"]}),
            "paths": base.paths.model_copy(update={"data_dir": data, "recordings_dir": data / "recordings"}),
        }
    )


@pytest.fixture(scope="session")
def sandbox(config: Config) -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        _unavailable("the tests must run as root (chroot)")
    if shutil.which("sipp") is None:
        _unavailable("sipp is not installed (apt-get install sip-tester)")
    box = Sandbox(config, progress=lambda line: print(line, flush=True))
    try:
        box.install()
    except SandboxError as exc:
        _unavailable(str(exc))
    # One Asterisk per sandbox: two test runs on one machine take turns instead of fighting over it.
    lock = (box.root.parent / f"{box.root.name}.tests.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another test run is using the Asterisk sandbox; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield from _started(box)
    finally:
        lock.close()


def _started(box: Sandbox) -> Iterator[Sandbox]:
    running = box.running_pid()
    if running is not None:
        pytest.fail(
            f"the sandbox's Asterisk is already running (pid {running}, perhaps `make demo`); "
            "stop it with `callcenter asterisk stop` before running the integration tests"
        )
    # Queue members persist in Asterisk's astdb (persistentmembers=yes); a demo run leaves its phones there.
    # The tests start from an empty astdb so that only the members a test adds take its calls.
    (box.root / "var/lib/asterisk/astdb.sqlite3").unlink(missing_ok=True)
    try:
        box.start()
    except SandboxError as exc:
        box.stop()
        _unavailable(str(exc))
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def phones(config: Config, sandbox: Sandbox, tmp_path: Path) -> Iterator[Phones]:
    with Phones(config.sip.host, config.sip.port, tmp_path / "sipp") as started:
        yield started


@pytest.fixture
def queue_member(sandbox: Sandbox, config: Config) -> Iterator[list[str]]:
    """Adds phones to queues for one test and always takes them out again."""
    added: list[str] = []
    yield added
    for item in added:
        extension, queue = item.split("@")
        sandbox.cli(f"queue remove member PJSIP/{extension} from {queue}", check=False)
