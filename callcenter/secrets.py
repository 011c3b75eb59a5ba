"""Secrets the engine makes for itself when the config leaves them empty."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from callcenter.config import Config

AMI_SECRET_FILE = "ami.secret"  # noqa: S105 - a file name, not a secret


def ami_secret(config: Config) -> str:
    """The AMI password: the configured one, else a random one made once and kept in data_dir (mode 0600).

    The sandbox writes it into manager.conf and the engine logs in with it, so both sides read it here.
    """
    configured = config.ami.password.get_secret_value()
    if configured:
        return configured
    path = Path(config.data_dir) / AMI_SECRET_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    made = secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(made + "\n")
    return made
