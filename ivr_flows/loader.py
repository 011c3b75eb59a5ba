"""YAML loading that remembers where everything was written, so every error can say ``file:line: message``.

PyYAML's constructors drop the marks; this loader composes the node tree and builds the Python values from it
itself, recording the line of every mapping key and sequence item under its path (``("nodes", "menu", 0)``).
It also reports what PyYAML silently accepts: a key written twice in one mapping (the last one would win, so
two menu digits or two nodes with the same name would quietly become one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# A path into the document: mapping keys (as written) and sequence indexes.
YamlPath = tuple[str | int, ...]

# A flow file is a few hundred lines; these bound what a hostile or broken file can make us build.
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000


class LoadError(Exception):
    """The text is not YAML we can use; ``line`` is 1-based, or None when the whole file is at fault."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}" if line else f"{source}: {message}")
        self.source = source
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    """A key written twice in one mapping: ``path`` is the mapping's, the lines are both occurrences."""

    path: YamlPath
    key: str
    first_line: int
    line: int


@dataclass(frozen=True, slots=True)
class YamlDocument:
    source: str
    data: Any
    lines: Mapping[YamlPath, int]
    duplicates: tuple[DuplicateKey, ...] = ()

    def line(self, path: YamlPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that was written in the file."""
        return line_of(self.lines, path)


def line_of(lines: Mapping[YamlPath, int], path: YamlPath) -> int | None:
    for end in range(len(path), -1, -1):
        found = lines.get(path[:end])
        if found is not None:
            return found
    return None


class _LineLoader(yaml.SafeLoader):
    """SafeLoader with a node budget: every value is built by :func:`_build`, which records its line."""


class _Builder:
    def __init__(self, loader: _LineLoader, source: str) -> None:
        self._loader = loader
        self._source = source
        self._count = 0
        self.lines: dict[YamlPath, int] = {}
        self.duplicates: list[DuplicateKey] = []

    def build(self, node: Node, path: YamlPath, line: int) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise LoadError(self._source, line, f"more than {MAX_NODES} values (aliases expanding without end?)")
        if len(path) > MAX_DEPTH:
            raise LoadError(self._source, line, f"nested deeper than {MAX_DEPTH} levels")
        self.lines.setdefault(path, line)
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, index), _line(item)) for index, item in enumerate(node.value)]
        if isinstance(node, ScalarNode):
            return self._loader.construct_object(node, deep=True)
        raise LoadError(self._source, line, f"unsupported YAML node {type(node).__name__}")

    def _mapping(self, node: MappingNode, path: YamlPath) -> dict[str, Any]:
        # Merge keys (<<: *anchor) are folded in first, exactly as SafeLoader would.
        self._loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise LoadError(self._source, _line(key_node), "a mapping key must be a plain word or number")
            # The key as written: 1 and "1" are the same menu digit, and a date key stays a string here.
            key = str(key_node.value)
            key_line = _line(key_node)
            if key in result:
                self.duplicates.append(DuplicateKey(path, key, first_lines[key], key_line))
            else:
                first_lines[key] = key_line
            child = (*path, key)
            # A later duplicate must not keep the first one's line.
            self.lines[child] = key_line
            result[key] = self.build(value_node, child, key_line)
        return result


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def load_yaml(text: str, source: str) -> YamlDocument:
    """Parses one YAML document; raises :class:`LoadError` with the line of the problem."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise LoadError(source, None, f"file larger than {MAX_BYTES // 1024} KiB")
    loader = _LineLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise LoadError(source, None, "the file is empty")
        builder = _Builder(loader, source)
        data = builder.build(root, (), _line(root))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        problem = exc.problem or exc.context or "not valid YAML"
        raise LoadError(source, line, f"YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise LoadError(source, None, f"YAML: {exc}") from exc
    except RecursionError as exc:
        raise LoadError(source, None, "YAML nested too deeply") from exc
    finally:
        loader.dispose()
    return YamlDocument(source=source, data=data, lines=builder.lines, duplicates=tuple(builder.duplicates))


def load_yaml_file(path: Path) -> YamlDocument:
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(source, None, f"cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BYTES:
        raise LoadError(source, None, f"file larger than {MAX_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LoadError(source, line, "not UTF-8 text") from exc
    return load_yaml(text, source)
