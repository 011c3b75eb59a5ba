"""Checks a set of flow files and says what is wrong, each issue as ``file:line: message``.

Beyond the schema: unknown node, prompt and schedule references, unreachable nodes and steps, nodes with no way
out, menu keys written twice, sound files that do not exist, text missing for a language the flow speaks,
template placeholders where no values can fill them, and variables that are read but never set.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ivr_flows.loader import LoadError, YamlDocument, YamlPath, load_yaml_file
from ivr_flows.schema import (
    FLOW_REF_PREFIX,
    PLACEHOLDER,
    STEP_KINDS,
    Flow,
    FlowSet,
    FlowSource,
    InputStep,
    LookupStep,
    SayStep,
    SetStep,
    SwitchLanguageStep,
    normalise,
)

# Issue kinds: stable words that tests and tools can match on.
YAML = "yaml"
SCHEMA = "schema"
DUPLICATE_KEY = "duplicate_key"
DIGIT_COLLISION = "digit_collision"
DUPLICATE_FLOW = "duplicate_flow"
UNKNOWN_NODE = "unknown_node"
UNKNOWN_PROMPT = "unknown_prompt"
UNKNOWN_SCHEDULE = "unknown_schedule"
UNREACHABLE = "unreachable"
NO_WAY_OUT = "no_way_out"
MISSING_PROMPT_FILE = "missing_prompt_file"
MISSING_TEXT = "missing_text"
TEMPLATE = "template"
UNSET_VARIABLE = "unset_variable"
RESERVED_VARIABLE = "reserved_variable"
LANGUAGE = "language"
MISSING_FLOW = "missing_flow"

# What a lookup's `found` template may name: the product's fields.
LOOKUP_FIELDS = frozenset({"code", "name", "price", "availability", "spoken"})
# Variables every call has without a step setting them.
BUILTIN_VARIABLES = frozenset({"caller", "language", "did"})
# Formats Asterisk 22 plays from a sounds directory (what `core show file formats` lists for the usual modules).
SOUND_EXTENSIONS = ("wav", "WAV", "wav16", "gsm", "ulaw", "alaw", "sln", "sln16", "g722", "g729", "siren7", "mp3")


@dataclass(frozen=True, slots=True, order=True)
class FlowIssue:
    file: str
    line: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


class FlowValidationError(Exception):
    """Flows that cannot run; ``issues`` says every reason, each with its file and line."""

    def __init__(self, issues: Sequence[FlowIssue]) -> None:
        self.issues = tuple(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues[:50])
        more = f"\n  ... and {len(self.issues) - 50} more" if len(self.issues) > 50 else ""
        super().__init__(f"{len(self.issues)} problem(s) in the IVR flows:\n{lines}{more}")


@dataclass(frozen=True, slots=True)
class LoadedFlow:
    """One file after loading: the flow when its schema is right, and what was wrong with it."""

    file: str
    flow: Flow | None
    source: FlowSource
    issues: tuple[FlowIssue, ...] = ()
    # The name the file declares, even when the rest of it is broken (so references to it still resolve).
    name: str | None = None


@dataclass(slots=True)
class Report:
    flows: FlowSet
    issues: list[FlowIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


# -- loading --------------------------------------------------------------------------------------------


def parse_document(doc: YamlDocument, *, default_timezone: str | None = None) -> LoadedFlow:
    """The schema check of one loaded YAML document; a flow that names no time zone gets ``default_timezone``."""
    data, lines = normalise(doc.data, doc.lines)
    if default_timezone is not None and isinstance(data, dict) and "timezone" not in data:
        data = {**data, "timezone": default_timezone}
    source = FlowSource(file=doc.source, lines=lines)
    issues = [_duplicate_issue(doc.source, dup.path, dup.key, dup.first_line, dup.line) for dup in doc.duplicates]
    raw_name = data.get("name") if isinstance(data, dict) else None
    name = raw_name if isinstance(raw_name, str) else None
    if not isinstance(data, dict):
        issues.append(FlowIssue(doc.source, 1, SCHEMA, "a flow file is a mapping with name, prompts and nodes"))
        return LoadedFlow(doc.source, None, source, tuple(issues), name)
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        issues.extend(_schema_issues(exc, source))
        return LoadedFlow(doc.source, None, source, tuple(issues), name)
    return LoadedFlow(doc.source, flow, source, tuple(issues), flow.name)


def load_flow_file(path: Path, *, default_timezone: str | None = None) -> LoadedFlow:
    try:
        doc = load_yaml_file(path)
    except LoadError as exc:
        issue = FlowIssue(exc.source, exc.line, YAML, exc.message)
        return LoadedFlow(str(path), None, FlowSource(str(path)), (issue,))
    return parse_document(doc, default_timezone=default_timezone)


def flow_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def check_path(
    path: Path,
    *,
    sounds_dir: Path | None = None,
    entry: str | None = None,
    default_timezone: str | None = None,
) -> Report:
    """Loads and checks a flow file or a directory of them.

    A single file is checked against the names of the flows beside it, so its ``flow:`` references resolve,
    but only its own problems are reported. Flows that name no time zone get ``default_timezone`` (else UTC).
    """
    loaded = [load_flow_file(file, default_timezone=default_timezone) for file in flow_files(path)]
    known: list[str] = []
    if path.is_file():
        for sibling in flow_files(path.parent):
            if sibling.resolve() != path.resolve():
                other = load_flow_file(sibling)
                if other.name:
                    known.append(other.name)
    if not loaded:
        issue = FlowIssue(str(path), None, MISSING_FLOW, "no flow files (*.yaml) here")
        return Report(FlowSet({}), [issue])
    return check_loaded(loaded, sounds_dir=sounds_dir, known_flows=known, entry=entry)


def check_loaded(
    loaded: Sequence[LoadedFlow],
    *,
    sounds_dir: Path | None = None,
    known_flows: Iterable[str] = (),
    entry: str | None = None,
) -> Report:
    issues: list[FlowIssue] = []
    flows: dict[str, Flow] = {}
    sources: dict[str, FlowSource] = {}
    first_file: dict[str, str] = {}
    for item in loaded:
        issues.extend(item.issues)
        if item.name is None:
            continue
        if item.name in first_file:
            line = item.source.line("name")
            message = f"flow name {item.name!r} is already used by {first_file[item.name]}"
            issues.append(FlowIssue(item.file, line, DUPLICATE_FLOW, message))
            continue
        first_file[item.name] = item.file
        if item.flow is not None:
            flows[item.name] = item.flow
            sources[item.name] = item.source
    names = set(first_file) | set(known_flows)
    flow_set = FlowSet(flows, sources)
    for name in flows:
        issues.extend(check_flow(flows[name], sources[name], flow_names=names, sounds_dir=sounds_dir))
    if entry is not None and entry not in names:
        issues.append(FlowIssue(loaded[0].file if loaded else "<flows>", None, MISSING_FLOW, f"no flow {entry!r}"))
    return Report(flow_set, sorted(issues, key=lambda i: (i.file, i.line or 0, i.kind, i.message)))


def check_flow_set(flows: FlowSet, *, sounds_dir: Path | None = None) -> list[FlowIssue]:
    """The checks beyond the schema, for flows already parsed (the route runs these when it starts)."""
    names = set(flows.flows)
    issues: list[FlowIssue] = []
    for name, flow in flows.flows.items():
        issues.extend(check_flow(flow, flows.source(name), flow_names=names, sounds_dir=sounds_dir))
    return issues


def load_flows(
    path: Path,
    *,
    sounds_dir: Path | None = None,
    entry: str | None = None,
    default_timezone: str | None = None,
) -> FlowSet:
    """Every flow under ``path``, or :class:`FlowValidationError` listing every problem."""
    report = check_path(path, sounds_dir=sounds_dir, entry=entry, default_timezone=default_timezone)
    if report.issues:
        raise FlowValidationError(report.issues)
    return report.flows


# -- schema errors --------------------------------------------------------------------------------------


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _schema_issues(error: ValidationError, source: FlowSource) -> Iterator[FlowIssue]:
    seen: set[tuple[YamlPath, str]] = set()
    items = error.errors(include_url=False)
    locs = [tuple(part if isinstance(part, int) else str(part) for part in item["loc"]) for item in items]
    for item, loc in zip(items, locs, strict=True):
        # A list whose only item failed also reports itself as too short: the item's own error says it all.
        if item["type"] == "too_short" and any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs):
            continue
        message = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (a typo?)"
        elif item["type"] == "step_type":
            message = _step_type_message(item.get("input"))
        elif item["type"] == "missing":
            message = "required field missing"
        key = (loc, message)
        if key in seen:
            continue
        seen.add(key)
        yield FlowIssue(source.file, source.line(*loc), SCHEMA, f"{_dotted(loc)}: {message}")


def _step_type_message(raw: Any) -> str:
    known = ", ".join(STEP_KINDS)
    if isinstance(raw, dict) and len(raw) == 1:
        word = next(iter(raw))
        hint = difflib.get_close_matches(str(word), list(STEP_KINDS), n=1)
        tip = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"unknown step type {str(word)[:40]!r}{tip}; step types: {known}"
    if isinstance(raw, dict):
        keys = ", ".join(str(key)[:20] for key in list(raw)[:4])
        return (
            f"a step is a mapping with exactly one key, the step type; this one has {keys} "
            "(is the step's body indented under its type?)"
        )
    if isinstance(raw, str):
        return f"unknown step {raw[:40]!r}; a bare word works only for steps without arguments (hangup)"
    return f"a step is a mapping with one key, the step type ({known})"


def _duplicate_issue(file: str, path: YamlPath, key: str, first: int, line: int) -> FlowIssue:
    where = _dotted(path)
    if len(path) >= 4 and path[0] == "nodes" and path[-1] == "options":
        message = f"{where}: menu key {key!r} collides with the same key on line {first}"
        return FlowIssue(file, line, DIGIT_COLLISION, message)
    message = f"{where}: {key!r} is written twice (first on line {first}); YAML would keep only the last"
    return FlowIssue(file, line, DUPLICATE_KEY, message)


# -- the checks beyond the schema -----------------------------------------------------------------------


def check_flow(
    flow: Flow, source: FlowSource, *, flow_names: Iterable[str] = (), sounds_dir: Path | None = None
) -> list[FlowIssue]:
    return _FlowChecker(flow, source, set(flow_names) | {flow.name}, sounds_dir).run()


class _FlowChecker:
    def __init__(self, flow: Flow, source: FlowSource, flow_names: set[str], sounds_dir: Path | None) -> None:
        self.flow = flow
        self.source = source
        self.flow_names = flow_names
        self.sounds_dir = sounds_dir
        self.issues: list[FlowIssue] = []

    def add(self, kind: str, path: YamlPath, message: str) -> None:
        self.issues.append(FlowIssue(self.source.file, self.source.line(*path), kind, message))

    def run(self) -> list[FlowIssue]:
        flow = self.flow
        if flow.start is not None and flow.start not in flow.nodes:
            self.add(UNKNOWN_NODE, ("start",), f"start node {flow.start!r} does not exist{self._hint(flow.start)}")
        self._structure()
        self._references()
        self._reachability()
        self._prompts()
        self._variables()
        return self.issues

    def _hint(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self.flow.nodes), n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def _structure(self) -> None:
        for node_id, steps in self.flow.nodes.items():
            for index, step in enumerate(steps[:-1]):
                if step.TERMINAL:
                    rest = ", ".join(s.KIND for s in steps[index + 1 :])
                    self.add(
                        UNREACHABLE,
                        ("nodes", node_id, index + 1),
                        f"node {node_id!r}: {rest} after {step.KIND} never run ({step.KIND} ends the node)",
                    )
                    break
            last = steps[-1]
            if not last.TERMINAL:
                self.add(
                    NO_WAY_OUT,
                    ("nodes", node_id),
                    f"node {node_id!r} ends with {last.KIND} and has no way out: "
                    "end it with goto, menu, hours, queue or hangup",
                )

    def _references(self) -> None:
        for node_id, steps in self.flow.nodes.items():
            for index, step in enumerate(steps):
                base: YamlPath = ("nodes", node_id, index, step.KIND)
                for field_name, target in step.targets():
                    path = (*base, *field_name.split("."))
                    if target.startswith(FLOW_REF_PREFIX):
                        other = target.removeprefix(FLOW_REF_PREFIX)
                        if other not in self.flow_names:
                            known = ", ".join(sorted(self.flow_names))
                            self.add(UNKNOWN_NODE, path, f"node {node_id!r}: no flow {other!r} (flows: {known})")
                    elif target not in self.flow.nodes:
                        self.add(
                            UNKNOWN_NODE,
                            path,
                            f"node {node_id!r}: {step.KIND}.{field_name} goes to unknown node {target!r}"
                            f"{self._hint(target)}",
                        )
                for field_name, prompt in step.prompt_names():
                    if prompt not in self.flow.prompts:
                        close = difflib.get_close_matches(prompt, list(self.flow.prompts), n=1)
                        hint = f" (did you mean {close[0]!r}?)" if close else ""
                        self.add(
                            UNKNOWN_PROMPT,
                            (*base, field_name),
                            f"node {node_id!r}: {step.KIND}.{field_name} plays unknown prompt {prompt!r}{hint}",
                        )
                schedule = getattr(step, "schedule", None)
                if isinstance(schedule, str) and schedule not in self.flow.schedules:
                    message = f"node {node_id!r}: no schedule {schedule!r} in this flow"
                    self.add(UNKNOWN_SCHEDULE, (*base, "schedule"), message)
                if isinstance(step, SwitchLanguageStep):
                    spoken = self.flow.spoken_languages
                    if step.to == "next" and len(spoken) < 2:
                        self.add(LANGUAGE, base, f"node {node_id!r}: switch_language needs two languages in languages")
                    elif step.to != "next" and step.to not in spoken:
                        self.add(LANGUAGE, base, f"node {node_id!r}: {step.to!r} is not in languages {list(spoken)}")

    def _edges(self, node_id: str) -> Iterator[str]:
        for step in self.flow.nodes[node_id]:
            for _field, target in step.targets():
                yield target

    def _reachability(self) -> None:
        flow = self.flow
        start = flow.start_node
        if start not in flow.nodes:
            return
        seen = {start}
        todo = [start]
        while todo:
            for target in self._edges(todo.pop()):
                if target in flow.nodes and target not in seen:
                    seen.add(target)
                    todo.append(target)
        for node_id in flow.nodes:
            if node_id not in seen:
                self.add(UNREACHABLE, ("nodes", node_id), f"node {node_id!r} is never reached from {start!r}")
        # A node is a way out when it hands the call on (queue, hangup, another flow); a node whose every path
        # loops back without reaching one would keep the caller for ever.
        exits = {
            node_id
            for node_id, steps in flow.nodes.items()
            if steps[-1].KIND in ("queue", "hangup")
            or any(target.startswith(FLOW_REF_PREFIX) for target in self._edges(node_id))
        }
        changed = True
        while changed:
            changed = False
            for node_id in flow.nodes:
                if node_id not in exits and any(target in exits for target in self._edges(node_id)):
                    exits.add(node_id)
                    changed = True
        for node_id, steps in flow.nodes.items():
            if node_id not in exits and node_id in seen and steps[-1].TERMINAL:
                self.add(
                    NO_WAY_OUT,
                    ("nodes", node_id),
                    f"node {node_id!r} has no way out: no path from it reaches queue, hangup or another flow",
                )

    def _prompts(self) -> None:
        flow = self.flow
        templates: set[str] = set()
        plain_use: dict[str, tuple[str, int, str]] = {}
        for node_id, steps in flow.nodes.items():
            for index, step in enumerate(steps):
                for field_name, used in step.prompt_names():
                    if isinstance(step, LookupStep) and field_name == "found":
                        templates.add(used)
                    else:
                        plain_use.setdefault(used, (node_id, index, step.KIND))
                if isinstance(step, LookupStep):
                    for state, words in step.availability.items():
                        for lang in flow.spoken_languages:
                            if lang not in words:
                                self.add(
                                    MISSING_TEXT,
                                    ("nodes", node_id, index, "lookup", "availability", state),
                                    f"node {node_id!r}: availability word {state!r} has no {lang} text",
                                )
        for name, prompt in flow.prompts.items():
            path: YamlPath = ("prompts", name)
            if prompt.file is not None:
                self._sound_file(name, prompt.file, path)
                if name in templates:
                    self.add(TEMPLATE, path, f"prompt {name!r} is a sound file; a lookup's found prompt must be text")
                continue
            for lang in flow.spoken_languages:
                if prompt.text(lang) is None:
                    self.add(MISSING_TEXT, path, f"prompt {name!r} has no {lang} text (the flow speaks {lang})")
            placeholders = prompt.placeholders()
            if name in templates:
                unknown = placeholders - LOOKUP_FIELDS
                if unknown:
                    self.add(
                        TEMPLATE,
                        path,
                        f"prompt {name!r} names {', '.join(sorted(unknown))}; a product has "
                        f"{', '.join(sorted(LOOKUP_FIELDS))}",
                    )
            if placeholders and name in plain_use:
                node_id, _index, kind = plain_use[name]
                self.add(
                    TEMPLATE,
                    path,
                    f"prompt {name!r} has placeholders ({', '.join(sorted(placeholders))}) but {kind} in node "
                    f"{node_id!r} plays it as it is; only a lookup's found prompt is filled in",
                )

    def _sound_file(self, name: str, file: str, path: YamlPath) -> None:
        if self.sounds_dir is None:
            return
        # Asterisk looks in sounds/<language>/, then sounds/ itself, then the default language (en).
        places = [self.sounds_dir / lang / file for lang in self.flow.spoken_languages]
        places += [self.sounds_dir / file, self.sounds_dir / "en" / file]
        for place in places:
            if any(place.with_name(f"{place.name}.{ext}").is_file() for ext in SOUND_EXTENSIONS):
                return
        self.add(
            MISSING_PROMPT_FILE,
            path,
            f"prompt {name!r}: sound file {file!r} not found under {self.sounds_dir} "
            f"(looked for {file}.wav and other formats in {', '.join(sorted({str(p.parent) for p in places}))})",
        )

    def _variables(self) -> None:
        defined = set(BUILTIN_VARIABLES)
        for node_id, steps in self.flow.nodes.items():
            for index, step in enumerate(steps):
                written: list[tuple[str, str]] = []
                if isinstance(step, InputStep):
                    written.append(("var", step.var))
                elif isinstance(step, SetStep):
                    written.extend((name, name) for name in step.values)
                for field_name, var in written:
                    defined.add(var)
                    if var in BUILTIN_VARIABLES:
                        # The engine keeps these itself (the caller's number, the language spoken, the DID).
                        self.add(
                            RESERVED_VARIABLE,
                            ("nodes", node_id, index, step.KIND, field_name),
                            f"node {node_id!r}: variable {var!r} is the engine's own and cannot be written "
                            "(use switch_language to change the language)",
                        )
        for node_id, steps in self.flow.nodes.items():
            for index, step in enumerate(steps):
                used: list[tuple[str, str]] = []
                if isinstance(step, LookupStep):
                    used.append(("code", step.code))
                elif isinstance(step, SayStep):
                    used.extend(("value", var) for var in PLACEHOLDER.findall(step.value))
                for field_name, var in used:
                    if var not in defined:
                        self.add(
                            UNSET_VARIABLE,
                            ("nodes", node_id, index, step.KIND, field_name),
                            f"node {node_id!r}: variable {var!r} is read but no input or set step sets it",
                        )


def describe(issues: Iterable[FlowIssue]) -> str:
    return "\n".join(str(issue) for issue in issues)


__all__ = [
    "FlowIssue",
    "FlowValidationError",
    "LoadedFlow",
    "Report",
    "check_flow",
    "check_flow_set",
    "check_loaded",
    "check_path",
    "describe",
    "load_flow_file",
    "load_flows",
    "parse_document",
]
