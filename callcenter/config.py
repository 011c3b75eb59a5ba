"""Typed configuration: defaults, then one TOML file, then CALLCENTER_<SECTION>_<KEY> environment overrides.

Every key has a default so that a fresh machine runs with no file at all. Validation errors name the key
(``ami.port: Input should be less than or equal to 65535``) and where its value came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from callcenter.dialplan import CEL_LOG

ENV_PREFIX = "CALLCENTER_"
CONFIG_ENV = "CALLCENTER_CONFIG"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Secrets end up in Asterisk config files: no spaces, no ';' (a comment there), no quotes or brackets.
_SECRET_CHARS = re.compile(r"^[A-Za-z0-9!#$%&()*+,./:<=>?@^_`{|}~-]*$")


def _check_secret(value: SecretStr, minimum: int, *, allow_empty: bool = False) -> SecretStr:
    text = value.get_secret_value()
    if allow_empty and text == "":
        return value
    if not _SECRET_CHARS.match(text):
        raise ValueError("use letters, digits and punctuation other than ; \" ' [ ] (no spaces)")
    if not minimum <= len(text) <= 128:
        raise ValueError(f"must be {minimum} to 128 characters")
    return value


_DIGITS = re.compile(r"^[0-9+*#]{1,32}$")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what to do."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _loopback(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address") from exc
    if not address.is_loopback:
        raise ValueError(f"{value!r} is not a loopback address (127.0.0.0/8 or ::1)")
    return value


class WebConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Cookies are marked Secure when the engine sits behind TLS.
    secure_cookies: bool = False


class AgiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=1, le=65535)
    # A silent or half-open Asterisk connection is dropped after this many seconds without a line.
    read_timeout: float = Field(30.0, gt=0, le=3600)
    # The time one command may take at most (a menu prompt with a long timeout included).
    command_timeout: float = Field(120.0, gt=0, le=3600)
    max_sessions: int = Field(500, ge=1, le=100_000)
    max_header_lines: int = Field(200, ge=10, le=10_000)
    # Only Asterisk talks to the FastAGI port: connections from any other address are closed at once. Addresses
    # or networks; the default is where the sandbox's Asterisk (and any Asterisk on this host) connects from.
    allowed_peers: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"], min_length=1, max_length=64)
    # Seconds a new connection has to send its whole AGI environment (Asterisk sends it as soon as it connects).
    header_timeout: float = Field(5.0, gt=0, le=300)
    # Connections of one peer that may sit silent in the header phase; past it the oldest silent ones are closed,
    # so idle sockets cannot take the slots real calls need. Below max_sessions.
    max_pending_per_peer: int = Field(32, ge=1, le=100_000)
    # The shared secret the dialplan's AGI URL carries (agi://host:port/ivr?...&secret=...). Empty: a random one is
    # made once and kept in data_dir/agi.secret (callcenter.secrets.agi_secret), which `callcenter asterisk start`
    # renders into the dialplan. require_secret = false accepts sessions without it (a hand-written dialplan).
    secret: SecretStr = SecretStr("")
    require_secret: bool = True

    @field_validator("allowed_peers")
    @classmethod
    def _peers(cls, value: list[str]) -> list[str]:
        for peer in value:
            try:
                ipaddress.ip_network(peer, strict=False)
            except ValueError as exc:
                raise ValueError(f"{peer!r} is not an IP address or network (127.0.0.1, 10.0.0.0/24)") from exc
        return value

    @field_validator("secret")
    @classmethod
    def _url_secret(cls, value: SecretStr) -> SecretStr:
        # It goes into a URL inside the dialplan: unreserved URL characters only, so nothing needs escaping there.
        text = value.get_secret_value()
        if text and not re.fullmatch(r"[A-Za-z0-9._~-]{16,128}", text):
            raise ValueError("use 16 to 128 letters, digits, '.', '_', '~' or '-'")
        return value

    @model_validator(mode="after")
    def _pending_below_sessions(self) -> AgiConfig:
        if "max_pending_per_peer" in self.model_fields_set and self.max_pending_per_peer >= self.max_sessions:
            raise ValueError("max_pending_per_peer must be below max_sessions")
        return self

    @property
    def pending_per_peer(self) -> int:
        """The per-peer cap in force: the default shrinks with a small max_sessions."""
        return max(1, min(self.max_pending_per_peer, self.max_sessions - 1))


class AmiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "callcenter"
    # Empty: a random secret is made once and kept in data_dir/ami.secret (callcenter.secrets.ami_secret).
    password: SecretStr = SecretStr("")
    action_timeout: float = Field(10.0, gt=0, le=300)
    # Channels the live model holds at most; past it, new channels are not folded and the model is rebuilt from
    # Asterisk's listings (a peer inventing channels cannot grow it). 20,000 is some 6,000 calls of 3 legs.
    max_channels: int = Field(20_000, ge=100, le=1_000_000)

    @field_validator("password")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return _check_secret(value, 12, allow_empty=True)

    @field_validator("username")
    @classmethod
    def _safe_username(cls, value: str) -> str:
        if not _SAFE_NAME.match(value):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-'")
        return value


class Phone(_Section):
    """A SIP phone on a desk: an agent's, an expert's or a supervisor's."""

    extension: str
    kind: Literal["agent", "expert", "supervisor"] = "agent"
    # Empty: a random password is made once and kept in data_dir/phones.secret (callcenter.secrets.phone_passwords);
    # `callcenter asterisk phones` shows it.
    password: SecretStr = SecretStr("")
    # sip:EXT@HOST:PORT for a phone that does not register (SIPp in tests); empty means it registers.
    contact: str = ""

    @field_validator("extension")
    @classmethod
    def _numeric(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9]{2,8}", value):
            raise ValueError("an extension is 2 to 8 digits")
        return value

    @field_validator("password")
    @classmethod
    def _phone_secret(cls, value: SecretStr) -> SecretStr:
        return _check_secret(value, 8, allow_empty=True)

    @field_validator("contact")
    @classmethod
    def _contact(cls, value: str) -> str:
        if value and not re.fullmatch(r"sip:[0-9A-Za-z_.-]+@[0-9A-Za-z_.-]+(:[0-9]{1,5})?", value):
            raise ValueError("a static contact looks like sip:1001@127.0.0.3:5081")
        return value


def _default_phones() -> list[Phone]:
    # No passwords here: each is generated on first use (callcenter.secrets.phone_passwords), never a fixed string.
    return [
        Phone(extension="1001", kind="agent"),
        Phone(extension="1002", kind="agent"),
        Phone(extension="1003", kind="agent"),
        Phone(extension="2001", kind="expert"),
        Phone(extension="2002", kind="expert"),
        Phone(extension="3001", kind="supervisor"),
    ]


class SipConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5060, ge=1, le=65535)
    # Calls from this address are the public network (the PSTN trunk); phones use other addresses.
    pstn_address: str = "127.0.0.2"
    # Where outbound calls to customers go (callbacks): the PSTN side's SIP port on pstn_address.
    pstn_port: int = Field(5060, ge=1, le=65535)
    rtp_start: int = Field(10000, ge=1024, le=65535)
    rtp_end: int = Field(20000, ge=1024, le=65535)
    dids: list[str] = Field(default_factory=lambda: ["4000", "4001"])
    phones: list[Phone] = Field(default_factory=_default_phones)

    @field_validator("host", "pstn_address")
    @classmethod
    def _only_loopback(cls, value: str) -> str:
        return _loopback(value)

    @field_validator("dids")
    @classmethod
    def _dids(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one DID")
        for did in value:
            if not re.fullmatch(r"[0-9+]{2,20}", did):
                raise ValueError(f"DID {did!r} is not 2-20 digits")
        return value

    @model_validator(mode="after")
    def _unique(self) -> SipConfig:
        if self.rtp_end <= self.rtp_start:
            raise ValueError("rtp_end must be greater than rtp_start")
        numbers = [p.extension for p in self.phones] + list(self.dids)
        dupes = sorted({n for n in numbers if numbers.count(n) > 1})
        if dupes:
            raise ValueError(f"extensions and DIDs must be unique; repeated: {', '.join(dupes)}")
        return self


class QueuesConfig(_Section):
    # queues.conf reserves [general] for global settings, so the ordinary queue needs another name.
    general: str = "support"
    expert: str = "expert"
    # Seconds a queue member rings before the next one is tried.
    ring_timeout: int = Field(15, ge=1, le=300)
    # Seconds of wrap-up after each call (queues.conf wrapuptime), for the general and the expert queue.
    wrapup_time: int = Field(10, ge=0, le=3600)
    expert_wrapup_time: int = Field(30, ge=0, le=3600)
    # The reasons an agent may give for a pause (what the statistics group pause time by).
    pause_reasons: list[str] = Field(
        default_factory=lambda: ["break", "lunch", "training", "meeting", "after_call_work", "technical"]
    )

    @field_validator("pause_reasons")
    @classmethod
    def _reasons(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one pause reason is needed")
        for reason in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", reason):
                raise ValueError(f"pause reason {reason!r}: use lowercase letters, digits and '_'")
        return value

    def wrapup_for(self, queue: str) -> int:
        return self.expert_wrapup_time if queue == self.expert else self.wrapup_time

    @field_validator("general", "expert")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", value) or value == "general":
            raise ValueError("a queue name is lowercase letters, digits, '_' or '-', and not 'general'")
        return value


class CallsConfig(_Section):
    # Asterisk's channel event log (JSON lines, asterisk-conf/cel_custom.conf) as the engine's host sees it;
    # empty: the sandbox's (<sandbox_dir>/var/log/asterisk/cel-custom/<dialplan.CEL_LOG>).
    cel_log: Path | None = None
    # Seconds between reconciliations of unfinished call records against the channel event log.
    reconcile_interval: float = Field(30.0, ge=1, le=3600)
    # Expert handoff: how long the caller waits in the expert queue before being offered voicemail or a
    # callback, and the queue priority that puts them ahead of callers who have not waited yet.
    expert_timeout: int = Field(60, ge=5, le=3600)
    expert_priority: int = Field(100, ge=1, le=1000)
    # The longest a callback call may last; Asterisk hangs up then.
    callback_max_seconds: int = Field(3600, ge=5, le=24 * 3600)


class AsteriskConfig(_Section):
    # The Debian sid chroot with Asterisk 22 inside; kept outside the repository and reused between runs.
    sandbox_dir: Path = Path("/var/cache/callcenter/asterisk-sid")
    mirror: str = "http://deb.debian.org/debian"
    suite: str = "sid"
    # Free space the install needs, in MiB (seen: 668 MB on disk).
    min_free_mb: int = Field(1500, ge=100)
    start_timeout: float = Field(60.0, gt=0)
    # The asterisk-conf/ templates; empty means the ones shipped beside the package.
    conf_dir: Path | None = None
    # Asterisk's sounds directory as the engine sees it; empty means the sandbox's.
    sounds_dir: Path | None = None

    @property
    def templates_dir(self) -> Path:
        return self.conf_dir or Path(__file__).resolve().parent.parent / "asterisk-conf"

    @property
    def sounds_path(self) -> Path:
        return self.sounds_dir or self.sandbox_dir / "usr/share/asterisk/sounds"


class FlowsConfig(_Section):
    """The IVR flows (ivr_flows): where the YAML files are and which one a call starts in."""

    # A directory of flow files; empty means the flows shipped in ivr_flows/flows.
    directory: Path | None = None
    entry: str = Field("main", pattern=r"^[a-z][a-z0-9_]{0,47}$")
    # The time zone of flows and schedules that name none (opening hours are evaluated in it).
    timezone: str = "UTC"
    # Make every text prompt with espeak-ng when the engine starts, before the first caller needs it.
    prepare_prompts: bool = True

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Shanghai)") from exc
        return value


class DatabaseConfig(_Section):
    # Empty means the embedded SQLite file in paths.data_dir.
    url: str = ""
    echo: bool = False


class SupervisorConfig(_Section):
    """The supervisor's live board, listening in and statistics (the supervisor package)."""

    # A call counts towards the service level when a seat answered it within this many seconds of queueing.
    service_level_seconds: int = Field(20, ge=1, le=3600)
    # Each websocket page gets at most one board frame per this many seconds (the newest wins).
    board_interval: float = Field(1.0, ge=0.1, le=60)
    # A board frame is sent this often even when nothing changed, so that durations and waits move on screen.
    board_refresh: float = Field(5.0, ge=1, le=300)
    # Seconds the supervisor's own phone rings with a listen, whisper or barge call before it is given up.
    spy_ring_timeout: int = Field(30, ge=5, le=120)
    # The longest range one statistics request may cover, in days.
    stats_max_days: int = Field(366, ge=1, le=3660)


class CrmConfig(_Section):
    """How phone numbers are written in the center's country, so that every form of one number finds its owner."""

    country_code: str = Field("86", pattern=r"^[1-9][0-9]{0,3}$")
    # What a national number starts with when dialled inside the country, and what dials out of it.
    trunk_prefix: str = Field("0", pattern=r"^[0-9]{0,4}$")
    international_prefix: str = Field("00", pattern=r"^[0-9]{0,4}$")
    # Local numbers (at most local_max_digits digits, no prefix) are placed in this area; empty keeps them as is.
    area_code: str = Field("", pattern=r"^[0-9]{0,4}$")
    local_max_digits: int = Field(8, ge=0, le=12)
    # Longer numbers without a prefix are international without their '+' (8613800138000).
    national_max_digits: int = Field(11, ge=1, le=15)
    # Seconds the service-record outbox waits at most between attempts while the database is down.
    outbox_retry_max: float = Field(30.0, ge=0.1, le=3600)

    @field_validator("country_code", "trunk_prefix", "international_prefix", "area_code", mode="before")
    @classmethod
    def _digits_as_text(cls, value: Any) -> Any:
        # CALLCENTER_CRM_AREA_CODE=10 arrives as the TOML integer 10 (TOML has no integers with leading zeros,
        # so "010" stays text): the digits are the same.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else value

    @model_validator(mode="after")
    def _ordered(self) -> CrmConfig:
        if self.local_max_digits >= self.national_max_digits:
            raise ValueError("local_max_digits must be below national_max_digits")
        if self.international_prefix and self.trunk_prefix.startswith(self.international_prefix):
            raise ValueError("trunk_prefix cannot start with international_prefix")
        return self


class DeskConfig(_Section):
    """The service desk (crm_bridge): follow-up reminders and callback visits. Dates are the center's
    (``flows.timezone``): a follow-up due "today" is due from that zone's midnight."""

    # Seconds between passes of the reminder job (due and overdue records, visits for resolved complaints).
    reminder_interval: float = Field(60.0, ge=1, le=3600)
    # An appointment is due (reminded to its owner) this many minutes before its time...
    appointment_lead_minutes: int = Field(60, ge=0, le=7 * 24 * 60)
    # ...and overdue when it is this many minutes past with its record not yet in progress.
    appointment_grace_minutes: int = Field(30, ge=0, le=7 * 24 * 60)
    # A complaint resolved within this many days gets a callback visit (older ones, from before, do not).
    complaint_visit_days: int = Field(7, ge=1, le=365)


class PathsConfig(_Section):
    data_dir: Path = Path("var")
    recordings_dir: Path = Path("var/recordings")


class RecordingsConfig(_Section):
    # Days a recording is kept, per kind; 0 keeps it forever. Expired files are deleted, their index rows stay
    # (marked erased) so that statistics and the audit trail still add up.
    retention_full_days: int = Field(0, ge=0, le=36500)
    retention_on_demand_days: int = Field(0, ge=0, le=36500)
    retention_voicemail_days: int = Field(0, ge=0, le=36500)
    # Minutes between passes of the retention job (which also drops old mp3/ogg conversions).
    retention_check_minutes: float = Field(60.0, gt=0, le=24 * 60)
    # mp3/ogg conversions running at once (each is an ffmpeg process), and days a conversion is kept.
    max_concurrent_transcodes: int = Field(2, ge=1, le=32)
    transcode_cache_days: float = Field(7.0, gt=0, le=365)
    # Searches count matches exactly up to this many and then answer "at least this many" (total_exact false):
    # an exact count of a million rows costs more than the page itself. 0 always counts everything.
    search_count_limit: int = Field(10_000, ge=0, le=100_000_000)
    # Recording rules: a call whose caller's best CRM tier is listed here, or that joins a queue listed here,
    # is also recorded on demand from the moment it is queued (the wait, the agent and any expert leg in one
    # file of its own), described by the rule that started it. The full recordings are made either way.
    record_tiers: list[Literal["vip", "gold", "silver", "standard"]] = Field(default_factory=list, max_length=4)
    record_queues: list[str] = Field(default_factory=list, max_length=16)


class AuthConfig(_Section):
    token_ttl_hours: float = Field(12.0, gt=0, le=24 * 30)
    # Failed logins count per username AND client address (an IPv4 address; an IPv6 /64), so that a stranger's
    # failures from elsewhere never delay or lock the owner. After this many in a row from one address, each
    # further attempt for that username from there waits a delay doubling up to max_delay_seconds...
    free_failures: int = Field(3, ge=1, le=100)
    # ...and after this many the username is locked for that address for lockout_minutes, the right password
    # included, unless the user has logged in from that address before (then only the delay applies).
    lockout_after: int = Field(10, ge=2, le=1000)
    lockout_minutes: float = Field(15.0, gt=0, le=24 * 60)
    max_delay_seconds: float = Field(30.0, ge=0, le=600)
    # Failures for one username from all addresses together (a guesser with many addresses): past this many
    # within lockout_minutes the username is locked for lockout_minutes from every address the user has not
    # logged in from before; from the user's own addresses the right password still works.
    username_lockout_after: int = Field(50, ge=2, le=100_000)
    # How many addresses each user is remembered to have logged in from (the most recent ones).
    known_addresses: int = Field(8, ge=1, le=100)
    # Login attempts per client address (IPv6: per /64), checked before any database or password work: a burst
    # of this many, then this many more per minute. Loopback is not exempt.
    address_burst: int = Field(20, ge=1, le=10_000)
    address_per_minute: float = Field(10.0, gt=0, le=10_000)
    # Password hashes and verifies running at once; each argon2 run takes 64 MiB and tens of ms of CPU.
    max_concurrent_hashes: int = Field(2, ge=1, le=64)

    @model_validator(mode="after")
    def _ordered(self) -> AuthConfig:
        if self.lockout_after <= self.free_failures:
            raise ValueError("lockout_after must be greater than free_failures")
        return self


class Config(_Section):
    web: WebConfig = WebConfig()
    agi: AgiConfig = AgiConfig()
    ami: AmiConfig = AmiConfig()
    sip: SipConfig = SipConfig()
    queues: QueuesConfig = QueuesConfig()
    calls: CallsConfig = CallsConfig()
    asterisk: AsteriskConfig = AsteriskConfig()
    flows: FlowsConfig = FlowsConfig()
    database: DatabaseConfig = DatabaseConfig()
    paths: PathsConfig = PathsConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    auth: AuthConfig = AuthConfig()
    crm: CrmConfig = CrmConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    desk: DeskConfig = DeskConfig()

    @model_validator(mode="after")
    def _rule_queues(self) -> Config:
        known = (self.queues.general, self.queues.expert)
        for queue in self.recordings.record_queues:
            if queue not in known:
                raise ValueError(f"recordings.record_queues: {queue!r} is not a queue (queues are {', '.join(known)})")
        return self

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'callcenter.sqlite3'}"

    @property
    def data_dir(self) -> Path:
        return self.paths.data_dir.resolve()

    @property
    def recordings_dir(self) -> Path:
        return self.paths.recordings_dir.resolve()

    @property
    def cel_log(self) -> Path:
        return self.calls.cel_log or self.asterisk.sandbox_dir / "var/log/asterisk/cel-custom" / CEL_LOG

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain data with every secret masked, safe to log or print."""
        return self.model_dump(mode="json")


def _set_path(tree: dict[str, Any], section: str, key: str, raw: str) -> None:
    """Places one environment override; values are parsed as TOML scalars when they look like one."""
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    tree.setdefault(section, {})[key] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    sections = {name: model for name, model in Config.model_fields.items()}
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            raise ConfigError(f"{name}: no such setting (sections: {', '.join(sorted(sections))})")
        _set_path(tree, section, key, raw)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{key}: {message}")
    return f"invalid configuration ({source}):\n  " + "\n  ".join(lines)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Reads the configuration; ``path`` wins over $CALLCENTER_CONFIG, and the environment wins over both."""
    environ = os.environ if environ is None else environ
    chosen = path or environ.get(CONFIG_ENV)
    tree: dict[str, Any] = {}
    source = "defaults"
    if chosen:
        file = Path(chosen)
        try:
            tree = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file {file} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
        source = str(file)
    overrides = _env_overrides(environ)
    if overrides:
        source += " + environment"
    try:
        return Config.model_validate(_merge(tree, overrides))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc
