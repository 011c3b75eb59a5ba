"""The engine beside the real Asterisk: health, metrics, login, and the sandbox's own status command."""

from __future__ import annotations

import aiohttp
from click.testing import CliRunner
from pydantic import SecretStr

from callcenter.auth.services import AuthService
from callcenter.bus import Bus
from callcenter.cli import main
from callcenter.config import Config
from callcenter.db import Database
from callcenter.keys import AUTH, LIVE
from callcenter_devtools.sandbox import Sandbox
from tests.integration.conftest import running_engine, wait_for


async def test_healthz_reports_fastagi_database_and_ami_and_login_works(config: Config, sandbox: Sandbox) -> None:
    base = f"http://{config.web.host}:{config.web.port}"
    async with running_engine(config, Bus()) as app, aiohttp.ClientSession() as http:
        auth: AuthService = app[AUTH]
        assert await wait_for(lambda: app[LIVE].connection.connected, timeout=10)
        await auth.create_user("sup1", "correct horse", roles=["supervisor"], display_name="Sup One")
        async with http.get(f"{base}/healthz") as response:
            health = await response.json()
            assert response.status == 200, health
        assert health["checks"]["ami"]["ok"] is True, health
        assert health["checks"]["fastagi"]["ok"] is True
        assert health["checks"]["database"]["ok"] is True
        async with http.post(f"{base}/api/v1/login", json={"username": "sup1", "password": "correct horse"}) as resp:
            assert resp.status == 200
            token = (await resp.json())["token"]
            assert "cc_session" in resp.cookies
        async with http.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert (await resp.json())["roles"] == ["supervisor"]
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert 'callcenter_logins_total{result="success"} 1.0' in text
    assert "callcenter_ami_connected 1.0" in text


async def test_healthz_is_degraded_when_ami_refuses_the_login(config: Config, sandbox: Sandbox) -> None:
    wrong = config.model_copy(update={"ami": config.ami.model_copy(update={"password": SecretStr("not-the-secret")})})
    url = f"http://{config.web.host}:{config.web.port}/healthz"
    async with running_engine(wrong, Bus()) as app, aiohttp.ClientSession() as http:
        await wait_for(lambda: app[LIVE].connection.last_error is not None, timeout=10)
        async with http.get(url) as response:
            health = await response.json()
    assert response.status == 503
    assert health["checks"]["ami"]["ok"] is False
    assert "Authentication failed" in health["checks"]["ami"]["detail"], health


def test_asterisk_status_shows_version_uptime_and_ami(config: Config, sandbox: Sandbox) -> None:
    env = {
        "CALLCENTER_AMI_PORT": str(config.ami.port),
        "CALLCENTER_ASTERISK_SANDBOX_DIR": str(config.asterisk.sandbox_dir),
        # The generated AMI secret lives in the data directory: the CLI must read the same one.
        "CALLCENTER_PATHS_DATA_DIR": str(config.paths.data_dir),
    }
    result = CliRunner().invoke(main, ["asterisk", "status"], env=env)
    assert result.exit_code == 0, result.output
    assert "Asterisk 22." in result.output
    assert "uptime:    System uptime" in result.output
    assert "ami:       answers (login accepted)" in result.output
    version = sandbox.cli("core show version").stdout
    assert version.startswith("Asterisk 22.")


async def test_database_survives_a_second_engine_start(config: Config, sandbox: Sandbox) -> None:
    # Migrations at start are idempotent: starting the engine twice on one database keeps its users.
    async with running_engine(config, Bus()) as app:
        await app[AUTH].create_user("keeper", "kept across restarts", roles=["qa"])
    async with running_engine(config, Bus()):
        pass
    database = Database(config.database_url)
    await database.open()
    try:
        names = {user.username for user in await AuthService(database, config.auth).list_users()}
    finally:
        await database.close()
    assert "keeper" in names


def test_the_rendered_configuration_is_what_asterisk_runs(config: Config, sandbox: Sandbox) -> None:
    endpoints = sandbox.cli("pjsip show endpoints").stdout
    for phone in config.sip.phones:
        assert f"Endpoint:  {phone.extension}/" in endpoints
    assert "Endpoint:  pstn" in endpoints
    identify = sandbox.cli("pjsip show identifies").stdout
    assert config.sip.pstn_address in identify
    queues = sandbox.cli("queue show").stdout
    assert f"{config.queues.general} has" in queues
    assert f"{config.queues.expert} has" in queues
    globals_ = sandbox.cli("dialplan show globals").stdout
    assert f"CC_RECORDINGS={config.recordings_dir}" in globals_
    user = sandbox.cli(f"manager show user {config.ami.username}").stdout
    write = {part.strip() for part in user.split("write perm:")[1].split("\n")[0].split(",")}
    read = {part.strip() for part in user.split("read perm:")[1].split("\n")[0].split(",")}
    # system is written for MixMonitor (docs/decisions.md); command and config never, and system is not read.
    assert write == {"system", "call", "agent", "reporting", "originate"}
    assert "system" not in read
    assert "command" not in read
