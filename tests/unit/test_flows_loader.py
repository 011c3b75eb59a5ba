"""Flow YAML loading keeps the line of every value, so errors can say file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr_flows.loader import LoadError, load_yaml, load_yaml_file
from ivr_flows.schema import normalise
from ivr_flows.validator import SCHEMA, load_flow_file

FLOW = textwrap.dedent(
    """\
    name: demo
    prompts:
      hello: {en: Hello}
    nodes:
      start:
        - play: hello
        - menu:
            prompt: hello
            options:
              1: done
              "*": start
            on_fail: done
      done: hangup
    """
)


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def test_every_node_step_and_field_keeps_its_line() -> None:
    doc = load_yaml(FLOW, "demo.yaml")
    assert doc.line(("name",)) == 1
    assert doc.line(("nodes", "start")) == line_of(FLOW, "start:")
    assert doc.line(("nodes", "start", 0)) == line_of(FLOW, "- play: hello")
    assert doc.line(("nodes", "start", 1)) == line_of(FLOW, "- menu:")
    assert doc.line(("nodes", "start", 1, "menu", "options", "1")) == line_of(FLOW, "1: done")
    assert doc.line(("nodes", "start", 1, "menu", "options", "*")) == line_of(FLOW, '"*": start')
    assert doc.line(("nodes", "start", 1, "menu", "on_fail")) == line_of(FLOW, "on_fail: done")
    assert doc.line(("nodes", "done")) == line_of(FLOW, "done: hangup")


def test_a_path_not_written_falls_back_to_its_nearest_written_parent() -> None:
    doc = load_yaml(FLOW, "demo.yaml")
    assert doc.line(("nodes", "start", 1, "menu", "retries")) == line_of(FLOW, "- menu:")


def test_keys_are_kept_as_written_so_1_and_quoted_1_are_the_same_key() -> None:
    doc = load_yaml("options:\n  1: a\n  '1': b\n", "x.yaml")
    assert doc.data == {"options": {"1": "b"}}
    (duplicate,) = doc.duplicates
    assert (duplicate.path, duplicate.key, duplicate.first_line, duplicate.line) == (("options",), "1", 2, 3)
    # The line map points at the occurrence that won.
    assert doc.line(("options", "1")) == 3


def test_a_single_step_node_becomes_a_list_without_losing_lines() -> None:
    doc = load_yaml(FLOW, "demo.yaml")
    data, lines = normalise(doc.data, doc.lines)
    assert data["nodes"]["done"] == ["hangup"]
    assert lines[("nodes", "done", 0)] == line_of(FLOW, "done: hangup")


def test_yaml_syntax_errors_name_the_line() -> None:
    text = "name: x\nnodes:\n  a: [play: hi\n  b: hangup\n"
    with pytest.raises(LoadError) as caught:
        load_yaml(text, "broken.yaml")
    assert caught.value.line is not None
    assert caught.value.line >= 3
    assert str(caught.value).startswith("broken.yaml:")


def test_empty_file_is_an_error() -> None:
    with pytest.raises(LoadError, match="empty"):
        load_yaml("# nothing but a comment\n", "empty.yaml")


def test_alias_expansion_is_bounded() -> None:
    # The "billion laughs": each level doubles the values built from aliases.
    lines = ["a0: &a0 [x, x]"]
    for level in range(1, 25):
        lines.append(f"a{level}: &a{level} [*a{level - 1}, *a{level - 1}]")
    with pytest.raises(LoadError, match="more than"):
        load_yaml("\n".join(lines) + "\n", "bomb.yaml")


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: x\nprompts:\n  a: {en: caf\xe9}\n")
    with pytest.raises(LoadError) as caught:
        load_yaml_file(path)
    assert caught.value.line == 3


def test_schema_errors_carry_the_file_and_line_of_the_bad_value(tmp_path: Path) -> None:
    text = FLOW.replace("on_fail: done", "on_fail: done\n        retries: -1")
    path = tmp_path / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_flow_file(path)
    assert loaded.flow is None
    (issue,) = loaded.issues
    assert issue.kind == SCHEMA
    assert issue.line == line_of(text, "retries: -1")
    assert str(issue).startswith(f"{path}:{issue.line}: nodes.start[1].menu.retries:")
    assert "greater than or equal to 0" in issue.message


def test_a_bare_time_that_yaml_reads_as_a_number_is_explained(tmp_path: Path) -> None:
    # YAML 1.1 reads 9:30 as the base-60 number 570.
    text = FLOW + "schedules:\n  office:\n    weekly:\n      mon: 9:30\n      tue: 09:00\n"
    path = tmp_path / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    monday, tuesday = load_flow_file(path).issues
    assert monday.line == line_of(text, "mon: 9:30")
    assert "quoted" in monday.message
    assert tuesday.line == line_of(text, "tue: 09:00")
    assert 'is not "HH:MM-HH:MM"' in tuesday.message
