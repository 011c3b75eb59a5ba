"""Configuration: defaults, the TOML file, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.config import ConfigError, load_config
from crm_bridge.models import Tier


def test_defaults_need_no_file() -> None:
    config = load_config(environ={})
    assert (config.web.host, config.web.port) == ("127.0.0.1", 8080)
    assert (config.agi.host, config.agi.port) == ("127.0.0.1", 4573)
    assert config.ami.port == 5038
    assert config.sip.port == 5060
    assert config.database_url.startswith("sqlite+aiosqlite:///")
    assert config.database_url.endswith("callcenter.sqlite3")


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text('[web]\nport = 9000\n[ami]\nusername = "fromfile"\n', encoding="utf-8")
    config = load_config(path, environ={"CALLCENTER_WEB_PORT": "9100", "CALLCENTER_SIP_DIDS": '["5000", "5001"]'})
    assert config.web.port == 9100
    assert config.ami.username == "fromfile"
    assert config.sip.dids == ["5000", "5001"]


def test_config_env_variable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text("[agi]\nmax_sessions = 7\n", encoding="utf-8")
    assert load_config(environ={"CALLCENTER_CONFIG": str(path)}).agi.max_sessions == 7


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("[ami]\nport = 70000\n", {}, "ami.port"),
        ("[web]\nnope = 1\n", {}, "web.nope: unknown setting"),
        ("", {"CALLCENTER_AGI_READ_TIMEOUT": "-1"}, "agi.read_timeout"),
        ("", {"CALLCENTER_SIP_PSTN_ADDRESS": "10.0.0.1"}, "not a loopback address"),
        ("", {"CALLCENTER_QUEUES_GENERAL": "general"}, "queues.general"),
        ("", {"CALLCENTER_BOGUS_KEY": "1"}, "CALLCENTER_BOGUS_KEY: no such setting"),
        ("[sip]\ndids = ['1001']\n", {}, "repeated: 1001"),
        ("[auth]\nfree_failures = 5\nlockout_after = 3\n", {}, "lockout_after must be greater"),
        ("[web\n", {}, "not valid TOML"),
        ("", {"CALLCENTER_AMI_PASSWORD": "short"}, "ami.password: Value error, must be 12"),
        ('[ami]\npassword = "abcdefghijkl\\n[evil]"\n', {}, "ami.password"),
        ('[ami]\npassword = "abcdefghijkl;x"\n', {}, "ami.password"),
        ('[[sip.phones]]\nextension = "1001"\npassword = "short"\n', {}, "sip.phones.0.password"),
        ('[recordings]\nrecord_tiers = ["VIP"]\n', {}, "recordings.record_tiers.0"),
        ('[agi]\nallowed_peers = ["asterisk.local"]\n', {}, "agi.allowed_peers"),
        ('[agi]\nsecret = "has a space in it, and commas"\n', {}, "agi.secret"),
        ("[agi]\nmax_sessions = 10\nmax_pending_per_peer = 10\n", {}, "max_pending_per_peer must be below"),
        ('[recordings]\nrecord_queues = ["sales"]\n', {}, "'sales' is not a queue"),
    ],
)
def test_bad_values_are_refused_naming_the_key(
    tmp_path: Path, text: str, environ: dict[str, str], expected: str
) -> None:
    path = tmp_path / "cc.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        load_config(path, environ=environ)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", environ={})


def test_secrets_are_masked_when_dumped() -> None:
    config = load_config(environ={"CALLCENTER_AMI_PASSWORD": "hunter2-hunter2"})
    assert config.ami.password.get_secret_value() == "hunter2-hunter2"
    assert "hunter2-hunter2" not in str(config.redacted())
    assert "hunter2-hunter2" not in repr(config)


def test_example_file_in_the_repository_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "callcenter.example.toml"
    config = load_config(example, environ={})
    assert config.queues.general == "support"


def test_an_empty_ami_password_gets_a_private_random_secret(tmp_path: Path) -> None:
    from callcenter.secrets import ami_secret

    config = load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path)})
    first = ami_secret(config)
    assert len(first) >= 24
    assert ami_secret(config) == first
    assert (tmp_path / "ami.secret").stat().st_mode & 0o777 == 0o600
    other = load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "other")})
    assert ami_secret(other) != first


def test_recording_rule_tiers_are_the_crms_tiers(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text('[recordings]\nrecord_tiers = ["vip", "gold"]\nrecord_queues = ["expert"]\n', encoding="utf-8")
    config = load_config(path, environ={})
    assert (config.recordings.record_tiers, config.recordings.record_queues) == (["vip", "gold"], ["expert"])
    for tier in Tier:
        path.write_text(f'[recordings]\nrecord_tiers = ["{tier}"]\n', encoding="utf-8")
        assert load_config(path, environ={}).recordings.record_tiers == [tier.value]
