"""`callcenter asterisk phones` and the demo's banner show the phones' SIP passwords (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from callcenter.cli import main
from callcenter.config import load_config
from callcenter.secrets import phone_passwords
from callcenter_devtools.demo import Demo


def _config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "cc.toml"
    path.write_text(f'[paths]\ndata_dir = "{tmp_path / "data"}"\n{extra}', encoding="utf-8")
    return path


def test_the_phones_command_prints_every_phone_with_its_generated_password(tmp_path: Path) -> None:
    config_path = _config_file(tmp_path)
    result = CliRunner().invoke(main, ["--config", str(config_path), "asterisk", "phones"])
    assert result.exit_code == 0, result.output
    passwords = phone_passwords(load_config(config_path, environ={}))
    lines = result.output.splitlines()
    for extension, password in passwords.items():
        row = next(line for line in lines if line.startswith(extension))
        assert password in row.split()
        assert "(generated)" in row
    # The same passwords on the next run (kept in the data directory).
    again = CliRunner().invoke(main, ["--config", str(config_path), "asterisk", "phones"])
    assert again.output == result.output


def test_the_phones_command_shows_a_configured_password_as_configured(tmp_path: Path) -> None:
    extra = '[[sip.phones]]\nextension = "1001"\npassword = "desk-pass-1001"\n'
    result = CliRunner().invoke(main, ["--config", str(_config_file(tmp_path, extra)), "asterisk", "phones"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("1001"))
    assert "desk-pass-1001" in row
    assert "(generated)" not in row


def test_the_demo_banner_shows_the_phone_passwords(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "data")})
    demo = Demo(config, calls_every=0)
    demo._print_banner()
    banner = capsys.readouterr().out
    for extension, password in phone_passwords(demo.config).items():
        assert any(line.split()[:2] == [extension, password] for line in banner.splitlines() if line.strip())
    assert "agent1001" not in banner
