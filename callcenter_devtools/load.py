"""Pieces of the whole-system load bench (bench/load.py) that are not the bench itself: CPU time from /proc, the
shipped flows made open around the clock, the same menu and queue in dialplan alone, and quantiles of one of the
engine's Prometheus histograms.

The phones, the engine process and the counting of records are callcenter_devtools.chaos's.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from callcenter import dialplan
from callcenter.config import Config
from callcenter_devtools.sandbox import Sandbox
from ivr_flows.prompts import prompt_name
from ivr_flows.validator import load_flow_file

SHIPPED_FLOWS = Path(__file__).resolve().parent.parent / "ivr_flows" / "flows"
# The main menu's key for fault consultation: a plain way into the general queue, no recording of its own.
MENU_KEY = "2"


class LoadError(Exception):
    pass


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and all its threads, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_all_day_flows(target: Path) -> Path:
    """The shipped flows in ``target``, with the main flow's business hours open every day around the clock and no
    holidays, so that a load run at any hour goes through the main menu (the rest of the flows as shipped)."""
    target.mkdir(parents=True, exist_ok=True)
    for source in SHIPPED_FLOWS.glob("*.yaml"):
        shutil.copyfile(source, target / source.name)
    main = target / "main.yaml"
    flow = yaml.safe_load(main.read_text(encoding="utf-8"))
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    flow["schedules"]["business"] = {"weekly": dict.fromkeys(days, "00:00-24:00")}
    main.write_text(yaml.safe_dump(flow, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target


@dataclass(frozen=True, slots=True)
class MenuPrompts:
    """The names Asterisk plays (no extension) for the main menu's path to key 2, as the engine makes them."""

    welcome: str
    menu: tuple[str, ...]
    connecting: str


def menu_prompts(flows: Path, lang: str = "en") -> MenuPrompts:
    loaded = load_flow_file(flows / "main.yaml")
    if loaded.flow is None:
        raise LoadError(f"{flows / 'main.yaml'}: {loaded.issues}")
    prompts = loaded.flow.prompts

    def name(slug: str) -> str:
        spoken = prompts[slug].text(lang)
        if spoken is None:
            raise LoadError(f"the main flow's prompt {slug} has no {lang} text")
        return prompt_name(slug, lang, *spoken)

    return MenuPrompts(name("welcome"), (name("main_menu"), name("language_offer")), name("connecting_fault"))


def dialplan_menu(config: Config, did: str, prompts: MenuPrompts, menu_timeout: int = 5) -> str:
    """The main menu's way to the general queue in dialplan alone, for ``did``: the prompts the engine plays, the
    key, the queue with the full recording of every answered call (the same subroutine as the engine's calls).
    A caller who presses nothing or another key is queued too, as the engine's flow does after its retries."""
    queue = config.queues.general
    menu = "&".join(prompts.menu)
    return f"""
; Added by bench/load.py for its pure-dialplan runs (gone at the next start, which renders this file anew).
[{dialplan.CONTEXT_PSTN}]
exten => {did},1,Goto(cc-bench-menu,s,1)

[cc-bench-menu]
exten => s,1,Answer()
 same => n,Playback({prompts.welcome})
 same => n,Background({menu})
 same => n,WaitExten({menu_timeout})
exten => {MENU_KEY},1,Playback({prompts.connecting})
 same => n,Set(QUEUE_PRIO=0)
 same => n,Set(__{dialplan.VAR_RECORD_QUEUE}={queue})
 same => n,Queue({queue},,,,,,{dialplan.CONTEXT_RECORD})
 same => n,Hangup()
exten => i,1,Goto({MENU_KEY},1)
exten => t,1,Goto({MENU_KEY},1)
"""


def install_dialplan(sandbox: Sandbox, text: str, check_exten: str) -> None:
    """Appends ``text`` to the running sandbox's extensions.conf and reloads the dialplan; checks that
    ``check_exten`` (exten@context) is there afterwards."""
    path = sandbox.etc / "extensions.conf"
    with path.open("a", encoding="utf-8") as conf:
        conf.write(text)
    sandbox.cli("dialplan reload", timeout=15)
    shown = sandbox.cli(f"dialplan show {check_exten}", timeout=15, check=False).stdout
    if "-= 1 extension" not in shown and "extensions (" not in shown:
        raise LoadError(f"the added dialplan has no {check_exten}:\n{shown[-1500:]}")


# -- Prometheus histograms ---------------------------------------------------------------------------------


def histogram_buckets(text: str, name: str) -> dict[float, float]:
    """The cumulative bucket counts of histogram ``name`` (no labels) in a /metrics page, by upper bound."""
    buckets: dict[float, float] = {}
    prefix = f'{name}_bucket{{le="'
    for line in text.splitlines():
        if line.startswith(prefix):
            bound, _, value = line[len(prefix) :].partition('"} ')
            buckets[math.inf if bound == "+Inf" else float(bound)] = float(value)
    return buckets


def gauge_value(text: str, name: str) -> float | None:
    """The value of gauge ``name`` (no labels) in a /metrics page, or None when it is not there."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def bucket_delta(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    """What was observed between two scrapes of one histogram."""
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``buckets``, interpolated linearly inside its bucket as Prometheus's
    histogram_quantile does; None for no observations. Beyond the last finite bound: that bound."""
    bounds: Sequence[float] = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


# -- profiles ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    function: str  # "name (file:line)" as py-spy writes a frame
    own: float  # share of all samples with this function on top of the stack
    total: float  # share of all samples with this function anywhere on the stack


def profile_top(collapsed: str, count: int = 15) -> tuple[int, list[ProfileEntry], list[ProfileEntry]]:
    """The functions that most samples of a collapsed-stack profile (py-spy's ``--format raw``: a line per stack,
    frames joined by ';', then the number of samples) were in: on top of the stack (own time) and anywhere on it
    (inclusive time). Returns the number of samples and the two lists, largest first."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        hits = int(number)
        frames = stack.split(";")
        samples += hits
        own[frames[-1]] = own.get(frames[-1], 0) + hits
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + hits
    if not samples:
        return 0, [], []

    def ranked(table: Mapping[str, int]) -> list[ProfileEntry]:
        top = sorted(table.items(), key=lambda item: item[1], reverse=True)[:count]
        return [ProfileEntry(name, own.get(name, 0) / samples, total.get(name, 0) / samples) for name, _ in top]

    return samples, ranked(own), ranked(total)
