"""Logins, sessions, users and the audit log.

Passwords are hashed with argon2 in a worker thread (a verify costs tens of milliseconds of CPU, too long for
the event loop), at most ``auth.max_concurrent_hashes`` at once (each takes 64 MiB). Unknown usernames cost the
same argon2 verify as known ones, and are throttled alike: neither the answer nor its timing tells which exist.

Failed logins are counted per username *and* client address (an IPv4 address, an IPv6 /64), so that a stranger
who knows a username cannot lock its owner out: after ``auth.free_failures`` each attempt from that address waits
a doubling delay, after ``auth.lockout_after`` the username is locked for that address. An address the user has
logged in from before (the ``auth.known_addresses`` most recent, ``login_sources``) is only ever delayed, never
locked. Against a guesser with many addresses, the failures for a username from every address together lock it,
after ``auth.username_lockout_after``, for the addresses its user has not logged in from. Each lock writes a
``login_locked`` audit row and counts in ``callcenter_login_locks_total``.

Before any of that, each client address has a token bucket of attempts (``auth.address_burst``, refilling at
``auth.address_per_minute``), so an unauthenticated client cannot buy argon2 runs or database rows by inventing
usernames. Refused attempts are audited at most once a minute per username and address (the metric counts them
all), and throttle rows whose streak has expired are pruned now and then during failed logins.

A session ends at logout, at expiry, or when its user is disabled; :attr:`AuthService.notices` tells whoever holds
a session open (the websocket hub) of the first and the last, and of roles that change.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import unicodedata
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import CursorResult, Result, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.auth.exceptions import (
    ExtensionTaken,
    InvalidCredentials,
    InvalidUser,
    LoginThrottled,
    UnknownUser,
    UserExists,
)
from callcenter.auth.limits import AddressLimiter, RefusalAudits, address_key
from callcenter.auth.models import (
    DISPLAY_NAME_MAX,
    TEAM_NAME_MAX,
    USERNAME_MAX,
    AuditEntry,
    AuthToken,
    LoginSource,
    LoginThrottle,
    Team,
    TeamMember,
    User,
    UserRole,
)
from callcenter.auth.permissions import Permission, Role, permissions_for
from callcenter.auth.sessions import SessionEnd, SessionNotices
from callcenter.config import AuthConfig
from callcenter.db import ConstraintViolation, Database, DatabaseError, json_object, utcnow

if TYPE_CHECKING:
    from callcenter.metrics import Metrics

log = logging.getLogger("callcenter.auth")

TOKEN_BYTES = 32
# Tokens we issue are 43 characters; anything much longer is not ours and is not worth hashing.
TOKEN_MAX_CHARS = 256
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
AUDIT_LIMIT_MAX = 500
# Refused attempts for one username write at most one audit row per interval; the metric counts every one.
REFUSAL_AUDIT_INTERVAL = timedelta(minutes=1)
# Expired login_throttle rows are deleted at most this often, and at most this many per pass.
PRUNE_INTERVAL = timedelta(minutes=1)
PRUNE_BATCH = 1000
# Session keys asked about in one statement by live_sessions (well under every backend's limit on parameters).
LIVE_SESSIONS_BATCH = 500

Clock = Callable[[], datetime]


class Action:
    """Audit actions written by this module."""

    LOGIN = "login"
    LOGOUT = "logout"
    LOGIN_FAILED = "login_failed"
    LOGIN_LOCKED = "login_locked"
    USER_CREATED = "user_created"
    USER_CHANGED = "user_changed"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is behind a request: the user of a live session and what they may do."""

    user_id: int
    username: str
    display_name: str
    roles: frozenset[Role]
    permissions: frozenset[Permission]
    teams: tuple[str, ...]
    extension: str | None
    expires_at: datetime

    def has(self, *permissions: Permission) -> bool:
        return set(permissions) <= self.permissions

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "username": self.username,
            "display_name": self.display_name,
            "roles": sorted(self.roles),
            "permissions": sorted(self.permissions),
            "teams": list(self.teams),
            "extension": self.extension,
        }


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str
    display_name: str
    extension: str | None
    is_active: bool
    created_at: datetime
    roles: tuple[Role, ...]
    teams: tuple[str, ...]
    lead_of: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "extension": self.extension,
            "is_active": self.is_active,
            "created_at": self.created_at.isoformat(),
            "roles": list(self.roles),
            "teams": list(self.teams),
            "lead_of": list(self.lead_of),
        }


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    outcome: str
    remote_addr: str | None
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "remote_addr": self.remote_addr,
            "details": self.details,
        }


def canonical_username(raw: str) -> str:
    """The form usernames are stored and compared in: NFKC, case-folded ('Alice' and 'ALICE' are one user)."""
    return unicodedata.normalize("NFKC", raw).casefold()


def _visible(text: str) -> bool:
    # Control, format, separator and unassigned characters (CR, LF, NUL, spaces, bidi overrides) are refused.
    return all(unicodedata.category(char)[0] not in "CZ" for char in text)


def validate_username(raw: str) -> str:
    """The canonical username, or InvalidUser saying what is wrong with it."""
    name = canonical_username(raw)
    if not name:
        raise InvalidUser("username", "must not be empty")
    if len(name) > USERNAME_MAX:
        raise InvalidUser("username", f"at most {USERNAME_MAX} characters")
    if not _visible(name):
        raise InvalidUser("username", "no spaces or control characters")
    return name


def _lookup_worthy(name: str) -> bool:
    """Whether a canonical name could belong to a user at all; others are not even sent to the database."""
    return 0 < len(name) <= USERNAME_MAX and _visible(name)


def validate_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise InvalidUser("password", f"at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidUser("password", f"at most {PASSWORD_MAX} characters")


def _validate_display_name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise InvalidUser("display_name", "must not be empty")
    if len(name) > DISPLAY_NAME_MAX:
        raise InvalidUser("display_name", f"at most {DISPLAY_NAME_MAX} characters")
    if any(unicodedata.category(char)[0] == "C" for char in name):
        raise InvalidUser("display_name", "no control characters")
    return name


def _validate_team(raw: str) -> str:
    name = raw.strip()
    if not name or len(name) > TEAM_NAME_MAX or not _visible(name):
        raise InvalidUser("teams", f"a team name is 1 to {TEAM_NAME_MAX} visible characters without spaces")
    return name


def _validate_extension(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and 2 <= len(raw) <= 8):
        raise InvalidUser("extension", "an extension is 2 to 8 digits")
    return raw


async def _check_extension_free(session: AsyncSession, extension: str, user_id: int | None) -> None:
    """ExtensionTaken when another active user has ``extension`` (the unique index catches a race)."""
    holder = await session.scalar(
        select(User.username).where(User.extension == extension, User.is_active, User.id != (user_id or 0))
    )
    if holder is not None:
        raise ExtensionTaken(extension, holder)


def _validate_roles(roles: Iterable[Role | str]) -> tuple[Role, ...]:
    chosen: set[Role] = set()
    for role in roles:
        try:
            chosen.add(Role(role))
        except ValueError:
            raise InvalidUser("roles", f"unknown role; choose from {', '.join(Role)}") from None
    return tuple(sorted(chosen))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def session_key(token: str) -> str:
    """What names a session everywhere but in the client's hands: the SHA-256 of its token (the stored key)."""
    return _sha256(token)


def _storable(text: str) -> str:
    """Text safe for any backend, kept readable as evidence: control characters (PostgreSQL refuses NUL) and lone
    surrogates (not encodable) become visible escapes."""
    return "".join(char if unicodedata.category(char)[0] != "C" else f"\\u{ord(char):04x}" for char in text)


def _clip(text: str | None, limit: int) -> str | None:
    return None if text is None else _storable(text[: limit * 2])[:limit]


def _rowcount(result: Result[Any]) -> int:
    # UPDATE and DELETE statements always give a CursorResult; only the static type says otherwise.
    return cast("CursorResult[Any]", result).rowcount


def _secret_bytes(password: str) -> bytes:
    # argon2-cffi would encode a str strictly and fail on a lone surrogate a client put in its JSON.
    return password.encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class _Throttle:
    failures: int
    last_failure_at: datetime | None
    locked_until: datetime | None


@dataclass(frozen=True, slots=True)
class _Streaks:
    pair: _Throttle  # this username from this address
    overall: _Throttle  # this username from every address


@dataclass(frozen=True, slots=True)
class ThrottleKeys:
    """The ``login_throttle`` rows a login attempt counts in: the username from this address, and the username."""

    pair: str
    username: str


def throttle_keys(name: str, source: str) -> ThrottleKeys:
    """The keys of a canonical username from a client address key (:func:`callcenter.auth.limits.address_key`)."""
    # JSON keeps the two apart whatever characters the username holds.
    return ThrottleKeys(pair=_sha256(json.dumps([name, source])), username=_sha256(name))


class AuthService:
    def __init__(
        self,
        database: Database,
        config: AuthConfig,
        metrics: Metrics | None = None,
        *,
        clock: Clock = utcnow,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        self._database = database
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._hasher = password_hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        # Attempts for one username run one at a time: concurrent guesses cannot slip past the delay together.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Bounds the memory (64 MiB each with the default parameters) and threads spent on argon2 at any moment.
        self._hash_slots = asyncio.Semaphore(config.max_concurrent_hashes)
        self._addresses = AddressLimiter(config.address_burst, config.address_per_minute, self._now)
        self._refusals = RefusalAudits(REFUSAL_AUDIT_INTERVAL, self._now)
        self._pruned_at: datetime | None = None
        # Whoever holds something open on a session (the websocket hub) hears here when it ends or its user changes.
        self.notices = SessionNotices()

    @property
    def config(self) -> AuthConfig:
        return self._config

    def seconds_left(self, who: Principal) -> float:
        """Seconds until the session ``who`` came from expires, on this service's clock (0 when it has)."""
        return max(0.0, (who.expires_at - self._now()).total_seconds())

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return aware datetimes")
        return now

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.logins.labels(result=result).inc()

    # passwords

    async def hash_password(self, password: str) -> str:
        async with self._hash_slots:
            return await asyncio.to_thread(self._hasher.hash, _secret_bytes(password))

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        if password_hash is None:
            # Unknown user: spend the same work on a hash no password matches.
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash_password(secrets.token_hex(16))
            await self._check_in_thread(self._dummy_hash, password)
            return False
        return await self._check_in_thread(password_hash, password)

    async def _check_in_thread(self, password_hash: str, password: str) -> bool:
        async with self._hash_slots:
            return await asyncio.to_thread(self._check, password_hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, _secret_bytes(password)))
        except (VerificationError, InvalidHashError):
            return False

    # login throttling

    def _current(self, row: LoginThrottle | None, now: datetime) -> _Throttle:
        """The throttle state that applies now: an expired lock or a long-quiet streak starts afresh."""
        if row is None:
            return _Throttle(0, None, None)
        window = timedelta(minutes=self._config.lockout_minutes)
        if row.locked_until is not None:
            if now < row.locked_until:
                return _Throttle(row.failures, row.last_failure_at, row.locked_until)
            return _Throttle(0, None, None)
        if now - row.last_failure_at >= window:
            return _Throttle(0, None, None)
        return _Throttle(row.failures, row.last_failure_at, None)

    def _wait(self, pair: _Throttle, overall: _Throttle, known: bool, now: datetime) -> tuple[float, str] | None:
        """Seconds to wait before another attempt is heard, and why; None when one may try now.

        ``pair`` is this username from this address, ``overall`` this username from every address; ``known``
        says whether the user has logged in from this address before: there no lock applies, only the delay."""
        if not known:
            for state in (pair, overall):
                if state.locked_until is not None:
                    return (state.locked_until - now).total_seconds(), "locked"
        extra = pair.failures - self._config.free_failures
        if extra < 0 or pair.last_failure_at is None:
            return None
        delay = min(self._config.max_delay_seconds, float(2**extra)) if extra < 64 else self._config.max_delay_seconds
        ready = pair.last_failure_at + timedelta(seconds=delay)
        if now < ready:
            return (ready - now).total_seconds(), "throttled"
        return None

    def _lock_for(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def login(self, username: str, password: str, remote: str | None = None) -> tuple[str, Principal]:
        """A new session token and who it belongs to; InvalidCredentials or LoginThrottled otherwise."""
        # First, before any database or argon2 work: the cheap in-memory check is what bounds an attacker's cost.
        address_wait = self._addresses.acquire(remote)
        if address_wait is not None:
            self._count("address_limited")
            raise LoginThrottled(address_wait, "too many login attempts from this address; wait before trying again")
        name = canonical_username(username)
        source = address_key(remote)
        keys = throttle_keys(name, source)
        attempted = _clip(name, 255)
        lock = self._lock_for(keys.username)
        async with lock:
            now = self._now()
            async with self._database.session() as session:
                pair = self._current(await session.get(LoginThrottle, keys.pair), now)
                overall = self._current(await session.get(LoginThrottle, keys.username), now)
                user = None
                if _lookup_worthy(name):
                    user = await session.scalar(select(User).where(User.username == name))
                # Asked for unknown usernames too (of no user), so that the answer takes the same work.
                known = await session.get(LoginSource, (user.id if user is not None else 0, source)) is not None

            wait = self._wait(pair, overall, known, now)
            if wait is not None:
                seconds, reason = wait
                self._count(reason)
                unwritten = self._refusals.admit(keys.pair)
                if unwritten is not None:
                    details: dict[str, Any] = {"reason": reason, "retry_after": round(seconds, 3)}
                    if unwritten:
                        details["unaudited_refusals"] = unwritten
                    await self.audit(
                        Action.LOGIN_FAILED, target=attempted, outcome="refused", remote=remote, details=details
                    )
                raise LoginThrottled(seconds)

            matched = await self._verify(user.password_hash if user is not None else None, password)
            if user is not None and matched and user.is_active:
                token, principal = await self._open_session(user, keys.pair, now, remote)
                await self._remember_source(user.id, source, now)
                self._addresses.refund(remote)
                self._count("success")
                await self._maybe_rehash(user, password)
                return token, principal

            reason = "unknown_user" if user is None else ("inactive" if matched else "wrong_password")
            await self._record_failure(
                keys, _Streaks(pair, overall), known=known, now=now, attempted=attempted, remote=remote, reason=reason
            )
        await self._prune_throttles(now)
        raise InvalidCredentials()

    async def _open_session(self, user: User, key: str, now: datetime, remote: str | None) -> tuple[str, Principal]:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = now + timedelta(hours=self._config.token_ttl_hours)
        async with self._database.session() as session:
            # This address's streak ends; the username's streak over every address goes on (it may be an attack
            # from elsewhere, which the owner's success says nothing about).
            await session.execute(delete(LoginThrottle).where(LoginThrottle.username_key == key))
            session.add(AuthToken(token_sha256=_sha256(token), user_id=user.id, created_at=now, expires_at=expires_at))
            self._add_audit(session, Action.LOGIN, actor=user.username, target=user.username, remote=remote)
            principal = await self._principal(session, user, expires_at)
        return token, principal

    async def _remember_source(self, user_id: int, source: str, now: datetime) -> None:
        """Adds the address to the user's known ones (or refreshes it), keeping the ``known_addresses`` newest."""
        try:
            async with self._database.session() as session:
                known = await session.get(LoginSource, (user_id, source))
                if known is None:
                    session.add(LoginSource(user_id=user_id, source=source, last_login_at=now))
                else:
                    known.last_login_at = max(known.last_login_at, now)
                await session.flush()
                oldest = (
                    select(LoginSource.source)
                    .where(LoginSource.user_id == user_id)
                    .order_by(LoginSource.last_login_at.desc(), LoginSource.source)
                    .offset(self._config.known_addresses)
                )
                stale = list(await session.scalars(oldest))
                if stale:
                    await session.execute(
                        delete(LoginSource).where(LoginSource.user_id == user_id, LoginSource.source.in_(stale))
                    )
        except DatabaseError:
            # The session is open already; a login from here again will add the address.
            log.warning("could not remember a login address", exc_info=True)

    async def _maybe_rehash(self, user: User, password: str) -> None:
        if not self._hasher.check_needs_rehash(user.password_hash):
            return
        new_hash = await self.hash_password(password)
        async with self._database.session() as session:
            await session.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))

    def _failure_values(self, state: _Throttle, now: datetime, *, lock_at: int | None) -> tuple[dict[str, Any], bool]:
        """The next row of a streak after one more failure, and whether this failure locks it."""
        failures = state.failures + 1
        locked_until = state.locked_until
        newly = locked_until is None and lock_at is not None and failures >= lock_at
        if newly:
            locked_until = now + timedelta(minutes=self._config.lockout_minutes)
        return {"failures": failures, "last_failure_at": now, "locked_until": locked_until}, newly

    async def _record_failure(
        self,
        keys: ThrottleKeys,
        streaks: _Streaks,
        *,
        known: bool,
        now: datetime,
        attempted: str | None,
        remote: str | None,
        reason: str,
    ) -> None:
        # An address the user has logged in from is only ever delayed: locking it would lock the owner out.
        pair, pair_locks = self._failure_values(
            streaks.pair, now, lock_at=None if known else self._config.lockout_after
        )
        overall, overall_locks = self._failure_values(streaks.overall, now, lock_at=self._config.username_lockout_after)
        locks = [
            (scope, values)
            for scope, values, newly in (("address", pair, pair_locks), ("username", overall, overall_locks))
            if newly
        ]
        for attempt in range(2):
            try:
                async with self._database.session() as session:
                    for key, values in ((keys.pair, pair), (keys.username, overall)):
                        # An UPDATE rather than read-modify-write: a pruning pass may delete the row in between.
                        updated = await session.execute(
                            update(LoginThrottle).where(LoginThrottle.username_key == key).values(**values)
                        )
                        if _rowcount(updated) == 0:
                            session.add(LoginThrottle(username_key=key, **values))
                    self._add_audit(
                        session,
                        Action.LOGIN_FAILED,
                        target=attempted,
                        outcome="failure",
                        remote=remote,
                        details={
                            "reason": reason,
                            "failures": pair["failures"],
                            "failures_all_addresses": overall["failures"],
                        },
                    )
                    for scope, values in locks:
                        self._add_audit(
                            session,
                            Action.LOGIN_LOCKED,
                            target=attempted,
                            outcome="locked",
                            remote=remote,
                            details={
                                "scope": scope,
                                "address": address_key(remote) if scope == "address" else None,
                                "until": values["locked_until"].isoformat(),
                                "failures": values["failures"],
                            },
                        )
                break
            except ConstraintViolation:
                # Another process inserted a row between our read and write; the second pass updates it.
                if attempt:
                    raise
        self._count("locked" if locks else "failure")
        for scope, values in locks:
            if self._metrics is not None:
                self._metrics.login_locks.labels(scope=scope).inc()
            log.warning(
                "login locked for a username (%s) until %s after %d failures",
                "from one address" if scope == "address" else "from every address its user has not used",
                values["locked_until"],
                values["failures"],
            )

    async def _prune_throttles(self, now: datetime) -> None:
        """Deletes throttle rows whose streak has expired (they mean the same as no row), now and then."""
        if self._pruned_at is not None and self._pruned_at <= now < self._pruned_at + PRUNE_INTERVAL:
            return
        self._pruned_at = now
        cutoff = now - timedelta(minutes=self._config.lockout_minutes)
        stale = (
            select(LoginThrottle.username_key)
            .where(
                LoginThrottle.last_failure_at <= cutoff,
                or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now),
            )
            .limit(PRUNE_BATCH)
        )
        try:
            async with self._database.session() as session:
                deleted = _rowcount(
                    await session.execute(delete(LoginThrottle).where(LoginThrottle.username_key.in_(stale)))
                )
        except DatabaseError:
            # Housekeeping only: the login's answer does not depend on it, and the next pass tries again.
            log.warning("could not prune expired login throttle rows", exc_info=True)
            return
        if deleted >= PRUNE_BATCH:
            # More remain: let the next failed login continue rather than wait a minute.
            self._pruned_at = None
        if deleted:
            log.info("pruned %d expired login throttle rows", deleted)

    # sessions

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of a live session token; None for unknown, expired, revoked or disabled."""
        if not token or len(token) > TOKEN_MAX_CHARS:
            return None
        now = self._now()
        async with self._database.session() as session:
            row = (
                await session.execute(
                    select(User, AuthToken.expires_at)
                    .join(AuthToken, AuthToken.user_id == User.id)
                    .where(
                        AuthToken.token_sha256 == _sha256(token),
                        AuthToken.revoked_at.is_(None),
                        AuthToken.expires_at > now,
                        User.is_active.is_(True),
                    )
                )
            ).first()
            if row is None:
                return None
            user, expires_at = row
            return await self._principal(session, user, expires_at)

    async def live_sessions(self, keys: Iterable[str]) -> dict[str, frozenset[Role]]:
        """Of these session keys (:func:`session_key`), the sessions still live, each with its user's roles now.

        For whoever holds sessions open and must also see changes made by another process (another engine, the
        CLI), which the notices do not carry: one query for many sessions, asked now and then, not per use."""
        wanted = sorted(set(keys))
        live: dict[str, frozenset[Role]] = {}
        now = self._now()
        async with self._database.session() as session:
            for start in range(0, len(wanted), LIVE_SESSIONS_BATCH):
                rows = await session.execute(
                    select(AuthToken.token_sha256, UserRole.role)
                    .join(User, User.id == AuthToken.user_id)
                    .outerjoin(UserRole, UserRole.user_id == User.id)
                    .where(
                        AuthToken.token_sha256.in_(wanted[start : start + LIVE_SESSIONS_BATCH]),
                        AuthToken.revoked_at.is_(None),
                        AuthToken.expires_at > now,
                        User.is_active.is_(True),
                    )
                )
                roles: dict[str, list[str]] = {}
                for key, role in rows:
                    roles.setdefault(key, [])
                    if role is not None:
                        roles[key].append(role)
                live.update((key, frozenset(_known_roles(names))) for key, names in roles.items())
        return live

    async def _principal(self, session: AsyncSession, user: User, expires_at: datetime) -> Principal:
        roles = _known_roles(await session.scalars(select(UserRole.role).where(UserRole.user_id == user.id)))
        teams = await session.scalars(
            select(Team.name).join(TeamMember, TeamMember.team_id == Team.id).where(TeamMember.user_id == user.id)
        )
        return Principal(
            user_id=user.id,
            username=user.username,
            display_name=user.display_name,
            roles=frozenset(roles),
            permissions=permissions_for(roles),
            teams=tuple(sorted(teams)),
            extension=user.extension,
            expires_at=expires_at,
        )

    async def logout(self, token: str, remote: str | None = None) -> bool:
        """Revokes a session; False when the token was not a live session."""
        if not token or len(token) > TOKEN_MAX_CHARS:
            return False
        now = self._now()
        async with self._database.session() as session:
            row = (
                await session.execute(
                    select(AuthToken, User.username)
                    .join(User, User.id == AuthToken.user_id)
                    .where(AuthToken.token_sha256 == _sha256(token), AuthToken.revoked_at.is_(None))
                )
            ).first()
            if row is None:
                return False
            auth_token, username = row
            auth_token.revoked_at = now
            self._add_audit(session, Action.LOGOUT, actor=username, target=username, remote=remote)
        # After the commit: a watcher that checks the token again must find it revoked.
        self.notices.session_ended(session_key(token), SessionEnd.LOGGED_OUT)
        return True

    # users

    async def create_user(
        self,
        username: str,
        password: str,
        *,
        display_name: str | None = None,
        roles: Iterable[Role | str] = (),
        extension: str | None = None,
        teams: Iterable[str] = (),
        lead_of: Iterable[str] = (),
        is_active: bool = True,
        actor: str | None = None,
        remote: str | None = None,
    ) -> UserInfo:
        """Adds a user (and any team not seen before); audited as user_created. UserExists on a taken name."""
        name = validate_username(username)
        validate_password(password)
        shown = _validate_display_name(display_name if display_name is not None else username)
        chosen_roles = _validate_roles(roles)
        lead_teams = {_validate_team(team) for team in lead_of}
        member_teams = {_validate_team(team) for team in teams} | lead_teams
        ext = _validate_extension(extension)
        password_hash = await self.hash_password(password)
        now = self._now()
        try:
            async with self._database.session() as session:
                if await session.scalar(select(User.id).where(User.username == name)) is not None:
                    raise UserExists()
                if ext is not None and is_active:
                    await _check_extension_free(session, ext, None)
                user = User(
                    username=name,
                    display_name=shown,
                    password_hash=password_hash,
                    extension=ext,
                    is_active=is_active,
                    created_at=now,
                )
                session.add(user)
                await session.flush()
                session.add_all(UserRole(user_id=user.id, role=role.value) for role in chosen_roles)
                for team_name in sorted(member_teams):
                    team_id = await _team_id(session, team_name)
                    session.add(TeamMember(team_id=team_id, user_id=user.id, is_lead=team_name in lead_teams))
                self._add_audit(
                    session,
                    Action.USER_CREATED,
                    actor=actor,
                    target=name,
                    remote=remote,
                    details={"roles": list(chosen_roles), "teams": sorted(member_teams)},
                )
        except ConstraintViolation as exc:
            # Lost a race with another writer of the same username or extension.
            holder = await self._extension_holder(ext) if ext is not None and is_active else None
            if ext is not None and holder not in (None, name):
                raise ExtensionTaken(ext, holder) from exc
            raise UserExists() from exc
        return UserInfo(
            id=user.id,
            username=name,
            display_name=shown,
            extension=ext,
            is_active=is_active,
            created_at=now,
            roles=chosen_roles,
            teams=tuple(sorted(member_teams)),
            lead_of=tuple(sorted(lead_teams)),
        )

    async def update_user(
        self,
        username: str,
        *,
        is_active: bool | None = None,
        roles: Iterable[Role | str] | None = None,
        extension: str | None = None,
        actor: str | None = None,
        remote: str | None = None,
    ) -> UserInfo:
        """Enables or disables a user, replaces their roles and/or changes their extension (``""`` takes it
        away); audited as user_changed. UnknownUser if none; ExtensionTaken when the extension the user would
        have is another active user's.

        Sessions follow at once: a disabled user's sessions stop authenticating, and the session watchers (the
        websocket hub) hear of it, so that pages open on a withdrawn permission are closed rather than fed. A
        seat follows at its logout: a user logged in on their old phone stays its holder until then."""
        name = canonical_username(username)
        chosen_roles = None if roles is None else _validate_roles(roles)
        new_extension = None if extension is None else _validate_extension(extension)
        try:
            return await self._update_user(name, is_active, chosen_roles, extension, new_extension, actor, remote)
        except ConstraintViolation as exc:
            # Lost a race with another writer of the same extension.
            taken = new_extension or await self._extension_of(name)
            raise ExtensionTaken(taken or "", await self._extension_holder(taken or "")) from exc

    async def _extension_holder(self, extension: str) -> str | None:
        async with self._database.session() as session:
            return cast(
                "str | None",
                await session.scalar(select(User.username).where(User.extension == extension, User.is_active)),
            )

    async def _extension_of(self, name: str) -> str | None:
        async with self._database.session() as session:
            return cast("str | None", await session.scalar(select(User.extension).where(User.username == name)))

    async def _update_user(
        self,
        name: str,
        is_active: bool | None,
        chosen_roles: tuple[Role, ...] | None,
        extension: str | None,
        new_extension: str | None,
        actor: str | None,
        remote: str | None,
    ) -> UserInfo:
        async with self._database.session() as session:
            user = await session.scalar(select(User).where(User.username == name)) if _lookup_worthy(name) else None
            if user is None:
                raise UnknownUser()
            before_roles = frozenset(
                _known_roles(await session.scalars(select(UserRole.role).where(UserRole.user_id == user.id)))
            )
            was_active = user.is_active
            will_be_active = was_active if is_active is None else is_active
            will_have = user.extension if extension is None else new_extension
            if will_be_active and will_have is not None and (will_have, will_be_active) != (user.extension, was_active):
                await _check_extension_free(session, will_have, user.id)
            changes: dict[str, Any] = {}
            if is_active is not None and is_active != was_active:
                user.is_active = is_active
                changes["is_active"] = is_active
                if not is_active:
                    # Revoked, not just refused while disabled: enabling the user again must not revive them.
                    revoked = await session.execute(
                        update(AuthToken)
                        .where(AuthToken.user_id == user.id, AuthToken.revoked_at.is_(None))
                        .values(revoked_at=self._now())
                    )
                    changes["sessions_revoked"] = _rowcount(revoked)
            if extension is not None and new_extension != user.extension:
                changes["extension"] = new_extension
                changes["extension_before"] = user.extension
                user.extension = new_extension
            if chosen_roles is not None and frozenset(chosen_roles) != before_roles:
                await session.execute(delete(UserRole).where(UserRole.user_id == user.id))
                session.add_all(UserRole(user_id=user.id, role=role.value) for role in chosen_roles)
                changes["roles"] = list(chosen_roles)
                changes["roles_before"] = sorted(before_roles)
            if changes:
                self._add_audit(session, Action.USER_CHANGED, actor=actor, target=name, remote=remote, details=changes)
            user_id = user.id
            active = user.is_active
            now_roles = frozenset(chosen_roles) if chosen_roles is not None else before_roles
        # After the commit, so that a watcher that checks again sees the change.
        if not active and was_active:
            self.notices.user_changed(user_id, None)
        elif active and now_roles != before_roles:
            self.notices.user_changed(user_id, now_roles)
        return next(info for info in await self.list_users() if info.id == user_id)

    async def list_users(self) -> list[UserInfo]:
        async with self._database.session() as session:
            users = list(await session.scalars(select(User).order_by(User.username)))
            roles: dict[int, list[str]] = {}
            for user_id, role in await session.execute(select(UserRole.user_id, UserRole.role)):
                roles.setdefault(user_id, []).append(role)
            teams: dict[int, list[tuple[str, bool]]] = {}
            memberships = await session.execute(
                select(TeamMember.user_id, Team.name, TeamMember.is_lead).join(Team, Team.id == TeamMember.team_id)
            )
            for user_id, team_name, is_lead in memberships:
                teams.setdefault(user_id, []).append((team_name, is_lead))
        return [
            UserInfo(
                id=user.id,
                username=user.username,
                display_name=user.display_name,
                extension=user.extension,
                is_active=user.is_active,
                created_at=user.created_at,
                roles=tuple(sorted(_known_roles(roles.get(user.id, ())))),
                teams=tuple(sorted(name for name, _ in teams.get(user.id, ()))),
                lead_of=tuple(sorted(name for name, lead in teams.get(user.id, ()) if lead)),
            )
            for user in users
        ]

    # audit

    def _add_audit(
        self,
        session: AsyncSession,
        action: str,
        *,
        actor: str | None = None,
        target: str | None = None,
        outcome: str = "success",
        remote: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        session.add(
            AuditEntry(
                at=self._now(),
                actor=_clip(actor, USERNAME_MAX),
                action=_clip(action, 32) or "",
                target=_clip(target, 255),
                outcome=_clip(outcome, 16) or "",
                remote_addr=_clip(remote, 64),
                details=json.dumps(details, default=str, sort_keys=True) if details else None,
            )
        )

    async def audit(
        self,
        action: str,
        *,
        actor: str | None = None,
        target: str | None = None,
        outcome: str = "success",
        remote: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Writes one audit row in its own transaction (feature packages use it for playbacks, spying...)."""
        async with self._database.session() as session:
            self._add_audit(
                session, action, actor=actor, target=target, outcome=outcome, remote=remote, details=details
            )

    async def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[AuditRecord], int]:
        """Audit rows, newest first, and how many match in total (for paging)."""
        conditions: list[Any] = []
        if actor is not None:
            conditions.append(AuditEntry.actor == _clip(canonical_username(actor), USERNAME_MAX))
        if action is not None:
            conditions.append(AuditEntry.action == _clip(action, 32))
        if target is not None:
            conditions.append(AuditEntry.target == _clip(target, 255))
        if since is not None:
            conditions.append(AuditEntry.at >= since)
        if until is not None:
            conditions.append(AuditEntry.at < until)
        limit = max(1, min(limit, AUDIT_LIMIT_MAX))
        offset = max(0, offset)
        async with self._database.session() as session:
            total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions))
            rows = await session.scalars(
                select(AuditEntry)
                .where(*conditions)
                .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                .limit(limit)
                .offset(offset)
            )
            items = [_audit_record(row) for row in rows]
        return items, int(total or 0)


def _known_roles(names: Iterable[str]) -> list[Role]:
    roles = []
    for name in names:
        try:
            roles.append(Role(name))
        except ValueError:
            log.warning("ignoring unknown role %r in the database", name)
    return roles


async def _team_id(session: AsyncSession, name: str) -> int:
    team_id = await session.scalar(select(Team.id).where(Team.name == name))
    if team_id is None:
        team = Team(name=name)
        session.add(team)
        await session.flush()
        team_id = team.id
    return team_id


def _audit_record(row: AuditEntry) -> AuditRecord:
    details = json_object(row.details)
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        remote_addr=row.remote_addr,
        details=details,
    )
