"""The recordings tree: allocation, and path safety (no traversal, no escape, no file touched on refusal)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from recordings.exceptions import UnsafePath
from recordings.models import Kind
from recordings.storage import RecordingStore, check_recording_id, new_recording_id, split_relative

WHEN = datetime(2030, 3, 4, 9, 30, tzinfo=UTC)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "recordings"
    directory.mkdir()
    return directory


@pytest.fixture
def store(root: Path) -> RecordingStore:
    return RecordingStore(root)


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory`` with its content and mtime: what 'touches no file' is checked against."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def test_allocation_is_a_date_partitioned_path_named_by_a_generated_id(store: RecordingStore, root: Path) -> None:
    allocation = store.allocate(Kind.FULL, WHEN)
    assert allocation.relative == f"full/2030/03/04/{allocation.id}.wav"
    assert allocation.path == root / "full" / "2030" / "03" / "04" / f"{allocation.id}.wav"
    # Asterisk sees the recordings directory at the same absolute path (bind mount).
    assert allocation.asterisk_path == str(allocation.path)
    assert check_recording_id(allocation.id) == allocation.id
    assert not allocation.path.parent.exists(), "allocation is pure: the directory comes from ensure_directory"


def test_allocation_partitions_by_the_utc_day(store: RecordingStore) -> None:
    beijing = timezone(timedelta(hours=8))
    allocation = store.allocate("on_demand", datetime(2030, 1, 1, 1, 30, tzinfo=beijing))
    assert allocation.relative.startswith("on_demand/2029/12/31/")


def test_allocation_refuses_naive_times_and_unknown_kinds(store: RecordingStore) -> None:
    with pytest.raises(ValueError, match="timezone"):
        store.allocate(Kind.FULL, datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="is not a valid Kind"):
        store.allocate("../full", WHEN)


def test_generated_ids_are_unique_and_never_contain_caller_text() -> None:
    ids = {new_recording_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(check_recording_id(recording_id) for recording_id in ids)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("../../etc/passwd", "parent directory"),
        ("%2e%2e", "percent-encoded"),
        ("%2E%2E%2Fetc%2Fpasswd", "percent-encoded"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows", "absolute"),
        ("rec-0123456789abcdef0123456789abcdef/../x", "parent directory"),
        ("rec-0123456789ABCDEF0123456789ABCDEF", "not a recording id"),
        ("rec-0123456789abcdef0123456789abcdef\n", "control"),
        ("..\\..\\x", "parent directory"),
        ("", "not a recording id"),
    ],
)
def test_recording_ids_are_refused_unless_exactly_generated_ones(value: str, reason: str) -> None:
    with pytest.raises(UnsafePath, match=reason):
        check_recording_id(value)


@pytest.mark.parametrize(
    "relative",
    [
        "..",
        "../outside.wav",
        "full/../../outside.wav",
        "full/2030/./x.wav",
        "%2e%2e/outside.wav",
        "full/%2e%2e/%2e%2e/outside.wav",
        "/etc/passwd",
        "full//x.wav",
        "full\\..\\x.wav",
        "full/x.wav\x00.txt",
        ".hidden.wav",
        "full/a b.wav",
        "",
        "/".join(["d"] * 9) + "/x.wav",
        "x" * 300,
    ],
)
def test_unsafe_relative_names_are_refused_before_any_file_access(
    store: RecordingStore, root: Path, tmp_path: Path, relative: str
) -> None:
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"customer voice")
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafePath):
        split_relative(relative)
    with pytest.raises(UnsafePath):
        store.delete(relative)
    with pytest.raises(UnsafePath):
        store.open_for_read(relative)
    assert _snapshot(tmp_path) == before
    assert outside.read_bytes() == b"customer voice"


def test_a_symlink_leading_outside_the_root_is_refused_and_its_target_untouched(
    store: RecordingStore, root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"not yours")
    (root / "full").mkdir()
    (root / "full" / "escape.wav").symlink_to(secret)
    (root / "linked-dir").symlink_to(tmp_path)
    before = _snapshot(tmp_path)
    for relative in ("full/escape.wav", "linked-dir/secret.wav"):
        with pytest.raises(UnsafePath, match="outside"):
            store.resolve(relative)
        with pytest.raises(UnsafePath):
            store.delete(relative)
        with pytest.raises(UnsafePath):
            store.open_for_read(relative)
    assert _snapshot(tmp_path) == before
    assert secret.read_bytes() == b"not yours"


def test_a_symlink_inside_the_root_resolves_to_its_target(store: RecordingStore, root: Path) -> None:
    (root / "full").mkdir()
    target = root / "full" / "real.wav"
    target.write_bytes(b"RIFF")
    (root / "full" / "alias.wav").symlink_to(target)
    assert store.resolve("full/alias.wav") == Path(os.path.realpath(target))


def test_open_for_read_refuses_directories(store: RecordingStore, root: Path) -> None:
    (root / "full.wav").mkdir()
    with pytest.raises(UnsafePath, match="regular file"):
        store.open_for_read("full.wav")


def test_relative_of_accepts_only_paths_inside_the_root(store: RecordingStore, root: Path, tmp_path: Path) -> None:
    inside = root / "voicemail" / "2030" / "01" / "02" / "rec-0123456789abcdef0123456789abcdef.wav"
    assert store.relative_of(inside) == "voicemail/2030/01/02/rec-0123456789abcdef0123456789abcdef.wav"
    for path in (tmp_path / "x.wav", f"{root}/../x.wav", "relative/x.wav", f"{root}/%2e%2e/x.wav", str(root)):
        with pytest.raises(UnsafePath):
            store.relative_of(path)


def test_ensure_directory_creates_the_day_and_iter_files_lists_wav_files(store: RecordingStore, root: Path) -> None:
    directory = store.ensure_directory(Kind.VOICEMAIL, WHEN)
    assert directory == root / "voicemail" / "2030" / "03" / "04"
    assert store.ensure_directory(Kind.VOICEMAIL, WHEN) == directory
    (directory / "rec-0123456789abcdef0123456789abcdef.wav").write_bytes(b"RIFF")
    (directory / "notes.txt").write_text("ignored")
    assert list(store.iter_files()) == ["voicemail/2030/03/04/rec-0123456789abcdef0123456789abcdef.wav"]
