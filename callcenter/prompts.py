"""Prompts spoken from text: espeak-ng makes the speech, sox turns it into 8 kHz mono 16-bit WAV for Asterisk.

A prompt is made again only when its text or language changes (a hash sits beside the WAV).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

VOICES = {"en": "en-us", "zh": "cmn"}


class PromptError(Exception):
    """A prompt could not be made; the message says which tool failed."""


def _digest(text: str, lang: str) -> str:
    return hashlib.sha256(f"{lang}\0{text}".encode()).hexdigest()


def synthesize(text: str, lang: str, target: Path) -> bool:
    """Writes ``target`` (a .wav) from ``text``; returns False when the cached file already says that."""
    if lang not in VOICES:
        raise PromptError(f"no voice for language {lang!r} (known: {', '.join(sorted(VOICES))})")
    stamp = target.with_suffix(target.suffix + ".sha256")
    digest = _digest(text, lang)
    if target.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == digest:
        return False
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise PromptError(f"{tool} is not installed (apt-get install {tool})")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cc-prompt-") as tmp:
        raw = Path(tmp) / "raw.wav"
        out = Path(tmp) / "out.wav"
        # The text goes on stdin, never on the command line, so no text can become an option.
        speak = subprocess.run(
            ["espeak-ng", "-v", VOICES[lang], "-s", "150", "-w", str(raw), "--stdin"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if speak.returncode != 0 or not raw.is_file():
            raise PromptError(f"espeak-ng failed: {speak.stderr.strip()[:200]}")
        convert = subprocess.run(
            ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if convert.returncode != 0:
            raise PromptError(f"sox failed: {convert.stderr.strip()[:200]}")
        tmp_target = target.with_suffix(".tmp.wav")
        shutil.copyfile(out, tmp_target)
        os.replace(tmp_target, target)
    stamp.write_text(digest + "\n", encoding="utf-8")
    return True
