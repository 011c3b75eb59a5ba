"""The pages in a real browser: Debian's Chromium, headless, driven by Playwright for Python (async API: the
engine runs in the test's event loop).

Two kinds of engine: ``quiet_engine`` has no Asterisk (pages, login, rendering of hostile frames, admin), and
the tests that need calls use the real sandbox and SIPp phones as tests/integration does, through the same
session fixtures (tests/real_parts.py): one sandbox, one lock, for the whole run.

Chromium missing: skipped, except in CI (CI=true), where that fails the run. Screenshots of each page go to
docs/screenshots/ (shown in the README).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from callcenter.app import build_app
from callcenter.auth.permissions import Role
from callcenter.bus import Bus
from callcenter.config import Config, load_config
from callcenter.db import migrate
from tests.conftest import in_ci
from tests.integration.conftest import add_user as add_test_user

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1366, "height": 768}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "browser-test-password-1"


def _missing(reason: str) -> None:
    if in_ci():
        pytest.fail(f"the browser tests need {reason} in CI")
    pytest.skip(f"no browser: {reason}")


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _missing("Playwright for Python (pip install -e '.[test]')")
    return CHROMIUM


@dataclass
class Watched:
    """A page and what went wrong on it: script errors, console errors, CSP refusals, dialogs (alert())."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [*self.errors, *(f"dialog: {text}" for text in self.dialogs)]


# Console errors that are no fault of a page: the login page asks /api/v1/me before anyone logged in, and once a
# test's engine has stopped the open pages try to reconnect to it.
_EXPECTED_CONSOLE = ("status of 401", "net::ERR_CONNECTION_REFUSED", "WebSocket connection to")


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        # The QA test plays a recording without a click first.
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--autoplay-policy=no-user-gesture-required"]
        )
        try:
            yield launched
        finally:
            await launched.close()


OpenPage = Callable[[], Awaitable[Watched]]


@pytest.fixture
async def open_page(browser: Any) -> AsyncIterator[OpenPage]:
    """Opens a page in a fresh browser context (its own cookies: one user each) at 1366x768. At the end, any
    script error, CSP refusal or dialog on any of them fails the test."""
    opened: list[Watched] = []

    async def open_one() -> Watched:
        context = await browser.new_context(viewport=VIEWPORT)
        page = await context.new_page()
        watched = Watched(page)

        def console(message: Any) -> None:
            if message.type == "error" and not any(text in message.text for text in _EXPECTED_CONSOLE):
                watched.errors.append(f"console: {message.text}")

        async def dialog(found: Any) -> None:
            watched.dialogs.append(found.message)
            await found.dismiss()

        page.on("console", console)
        page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
        page.on("dialog", dialog)
        opened.append(watched)
        return watched

    yield open_one
    problems = [problem for watched in opened for problem in watched.problems()]
    for watched in opened:
        with contextlib.suppress(Exception):
            await watched.page.context.close()
    assert problems == [], problems


async def log_in(watched: Watched, base: str, path: str, username: str, password: str = PASSWORD) -> None:
    """Goes to ``path``, is sent to the login page, logs in there and lands on ``path``."""
    page = watched.page
    await page.goto(base + path)
    await page.wait_for_url(f"**/login?next={path.replace('/', '%2F')}")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-button")
    await page.wait_for_url(f"**{path}")


async def screenshot(watched: Watched, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    await watched.page.screenshot(path=str(target))
    return target


async def add_user(app: web.Application, role: Role, *, extension: str | None = None, **more: Any) -> str:
    username = f"{role}-{extension or 'x'}-{os.urandom(3).hex()}"
    await add_test_user(app, username, PASSWORD, roles=[role], extension=extension, **more)
    return username


# -- an engine without Asterisk -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Engine:
    app: web.Application
    base: str
    config: Config


@pytest.fixture
async def quiet_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """The whole engine on free ports with nothing on the AMI side: pages, API, websocket, database."""
    environ = {
        "CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "data"),
        "CALLCENTER_PATHS_RECORDINGS_DIR": str(tmp_path / "data" / "recordings"),
        "CALLCENTER_CALLS_CEL_LOG": str(tmp_path / "cel.jsonl"),
        "CALLCENTER_AMI_PORT": str(_free_port()),
        "CALLCENTER_AGI_PORT": str(_free_port()),
        "CALLCENTER_WEB_PORT": str(_free_port()),
        # Board frames only when a test sends one (nothing happens on an engine without Asterisk anyway).
        "CALLCENTER_SUPERVISOR_BOARD_REFRESH": "300",
        "CALLCENTER_FLOWS_PREPARE_PROMPTS": "false",
    }
    settings = load_config(environ=environ)
    await migrate(settings.database_url)
    app = build_app(settings, bus=Bus())
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.web.port)
    await site.start()
    try:
        yield Engine(app, f"http://127.0.0.1:{settings.web.port}", settings)
    finally:
        await runner.cleanup()


# The real sandbox, its config and SIPp phones are the session's shared fixtures (tests/real_parts.py).
