"""Audio work on real WAV files written by the test: facts, checksums, peaks and transcoding."""

from __future__ import annotations

import hashlib
import math
import struct
import warnings
import wave
from pathlib import Path

import pytest

from recordings import audio
from recordings.exceptions import UnsupportedAudio

RATE = 8000


def write_wav(
    path: Path,
    levels: list[float],
    *,
    seconds_each: float = 0.5,
    rate: int = RATE,
    width: int = 2,
    channels: int = 1,
) -> Path:
    """A PCM WAV of 440 Hz tone segments, one per level (0 = silence, 1 = full scale)."""
    full = 2 ** (8 * width - 1) - 1
    frames = bytearray()
    for level in levels:
        for n in range(int(seconds_each * rate)):
            value = int(level * full * math.sin(2 * math.pi * 440 * n / rate))
            for _ in range(channels):
                if width == 1:
                    frames += struct.pack("<B", value + 128)
                else:
                    frames += struct.pack("<h", value)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(bytes(frames))
    return path


def test_wav_facts_come_from_the_header(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", [0.5, 0.5, 0.5, 0.5])
    with path.open("rb") as handle:
        info = audio.read_wav_info(handle)
        assert handle.tell() == 0
    assert (info.channels, info.sample_width, info.frame_rate, info.frames) == (1, 2, RATE, 2 * RATE)
    assert info.duration == pytest.approx(2.0)


def test_a_header_never_finalised_falls_back_to_the_file_size(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "crashed.wav", [0.5, 0.5])
    raw = bytearray(path.read_bytes())
    # A recorder killed before closing leaves a zero data size in the header.
    raw[40:44] = b"\x00\x00\x00\x00"
    path.write_bytes(bytes(raw))
    with path.open("rb") as handle:
        assert audio.read_wav_info(handle).duration == pytest.approx(1.0)


def test_anything_but_pcm_wav_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "fake.wav"
    path.write_bytes(b"ID3 this is not a wav at all")
    with path.open("rb") as handle, pytest.raises(UnsupportedAudio):
        audio.read_wav_info(handle)


def test_checksums_match_hashlib(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", [0.3] * 6)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    with path.open("rb") as handle:
        assert audio.sha256_of(handle) == (expected, path.stat().st_size)
        assert audio.sha256_fd(handle.fileno()) == expected


def test_peaks_follow_the_loudness_of_each_slice(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", [0.0, 0.25, 1.0, 0.0])
    with path.open("rb") as handle:
        info, levels = audio.peaks(handle, 4)
    assert info.duration == pytest.approx(2.0)
    assert levels[0] == 0.0
    assert levels[1] == pytest.approx(0.25, abs=0.01)
    assert levels[2] == pytest.approx(1.0, abs=0.01)
    assert levels[3] == 0.0


@pytest.mark.parametrize(("width", "channels"), [(1, 1), (2, 2)])
def test_peaks_handle_8_bit_and_stereo(tmp_path: Path, width: int, channels: int) -> None:
    path = write_wav(tmp_path / "a.wav", [0.5, 0.0], width=width, channels=channels)
    with path.open("rb") as handle:
        _, levels = audio.peaks(handle, 2)
    assert levels[0] == pytest.approx(0.5, abs=0.02)
    assert levels[1] == 0.0


def test_more_points_than_frames_leaves_empty_slices_at_zero(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "short.wav", [1.0], seconds_each=0.001)  # 8 frames
    with path.open("rb") as handle:
        _, levels = audio.peaks(handle, 20)
    assert len(levels) == 20
    assert max(levels) > 0


def test_peak_count_is_bounded(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", [0.5])
    with path.open("rb") as handle:
        for points in (0, audio.MAX_POINTS + 1):
            with pytest.raises(ValueError, match="points"):
                audio.peaks(handle, points)


@pytest.mark.parametrize(("fmt", "magic"), [("mp3", (b"ID3", b"\xff\xfb", b"\xff\xf3")), ("ogg", (b"OggS",))])
def test_transcoding_writes_a_playable_file_of_the_same_length(tmp_path: Path, fmt: str, magic: tuple[bytes]) -> None:
    source = write_wav(tmp_path / "a.wav", [0.5] * 6)
    target = tmp_path / f"out.{fmt}"
    with source.open("rb") as handle:
        audio.transcode(handle, target, fmt)
    assert target.read_bytes().startswith(magic)
    assert not list(tmp_path.glob(".*part")), "the temporary file is gone"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pydub import AudioSegment

    assert len(AudioSegment.from_file(str(target), format=fmt)) == pytest.approx(3000, abs=150)
