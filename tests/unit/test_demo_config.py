"""The demo's configuration: phones the demo's SIPp phones answer for, and its recording rule."""

from __future__ import annotations

from pathlib import Path

from callcenter.auth.directory import UserDirectory
from callcenter.auth.services import AuthService
from callcenter.config import Config, load_config
from callcenter.db import Database, migrate
from callcenter_devtools.demo import DEMO_USERS, PHONE_ADDRESS, demo_config, seed_demo_users


def test_the_demo_gives_phones_contacts_and_records_vip_callers_by_rule() -> None:
    config = demo_config(load_config(environ={}))
    assert all(phone.contact and PHONE_ADDRESS in phone.contact for phone in config.sip.phones)
    assert config.recordings.record_tiers == ["vip"]


def test_the_demo_keeps_recording_rules_of_the_configuration() -> None:
    config = demo_config(load_config(environ={"CALLCENTER_RECORDINGS_RECORD_QUEUES": '["expert"]'}))
    assert config.recordings.record_tiers == []
    assert config.recordings.record_queues == ["expert"]


async def test_the_demo_supervisor_leads_the_teams_of_every_agent_and_expert(tmp_path: Path) -> None:
    """Spy is allowed only on agents of teams the supervisor leads: without this every wallboard button is 403."""
    config = load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path)})
    await migrate(config.database_url)
    database = Database(config.database_url)
    await database.open()
    try:
        await seed_demo_users(database, config)
        await _assert_supervisor_leads_everyone(database, config)
        # Idempotent: a second demo start changes nothing.
        await seed_demo_users(database, config)
        await _assert_supervisor_leads_everyone(database, config)
    finally:
        await database.close()


async def test_an_old_demo_database_without_teams_gets_them(tmp_path: Path) -> None:
    config = load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path)})
    await migrate(config.database_url)
    database = Database(config.database_url)
    await database.open()
    try:
        auth = AuthService(database, config.auth)
        for user in DEMO_USERS:  # as the demo made them before it had teams
            await auth.create_user(user.username, user.password, roles=list(user.roles), extension=user.extension)
        await seed_demo_users(database, config)
        await _assert_supervisor_leads_everyone(database, config)
    finally:
        await database.close()


async def _assert_supervisor_leads_everyone(database: Database, config: Config) -> None:
    users = {user.username: user for user in await AuthService(database, config.auth).list_users()}
    supervisor = users["supervisor"]
    assert set(supervisor.lead_of) == {"agents", "experts"}
    seated = [user for user in DEMO_USERS if user.roles[0] in ("agent", "expert")]
    assert len(seated) == 5
    for user in seated:
        assert set(users[user.username].teams) & set(supervisor.lead_of), user.username
        assert users[user.username].lead_of == ()
    directory = UserDirectory(database)
    led = set(await directory.teams_led_by(supervisor.id))
    assert led == {"agents", "experts"}
