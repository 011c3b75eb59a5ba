"""Where recording files live, and the only way to turn a name into a path.

Files sit in a date-partitioned tree under the recordings directory, ``<kind>/<YYYY>/<MM>/<DD>/<id>.wav``,
with ``id`` generated here (``rec-`` and 32 hex digits), never built from caller-controlled text. Asterisk sees
the same tree at the same absolute path (the sandbox bind-mounts it there), so one path serves both sides.

Every lookup goes through :meth:`RecordingStore.resolve`, which refuses ``..``, percent-encoded names,
absolute paths, backslashes, control characters and symlinks that lead outside the root. A refusal happens
before anything is opened, created or deleted: resolving only reads directory metadata (``realpath``).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from recordings.exceptions import UnsafePath
from recordings.models import Kind

RECORDING_ID = re.compile(r"\Arec-[0-9a-f]{32}\Z")
# One path segment: a directory name or a file name with one short extension. '.' and '..' cannot match.
_SEGMENT = re.compile(r"\A[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9]{1,8})?\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
RELATIVE_MAX = 255
MAX_DEPTH = 8
DIRECTORY_MODE = 0o750
AUDIO_SUFFIX = ".wav"


def new_recording_id() -> str:
    return f"rec-{uuid.uuid4().hex}"


def is_recording_id(value: object) -> bool:
    return isinstance(value, str) and RECORDING_ID.match(value) is not None


def check_recording_id(value: str) -> str:
    """The id itself, or UnsafePath: ids are looked up verbatim, so anything unexpected is refused."""
    if not is_recording_id(value):
        raise UnsafePath(_describe_bad_name(value) or "not a recording id (rec- and 32 hex digits)")
    return value


def _describe_bad_name(value: str) -> str | None:
    if "%" in value:
        return "percent-encoded names are not accepted"
    if value.startswith(("/", "\\")) or re.match(r"\A[A-Za-z]:", value):
        return "absolute paths are not accepted"
    if ".." in value.replace("\\", "/").split("/"):
        return "parent directory references (..) are not accepted"
    if "\\" in value:
        return "backslashes are not accepted"
    if _CONTROL.search(value):
        return "control characters are not accepted"
    return None


def split_relative(relative: str) -> tuple[str, ...]:
    """The segments of a path relative to the recordings root, or UnsafePath. Pure: no file system access."""
    if not isinstance(relative, str) or not relative:
        raise UnsafePath("empty path")
    if len(relative) > RELATIVE_MAX:
        raise UnsafePath(f"longer than {RELATIVE_MAX} characters")
    reason = _describe_bad_name(relative)
    if reason is not None:
        raise UnsafePath(reason)
    parts = tuple(relative.split("/"))
    if len(parts) > MAX_DEPTH:
        raise UnsafePath(f"more than {MAX_DEPTH} levels deep")
    for part in parts:
        if not _SEGMENT.match(part):
            raise UnsafePath("only letters, digits, '_', '-' and one extension per name are accepted")
    return parts


@dataclass(frozen=True, slots=True)
class Allocation:
    """A fresh place for one recording."""

    id: str
    # Relative to the recordings root: what the index keeps.
    relative: str
    # Where the engine finds the file.
    path: Path
    # The same file as Asterisk names it (MixMonitor's file argument): the root is mounted at the same path.
    asterisk_path: str


class RecordingStore:
    """The recordings directory: allocation of new files and safe resolution of stored names."""

    def __init__(self, root: Path) -> None:
        # Absolute but not resolved: resolving touches the file system, and construction must not.
        self.root = Path(os.path.abspath(root))

    def allocate(self, kind: Kind | str, started_at: datetime, recording_id: str | None = None) -> Allocation:
        """Names the file of a new recording (pure: creates nothing; see :meth:`ensure_directory`)."""
        kind = Kind(kind)
        if started_at.tzinfo is None:
            raise ValueError("started_at must be timezone-aware")
        day = started_at.astimezone(UTC)
        recording_id = check_recording_id(recording_id or new_recording_id())
        relative = f"{kind.value}/{day:%Y}/{day:%m}/{day:%d}/{recording_id}{AUDIO_SUFFIX}"
        path = self.root.joinpath(*relative.split("/"))
        return Allocation(id=recording_id, relative=relative, path=path, asterisk_path=str(path))

    def relative_of(self, path: str | Path) -> str:
        """The root-relative name of an absolute path inside the root (lexically), or UnsafePath."""
        text = str(path)
        if "%" in text or _CONTROL.search(text):
            raise UnsafePath(_describe_bad_name(text) or "unsafe characters")
        if not os.path.isabs(text):
            raise UnsafePath("expected an absolute path inside the recordings directory")
        if ".." in text.split("/"):
            raise UnsafePath("parent directory references (..) are not accepted")
        root = str(self.root)
        if os.path.commonpath([root, text]) != root or text == root:
            raise UnsafePath("the path is outside the recordings directory")
        relative = os.path.relpath(text, root)
        split_relative(relative)
        return relative

    def resolve(self, relative: str) -> Path:
        """The real path of a stored name, after refusing anything that could lead outside the root.

        Reads directory metadata only (symlinks are followed by ``realpath`` to see where they lead);
        nothing is opened or created. Blocking: call it from a worker thread.
        """
        parts = split_relative(relative)
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(os.path.join(real_root, *parts))
        if os.path.commonpath([real_root, real]) != real_root or real == real_root:
            raise UnsafePath("the name leads outside the recordings directory (symlink)")
        return Path(real)

    def open_for_read(self, relative: str) -> int:
        """A read-only descriptor of a regular file under the root (FileNotFoundError if there is none).

        O_NOFOLLOW refuses a symlink swapped in after :meth:`resolve` looked. Blocking: use a worker thread.
        """
        path = self.resolve(relative)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath("the file is a symlink") from exc
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnsafePath("not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def exists(self, relative: str) -> bool:
        try:
            return self.resolve(relative).is_file()
        except UnsafePath:
            return False

    def delete(self, relative: str) -> bool:
        """Removes one file; True if it was there. Blocking: use a worker thread."""
        path = self.resolve(relative)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def ensure_directory(self, kind: Kind | str, day: datetime) -> Path:
        """Creates ``<kind>/<YYYY>/<MM>/<DD>`` with the root's owner, so that Asterisk (which owns the root in
        the sandbox) can write there even when the engine runs as root. Blocking: use a worker thread."""
        kind = Kind(kind)
        day = day.astimezone(UTC)
        root_stat = os.stat(self.root)
        current = self.root
        for part in (kind.value, f"{day:%Y}", f"{day:%m}", f"{day:%d}"):
            current = current / part
            try:
                current.mkdir(mode=DIRECTORY_MODE)
            except FileExistsError:
                continue
            if os.geteuid() == 0 and (root_stat.st_uid, root_stat.st_gid) != (0, 0):
                os.chown(current, root_stat.st_uid, root_stat.st_gid)
        return current

    def iter_files(self) -> Iterator[str]:
        """Root-relative names of every ``*.wav`` under the root (symlinked directories are not entered).

        Blocking: use a worker thread.
        """
        if not self.root.is_dir():
            return
        for directory, _dirs, files in os.walk(self.root, followlinks=False):
            for name in files:
                if name.endswith(AUDIO_SUFFIX):
                    yield os.path.relpath(os.path.join(directory, name), self.root).replace(os.sep, "/")
