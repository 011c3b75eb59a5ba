"""`flows validate`'s checks: each kind of problem is found and reported with its file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr_flows import validator as v
from ivr_flows.route import SHIPPED_FLOWS
from ivr_flows.validator import FlowIssue, FlowValidationError, check_path, load_flows

GOOD = """\
name: demo
languages: [en, zh]
prompts:
  menu: {en: Press 1 or 2., zh: 请按1或2。}
  bye: {en: Goodbye., zh: 再见。}
nodes:
  start:
    menu:
      prompt: menu
      options: {1: sales, 2: bye}
      on_fail: bye
  sales:
    queue: {queue: general, reason: sales}
  bye:
    - play: bye
    - hangup
"""


def write(directory: Path, text: str, name: str = "demo.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    seen = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in {path}")


def issues(path: Path, **kwargs: object) -> list[FlowIssue]:
    return check_path(path, **kwargs).issues  # type: ignore[arg-type]


def only(path: Path, kind: str, **kwargs: object) -> FlowIssue:
    found = issues(path, **kwargs)
    assert [issue.kind for issue in found] == [kind], found
    return found[0]


def test_the_shipped_flows_are_valid() -> None:
    report = check_path(SHIPPED_FLOWS)
    assert report.issues == []
    assert set(report.flows.flows) == {"main", "after_hours", "holiday"}


def test_a_small_good_flow_has_no_issues(tmp_path: Path) -> None:
    assert issues(write(tmp_path, GOOD)) == []


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("options: {1: sales, 2: bye}", "options: {1: sales, 2: bye"))
    issue = only(path, v.YAML)
    assert issue.file == str(path)
    assert issue.line is not None
    assert issue.line >= line_of(path, "options:")


def test_schema_error_names_the_field_and_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("on_fail: bye", "on_fail: bye\n      timeout: forever"))
    issue = only(path, v.SCHEMA)
    assert issue.line == line_of(path, "timeout: forever")
    assert "nodes.start[0].menu.timeout" in issue.message


def test_unknown_field_is_a_schema_error(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("reason: sales}", "reason: sales, priorty: 3}"))
    issue = only(path, v.SCHEMA)
    assert issue.line == line_of(path, "priorty")
    assert "unknown field" in issue.message


def test_unknown_step_type_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("- play: bye", "- plya: bye"))
    issue = only(path, v.SCHEMA)
    assert issue.line == line_of(path, "- plya: bye")
    assert "unknown step type 'plya'" in issue.message
    assert "did you mean 'play'" in issue.message


def test_a_step_body_not_indented_under_its_type_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    - play: bye\n", "    - play:\n      prompts: [bye]\n"))
    issue = only(path, v.SCHEMA)
    assert issue.line == line_of(path, "- play:")
    assert "indented under its type" in issue.message


def test_colliding_menu_digits(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("options: {1: sales, 2: bye}", "options: {1: sales, 2: bye, '1': sales}"))
    issue = only(path, v.DIGIT_COLLISION)
    assert issue.line == line_of(path, "options:")
    assert "menu key '1'" in issue.message


def test_colliding_menu_digits_on_separate_lines(tmp_path: Path) -> None:
    text = GOOD.replace("options: {1: sales, 2: bye}", 'options:\n        1: sales\n        2: bye\n        "1": sales')
    path = write(tmp_path, text)
    issue = only(path, v.DIGIT_COLLISION)
    assert issue.line == line_of(path, '"1": sales')
    assert f"line {line_of(path, '1: sales')}" in issue.message


def test_a_node_written_twice(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "  sales:\n    hangup\n")
    issue = only(path, v.DUPLICATE_KEY)
    assert issue.line == line_of(path, "sales:", occurrence=2)


def test_unknown_node_reference_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("2: bye}", "2: byee}"))
    found = issues(path)
    assert [issue.kind for issue in found] == [v.UNKNOWN_NODE]
    assert found[0].line == line_of(path, "options:")
    assert "unknown node 'byee'" in found[0].message
    assert "did you mean 'bye'" in found[0].message


def test_unknown_flow_reference(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("on_fail: bye", 'on_fail: "flow:nowhere"'))
    issue = only(path, v.UNKNOWN_NODE)
    assert issue.line == line_of(path, "on_fail:")
    assert "no flow 'nowhere'" in issue.message


def test_a_flow_reference_resolves_against_the_flows_beside_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("on_fail: bye", 'on_fail: "flow:other"'))
    write(tmp_path, GOOD.replace("name: demo", "name: other"), name="other.yaml")
    assert issues(path) == []


def test_unknown_prompt(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("- play: bye", "- play: by"))
    issue = only(path, v.UNKNOWN_PROMPT)
    assert issue.line == line_of(path, "- play: by")
    assert "did you mean 'bye'" in issue.message


def test_unknown_schedule(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  start:\n    menu:", "  start:\n    - hours: {schedule: office, open: menu, closed: bye}\n  menu:\n    menu:"
    )
    path = write(tmp_path, text)
    issue = only(path, v.UNKNOWN_SCHEDULE)
    assert issue.line == line_of(path, "- hours:")


def test_unreachable_node(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "  orphan:\n    - play: bye\n    - hangup\n")
    issue = only(path, v.UNREACHABLE)
    assert issue.line == line_of(path, "orphan:")
    assert "never reached from 'start'" in issue.message


def test_steps_after_a_step_that_ends_the_node_are_unreachable(tmp_path: Path) -> None:
    path = write(
        tmp_path, GOOD.replace("    - play: bye\n    - hangup\n", "    - hangup\n    - play: bye\n    - hangup\n")
    )
    issue = only(path, v.UNREACHABLE)
    assert issue.line == line_of(path, "- play: bye")
    assert "never run" in issue.message


def test_node_that_ends_without_a_way_out(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    - play: bye\n    - hangup\n", "    - play: bye\n"))
    issue = only(path, v.NO_WAY_OUT)
    assert issue.line == line_of(path, "  bye:", occurrence=2)
    assert "ends with play" in issue.message


def test_nodes_that_loop_for_ever_have_no_way_out(tmp_path: Path) -> None:
    text = GOOD + "  loop_a:\n    goto: loop_b\n  loop_b:\n    - play: bye\n    - goto: loop_a\n"
    path = write(tmp_path, text.replace("2: bye}", "2: bye, 3: loop_a}"))
    found = issues(path)
    assert [issue.kind for issue in found] == [v.NO_WAY_OUT, v.NO_WAY_OUT]
    assert [issue.line for issue in found] == [line_of(path, "loop_a:"), line_of(path, "loop_b:")]


def test_missing_sound_file(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    (sounds / "en" / "custom").mkdir(parents=True)
    flows = tmp_path / "flows"
    flows.mkdir()
    path = write(flows, GOOD.replace("bye: {en: Goodbye., zh: 再见。}", "bye: {file: custom/goodbye}"))
    issue = only(path, v.MISSING_PROMPT_FILE, sounds_dir=sounds)
    assert issue.line == line_of(path, "bye: {file:")
    assert "custom/goodbye" in issue.message
    # Asterisk finds it in the default language's folder, whatever the caller's language.
    (sounds / "en" / "custom" / "goodbye.wav").write_bytes(b"RIFF")
    assert issues(path, sounds_dir=sounds) == []


def test_sound_files_are_not_checked_without_a_sounds_directory(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("bye: {en: Goodbye., zh: 再见。}", "bye: {file: custom/goodbye}"))
    assert issues(path) == []


def test_missing_text_for_a_language(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("bye: {en: Goodbye., zh: 再见。}", "bye: {en: Goodbye.}"))
    issue = only(path, v.MISSING_TEXT)
    assert issue.line == line_of(path, "bye: {en: Goodbye.}")
    assert "no zh text" in issue.message


def test_missing_availability_word_for_a_language(tmp_path: Path) -> None:
    text = """\
    name: shop
    languages: [en, zh]
    prompts:
      code: {en: Code, zh: 编码}
      info: {en: "{name} {price}", zh: "{name} {price}"}
    nodes:
      start:
        - input: {prompt: code, var: product_code, max_digits: 4, on_fail: done}
        - lookup:
            found: info
            not_found: done
            availability:
              in_stock: {en: In stock.}
        - goto: done
      done: hangup
    """
    path = write(tmp_path, text)
    issue = only(path, v.MISSING_TEXT)
    assert issue.line == line_of(path, "in_stock:")


def test_placeholders_in_a_prompt_that_is_played_as_it_is(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("bye: {en: Goodbye., zh: 再见。}", 'bye: {en: "Bye {name}", zh: "再见{name}"}'))
    issue = only(path, v.TEMPLATE)
    assert issue.line == line_of(path, "bye: {en:")


def test_a_lookup_template_may_only_name_product_fields(tmp_path: Path) -> None:
    text = """\
    name: shop
    prompts:
      code: {en: Code}
      info: {en: "{name} costs {cost}"}
    nodes:
      start:
        - input: {prompt: code, var: product_code, max_digits: 4, on_fail: done}
        - lookup: {found: info, not_found: done}
        - goto: done
      done: hangup
    """
    path = write(tmp_path, text)
    issue = only(path, v.TEMPLATE)
    assert "names cost" in issue.message


def test_a_variable_read_but_never_set(tmp_path: Path) -> None:
    text = """\
    name: shop
    prompts:
      info: {en: "{name}"}
    nodes:
      start:
        - say: {digits: "{account}"}
        - lookup: {found: info, not_found: done}
        - goto: done
      done: hangup
    """
    path = write(tmp_path, text)
    found = issues(path)
    assert [issue.kind for issue in found] == [v.UNSET_VARIABLE, v.UNSET_VARIABLE]
    assert found[0].line == line_of(path, "- say:")
    assert "'account'" in found[0].message
    assert "'product_code'" in found[1].message


def test_the_engines_own_variables_cannot_be_written(tmp_path: Path) -> None:
    text = """\
    name: shop
    prompts:
      ask: {en: Type four digits.}
    nodes:
      start:
        - set: {language: fr, note: ok}
        - input: {prompt: ask, var: caller, max_digits: 4, on_fail: done}
        - goto: done
      done: hangup
    """
    path = write(tmp_path, text)
    found = issues(path)
    assert [issue.kind for issue in found] == [v.RESERVED_VARIABLE, v.RESERVED_VARIABLE]
    assert "'language'" in found[0].message
    assert "switch_language" in found[0].message
    assert found[0].line == line_of(path, "- set:")
    assert "'caller'" in found[1].message
    assert found[1].line == line_of(path, "- input:")


def test_switching_language_needs_two_languages(tmp_path: Path) -> None:
    text = GOOD.replace("languages: [en, zh]\n", "").replace("zh: 请按1或2。", "").replace(", zh: 再见。", "")
    text = text.replace("2: bye}", "2: bye, 9: swap}") + "  swap:\n    - switch_language\n    - goto: start\n"
    path = write(tmp_path, text.replace("{en: Press 1 or 2., }", "{en: Press 1 or 2.}"))
    issue = only(path, v.LANGUAGE)
    assert issue.line == line_of(path, "- switch_language")


def test_two_files_with_the_same_flow_name(tmp_path: Path) -> None:
    write(tmp_path, GOOD, name="a.yaml")
    second = write(tmp_path, GOOD, name="b.yaml")
    issue = only(tmp_path, v.DUPLICATE_FLOW)
    assert issue.file == str(second)
    assert issue.line == 1


def test_a_missing_entry_flow(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    issue = only(tmp_path, v.MISSING_FLOW, entry="main")
    assert "no flow 'main'" in issue.message


def test_load_flows_raises_with_every_issue(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace("2: bye}", "2: nowhere}").replace("- play: bye", "- play: nothing"))
    with pytest.raises(FlowValidationError) as caught:
        load_flows(tmp_path)
    assert {issue.kind for issue in caught.value.issues} == {v.UNKNOWN_NODE, v.UNKNOWN_PROMPT}
    assert f"{tmp_path / 'demo.yaml'}:" in str(caught.value)


def test_issues_print_as_file_colon_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("- play: bye", "- play: nothing"))
    (issue,) = issues(path)
    assert str(issue) == f"{path}:{line_of(path, '- play: nothing')}: {issue.message}"
