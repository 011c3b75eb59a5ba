"""Text prompts as sound files: ``<sounds>/callcenter/flows/<lang>/<slug>-<hash8>.wav``, played by that name.

The hash covers the voice and the text, so a changed text gets a new file and the running flow plays it at
once; an unchanged text is made once and reused (callcenter.prompts also keeps a sha256 stamp beside it).
The files sit at the top of the sounds directory, not under a language folder: Asterisk tries
``sounds/<channel language>/<name>`` and then ``sounds/<name>``, so the caller's language in the flow, not the
channel's, decides what is heard.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from callcenter.prompts import synthesize
from ivr_flows.schema import FlowSet

FLOW_PROMPTS_DIR = "callcenter/flows"
_SLUG = re.compile(r"[^a-z0-9_-]+")
# Dynamic prompts (product read-outs) are remembered up to this many names, then the memory starts again.
_READY_LIMIT = 10_000
_LOCK_STRIPES = 64

Synthesizer = Callable[[str, str, Path], bool]


def slugify(name: str) -> str:
    slug = _SLUG.sub("-", name.lower()).strip("-")[:40]
    return slug or "prompt"


def text_hash(text: str, voice: str) -> str:
    return hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:8]


@functools.lru_cache(maxsize=4096)
def prompt_name(slug: str, lang: str, text: str, voice: str | None = None) -> str:
    """The name Asterisk plays (no extension). Cached: every call plays the same few prompts."""
    return f"{FLOW_PROMPTS_DIR}/{lang}/{slugify(slug)}-{text_hash(text, voice or lang)}"


def prompt_path(sounds_dir: Path, name: str) -> Path:
    return sounds_dir / f"{name}.wav"


def _stripe(name: str) -> int:
    return int(name.rsplit("-", 1)[-1], 16) % _LOCK_STRIPES


class PromptResolver(Protocol):
    async def text(self, slug: str, lang: str, text: str, voice: str | None = None) -> str:
        """The playable name of ``text`` spoken in ``voice`` (default ``lang``), made first if need be."""
        ...


@dataclass(frozen=True, slots=True)
class SpokenPrompt:
    name: str
    lang: str
    voice: str
    text: str


class DryPrompts:
    """Names prompts without making them (the simulator, and tests that do not need the sound)."""

    def __init__(self) -> None:
        self.spoken: dict[str, SpokenPrompt] = {}

    async def text(self, slug: str, lang: str, text: str, voice: str | None = None) -> str:
        name = prompt_name(slug, lang, text, voice)
        self.spoken.setdefault(name, SpokenPrompt(name, lang, voice or lang, text))
        return name


@dataclass(frozen=True, slots=True)
class PrepareReport:
    made: int
    kept: int


class TtsPrompts:
    """Makes text prompts with espeak-ng and sox under Asterisk's sounds directory."""

    def __init__(self, sounds_dir: Path, synthesizer: Synthesizer = synthesize) -> None:
        self.sounds_dir = sounds_dir
        self._synthesize = synthesizer
        self._ready: set[str] = set()
        # Striped locks: two writers of the same new prompt would share its temporary file. The asyncio ones
        # keep calls from tying up threads waiting; the thread ones guard against prepare() running alongside.
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]
        self._file_locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    async def text(self, slug: str, lang: str, text: str, voice: str | None = None) -> str:
        name = prompt_name(slug, lang, text, voice)
        if name in self._ready:
            return name
        async with self._locks[_stripe(name)]:
            if name not in self._ready:
                await asyncio.to_thread(self._write, name, text, voice or lang)
                self._remember(name)
        return name

    def _write(self, name: str, text: str, voice: str) -> bool:
        with self._file_locks[_stripe(name)]:
            return self._synthesize(text, voice, prompt_path(self.sounds_dir, name))

    def _remember(self, name: str) -> None:
        # Called from prepare()'s thread too: single set operations are atomic under the GIL.
        if len(self._ready) >= _READY_LIMIT:
            self._ready.clear()
        self._ready.add(name)

    def make(self, slug: str, lang: str, text: str, voice: str | None = None) -> bool:
        """Synchronously makes one prompt; True when a file was written, False when the cached one was kept."""
        name = prompt_name(slug, lang, text, voice)
        made = self._write(name, text, voice or lang)
        self._remember(name)
        return made

    def prepare(self, flows: FlowSet) -> PrepareReport:
        """Makes every fixed text prompt of every flow in every language it has (blocking: run it in a thread).

        Templates (a lookup's ``found`` prompt) are made per product when a caller asks for one.
        """
        made = kept = 0
        for flow in flows.flows.values():
            for slug, prompt in flow.prompts.items():
                if prompt.is_file or prompt.placeholders():
                    continue
                for lang in prompt.languages():
                    spoken = prompt.text(lang)
                    if spoken is None:
                        continue
                    if self.make(slug, lang, spoken[0], spoken[1]):
                        made += 1
                    else:
                        kept += 1
        return PrepareReport(made, kept)
