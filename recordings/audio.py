"""Audio work on recording files: WAV facts, checksums, waveform peaks and transcoding.

Everything here blocks (file reads, hashing, ffmpeg): the service calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from recordings.exceptions import UnsupportedAudio

HASH_CHUNK = 1024 * 1024
MAX_POINTS = 2000
# Frames read per step while computing peaks: bounded memory for hour-long files.
_PEAK_BLOCK_FRAMES = 64 * 1024

FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
# Speech from an 8 kHz phone line: low bitrates keep every detail there is.
_EXPORT: dict[str, dict[str, Any]] = {
    "mp3": {"format": "mp3", "codec": "libmp3lame", "bitrate": "32k"},
    "ogg": {"format": "ogg", "codec": "libvorbis", "parameters": ["-q:a", "2"]},
}


@dataclass(frozen=True, slots=True)
class WavInfo:
    channels: int
    sample_width: int
    frame_rate: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.frame_rate if self.frame_rate else 0.0


def _data_frames(handle: BinaryIO, reader: wave.Wave_read) -> int:
    """Frames in the file, trusting the file size over a header that was never finalised.

    A recorder that dies before closing leaves 0 (or 0xFFFFFFFF) in the header's data size.
    """
    frames = reader.getnframes()
    frame_size = reader.getnchannels() * reader.getsampwidth()
    size = os.fstat(handle.fileno()).st_size
    # The data chunk starts where the reader stands after the header (it has read up to the samples).
    start = handle.tell()
    available = max(0, size - start) // frame_size if frame_size else 0
    if frames == 0 or frames > available:
        return available
    return frames


def read_wav_info(handle: BinaryIO) -> WavInfo:
    """Channels, width, rate and frame count of a PCM WAV; UnsupportedAudio for anything else."""
    handle.seek(0)
    try:
        with wave.open(handle, "rb") as reader:
            info = WavInfo(
                channels=reader.getnchannels(),
                sample_width=reader.getsampwidth(),
                frame_rate=reader.getframerate(),
                frames=_data_frames(handle, reader),
            )
    except (wave.Error, EOFError) as exc:
        raise UnsupportedAudio(f"not a PCM WAV file: {exc}") from exc
    finally:
        handle.seek(0)
    return info


def sha256_of(handle: BinaryIO) -> tuple[str, int]:
    """The SHA-256 (hex) and size of everything in ``handle``, read from the start."""
    handle.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    handle.seek(0)
    return digest.hexdigest(), size


def sha256_fd(fd: int) -> str:
    """The SHA-256 of an open descriptor's whole content (positional reads: the offset is left alone)."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, HASH_CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


_TYPECODES = {1: "B", 2: "h", 4: "i"}


def _samples(raw: bytes, width: int) -> array[int]:
    samples = array(_TYPECODES[width])
    samples.frombytes(raw)
    # WAV is little-endian whatever the machine.
    if width > 1 and sys.byteorder == "big":
        samples.byteswap()
    return samples


def peaks(handle: BinaryIO, points: int) -> tuple[WavInfo, list[float]]:
    """``points`` peak levels (0..1, the largest absolute sample of each slice, over all channels)."""
    if not 1 <= points <= MAX_POINTS:
        raise ValueError(f"points must be 1..{MAX_POINTS}")
    info = read_wav_info(handle)
    width = info.sample_width
    if width not in _TYPECODES:
        raise UnsupportedAudio(f"{8 * width}-bit samples are not supported for waveforms")
    full_scale = float(2 ** (8 * width - 1))
    levels = [0.0] * points
    if info.frames == 0:
        return info, levels
    frames, channels, center = info.frames, info.channels, 128 if width == 1 else 0
    with wave.open(handle, "rb") as reader:
        first = 0
        while first < frames:
            block = reader.readframes(min(_PEAK_BLOCK_FRAMES, frames - first))
            if not block:
                break
            samples = _samples(block, width)
            count = len(samples) // channels
            # Frame g belongs to slot g * points // frames; visit the slots this block overlaps.
            for slot in range(first * points // frames, (first + count - 1) * points // frames + 1):
                start = max(first, -(-slot * frames // points))
                end = min(first + count, -(-(slot + 1) * frames // points))
                if end <= start:
                    continue
                part = samples[(start - first) * channels : (end - first) * channels]
                level = max(abs(max(part) - center), abs(min(part) - center)) / full_scale
                levels[slot] = max(levels[slot], min(1.0, level))
            first += count
    handle.seek(0)
    return info, [round(level, 4) for level in levels]


def _audio_segment() -> Any:
    # pydub imports audioop, deprecated since Python 3.11: import it once, quietly, in whatever thread asks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pydub import AudioSegment

    return AudioSegment


def transcode(source: BinaryIO, target: Path, fmt: str) -> None:
    """Writes ``source`` (a WAV) to ``target`` as mp3 or ogg through ffmpeg; atomic (temp file, rename)."""
    options = _EXPORT[fmt]
    segment = _audio_segment().from_file(source, format="wav")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{id(source):x}.part")
    try:
        # pydub leaves a file it opened itself unclosed: hand it one that is ours to close.
        with temporary.open("wb") as out:
            segment.export(out, **options)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
