"""bench/ami.py's core on a small stream: both sides see the same events, the pipeline folds every one of them."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ami.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ami", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ami"] = module
    spec.loader.exec_module(module)
    return module


bench = _load()
_LINKEDID = re.compile(rb"\r\nLinkedid: (\S+)\r\n")
_IDS = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d{10}\.\d+|-[0-9a-f]{8}\b")


def _linkedids(events: list[bytes]) -> set[bytes]:
    return {match.group(1) for match in map(_LINKEDID.search, events) if match is not None}


@pytest.fixture(scope="module")
def recorded() -> object:
    return bench.load_recorded()


def test_the_stream_is_the_recorded_events_with_fresh_call_identifiers(recorded: object) -> None:
    stream = bench.build_stream(recorded, 500)
    per_copy = len(recorded.events)
    assert stream.copies == -(-500 // per_copy)
    assert len(stream.events) == stream.copies * per_copy
    # Every copy is a new set of calls: its linkedids are its own.
    assert len(_linkedids(stream.events)) == len(_linkedids(stream.events[:per_copy])) * stream.copies
    # Apart from those identifiers, a copy is the recording byte for byte.
    assert [_IDS.sub(b"#", e) for e in stream.events[per_copy : 2 * per_copy]] == [
        _IDS.sub(b"#", e) for e in recorded.events
    ]
    data = b"".join(stream.chunks(1460))
    assert data == stream.banner + b"".join(stream.events)
    assert stream.chunks(0)[1:] == stream.events[1:]


@pytest.mark.parametrize(("chunk", "overlap"), [(1460, 1), (16 * 1024, 1), (0, 1), (4096, 3)])
async def test_ours_and_panoramisk_see_the_same_events(recorded: object, chunk: int, overlap: int) -> None:
    stream = bench.build_stream(recorded, 600, overlap)
    chunks = stream.chunks(chunk)
    ours = await bench.run_ours_patterns(chunks)
    peer = await bench.run_panoramisk(chunks)
    assert ours.events == peer.events == len(stream.events)
    assert ours.counts == peer.counts
    assert set(ours.counts) == set(bench.PATTERNS)
    assert all(count > 0 for count in ours.counts.values())
    bench.check_same_counts(ours, peer)


async def test_the_pipeline_folds_every_event_and_every_call_ends(recorded: object) -> None:
    stream = bench.build_stream(recorded, 600, overlap=3)
    pipeline = await bench.run_pipeline(stream.chunks(4096))
    assert pipeline.events == len(stream.events)
    assert pipeline.notes["domain_events"] > 0
    assert pipeline.notes["live_calls_at_end"] == 0
    assert pipeline.notes["live_channels_at_end"] == 0
    parse, messages = bench.run_parse(stream.chunks(4096))
    assert parse.events == len(messages) == len(stream.events)
    reducer = bench.run_reducer(messages)
    assert reducer.notes["domain_events"] == pipeline.notes["domain_events"]


async def test_a_disagreement_fails_the_run(recorded: object) -> None:
    stream = bench.build_stream(recorded, 100)
    ours = await bench.run_ours_patterns(stream.chunks(4096))
    peer = await bench.run_panoramisk(stream.chunks(4096)[:-1])
    with pytest.raises(RuntimeError, match="disagree"):
        bench.check_same_counts(ours, peer)
