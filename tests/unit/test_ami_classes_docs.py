"""What the docs say the AMI user may do is what asterisk-conf/manager.conf grants (issue 16, item 8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("docs/sip-clients.md", "docs/supervisor.md", "docs/decisions.md")
_STATED = re.compile(r"`(read|write) = ([a-z]+(?:,[a-z]+)*)`")


def _classes(text: str) -> dict[str, set[str]]:
    return {key: set(value.split(",")) for key, value in _STATED.findall(text)}


def _granted() -> dict[str, set[str]]:
    manager = (ROOT / "asterisk-conf/manager.conf").read_text(encoding="utf-8")
    granted: dict[str, set[str]] = {}
    for line in manager.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("read", "write"):
            assert key.strip() not in granted, f"manager.conf sets {key.strip()} twice"
            granted[key.strip()] = {part.strip() for part in value.split(",") if part.strip()}
    return granted


def test_manager_conf_grants_read_and_write_classes() -> None:
    granted = _granted()
    assert set(granted) == {"read", "write"}
    assert "system" in granted["write"]


@pytest.mark.parametrize("doc", DOCS)
def test_each_doc_states_the_classes_manager_conf_grants(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    stated = _classes(text)
    assert set(stated) == {"read", "write"}, f"{doc} does not state both class lists as `read = ...`/`write = ...`"
    assert stated == _granted(), f"{doc} states {stated}, manager.conf grants {_granted()}"
    # No paragraph about the AMI user may deny a class that is granted ("it has no `system` class", "no system,
    # command or config"), as both docs did before.
    granted = set().union(*_granted().values())
    for paragraph in text.split("\n\n"):
        if "AMI" not in paragraph and "class" not in paragraph:
            continue
        for denied in re.findall(r"\bno `?([a-z]+)`?(?: class|, [a-z]+ or )", paragraph):
            assert denied not in granted, f"{doc} says the AMI user has no {denied!r}, manager.conf grants it"
