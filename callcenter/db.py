"""The shared database: one async engine, a session scope, the declarative base, the migration runner, and the
journal that keeps writes while the database is down.

SQLite (a file under the data directory) is the embedded default and PostgreSQL the production choice; both
are reached through async drivers only (aiosqlite, asyncpg) so that no query blocks the event loop.

An outage is logged once: the first failure that says the database cannot be reached is a warning, the
failures after it are debug lines, and the first success after it says the database is back
(:class:`Database`). What must not be lost meanwhile is written ahead to a :class:`Journal` (the service-record
outbox, the call records) and replayed when the database answers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import DateTime, Dialect, MetaData, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import PoolResetState
from sqlalchemy.types import TypeDecorator

log = logging.getLogger("callcenter.db")

# The driver connection a task holds in a ``Database.driver()`` block: (database, task, connection).
_HELD_DRIVER: ContextVar[tuple[Database, asyncio.Task[Any] | None, Any] | None] = ContextVar(
    "held_driver", default=None
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Explicit constraint names make Alembic's batch mode on SQLite (which rebuilds tables) and PostgreSQL agree
# on what to drop or alter; unnamed ones get engine-specific generated names a migration cannot refer to.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Search structures that migrations build with engine-specific DDL the models cannot describe: SQLite FTS5
# tables (a name segment "fts": ``fts_recordings``, ``kb_articles_fts``, with their ``..._data``... shadow
# tables) and PostgreSQL trigram indexes (``..._trgm``).
_ENGINE_SPECIFIC = re.compile(r"(?:^|_)fts(?:_|$)|_trgm$")


def engine_specific(name: str | None) -> bool:
    """Whether a table or index is one of the engine-specific search structures named above."""
    return bool(name) and _ENGINE_SPECIFIC.search(str(name)) is not None


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's ``include_name`` hook: schema comparisons (autogenerate, tests) skip the search structures."""
    return not (type_ in ("table", "index") and engine_specific(name))


# Milliseconds a SQLite writer waits for another writer before giving up with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000
PING_TIMEOUT_SECONDS = 5.0


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DatabaseError(Exception):
    """A database operation failed; the message is safe to show (no SQL, no parameters)."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached or is locked; retrying later may succeed."""


class ConstraintViolation(DatabaseError):
    """A write broke a uniqueness, foreign-key or check constraint."""


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC and given
    their zone back when read. Naive datetimes are refused on the way in: they are always a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC one is required")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def json_object(text: str | None) -> dict[str, Any]:
    """A TEXT column holding a JSON object (a history row's changes, an audit row's details) read back: empty when
    there is none, and a row written otherwise by hand is shown rather than lost (``raw``, or ``value``)."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"raw": text}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def mask_url(url: str | URL) -> str:
    """The URL with any password replaced by ***, safe to print or log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "<unparseable database URL>"


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


# The database holds password hashes, customer files and the audit log: its files are the owner's alone.
PRIVATE_FILE = 0o600
PRIVATE_DIRECTORY = 0o700


def private_directory(path: Path) -> None:
    """Makes ``path`` (and missing parents) a directory only its owner may enter, whatever the umask."""
    path.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_DIRECTORY)


def private_sqlite_file(file: Path) -> None:
    """Creates the SQLite file (and its directory) with mode 0600 before SQLite does (it would use the umask, 0644
    by default), and takes 0600 back from an older one. SQLite gives its -wal and -shm files the mode of the
    database file."""
    if not file.parent.exists():
        private_directory(file.parent)
    os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE))
    for each in (file, file.with_name(file.name + "-wal"), file.with_name(file.name + "-shm")):
        try:
            if each.stat().st_mode & 0o077:
                each.chmod(PRIVATE_FILE)
        except FileNotFoundError:
            continue


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # SQLite ignores foreign keys unless asked, per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets the web pages read while a call writes its service record.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
    finally:
        cursor.close()


def _reset_sqlite(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    # The pool's rollback when a connection comes back is a round trip to aiosqlite's thread even with nothing to
    # roll back (a session that committed, a read in autocommit); SQLite says whether a transaction is open.
    if state.asyncio_safe and not state.transaction_was_reset and dbapi_connection.driver_connection.in_transaction:
        dbapi_connection.rollback()


# SQLite's primary result codes that say the file cannot be used now (locked by another writer, missing, out of
# space, an I/O failure), not that the statement is wrong: "no such table" or "too many SQL variables" are
# SQLITE_ERROR (1), a bug in the code that sent them, and retrying it later does not help.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 10, 13, 14, 15})  # BUSY LOCKED NOMEM IOERR FULL CANTOPEN PROTOCOL


def _sqlite_unavailable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        # Raised by the sqlite3 module itself, not by SQLite; only an OperationalError may be an outage then.
        return isinstance(exc, sqlite3.OperationalError)
    return (code & 0xFF) in _SQLITE_UNAVAILABLE


def _driver_unavailable(exc: BaseException) -> bool:
    """Whether a driver's own error says the database cannot be reached now; the rest are bugs (a query the
    driver refuses, a misuse of the connection) that an outage must not hide."""
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg's InterfaceError is a misuse of the driver ("the number of query arguments cannot exceed
        # 32767", "another operation is in progress"), except on a connection the server already closed.
        return "connection is closed" in str(exc)
    if isinstance(exc, asyncpg.InternalClientError):
        return False
    if isinstance(exc, sqlite3.Error):
        return _sqlite_unavailable(exc)
    if isinstance(exc, ValueError):
        # aiosqlite's ValueError("Connection closed") / ("no active connection"); asyncpg.DataError (a value
        # the driver cannot encode) is an InterfaceError and a ValueError, and was sorted out above.
        message = str(exc).lower()
        return "connection closed" in message or "no active connection" in message
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.OperatorInterventionError
        | sa_exc.TimeoutError
        | sa_exc.DisconnectionError
        | OSError
        | TimeoutError,
    )


def _translate(exc: BaseException) -> DatabaseError:
    if isinstance(exc, sa_exc.IntegrityError):
        return ConstraintViolation("the change conflicts with existing data")
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable("the database connection was lost")
    if isinstance(exc, sa_exc.DBAPIError):
        # SQLAlchemy wraps the driver's error in its own adapter's: the driver's original says which it is.
        cause: BaseException | None = exc.orig
        while cause is not None and not isinstance(cause, _DRIVER_ERRORS):
            cause = cause.__cause__
        if cause is not None and not isinstance(cause, sa_exc.SQLAlchemyError):
            if _driver_unavailable(cause):
                return DatabaseUnavailable("the database is unavailable")
            return _bug(exc)
        if isinstance(exc, sa_exc.OperationalError):
            return DatabaseUnavailable("the database is unavailable")
        return _bug(exc)
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return DatabaseUnavailable("the database is unavailable")
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return DatabaseUnavailable("the database cannot be reached")
    return _bug(exc)


def _bug(exc: BaseException) -> DatabaseError:
    # Not an outage: the statement or the use of the driver is wrong. Logged once, here, with the traceback of our
    # code and the driver's own message; not SQLAlchemy's text, which carries the statement and its parameters.
    cause: BaseException = exc
    while isinstance(cause, sa_exc.SQLAlchemyError) and cause.__cause__ is not None:
        cause = cause.__cause__
    while cause.__cause__ is not None and not isinstance(cause, _DRIVER_ERRORS):
        cause = cause.__cause__
    message = str(cause).splitlines()[0][:200] if str(cause) else ""
    where = "".join(traceback.format_tb(exc.__traceback__))
    log.error("database error that is no outage: %s: %s\n%s", type(cause).__name__, message, where.rstrip())
    return DatabaseError("the database refused the operation")


_MAPPED = (sa_exc.DBAPIError, sa_exc.DisconnectionError, sa_exc.TimeoutError, OSError, asyncio.TimeoutError)

# The drivers' own errors, met by code that works on the driver's connection (Database.driver); which of them say
# the database cannot be reached is decided by _driver_unavailable. aiosqlite raises ValueError("Connection closed").
_DRIVER_ERRORS = (
    sa_exc.SQLAlchemyError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
    ValueError,
)


class Database:
    """One async engine for the whole process, opened and closed by the composition root."""

    def __init__(self, url: str, echo: bool = False, *, schema: str | None = None) -> None:
        """``schema`` (PostgreSQL only) puts the tables in that schema via the connection's search_path."""
        self.url = make_url(url)
        self.echo = echo
        self.schema = schema
        if schema is not None and _is_sqlite(self.url):
            raise ValueError("a schema can only be chosen on PostgreSQL")
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        # Set from the first failure that says the database cannot be reached until the next success.
        self.down_since: float | None = None
        self.outages = 0

    def _failed(self, exc: BaseException, translated: DatabaseError) -> None:
        if not isinstance(translated, DatabaseUnavailable):
            return
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            log.warning(
                "database unavailable (%s: %s); what must be kept waits in the journals until it is back",
                type(exc).__name__,
                translated,
            )
        else:
            log.debug("database still unavailable: %s", type(exc).__name__)

    def _succeeded(self) -> None:
        if self.down_since is not None:
            log.info("database back after %.1f s", time.monotonic() - self.down_since)
            self.down_since = None

    def __repr__(self) -> str:
        return f"Database({mask_url(self.url)!r})"

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise DatabaseUnavailable("the database is not open")
        return self._engine

    async def open(self) -> None:
        if self._engine is not None:
            return
        connect_args: dict[str, Any] = {}
        if _is_sqlite(self.url):
            file = _sqlite_file(self.url)
            if file is not None:
                await asyncio.to_thread(private_sqlite_file, file)
        else:
            # Plan every statement for its values: asyncpg prepares statements, and after five runs PostgreSQL
            # may switch one to a generic plan that cannot see them; for skewed filters (one agent of sixty, a
            # rare word) such a plan was seen a hundred times slower (recordings search, bench/recording_search).
            settings = {"plan_cache_mode": "force_custom_plan"}
            if self.schema is not None:
                settings["search_path"] = self.schema
            connect_args["server_settings"] = settings
        # The SQLite dialect resolves the file path with os.path calls: build the engine off the event loop.
        # Pre-ping finds connections a server dropped; a SQLite file has no server, and there each ping is four
        # round trips to the driver's thread (the screen-pop made 28 per call with it, 20 without).
        engine = await asyncio.to_thread(
            create_async_engine,
            self.url,
            echo=self.echo,
            pool_pre_ping=not _is_sqlite(self.url),
            pool_reset_on_return=None if _is_sqlite(self.url) else "rollback",
            connect_args=connect_args,
        )
        if _is_sqlite(self.url):
            event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
            event.listen(engine.sync_engine, "reset", _reset_sqlite)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        log.info("database %s", mask_url(self.url))

    async def close(self) -> None:
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends, rolls back on error, maps driver errors to ours."""
        if self._sessions is None:
            raise DatabaseUnavailable("the database is not open")
        session = self._sessions()
        try:
            yield session
            await session.commit()
        except _MAPPED as exc:
            await _quiet_rollback(session)
            translated = _translate(exc)
            if type(translated) is ConstraintViolation:
                log.debug("database error: %s", type(exc).__name__)
            self._failed(exc, translated)
            raise translated from exc
        except DatabaseUnavailable as exc:
            # Raised by our own code inside the block (a driver() within it, a check): counted as an outage too.
            await _quiet_rollback(session)
            self._failed(exc, exc)
            raise
        except BaseException:
            await _quiet_rollback(session)
            raise
        else:
            if self.down_since is not None:
                self._succeeded()
        finally:
            await session.close()

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """The driver's own connection (aiosqlite's or asyncpg's) of one pooled connection, for a hot read past
        SQLAlchemy's execution path. Errors map to ours as in a session; a connection whose driver failed under
        the block is not given back to the pool.

        Inside another ``driver()`` block of the same task this gives that block's connection again, without a
        second checkout (and, on PostgreSQL, a second ping): a hot path made of two packages' reads (the
        screen-pop's files and the caller's calls) opens one block around both and pays for one connection.
        Tasks started inside the block get connections of their own: one connection serves one task at a time."""
        held = _HELD_DRIVER.get()
        if held is not None and held[0] is self and held[1] is asyncio.current_task():
            with self._driver_errors():
                yield held[2]
            return
        with self._driver_errors():
            async with self.engine.connect() as connection:
                raw = await connection.get_raw_connection()
                token = _HELD_DRIVER.set((self, asyncio.current_task(), raw.driver_connection))
                try:
                    yield raw.driver_connection
                except BaseException:
                    await connection.invalidate()
                    raise
                finally:
                    _HELD_DRIVER.reset(token)
        if self.down_since is not None:
            self._succeeded()

    @contextmanager
    def _driver_errors(self) -> Iterator[None]:
        try:
            yield
        except DatabaseError:
            raise
        except _DRIVER_ERRORS as exc:
            if isinstance(exc, sa_exc.SQLAlchemyError):
                translated = _translate(exc)
                self._failed(exc, translated)
                raise translated from exc
            if _driver_unavailable(exc):
                unavailable = DatabaseUnavailable("the database is unavailable")
                self._failed(exc, unavailable)
                raise unavailable from exc
            raise _bug(exc) from exc

    async def ping(self) -> bool:
        """True when a trivial query succeeds; never raises (it feeds /healthz)."""
        if self._engine is None:
            return False
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def migrate(self, revision: str = "heads") -> None:
        """Brings the schema up to ``revision`` with Alembic (same URL and search_path as this database)."""
        await migrate(self.url.render_as_string(hide_password=False), schema=self.schema, revision=revision)


async def _quiet_rollback(session: AsyncSession) -> None:
    try:
        await session.rollback()
    except Exception:
        # The connection is already gone; the pool discards it and the original error is what matters.
        log.debug("rollback failed", exc_info=True)


def alembic_config() -> AlembicConfig:
    """The Alembic configuration, built in code: no alembic.ini to find, the scripts live in the package."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def _upgrade_on(connection: AsyncConnection, revision: str) -> None:
    def upgrade(sync_connection: Connection) -> None:
        config = alembic_config()
        # env.py runs the migrations on this connection instead of opening its own engine.
        config.attributes["connection"] = sync_connection
        command.upgrade(config, revision)

    await connection.run_sync(upgrade)


async def _migrate_here(url: str, schema: str | None, revision: str) -> None:
    database = Database(url, schema=schema)
    await database.open()
    try:
        async with database.engine.begin() as connection:
            if database.dialect == "sqlite":
                # pysqlite opens a transaction only before a write of rows, so a migration's CREATE TABLE run
                # before any would stay when a later step fails; an explicit BEGIN makes the whole upgrade one.
                await connection.exec_driver_sql("BEGIN")
            await _upgrade_on(connection, revision)
    except _MAPPED as exc:
        raise _translate(exc) from exc
    finally:
        await database.close()


def run_migrations(url: str, *, schema: str | None = None, revision: str = "heads") -> None:
    """Upgrades the database at ``url`` (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``) to ``revision``.

    Synchronous, for callers outside an event loop (the CLI, scripts).
    """
    asyncio.run(_migrate_here(url, schema, revision))


async def migrate(url: str, *, schema: str | None = None, revision: str = "heads") -> None:
    """The async form of :func:`run_migrations`.

    Alembic reads its scripts from disk with blocking calls, so the upgrade runs in a worker thread with an
    event loop of its own rather than stalling the caller's.
    """
    await asyncio.to_thread(run_migrations, url, schema=schema, revision=revision)


# -- the journal of writes that wait for the database ---------------------------------------------------------


def _journal_append(path: Path, lines: list[str], *, sync: bool) -> None:
    created = not path.exists()
    if not path.parent.exists():
        private_directory(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    with os.fdopen(descriptor, "a", encoding="utf-8") as journal:
        journal.write("".join(line + "\n" for line in lines))
        journal.flush()
        if sync:
            os.fsync(journal.fileno())
    if created and sync:
        _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    # The new name of a file is durable only once its directory is.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _journal_rewrite(path: Path, lines: list[str]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as journal:
        journal.write("".join(line + "\n" for line in lines))
        journal.flush()
        os.fsync(journal.fileno())
    os.replace(temporary, path)
    _sync_directory(path.parent)


def _journal_read(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The pending entries of a journal, in the order of their first line, and how many finished ones it holds."""
    pending: dict[str, dict[str, Any]] = {}
    finished = 0
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return pending, 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            op, key = item.pop("op"), str(item.pop("key"))
            if op == "put":
                pending[key] = dict(item)
            elif op in ("done", "rejected"):
                pending.pop(key, None)
                finished += 1
        except (ValueError, KeyError, TypeError, AttributeError):
            # A line torn by a crash mid-append: its put never returned, so no one was told it was kept.
            log.warning("journal %s: skipping unreadable line %d", path, number)
    return pending, finished


class Journal:
    """Writes that must not be lost while the database is down: an append-only JSON-lines file under the data
    directory, each entry fsync'd before its writer goes on, marked done once the database has it.

    Lines: ``{"op": "put", "key": ..., <fields>}``, then ``{"op": "done", "key": ...}`` (or ``"rejected"``). A put
    of a key already pending replaces its fields and keeps its place. Entries come back in the order of their first
    put (:meth:`entries`), so a replay writes them in the order they were meant to be written; what makes a replay
    write each once is the owner's (an idempotency key, a unique column): a crash between a write and its done
    line replays it. The file is rewritten down to its pending entries when nothing is pending and when it has
    grown by ``compact_after`` finished ones."""

    def __init__(self, path: Path, *, compact_after: int = 1000) -> None:
        self.path = path
        self._compact_after = compact_after
        self._pending: dict[str, dict[str, Any]] = {}
        self._finished = 0
        self._loaded = False
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        """The pending entries, oldest first."""
        return list(self._pending.items())

    def get(self, key: str) -> dict[str, Any] | None:
        return self._pending.get(key)

    async def load(self) -> int:
        """Reads what an earlier run left (once); returns how many entries are pending."""
        async with self._lock:
            if not self._loaded:
                pending, finished = await asyncio.to_thread(_journal_read, self.path)
                pending.update(self._pending)
                self._pending, self._finished, self._loaded = pending, self._finished + finished, True
            return len(self._pending)

    async def put(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """Journals ``(key, fields)`` entries, durably, before returning."""
        if not entries:
            return
        lines = [
            json.dumps({"op": "put", "key": key, **fields}, sort_keys=True, default=str) for key, fields in entries
        ]
        async with self._lock:
            await asyncio.to_thread(_journal_append, self.path, lines, sync=True)
            for key, fields in entries:
                self._pending[key] = fields

    async def finish(self, keys: list[str], op: str = "done") -> None:
        """Marks entries done (or rejected). Not fsync'd: a lost mark replays the entry, which its owner makes a
        no-op."""
        keys = [key for key in keys if key in self._pending]
        if not keys:
            return
        async with self._lock:
            lines = [json.dumps({"op": op, "key": key}) for key in keys]
            await asyncio.to_thread(_journal_append, self.path, lines, sync=False)
            for key in keys:
                self._pending.pop(key, None)
            self._finished += len(keys)
            if not self._pending:
                await asyncio.to_thread(_journal_rewrite, self.path, [])
                self._finished = 0
            elif self._finished >= self._compact_after:
                await asyncio.to_thread(_journal_rewrite, self.path, self._lines())
                self._finished = 0

    def _lines(self) -> list[str]:
        return [
            json.dumps({"op": "put", "key": key, **fields}, sort_keys=True, default=str)
            for key, fields in self._pending.items()
        ]
