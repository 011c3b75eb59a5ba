"""Playing a recording: the access rule and state checks, the file verified against its SHA-256 before a byte is
served, the requested range checked, mp3/ogg conversions, waveform peaks, and an audit entry for every playback.

A file is served only if it is the one that was indexed: its hash is checked once and remembered by the file's
identity (device, inode, size, mtime, ctime), which any write changes. Conversions are made once per file and
format into the transcode directory, a few at a time; this part owns that directory (retention asks it to forget a
recording, housekeeping to prune old conversions). File work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

from callcenter.auth.services import Principal
from callcenter.config import RecordingsConfig
from recordings import audio
from recordings.exceptions import (
    RecordingErased,
    RecordingFileMissing,
    RecordingNotReady,
    RecordingTampered,
    TranscodeFailed,
    UnsupportedAudio,
)
from recordings.index import Action, RecordingIndex
from recordings.infos import Playable, RecordingInfo
from recordings.models import Status
from recordings.storage import RecordingStore
from recordings.streaming import parse_range

log = logging.getLogger("callcenter.recordings")

# Verified files remembered by (device, inode, size, mtime, ctime): any write to a file changes its ctime,
# which no user-space call can set back, so a remembered check stays true until the file is touched.
VERIFIED_CACHE_MAX = 4096


def _playable_state(info: RecordingInfo) -> None:
    if info.status == Status.ERASED:
        raise RecordingErased(info.id)
    if info.status == Status.RECORDING or info.sha256 is None:
        raise RecordingNotReady(info.id)
    if info.status == Status.TAMPERED:
        raise RecordingTampered(info.id)


def _open_plain(path: Path) -> tuple[int, os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return fd, os.fstat(fd)


def _peaks_of(fd: int, points: int) -> tuple[audio.WavInfo, list[float]]:
    with os.fdopen(os.dup(fd), "rb") as handle:
        try:
            return audio.peaks(handle, points)
        finally:
            os.close(fd)


class Playback:
    def __init__(
        self, index: RecordingIndex, store: RecordingStore, config: RecordingsConfig, *, transcode_dir: Path
    ) -> None:
        self._index = index
        self._store = store
        self._config = config
        self.transcode_dir = transcode_dir
        self._verified: OrderedDict[str, tuple[tuple[int, ...], str]] = OrderedDict()
        self._transcode_slots = asyncio.Semaphore(config.max_concurrent_transcodes)
        self._transcode_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def open_audio(
        self,
        recording_id: str,
        who: Principal,
        fmt: str = "wav",
        *,
        remote: str | None = None,
        range_header: str | None = None,
        head: bool = False,
    ) -> Playable:
        """The verified file (or its mp3/ogg conversion), opened for streaming. Audited as a playback.

        ``range_header`` is checked against the file's size before the playback is audited, so that a
        refused range (416) leaves no playback entry behind."""
        if fmt not in audio.FORMATS:
            raise UnsupportedAudio(f"format {fmt!r} is not offered (wav, mp3, ogg)")
        info = await self._index.get(recording_id, who, remote=remote)
        _playable_state(info)
        fd, size = await self._verified_fd(info, who.username, remote)
        etag = f'"{info.sha256}"'
        if fmt != "wav":
            try:
                target = await self._transcoded(info, fmt, fd)
            finally:
                os.close(fd)
            fd, status = await asyncio.to_thread(_open_plain, target)
            size = status.st_size
            etag = f'"{info.sha256}-{fmt}"'
        playable = Playable(fd=fd, size=size, content_type=audio.FORMATS[fmt], etag=etag, filename=f"{info.id}.{fmt}")
        try:
            parse_range(range_header, size)
            await self._index.audit(
                Action.PLAYED,
                who.username,
                info.id,
                remote=remote,
                details={"format": fmt, "range": (range_header or "")[:100] or None, "head": head or None},
            )
        except BaseException:
            playable.close()
            raise
        return playable

    async def waveform(
        self, recording_id: str, who: Principal, points: int, *, remote: str | None = None
    ) -> dict[str, Any]:
        """Peak levels for drawing, computed from the verified WAV's samples."""
        info = await self._index.get(recording_id, who, remote=remote)
        _playable_state(info)
        fd, _size = await self._verified_fd(info, who.username, remote)
        wav, levels = await asyncio.to_thread(_peaks_of, fd, points)
        return {
            "id": info.id,
            "points": points,
            "peaks": levels,
            "duration": round(wav.duration, 3),
            "sample_rate": wav.frame_rate,
            "channels": wav.channels,
        }

    # -- the file, verified ------------------------------------------------------------------------------

    def _open_and_stat(self, relative: str) -> tuple[int, os.stat_result]:
        fd = self._store.open_for_read(relative)
        return fd, os.fstat(fd)

    async def _verified_fd(self, info: RecordingInfo, actor: str | None, remote: str | None) -> tuple[int, int]:
        """An open descriptor of the recording's file, whose SHA-256 matches the index (else it is refused)."""
        try:
            fd, status = await asyncio.to_thread(self._open_and_stat, info.file_path)
        except FileNotFoundError as exc:
            await self._index.set_status(info.id, Status.MISSING, only_if=Status.COMPLETE)
            raise RecordingFileMissing(info.id) from exc
        identity = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
        expected = info.sha256 or ""
        if self._verified.get(info.id) == (identity, expected):
            self._verified.move_to_end(info.id)
            return fd, status.st_size
        try:
            digest = await asyncio.to_thread(audio.sha256_fd, fd)
        except BaseException:
            os.close(fd)
            raise
        if digest != expected:
            os.close(fd)
            self._verified.pop(info.id, None)
            await self._index.set_status(info.id, Status.TAMPERED)
            log.error("recording %s does not match its checksum: refusing to serve it", info.id)
            await self._index.audit(
                Action.TAMPERED,
                actor,
                info.id,
                outcome="refused",
                remote=remote,
                details={"expected_sha256": expected, "found_sha256": digest, "size": status.st_size},
            )
            raise RecordingTampered(info.id)
        self._verified[info.id] = (identity, expected)
        if info.status == Status.MISSING:
            # The file is back, and it is the one that was indexed.
            await self._index.set_status(info.id, Status.COMPLETE, only_if=Status.MISSING)
        while len(self._verified) > VERIFIED_CACHE_MAX:
            self._verified.popitem(last=False)
        if status.st_size == 0:
            log.warning("recording %s is empty", info.id)
        return fd, status.st_size

    # -- conversions -------------------------------------------------------------------------------------

    async def _transcoded(self, info: RecordingInfo, fmt: str, fd: int) -> Path:
        target = self.transcode_dir / f"{info.id}-{(info.sha256 or '')[:16]}.{fmt}"
        lock = self._transcode_locks.get(target.name)
        if lock is None:
            lock = asyncio.Lock()
            self._transcode_locks[target.name] = lock
        async with lock:
            if await asyncio.to_thread(target.is_file):
                return target
            async with self._transcode_slots:
                try:
                    await asyncio.to_thread(self._transcode, fd, target, fmt)
                except (UnsupportedAudio, OSError, RuntimeError, ValueError) as exc:
                    log.warning("converting %s to %s failed: %s", info.id, fmt, exc)
                    raise TranscodeFailed(fmt) from exc
                except Exception as exc:
                    # pydub raises its own exception types (CouldntDecodeError, CouldntEncodeError).
                    log.warning("converting %s to %s failed: %s", info.id, fmt, exc)
                    raise TranscodeFailed(fmt) from exc
        return target

    def _transcode(self, fd: int, target: Path, fmt: str) -> None:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A duplicate of the verified descriptor: the conversion reads exactly what was checked.
        with os.fdopen(os.dup(fd), "rb") as handle:
            handle.seek(0)
            audio.transcode(handle, target, fmt)

    # -- what retention and housekeeping ask of it (in worker threads) ---------------------------------------

    def forget(self, recording_id: str) -> None:
        """A recording whose file was deleted: its conversions go, and its remembered check."""
        if self.transcode_dir.is_dir():
            for cached in self.transcode_dir.glob(f"{recording_id}-*"):
                cached.unlink(missing_ok=True)
        self._verified.pop(recording_id, None)

    def prune_transcodes(self, now: datetime) -> int:
        """Deletes conversions older than ``transcode_cache_days``; how many."""
        if not self.transcode_dir.is_dir():
            return 0
        limit = now.timestamp() - self._config.transcode_cache_days * 86400
        removed = 0
        for cached in self.transcode_dir.iterdir():
            try:
                if cached.is_file() and cached.stat().st_mtime < limit:
                    cached.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
