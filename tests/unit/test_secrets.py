"""Secrets the engine makes for itself: SIP phone passwords and the FastAGI secret (issue 16)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from pydantic import SecretStr

from callcenter.config import Config, Phone, load_config
from callcenter.secrets import AGI_SECRET_FILE, PHONE_SECRETS_FILE, agi_secret, phone_passwords

OLD_FIXED = {"agent1001", "agent1002", "agent1003", "expert2001", "expert2002", "super3001"}


def _config(tmp_path: Path, **environ: str) -> Config:
    return load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "data"), **environ})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_phones_have_no_fixed_password_in_the_config() -> None:
    config = load_config(environ={})
    assert [phone.password.get_secret_value() for phone in config.sip.phones] == [""] * len(config.sip.phones)


def test_phone_passwords_are_generated_private_and_stable_across_restarts(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        first = phone_passwords(_config(tmp_path))
    finally:
        os.umask(old_umask)
    assert set(first) == {"1001", "1002", "1003", "2001", "2002", "3001"}
    assert not set(first.values()) & OLD_FIXED
    assert len(set(first.values())) == len(first)
    assert all(len(password) >= 20 for password in first.values())
    stored = tmp_path / "data" / PHONE_SECRETS_FILE
    assert _mode(stored) == 0o600
    assert json.loads(stored.read_text(encoding="utf-8")) == first
    # A restart (a new Config read from the same data directory) finds the same passwords.
    assert phone_passwords(_config(tmp_path)) == first
    # Another data directory: other passwords (nothing is derived from the extension).
    assert not set(phone_passwords(_config(tmp_path / "other")).values()) & set(first.values())


def test_a_configured_password_wins_and_a_new_phone_gets_one_added(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = phone_passwords(config)
    phones = [
        *config.sip.phones[:-1],
        config.sip.phones[-1].model_copy(update={"password": SecretStr("chosen-by-admin")}),
        Phone(extension="1004", kind="agent"),
    ]
    changed = config.model_copy(update={"sip": config.sip.model_copy(update={"phones": phones})})
    passwords = phone_passwords(changed)
    assert passwords["3001"] == "chosen-by-admin"
    assert passwords["1004"]
    assert passwords["1004"] not in first.values()
    assert {ext: passwords[ext] for ext in ("1001", "1002", "1003", "2001", "2002")} == {
        ext: first[ext] for ext in ("1001", "1002", "1003", "2001", "2002")
    }
    assert _mode(tmp_path / "data" / PHONE_SECRETS_FILE) == 0o600
    assert phone_passwords(changed) == passwords


def test_the_agi_secret_is_generated_once_private_and_the_configured_one_wins(tmp_path: Path) -> None:
    secret = agi_secret(_config(tmp_path))
    assert secret is not None
    assert len(secret) >= 24
    assert _mode(tmp_path / "data" / AGI_SECRET_FILE) == 0o600
    assert agi_secret(_config(tmp_path)) == secret
    chosen = "0123456789abcdef-chosen"
    assert agi_secret(_config(tmp_path, CALLCENTER_AGI_SECRET=chosen)) == chosen
    assert agi_secret(_config(tmp_path, CALLCENTER_AGI_REQUIRE_SECRET="false")) is None
