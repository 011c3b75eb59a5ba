"""Logins, sessions, throttling, permissions and the audit log, against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import click
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from blockbuster import blockbuster_ctx
from click.testing import CliRunner
from sqlalchemy import Connection, inspect, select, text, update

from callcenter.auth.exceptions import ExtensionTaken, InvalidCredentials, InvalidUser, LoginThrottled, UserExists
from callcenter.auth.http import auth_routes
from callcenter.auth.middleware import auth_middleware, check_routes_declared, principal
from callcenter.auth.models import AuthToken, User
from callcenter.auth.permissions import Permission, Role, public, requires
from callcenter.auth.services import AuthService
from callcenter.cli.common import pass_context_options
from callcenter.cli.db_cmd import db as db_group
from callcenter.cli.users_cmd import users as users_group
from callcenter.config import AuthConfig
from callcenter.db import (
    Base,
    ConstraintViolation,
    Database,
    DatabaseUnavailable,
    alembic_config,
    include_name,
    migrate,
)
from callcenter.keys import AUTH
from callcenter.metrics import Metrics
from callcenter.web.errors import error_middleware

PASSWORD = "correct horse battery"
TABLES = {"users", "user_roles", "teams", "team_members", "auth_tokens", "login_throttle", "audit_log"}

extra_routes = web.RouteTableDef()


@extra_routes.get("/api/v1/test/spy")
@requires(Permission.SPY)
async def spy_handler(request: web.Request) -> web.Response:
    return web.json_response({"listening_as": principal(request).username})


@extra_routes.get("/api/v1/test/open")
@public
async def open_handler(request: web.Request) -> web.Response:
    return web.json_response({"open": True})


def make_app(service: AuthService, *, undeclared: bool = False) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app.add_routes(auth_routes)
    app.add_routes(extra_routes)
    if undeclared:

        async def forgotten(request: web.Request) -> web.Response:
            return web.json_response({"leaked": True})

        app.router.add_get("/api/v1/test/forgotten", forgotten)
    return app


@pytest.fixture
async def client(service: AuthService) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app(service))) as test_client:
        yield test_client


async def audit_actions(service: AuthService, **filters: Any) -> list[str]:
    items, _ = await service.list_audit(limit=500, **filters)
    return [item.action for item in reversed(items)]


async def login_status(client: TestClient[web.Request, web.Application], username: str, password: str) -> Any:
    response = await client.post("/api/v1/login", json={"username": username, "password": password})
    return response


# migrations


async def test_migrations_create_every_table_matching_the_models(database: Database) -> None:
    def check(connection: Connection) -> tuple[set[str], list[Any]]:
        names = set(inspect(connection).get_table_names())
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name})
        return names, compare_metadata(context, Base.metadata)

    async with database.engine.connect() as connection:
        names, differences = await connection.run_sync(check)
    assert TABLES | {"alembic_version"} <= names
    assert differences == []


async def test_migrating_twice_changes_nothing(database: Database) -> None:
    await database.migrate()
    async with database.session() as session:
        versions = set(await session.scalars(text("SELECT version_num FROM alembic_version")))
    # Each feature has its own migration branch off 0001; the database sits at every head, once each.
    assert versions == set(ScriptDirectory.from_config(alembic_config()).get_heads())


# login and sessions


async def test_login_issues_a_token_that_authenticates(service: AuthService) -> None:
    await service.create_user("Alice", PASSWORD, roles=[Role.SUPERVISOR], teams=["north"], extension="3001")
    token, who = await service.login("alice", PASSWORD, remote="127.0.0.1")
    assert who.username == "alice"
    assert who.roles == {Role.SUPERVISOR}
    assert Permission.SPY in who.permissions
    assert who.teams == ("north",)

    again = await service.authenticate(token)
    assert again is not None
    assert again.user_id == who.user_id
    assert again.extension == "3001"
    assert await service.authenticate(token + "x") is None
    assert await audit_actions(service) == ["user_created", "login"]


async def test_only_a_hash_of_the_token_is_stored(service: AuthService, database: Database) -> None:
    await service.create_user("bob", PASSWORD, roles=["agent"])
    token, _ = await service.login("bob", PASSWORD)
    async with database.session() as session:
        stored = list(await session.scalars(select(AuthToken.token_sha256)))
    assert len(stored) == 1
    assert token not in stored[0]
    assert len(stored[0]) == 64


async def test_usernames_are_compared_case_insensitively(service: AuthService) -> None:
    await service.create_user("Carol", PASSWORD)
    _, who = await service.login("CAROL", PASSWORD)
    assert who.username == "carol"
    with pytest.raises(UserExists):
        await service.create_user("cArOl", PASSWORD)


async def test_wrong_password_is_refused_and_audited_as_login_failed(service: AuthService) -> None:
    metrics = Metrics()
    service._metrics = metrics
    await service.create_user("dave", PASSWORD)
    with pytest.raises(InvalidCredentials):
        await service.login("dave", "not the password", remote="10.0.0.7")
    items, total = await service.list_audit(action="login_failed")
    assert total == 1
    assert items[0].target == "dave"
    assert items[0].remote_addr == "10.0.0.7"
    assert items[0].details["reason"] == "wrong_password"
    assert metrics.registry.get_sample_value("callcenter_logins_total", {"result": "failure"}) == 1


async def test_token_expires_after_its_lifetime(service: AuthService, clock: Any) -> None:
    await service.create_user("erin", PASSWORD)
    token, _ = await service.login("erin", PASSWORD)
    clock.advance(3599)
    assert await service.authenticate(token) is not None
    clock.advance(2)
    assert await service.authenticate(token) is None


async def test_disabled_user_cannot_log_in(service: AuthService) -> None:
    await service.create_user("frank", PASSWORD, is_active=False)
    with pytest.raises(InvalidCredentials):
        await service.login("frank", PASSWORD)


async def test_logout_revokes_the_token(service: AuthService) -> None:
    await service.create_user("gina", PASSWORD)
    token, _ = await service.login("gina", PASSWORD)
    assert await service.logout(token, remote="127.0.0.1") is True
    assert await service.authenticate(token) is None
    assert await service.logout(token) is False
    assert await audit_actions(service, actor="gina") == ["login", "logout"]


# throttling


async def test_attempts_after_free_failures_wait_a_doubling_delay(service: AuthService, clock: Any) -> None:
    await service.create_user("hank", PASSWORD)
    for _ in range(2):  # free_failures
        with pytest.raises(InvalidCredentials):
            await service.login("hank", "wrong")
    # The third attempt, even with the right password, must wait 1 s.
    with pytest.raises(LoginThrottled) as refused:
        await service.login("hank", PASSWORD)
    assert refused.value.retry_after == 1
    assert refused.value.headers["Retry-After"] == "1"
    clock.advance(1)
    with pytest.raises(InvalidCredentials):
        await service.login("hank", "wrong")
    with pytest.raises(LoginThrottled) as refused:
        await service.login("hank", PASSWORD)
    assert refused.value.retry_after == 2
    clock.advance(2)
    _, who = await service.login("hank", PASSWORD)
    assert who.username == "hank"
    # Success clears the streak.
    with pytest.raises(InvalidCredentials):
        await service.login("hank", "wrong")


async def test_the_delay_is_capped_at_max_delay_seconds(service: AuthService, clock: Any) -> None:
    service._config = AuthConfig(free_failures=1, lockout_after=50, max_delay_seconds=3.0)
    for _ in range(6):
        with pytest.raises(InvalidCredentials):
            await service.login("ivy", "wrong")
        clock.advance(3)
    clock.advance(-3)
    with pytest.raises(LoginThrottled) as refused:
        await service.login("ivy", "wrong")
    assert refused.value.retry_after == 3


async def test_username_is_locked_after_lockout_after_failures(service: AuthService, clock: Any) -> None:
    await service.create_user("jack", PASSWORD)
    for _ in range(5):  # lockout_after, each one waiting out its delay
        with pytest.raises(InvalidCredentials):
            await service.login("jack", "wrong")
        clock.advance(4)
    with pytest.raises(LoginThrottled) as refused:
        await service.login("jack", PASSWORD)
    assert 590 <= refused.value.retry_after <= 600
    actions = await audit_actions(service)
    assert actions.count("login_failed") == 6  # five wrong passwords and one refusal
    assert actions.count("login_locked") == 1
    clock.advance(600)
    _, who = await service.login("jack", PASSWORD)
    assert who.username == "jack"


async def test_unknown_usernames_are_throttled_like_known_ones(service: AuthService) -> None:
    await service.create_user("kate", PASSWORD)
    outcomes: dict[str, list[str]] = {}
    for name in ("kate", "nobody-here"):
        for _ in range(3):
            try:
                await service.login(name, "wrong")
            except (InvalidCredentials, LoginThrottled) as exc:
                outcomes.setdefault(name, []).append(f"{exc.status} {exc.message}")
    assert outcomes["kate"] == outcomes["nobody-here"]
    assert outcomes["kate"][-1].startswith("429")


async def test_concurrent_guesses_cannot_slip_past_the_delay(service: AuthService) -> None:
    await service.create_user("liam", PASSWORD)
    attempts = [service.login("liam", "wrong") for _ in range(8)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(isinstance(result, InvalidCredentials) for result in results) == 2  # free_failures
    assert sum(isinstance(result, LoginThrottled) for result in results) == 6


# hostile input

HOSTILE_OK = [
    "o'brien\";--",
    "robert');drop_table_users;--",
    "<script>alert(1)</script>",
    "%s%n{0}${x}",
    "ünïcødé-用户",
]
HOSTILE_BAD = ["eve\r\nX-Injected: 1", "tab\there", " ", "a" * 1024, "nul\x00byte", "lone\ud800surrogate", ""]


@pytest.mark.parametrize("name", HOSTILE_OK)
async def test_hostile_but_valid_usernames_are_stored_and_matched_exactly(service: AuthService, name: str) -> None:
    await service.create_user("plain", PASSWORD)
    created = await service.create_user(name, PASSWORD, display_name=name)
    _, who = await service.login(name.upper(), PASSWORD)
    assert who.user_id == created.id
    assert who.display_name == name
    listed = {user.username for user in await service.list_users()}
    assert listed == {"plain", created.username}
    # A near miss must not match (no LIKE, no pattern semantics).
    with pytest.raises(InvalidCredentials):
        await service.login(name[:-1] + "%", PASSWORD)


@pytest.mark.parametrize("name", HOSTILE_BAD)
async def test_unusable_usernames_are_refused_at_creation_and_never_crash_login(
    service: AuthService, name: str
) -> None:
    with pytest.raises(InvalidUser):
        await service.create_user(name, PASSWORD)
    with pytest.raises(InvalidCredentials):
        await service.login(name, PASSWORD)
    items, _ = await service.list_audit(action="login_failed")
    assert len(items) == 1
    assert items[0].target is None or len(items[0].target) <= 255
    assert await service.list_users() == []


# over HTTP


async def test_login_over_http_sets_an_httponly_strict_cookie(service: AuthService, client: Any) -> None:
    await service.create_user("mia", PASSWORD, roles=["agent"])
    response = await login_status(client, "mia", PASSWORD)
    assert response.status == 200
    body = await response.json()
    assert body["user"]["username"] == "mia"
    assert body["user"]["roles"] == ["agent"]
    assert body["expires_at"]
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"cc_session={body['token']}")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie
    assert response.headers["Cache-Control"] == "no-store"

    me = await client.get("/api/v1/me")  # the cookie alone
    assert me.status == 200
    assert (await me.json())["username"] == "mia"
    bearer = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"}, cookies={})
    assert bearer.status == 200


async def test_anonymous_gets_401_and_missing_permission_403(service: AuthService, client: Any) -> None:
    anonymous = await client.get("/api/v1/test/spy")
    assert anonymous.status == 401
    assert (await anonymous.json())["error"]["id"] == "unauthenticated"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")

    await service.create_user("noah", PASSWORD, roles=["agent"])
    token = (await (await login_status(client, "noah", PASSWORD)).json())["token"]
    client.session.cookie_jar.clear()
    headers = {"Authorization": f"Bearer {token}"}
    forbidden = await client.get("/api/v1/test/spy", headers=headers)
    assert forbidden.status == 403
    error = (await forbidden.json())["error"]
    assert error["id"] == "forbidden"
    assert error["details"]["missing"] == ["spy"]

    await service.create_user("olga", PASSWORD, roles=["supervisor"])
    token = (await (await login_status(client, "olga", PASSWORD)).json())["token"]
    allowed = await client.get("/api/v1/test/spy", headers={"Authorization": f"Bearer {token}"})
    assert allowed.status == 200
    assert (await allowed.json()) == {"listening_as": "olga"}

    assert (await client.get("/api/v1/test/open")).status == 200
    assert (await client.get("/api/v1/test/open", headers={"Authorization": "Bearer junk"})).status == 200
    assert (await client.get("/api/v1/me", headers={"Authorization": "Bearer junk"})).status == 401
    assert (await client.get("/api/v1/no-such-route")).status == 404


async def test_throttled_login_over_http_is_429_with_retry_after(service: AuthService, client: Any) -> None:
    await service.create_user("pam", PASSWORD)
    for _ in range(2):
        assert (await login_status(client, "pam", "wrong")).status == 401
    refused = await login_status(client, "pam", PASSWORD)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    body = await refused.json()
    assert body["error"]["id"] == "too_many_attempts"
    assert body["error"]["details"] == {"retry_after": 1}


async def test_logout_over_http_revokes_the_session_and_clears_the_cookie(service: AuthService, client: Any) -> None:
    await service.create_user("quinn", PASSWORD)
    token = (await (await login_status(client, "quinn", PASSWORD)).json())["token"]
    response = await client.post("/api/v1/logout")
    assert response.status == 200
    assert 'cc_session=""' in response.headers["Set-Cookie"]
    stolen = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert stolen.status == 401


async def test_bad_login_payloads_are_400(client: Any) -> None:
    not_json = await client.post("/api/v1/login", data=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status == 400
    missing = await client.post("/api/v1/login", json={"username": "x"})
    assert missing.status == 400
    assert "password" in (await missing.json())["error"]["details"]["fields"]
    wrong_type = await client.post("/api/v1/login", json={"username": ["x"], "password": 1})
    assert wrong_type.status == 400


@pytest.mark.parametrize(
    ("name", "status", "error_id"),
    [
        ("' OR '1'='1", 401, "invalid_credentials"),
        ("admin'--", 401, "invalid_credentials"),
        ("x\r\nSet-Cookie: a=b", 401, "invalid_credentials"),
        ("<img src=x>", 401, "invalid_credentials"),
        ("z" * 1024, 401, "invalid_credentials"),
        ("admin\x00", 401, "invalid_credentials"),
        # pydantic refuses a lone surrogate as a string: a plain validation error.
        ("\udfff", 400, "invalid_input"),
    ],
)
async def test_hostile_usernames_over_http_get_a_plain_refusal(
    service: AuthService, client: Any, name: str, status: int, error_id: str
) -> None:
    await service.create_user("admin", PASSWORD, roles=["admin"])
    response = await login_status(client, name, PASSWORD)
    assert response.status == status
    assert (await response.json())["error"]["id"] == error_id
    assert "Set-Cookie" not in response.headers


async def test_users_api_lists_and_creates_users_with_audit(service: AuthService, client: Any) -> None:
    await service.create_user("root", PASSWORD, roles=["admin"])
    await service.create_user("rita", PASSWORD, roles=["agent"])
    assert (await login_status(client, "rita", PASSWORD)).status == 200
    refused = await client.post("/api/v1/users", json={"username": "sam", "password": PASSWORD})
    assert refused.status == 403

    client.session.cookie_jar.clear()
    assert (await login_status(client, "root", PASSWORD)).status == 200
    created = await client.post(
        "/api/v1/users",
        json={
            "username": "Sam",
            "password": PASSWORD,
            "display_name": "Sam <b>Smith</b>",
            "roles": ["expert"],
            "extension": "2001",
            "teams": ["south"],
        },
    )
    assert created.status == 201
    user = await created.json()
    assert user["username"] == "sam"
    assert user["display_name"] == "Sam <b>Smith</b>"
    assert user["teams"] == ["south"]

    duplicate = await client.post("/api/v1/users", json={"username": "SAM", "password": PASSWORD})
    assert duplicate.status == 409
    bad_role = await client.post("/api/v1/users", json={"username": "tom", "password": PASSWORD, "roles": ["god"]})
    assert bad_role.status == 400
    bad_name = await client.post("/api/v1/users", json={"username": "a\nb", "password": PASSWORD})
    assert bad_name.status == 400
    assert (await bad_name.json())["error"]["details"]["fields"]["username"]

    listing = await client.get("/api/v1/users")
    assert listing.status == 200
    assert [item["username"] for item in (await listing.json())["items"]] == ["rita", "root", "sam"]
    items, _ = await service.list_audit(action="user_created", actor="root")
    assert [item.target for item in items] == ["sam"]
    assert items[0].remote_addr == "127.0.0.1"


async def test_audit_api_filters_and_pages(service: AuthService, client: Any, clock: Any) -> None:
    await service.create_user("una", PASSWORD, roles=["admin"])
    start = clock.now
    for _ in range(3):
        await service.login("una", PASSWORD)
        clock.advance(60)
    assert (await login_status(client, "una", PASSWORD)).status == 200

    page = await client.get("/api/v1/audit", params={"actor": "UNA", "action": "login", "limit": "2"})
    assert page.status == 200
    body = await page.json()
    assert body["total"] == 4
    assert len(body["items"]) == 2
    assert body["items"][0]["at"] >= body["items"][1]["at"]
    rest = await (await client.get("/api/v1/audit", params={"action": "login", "offset": "2"})).json()
    assert len(rest["items"]) == 2

    window = {"since": start.isoformat(), "until": (start.replace(minute=1)).isoformat(), "action": "login"}
    assert (await (await client.get("/api/v1/audit", params=window)).json())["total"] == 1
    bad = await client.get("/api/v1/audit", params={"limit": "100000"})
    assert bad.status == 400
    unknown = await client.get("/api/v1/audit", params={"drop": "table"})
    assert unknown.status == 400

    client.session.cookie_jar.clear()
    await service.create_user("vic", PASSWORD, roles=["supervisor"])
    assert (await login_status(client, "vic", PASSWORD)).status == 200
    assert (await client.get("/api/v1/audit")).status == 403


async def test_undeclared_route_is_refused_and_reported_at_startup(service: AuthService) -> None:
    app = make_app(service, undeclared=True)
    with pytest.raises(RuntimeError, match="GET /api/v1/test/forgotten"):
        check_routes_declared(app)
    check_routes_declared(make_app(service))
    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.get("/api/v1/test/forgotten")
        assert response.status == 500
        assert (await response.json())["error"]["id"] == "route_access_undeclared"


# the database layer


async def test_failed_unit_of_work_is_rolled_back(database: Database) -> None:
    class Boom(Exception):
        pass

    async def failing_unit_of_work() -> None:
        async with database.session() as session:
            ghost = User(
                username="ghost",
                display_name="g",
                password_hash="x",
                is_active=True,
                created_at=datetime.now(UTC),
            )
            session.add(ghost)
            await session.flush()
            raise Boom

    with pytest.raises(Boom):
        await failing_unit_of_work()
    async with database.session() as session:
        assert list(await session.scalars(select(User.username))) == []


async def test_ping_reports_a_live_database(database: Database) -> None:
    assert await database.ping() is True


async def test_unreachable_database_maps_to_database_unavailable() -> None:
    database = Database("postgresql+asyncpg://postgres@127.0.0.1:9/nothing")
    await database.open()
    try:
        assert await database.ping() is False
        with pytest.raises(DatabaseUnavailable):
            async with database.session() as session:
                await session.execute(text("SELECT 1"))
    finally:
        await database.close()
    assert await database.ping() is False


async def test_login_path_never_blocks_the_event_loop(tmp_path: Any) -> None:
    # SQLite only: asyncpg itself stats ~/.pgpass and certificate files while connecting.
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'blocking.sqlite3'}"
    await migrate(url)  # Alembic reads scripts from disk, in a worker thread; not part of what is checked here
    with blockbuster_ctx():
        database = Database(url)
        await database.open()
        try:
            service = AuthService(database, AuthConfig())  # the real argon2 cost, in worker threads
            await service.create_user("zoe", PASSWORD, roles=["agent"])
            token, _ = await service.login("zoe", PASSWORD)
            assert await service.authenticate(token) is not None
            with pytest.raises(InvalidCredentials):
                await service.login("zoe", "wrong")
            assert await service.logout(token)
            assert await database.ping()
        finally:
            await database.close()


async def test_sqlite_connections_enforce_foreign_keys_and_use_wal(tmp_path: Any) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'new' / 'dir' / 'pragmas.sqlite3'}")
    await database.open()
    try:
        async with database.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
    finally:
        await database.close()


# the CLI


@click.group()
@pass_context_options
def cli() -> None:
    """Stands in for callcenter.cli.main, whose other subcommands are not needed here."""


cli.add_command(db_group)
cli.add_command(users_group)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CALLCENTER_* variable of the machine running the tests leaks into the commands."""
    for name in list(os.environ):
        if name.startswith("CALLCENTER_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_cli_db_init_then_users_add_and_list(tmp_path: Any) -> None:
    data_dir = tmp_path / "var"
    env = {
        "CALLCENTER_PATHS_DATA_DIR": f'"{data_dir}"',
        "CALLCENTER_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'cli.sqlite3'}",
    }
    runner = CliRunner()
    init = runner.invoke(cli, ["db", "init"], env=env)
    assert init.exit_code == 0, init.output
    assert "cli.sqlite3" in init.output
    assert data_dir.is_dir()

    added = runner.invoke(
        cli,
        [
            *("users", "add", "Wendy", "--role", "agent", "--role", "supervisor", "--name", "Wendy Woo"),
            *("--extension", "1001", "--team", "north", "--password-stdin"),
        ],
        input=PASSWORD + "\n",
        env=env,
    )
    assert added.exit_code == 0, added.output
    assert "added user wendy" in added.output

    prompted = runner.invoke(cli, ["users", "add", "xena"], input=f"{PASSWORD}\n{PASSWORD}\n", env=env)
    assert prompted.exit_code == 0, prompted.output

    duplicate = runner.invoke(cli, ["users", "add", "WENDY", "--password-stdin"], input=PASSWORD + "\n", env=env)
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.output

    short = runner.invoke(cli, ["users", "add", "yves", "--password-stdin"], input="short\n", env=env)
    assert short.exit_code == 1
    assert "password" in short.output

    listing = runner.invoke(cli, ["users", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0].split() == ["USERNAME", "NAME", "EXTENSION", "ROLES", "TEAMS", "ACTIVE"]
    assert lines[1].split() == ["wendy", "Wendy", "Woo", "1001", "agent,supervisor", "north", "yes"]
    assert lines[2].split() == ["xena", "xena", "-", "-", "-", "yes"]

    async def can_log_in() -> str:
        database = Database(env["CALLCENTER_DATABASE_URL"] or "")
        await database.open()
        try:
            _, who = await AuthService(database, AuthConfig()).login("wendy", PASSWORD)
            return who.display_name
        finally:
            await database.close()

    assert asyncio.run(can_log_in()) == "Wendy Woo"


@pytest.mark.usefixtures("clean_env")
def test_cli_masks_the_database_password() -> None:
    env = {
        "CALLCENTER_DATABASE_URL": "postgresql+asyncpg://u:s3cret@127.0.0.1:9/db",
    }
    result = CliRunner().invoke(cli, ["db", "migrate"], env=env)
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert "postgresql+asyncpg://u:***@127.0.0.1:9/db" in result.output


# -- an extension is one active user's (issue 16) ---------------------------------------------------------------


async def test_an_extension_is_one_active_user_s_and_a_disabled_user_keeps_theirs(
    service: AuthService, client: TestClient[web.Request, web.Application]
) -> None:
    await service.create_user("ann", PASSWORD, roles=[Role.AGENT], extension="1001")
    with pytest.raises(ExtensionTaken) as caught:
        await service.create_user("eve", PASSWORD, roles=[Role.AGENT], extension="1001")
    assert caught.value.status == 409
    assert "ann" in caught.value.message
    # A disabled user with it does not stand in the way, and keeps it (it is history)...
    await service.create_user("old", PASSWORD, roles=[Role.AGENT], extension="1002", is_active=False)
    bob = await service.create_user("bob", PASSWORD, roles=[Role.AGENT], extension="1002")
    assert bob.extension == "1002"
    # ...but cannot be enabled while an active user has it.
    with pytest.raises(ExtensionTaken):
        await service.update_user("old", is_active=True)
    # An extension moves between users only when it is free; "" takes it away.
    with pytest.raises(ExtensionTaken):
        await service.update_user("bob", extension="1001")
    moved = await service.update_user("ann", extension="1004")
    assert moved.extension == "1004"
    assert (await service.update_user("bob", extension="1001")).extension == "1001"
    assert (await service.update_user("old", extension="", is_active=True)).extension is None
    with pytest.raises(InvalidUser):
        await service.update_user("ann", extension="10; DROP")
    changed = [item for item in (await service.list_audit(action="user_changed"))[0] if item.target == "ann"]
    assert changed[0].details["extension"] == "1004"
    assert changed[0].details["extension_before"] == "1001"
    # Over the API: an admin gives an extension; one already taken is a 409 with the holder named.
    await service.create_user("root", PASSWORD, roles=[Role.ADMIN])
    token, _ = await service.login("root", PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.patch("/api/v1/users/ann", json={"extension": "1001"}, headers=headers)
    assert response.status == 409
    body = await response.json()
    assert (body["error"]["id"], body["error"]["details"]["holder"]) == ("extension_taken", "bob")
    response = await client.patch("/api/v1/users/ann", json={"extension": "1005"}, headers=headers)
    assert response.status == 200
    assert (await response.json())["extension"] == "1005"


async def test_the_unique_index_holds_where_the_service_s_check_is_raced(service: AuthService) -> None:
    await service.create_user("ann", PASSWORD, roles=[Role.AGENT], extension="1001")
    eve = await service.create_user("eve", PASSWORD, roles=[Role.AGENT])
    # Written past the service, as a second engine racing the check would: the database refuses it.
    with pytest.raises(ConstraintViolation):
        async with service._database.session() as session:
            await session.execute(update(User).where(User.id == eve.id).values(extension="1001"))


async def test_a_database_where_active_users_share_an_extension_is_not_migrated_until_they_are_separated(
    db_target: Any, auth_config: AuthConfig
) -> None:
    await migrate(db_target.url, schema=db_target.schema, revision="0007")
    database = Database(db_target.url, schema=db_target.schema)
    await database.open()
    try:
        service = AuthService(database, auth_config)
        # Made as an older version allowed: the same extension given to three active users.
        for name in ("ann", "eve", "zed"):
            await service.create_user(name, PASSWORD, roles=[Role.AGENT])
        async with database.session() as session:
            await session.execute(update(User).where(User.username.in_(["ann", "eve", "zed"])).values(extension="1001"))
        await service.create_user("old", PASSWORD, roles=[Role.AGENT], extension="1002", is_active=False)
        await service.create_user("bob", PASSWORD, roles=[Role.AGENT], extension="1002")
        with pytest.raises(CommandError) as caught:
            await migrate(db_target.url, schema=db_target.schema)
        message = str(caught.value)
        assert "extension 1001: ann, eve, zed" in message
        assert "1002" not in message  # a disabled user's extension is no conflict
        assert "callcenter users set" in message
        # The admin separates them (the CLI's `users set` is this call) and the upgrade goes through.
        await service.update_user("eve", extension="1003")
        await service.update_user("zed", is_active=False)
        await migrate(db_target.url, schema=db_target.schema)
        with pytest.raises(ExtensionTaken):
            await service.update_user("zed", is_active=True)
    finally:
        await database.close()


@pytest.mark.usefixtures("clean_env")
def test_cli_users_set_changes_extension_roles_and_access(tmp_path: Any) -> None:
    data_dir = tmp_path / "var"
    env = {
        "CALLCENTER_PATHS_DATA_DIR": f'"{data_dir}"',
        "CALLCENTER_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'cli.sqlite3'}",
    }
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "init"], env=env).exit_code == 0
    for name, extension in (("ann", "1001"), ("bob", "1002")):
        added = runner.invoke(
            cli,
            ["users", "add", name, "--role", "agent", "--extension", extension, "--password-stdin"],
            input=PASSWORD + "\n",
            env=env,
        )
        assert added.exit_code == 0, added.output
    taken = runner.invoke(cli, ["users", "set", "bob", "--extension", "1001"], env=env)
    assert taken.exit_code == 1
    assert "belongs to another active user (ann)" in taken.output
    moved = runner.invoke(cli, ["users", "set", "ann", "--extension", "1005", "--role", "expert"], env=env)
    assert moved.exit_code == 0, moved.output
    assert moved.output.strip() == "ann: extension 1005, expert, active"
    disabled = runner.invoke(cli, ["users", "set", "bob", "--disable", "--no-extension"], env=env)
    assert disabled.output.strip() == "bob: extension -, agent, disabled"
    assert runner.invoke(cli, ["users", "set", "bob"], env=env).exit_code == 2
    both = runner.invoke(cli, ["users", "set", "bob", "--extension", "1", "--no-extension"], env=env)
    assert both.exit_code == 2
    unknown = runner.invoke(cli, ["users", "set", "nobody", "--enable"], env=env)
    assert unknown.exit_code == 1
    assert "no user" in unknown.output


async def test_the_back_office_role_is_taken_once_the_database_is_migrated(
    db_target: Any, auth_config: AuthConfig
) -> None:
    await migrate(db_target.url, schema=db_target.schema, revision="0008")
    database = Database(db_target.url, schema=db_target.schema)
    await database.open()
    try:
        service = AuthService(database, auth_config)
        await service.create_user("desk", PASSWORD, roles=[Role.AGENT])
        add_role = text(
            "INSERT INTO user_roles (user_id, role) SELECT id, 'backoffice' FROM users WHERE username = 'desk'"
        )
        with pytest.raises(ConstraintViolation):
            async with database.session() as session:
                await session.execute(add_role)
        await database.migrate()
        async with database.session() as session:
            await session.execute(add_role)
        _, who = await service.login("desk", PASSWORD, remote="127.0.0.1")
        assert who.roles == {Role.BACKOFFICE, Role.AGENT}
        assert Permission.OUTLETS_MANAGE in who.permissions
    finally:
        await database.close()
