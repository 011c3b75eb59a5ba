"""Writes docs/events.md: every domain event with its fields, its publishers and its subscribers, read from the code.

    .venv/bin/python scripts/events_table.py          # rewrites docs/events.md
    .venv/bin/python scripts/events_table.py --check  # exit 1 when docs/events.md is not what the code says

An event is a dataclass declared in an ``events.py`` of the engine's packages (the core's is
``callcenter/events.py``). Its publishers are the modules that construct it (``IvrEnded(...)``); the reducer's
events are constructed by ``callcenter.ami.reducer`` and published by ``callcenter.live``. Its subscribers are the
modules that call ``.subscribe(TheEvent, ...)``, directly or over a module-level tuple of events
(``for kind in CHANGES: bus.subscribe(kind, ...)``). tests/unit/test_events_table.py runs the check, so the table
cannot drift from the code.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "callcenter",
    "calls",
    "seats",
    "crm_bridge",
    "outlets",
    "recordings",
    "ivr_flows",
    "supervisor",
    "callcenter_devtools",
)
OUTPUT = ROOT / "docs" / "events.md"


@dataclass
class EventClass:
    name: str
    module: str
    doc: str
    fields: list[str]
    publishers: set[str] = field(default_factory=set)
    subscribers: set[str] = field(default_factory=set)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, ast.Module]:
    trees = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            trees[_module_name(path)] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return trees


def _is_dataclass(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name) and target.id == "dataclass":
            return True
    return False


def _events(trees: dict[str, ast.Module]) -> dict[str, EventClass]:
    events: dict[str, EventClass] = {}
    for module, tree in trees.items():
        if module.rsplit(".", 1)[-1] != "events":
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and _is_dataclass(node):
                names = [item.target.id for item in node.body if isinstance(item, ast.AnnAssign)]
                names = [name for name in names if isinstance(name, str)]
                doc = (ast.get_docstring(node) or "").split("\n\n")[0].replace("\n", " ")
                events[node.name] = EventClass(node.name, module, doc, names)
    return events


def _called_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _tuples_of_names(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level ``NAME = (A, B, ...)`` (annotated or not), for subscriptions made in a loop over them."""
    found: dict[str, list[str]] = {}
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and isinstance(value, ast.Tuple | ast.List):
            found[target.id] = [item.id for item in value.elts if isinstance(item, ast.Name)]
    return found


def _scan(trees: dict[str, ast.Module], events: dict[str, EventClass]) -> None:
    for module, tree in trees.items():
        tuples = _tuples_of_names(tree)
        loop_names: dict[str, str] = {}  # loop variable -> the tuple it walks
        for node in ast.walk(tree):
            walks_a_tuple = isinstance(node, ast.For | ast.comprehension) and isinstance(node.iter, ast.Name)
            if walks_a_tuple and isinstance(node.target, ast.Name) and node.iter.id in tuples:
                loop_names[node.target.id] = node.iter.id
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = _called_name(node)
            if called in events and module != events[called].module:
                events[called].publishers.add(module)
            if called == "subscribe" and node.args and isinstance(node.args[0], ast.Name):
                first = node.args[0].id
                names = [first] if first in events else tuples.get(loop_names.get(first, ""), [])
                for name in names:
                    if name in events:
                        events[name].subscribers.add(module)
    # The reducer's events are made by the pure reducer and published by the live service.
    for event in events.values():
        for publisher in sorted(event.publishers):
            if publisher.startswith("callcenter.ami.reducer"):
                event.publishers.discard(publisher)
                event.publishers.add(f"{publisher} (through callcenter.live)")


def render(events: dict[str, EventClass]) -> str:
    lines = [
        "# Domain events",
        "",
        "Written by `scripts/events_table.py` from the code (do not edit by hand; `make lint` and the tests check",
        "that it is current). Each event is a frozen dataclass published on the in-process bus",
        "(`callcenter/bus.py`) and subscribed to by its class. docs/architecture.md shows where they flow.",
        "",
    ]
    by_module: dict[str, list[EventClass]] = {}
    for event in events.values():
        by_module.setdefault(event.module, []).append(event)
    for module in sorted(by_module, key=lambda name: (name != "callcenter.events", name)):
        lines += [
            f"## `{module}`",
            "",
            "| event | fields | published by | subscribed by |",
            "| --- | --- | --- | --- |",
        ]
        for event in by_module[module]:
            publishers = "<br>".join(f"`{name}`" for name in sorted(event.publishers)) or "-"
            subscribers = "<br>".join(f"`{name}`" for name in sorted(event.subscribers)) or "-"
            fields_text = ", ".join(event.fields)
            lines.append(f"| **{event.name}**: {event.doc} | {fields_text} | {publishers} | {subscribers} |")
        lines.append("")
    return "\n".join(lines)


def build() -> str:
    trees = _sources()
    events = _events(trees)
    _scan(trees, events)
    return render(events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/events.md is not current")
    args = parser.parse_args()
    text = build()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print("docs/events.md is not current: run .venv/bin/python scripts/events_table.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
