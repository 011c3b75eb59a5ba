"""Text prompts become 8 kHz WAV files under the sounds directory, made once and made again when the text changes.

These run the real espeak-ng and sox.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
import wave
from pathlib import Path

import pytest

from callcenter.prompts import synthesize
from ivr_flows.prompts import DryPrompts, TtsPrompts, prompt_name, prompt_path, slugify
from ivr_flows.route import SHIPPED_FLOWS
from ivr_flows.validator import load_flows
from tests.conftest import in_ci

# In CI (CI=true) the tools are installed by scripts/setup.sh, so a missing one fails the tests instead.
pytestmark = pytest.mark.skipif(
    (shutil.which("espeak-ng") is None or shutil.which("sox") is None) and not in_ci(),
    reason="needs espeak-ng and sox",
)


class Counting:
    """The real synthesizer, counting the files it actually writes."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str, Path]] = []
        self.written = 0
        self._delay = delay
        self._lock = threading.Lock()

    def __call__(self, text: str, voice: str, target: Path) -> bool:
        with self._lock:
            self.calls.append((text, voice, target))
        if self._delay:
            time.sleep(self._delay)
        made = synthesize(text, voice, target)
        with self._lock:
            self.written += int(made)
        return made


def test_prompt_names_are_slug_and_hash_under_the_flows_folder() -> None:
    digest = hashlib.sha256(b"en\0Hello").hexdigest()[:8]
    assert prompt_name("Main Menu!", "en", "Hello") == f"callcenter/flows/en/main-menu-{digest}"
    assert slugify("???") == "prompt"
    # The voice is part of the hash: the same words in another voice are another file.
    assert prompt_name("offer", "en", "9", "zh") != prompt_name("offer", "en", "9")


async def test_a_text_prompt_becomes_an_8khz_mono_wav_made_once(tmp_path: Path) -> None:
    synth = Counting()
    tts = TtsPrompts(tmp_path, synth)
    name = await tts.text("welcome", "en", "Welcome to the hotline.")
    path = prompt_path(tmp_path, name)
    assert path.parent == tmp_path / "callcenter" / "flows" / "en"
    with wave.open(str(path)) as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        assert audio.getnframes() > 4000
    assert await tts.text("welcome", "en", "Welcome to the hotline.") == name
    assert len(synth.calls) == 1
    # A restarted engine finds the cached file and leaves it alone.
    mtime = path.stat().st_mtime_ns
    assert TtsPrompts(tmp_path).make("welcome", "en", "Welcome to the hotline.") is False
    assert path.stat().st_mtime_ns == mtime


async def test_a_changed_text_is_made_again_under_a_new_name(tmp_path: Path) -> None:
    tts = TtsPrompts(tmp_path)
    old = await tts.text("closed", "en", "We are closed.")
    new = await tts.text("closed", "en", "We are closed today.")
    assert old != new
    assert old.rsplit("-", 1)[0] == new.rsplit("-", 1)[0]
    assert prompt_path(tmp_path, old).is_file()
    assert prompt_path(tmp_path, new).is_file()


async def test_mandarin_text_is_spoken_with_the_mandarin_voice(tmp_path: Path) -> None:
    name = await TtsPrompts(tmp_path).text("welcome", "zh", "欢迎致电客户服务热线。")
    assert name.startswith("callcenter/flows/zh/welcome-")
    with wave.open(str(prompt_path(tmp_path, name))) as audio:
        assert audio.getnframes() > 4000


async def test_concurrent_calls_wanting_the_same_new_prompt_make_it_once(tmp_path: Path) -> None:
    synth = Counting(delay=0.05)
    tts = TtsPrompts(tmp_path, synth)
    names = await asyncio.gather(*(tts.text("info", "en", "Aurora washing machine.") for _ in range(5)))
    assert len(set(names)) == 1
    assert len(synth.calls) == 1


def test_prepare_makes_every_fixed_prompt_of_the_shipped_flows(tmp_path: Path) -> None:
    flows = load_flows(SHIPPED_FLOWS)
    made: list[tuple[str, str, Path]] = []

    def fake(text: str, voice: str, target: Path) -> bool:
        made.append((text, voice, target))
        return True

    report = TtsPrompts(tmp_path, fake).prepare(flows)
    expected = sum(
        len(prompt.languages())
        for flow in flows.flows.values()
        for prompt in flow.prompts.values()
        if not prompt.is_file and not prompt.placeholders()
    )
    assert (report.made, report.kept) == (expected, 0)
    assert not any("{" in text for text, _voice, _target in made)
    offers = sorted(
        (voice, target.parent.name) for text, voice, target in made if "9" in text and "press" in text.lower()
    )
    assert ("en", "zh") in offers


async def test_dry_prompts_name_the_same_files_without_making_them(tmp_path: Path) -> None:
    dry = DryPrompts()
    assert await dry.text("welcome", "en", "Hi") == await TtsPrompts(tmp_path).text("welcome", "en", "Hi")
    assert list(dry.spoken) == [prompt_name("welcome", "en", "Hi")]
