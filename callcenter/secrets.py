"""Secrets the engine makes for itself when the config leaves them empty.

Each is made once with :mod:`secrets`, kept in the data directory in a file only its owner may read (0600), and
read back at every start, so the engine and the Asterisk sandbox (which renders them into Asterisk's configs)
agree on them across restarts. They are never logged.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from callcenter.config import Config

AMI_SECRET_FILE = "ami.secret"  # noqa: S105 - a file name, not a secret
AGI_SECRET_FILE = "agi.secret"  # noqa: S105 - a file name, not a secret
PHONE_SECRETS_FILE = "phones.secret"

_EXTENSION = re.compile(r"^[0-9]{2,8}$")


def _write_private(path: Path, text: str, *, exclusive: bool) -> None:
    """Writes ``text`` to a file made with mode 0600 (never readable by others, whatever the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if exclusive:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    # Replaced whole through a private temporary file, so a reader never sees half a file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _kept_secret(config: Config, name: str) -> str:
    path = Path(config.data_dir) / name
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    made = secrets.token_urlsafe(24)
    try:
        _write_private(path, made + "\n", exclusive=True)
    except FileExistsError:
        # Another process made it first (the engine and the sandbox start together): use theirs.
        return path.read_text(encoding="utf-8").strip() or made
    return made


def ami_secret(config: Config) -> str:
    """The AMI password: the configured one, else a random one made once and kept in data_dir (mode 0600).

    The sandbox writes it into manager.conf and the engine logs in with it, so both sides read it here.
    """
    configured = config.ami.password.get_secret_value()
    return configured or _kept_secret(config, AMI_SECRET_FILE)


def agi_secret(config: Config) -> str | None:
    """The secret the dialplan's AGI URL carries: the configured one, else one made once and kept in data_dir
    (mode 0600); None when ``agi.require_secret`` is off. The sandbox renders it into extensions.conf and the
    FastAGI server checks it, so both sides read it here."""
    if not config.agi.require_secret:
        return None
    configured = config.agi.secret.get_secret_value()
    return configured or _kept_secret(config, AGI_SECRET_FILE)


def phone_passwords(config: Config) -> dict[str, str]:
    """Each configured phone's SIP password by extension: the configured one, else a random one made once per
    extension and kept in data_dir/phones.secret (JSON, mode 0600). The sandbox renders them into pjsip.conf;
    `callcenter asterisk phones` and the demo's banner show them to whoever may read that file."""
    path = Path(config.data_dir) / PHONE_SECRETS_FILE
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        loaded = {}
    except ValueError as exc:
        raise ValueError(f"{path} is not the JSON file the engine writes; remove it to make new passwords") from exc
    kept = {
        str(ext): str(password)
        for ext, password in (loaded.items() if isinstance(loaded, dict) else ())
        if _EXTENSION.match(str(ext)) and password
    }
    passwords: dict[str, str] = {}
    changed = False
    for phone in config.sip.phones:
        configured = phone.password.get_secret_value()
        if configured:
            passwords[phone.extension] = configured
            continue
        if phone.extension not in kept:
            kept[phone.extension] = secrets.token_urlsafe(18)
            changed = True
        passwords[phone.extension] = kept[phone.extension]
    if changed:
        _write_private(path, json.dumps(kept, indent=1, sort_keys=True) + "\n", exclusive=False)
    return passwords
