"""`callcenter recordings search|check` against a real index and real files.

SQLite only: the command reads its database from the configuration, which has no PostgreSQL schema setting
to keep a test apart from others on a shared server; the search itself runs on both engines in
test_recordings_service.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import wave
from pathlib import Path

import pytest
from click.testing import CliRunner

from callcenter.cli import main
from callcenter.config import load_config
from callcenter.db import Database
from recordings.index import NoAudit
from recordings.infos import CallFacts
from recordings.plugin import build_recordings


def write_wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 8000))) for n in range(int(seconds * 8000))
    )
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(frames)


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("CALLCENTER_CONFIG", raising=False)
    monkeypatch.setenv("CALLCENTER_PATHS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CALLCENTER_PATHS_RECORDINGS_DIR", str(tmp_path / "recordings"))
    (tmp_path / "recordings").mkdir()
    config = load_config()

    async def seed() -> dict[str, str]:
        database = Database(config.database_url)
        await database.open()
        try:
            await database.migrate()
            service = build_recordings(config, database, NoAudit())
            ids = {}
            for name, number, text in (("refund", "+8613800001111", "refund asked"), ("other", "+8613900002222", "")):
                info, allocation = await service.lifecycle.start(
                    "full", CallFacts(caller_number=number, description=text, agent_interface="PJSIP/1001")
                )
                write_wav(allocation.path, 1.5)
                await service.lifecycle.finish(info.id)
                ids[name] = info.id
            return ids
        finally:
            await database.close()

    return asyncio.run(seed())


def test_search_prints_matching_recordings_and_the_total(configured: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["recordings", "search", "-q", "REFUND", "--agent", "PJSIP/1001"])
    assert result.exit_code == 0, result.output
    assert configured["refund"] in result.output
    assert configured["other"] not in result.output
    assert "1 shown of 1 matching" in result.output

    result = CliRunner().invoke(main, ["recordings", "search", "--number", "2222", "--partial", "--json"])
    page = json.loads(result.output)
    assert [item["id"] for item in page["items"]] == [configured["other"]]
    assert (page["total"], page["total_exact"]) == (1, True)


def test_search_names_the_option_at_fault(configured: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["recordings", "search", "--min-duration", "5", "--max-duration", "1"])
    assert result.exit_code == 2
    assert "--max-duration" in result.output
    result = CliRunner().invoke(main, ["recordings", "search", "--limit", "0"])
    assert result.exit_code == 2
    assert "--limit" in result.output


def test_check_is_clean_then_reports_both_kinds_of_mismatch(configured: dict[str, str], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["recordings", "check"])
    assert result.exit_code == 0, result.output
    assert "0 files without rows, 0 rows without files" in result.output

    (lost,) = (tmp_path / "recordings").rglob(f"{configured['other']}.wav")
    lost.unlink()
    write_wav(tmp_path / "recordings" / "full" / "2030" / "01" / "01" / "stray.wav", 0.1)
    result = CliRunner().invoke(main, ["recordings", "check"])
    assert result.exit_code == 1
    assert "file without row: full/2030/01/01/stray.wav" in result.output
    assert f"row without file: {configured['other']}" in result.output
