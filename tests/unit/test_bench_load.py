"""The load bench's arithmetic (callcenter_devtools/load.py and bench/load.py): the AGI latency quantiles it reads
from the engine's histogram, the profile's top functions, the soak's verdict, and the menu it gives dialplan alone."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from callcenter.config import Config
from callcenter_devtools.load import (
    MenuPrompts,
    bucket_delta,
    cpu_seconds,
    dialplan_menu,
    gauge_value,
    histogram_buckets,
    histogram_quantile,
    menu_prompts,
    open_all_day_flows,
    profile_top,
)

BENCH = Path(__file__).resolve().parents[2] / "bench" / "load.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_load", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_load"] = module
    spec.loader.exec_module(module)
    return module


bench = _load()

METRICS = """# HELP callcenter_agi_answer_seconds From the FastAGI connection to the first command
# TYPE callcenter_agi_answer_seconds histogram
callcenter_agi_answer_seconds_bucket{le="0.001"} 2.0
callcenter_agi_answer_seconds_bucket{le="0.002"} 6.0
callcenter_agi_answer_seconds_bucket{le="0.005"} 9.0
callcenter_agi_answer_seconds_bucket{le="+Inf"} 10.0
callcenter_agi_answer_seconds_count 10.0
callcenter_agi_answer_seconds_sum 0.03
# TYPE callcenter_asyncio_tasks gauge
callcenter_asyncio_tasks 61.0
callcenter_asyncio_tasks_other{kind="x"} 5.0
"""


def test_the_histogram_is_read_by_upper_bound_and_gauges_by_name() -> None:
    buckets = histogram_buckets(METRICS, "callcenter_agi_answer_seconds")
    assert buckets == {0.001: 2.0, 0.002: 6.0, 0.005: 9.0, math.inf: 10.0}
    assert histogram_buckets(METRICS, "callcenter_nothing") == {}
    assert gauge_value(METRICS, "callcenter_asyncio_tasks") == 61.0
    assert gauge_value(METRICS, "callcenter_missing") is None


def test_quantiles_interpolate_inside_their_bucket_as_prometheus_does() -> None:
    buckets = histogram_buckets(METRICS, "callcenter_agi_answer_seconds")
    # Rank 5 of 10 lies in (1 ms, 2 ms], which holds the 3rd to the 6th observation: three quarters of the way.
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.00175)
    assert histogram_quantile(0.2, buckets) == pytest.approx(0.001)
    # Past the last finite bound the answer is that bound, not infinity.
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.005)
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(0.5, {0.001: 0.0, math.inf: 0.0}) is None


def test_what_a_run_observed_is_the_difference_of_two_scrapes() -> None:
    before = {0.001: 2.0, 0.002: 6.0, math.inf: 10.0}
    after = {0.001: 2.0, 0.002: 16.0, math.inf: 30.0}
    delta = bucket_delta(after, before)
    assert delta == {0.001: 0.0, 0.002: 10.0, math.inf: 20.0}
    # Half of the run's 20 calls waited 1-2 ms, the rest longer than the last bound.
    assert histogram_quantile(0.5, delta) == pytest.approx(0.002)


def test_the_profile_counts_each_function_once_per_stack_and_ranks_by_samples() -> None:
    collapsed = "\n".join(
        [
            "main (a.py:1);loop (b.py:2);work (c.py:3) 6",
            "main (a.py:1);loop (b.py:2) 3",
            "main (a.py:1);again (d.py:4);again (d.py:4) 1",
            "a line that is no stack",
            "",
        ]
    )
    samples, own, inclusive = profile_top(collapsed, count=2)
    assert samples == 10
    assert [(entry.function, entry.own) for entry in own] == [("work (c.py:3)", 0.6), ("loop (b.py:2)", 0.3)]
    # A recursive frame counts once per stack, so nothing exceeds 100%.
    assert [(entry.function, entry.total) for entry in inclusive] == [("main (a.py:1)", 1.0), ("loop (b.py:2)", 0.9)]
    assert profile_top("") == (0, [], [])


def _samples(rss_mib: list[float], *, files: int = 30, tasks: float = 60.0) -> list[object]:
    return [
        bench.SoakSample(at=30.0 * index, rss_kib=int(mib * 1024), open_files=files, tasks=tasks)
        for index, mib in enumerate(rss_mib)
    ]


def test_a_soak_is_flat_when_the_last_quarter_stays_within_the_allowance() -> None:
    steady = _samples([100, 120, 130, 130, 131, 130, 131, 132])
    verdict = bench.soak_verdict(steady)
    assert verdict.startswith("flat:")
    assert "RSS MiB" in verdict
    assert "GROWS" not in verdict


def test_a_soak_that_keeps_growing_is_not_flat_and_its_trend_says_by_how_much() -> None:
    # 2 MiB every 30 s after the warm-up: 40 MiB per 10 minutes.
    growing = _samples([100.0 + 2.0 * index for index in range(40)])
    verdict = bench.soak_verdict(growing)
    assert verdict.startswith("NOT flat:")
    assert "RSS MiB" in verdict
    assert "GROWS" in verdict
    assert bench.rss_trend(growing) == pytest.approx(40.0)
    assert bench.soak_verdict(growing[:5]).startswith("too few samples")


def test_open_files_and_tasks_are_judged_too() -> None:
    samples = _samples([100.0] * 8)
    leaking = [
        bench.SoakSample(at=s.at, rss_kib=s.rss_kib, open_files=30 + 5 * index, tasks=s.tasks)
        for index, s in enumerate(samples)
    ]
    verdict = bench.soak_verdict(leaking)
    assert verdict.startswith("NOT flat:")
    assert "open files" in verdict.split("GROWS")[0]


def test_the_cpu_of_this_very_process_is_read_from_proc() -> None:
    before = cpu_seconds(os.getpid())
    sum(index * index for index in range(300_000))
    assert cpu_seconds(os.getpid()) >= before >= 0.0


def test_the_bench_flows_are_open_around_the_clock_and_name_the_engine_s_prompts(tmp_path: Path) -> None:
    flows = open_all_day_flows(tmp_path / "flows")
    main = yaml.safe_load((flows / "main.yaml").read_text(encoding="utf-8"))
    assert set(main["schedules"]["business"]["weekly"].values()) == {"00:00-24:00"}
    assert not main["schedules"]["business"].get("holidays")
    prompts = menu_prompts(flows)
    assert len(prompts.menu) == 2
    assert len({prompts.welcome, *prompts.menu, prompts.connecting}) == 4


def test_dialplan_alone_plays_the_same_prompts_and_queues_with_the_same_recording() -> None:
    config = Config()
    prompts = MenuPrompts("cc/welcome", ("cc/menu", "cc/offer"), "cc/connecting")
    text = dialplan_menu(config, "4999", prompts)
    assert "exten => 4999,1,Goto(cc-bench-menu,s,1)" in text
    assert "Background(cc/menu&cc/offer)" in text
    assert "Playback(cc/connecting)" in text
    assert f"Queue({config.queues.general},,,,,," in text
    # A caller who presses nothing or another key is queued too, as the engine's flow does after its retries.
    assert "exten => i,1,Goto(2,1)" in text
    assert "exten => t,1,Goto(2,1)" in text
