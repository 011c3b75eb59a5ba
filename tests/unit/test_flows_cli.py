"""`callcenter flows validate|simulate|graph` through click's runner."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from callcenter.cli import main
from ivr_flows.route import SHIPPED_FLOWS

BROKEN = """\
name: main
prompts:
  hello: {en: Hello.}
nodes:
  start:
    - play: hello
    - menu:
        prompt: hello
        options: {1: done}
        on_fail: done
  done:
    - play: goodby
    - hangup
"""


def invoke(*args: str) -> Result:
    # An empty CALLCENTER_CONFIG: the built-in defaults, whatever the machine has configured.
    return CliRunner().invoke(main, ["flows", *args], env={"CALLCENTER_CONFIG": ""})


def test_flows_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("validate", "simulate", "graph"):
        assert command in result.output


def test_validate_passes_on_the_shipped_flows(tmp_path: Path) -> None:
    result = invoke("validate", "--sounds-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "3 flow(s) OK: after_hours, holiday, main" in result.stdout


def test_validate_fails_with_file_and_line_on_a_broken_flow(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    result = invoke("validate", str(path), "--sounds-dir", str(tmp_path))
    assert result.exit_code == 1
    line = BROKEN.splitlines().index("    - play: goodby") + 1
    assert f"{path}:{line}: node 'done': play.prompts plays unknown prompt 'goodby'" in result.stderr
    assert "OK" not in result.stdout


def test_validate_a_directory_reports_every_file(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(BROKEN, encoding="utf-8")
    (tmp_path / "other.yaml").write_text("name: other\nnodes: {}\n", encoding="utf-8")
    result = invoke("validate", str(tmp_path), "--sounds-dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"{tmp_path / 'main.yaml'}:" in result.stderr
    assert f"{tmp_path / 'other.yaml'}:2: nodes:" in result.stderr


def test_simulate_prints_the_path_the_prompts_and_the_outcome() -> None:
    result = invoke(
        "simulate",
        "main",
        "--digits",
        "1,1,1001#,0",
        "--at",
        "2026-11-23T10:00",
        "--caller",
        "5550001",
        "--tier",
        "vip",
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "flow main, caller 5550001, at 2026-11-23T10:00:00+08:00" in out
    assert "main/product_code[3]" in out
    assert "keys='1001' found (Aurora washing machine)" in out
    assert "Aurora washing machine. Price: 2999 yuan. In stock." in out
    assert 'SAY DIGITS "1001" ""' in out
    assert "queue: support priority=10 choice=agent" in out
    assert out.rstrip().endswith("outcome: queued")


def test_simulate_after_hours_leaves_a_voicemail() -> None:
    result = invoke("simulate", "main", "--digits", "1", "--at", "2026-11-23T22:00")
    assert result.exit_code == 0, result.output
    assert "after_hours/closed_menu[0]" in result.stdout
    assert "voicemail: intent=complaint duration=8.0s ended_by=dtmf" in result.stdout
    assert result.stdout.rstrip().endswith("outcome: voicemail")


def test_simulate_a_hangup_mid_menu() -> None:
    result = invoke("simulate", "main", "--digits", "1,H", "--at", "2026-11-23T10:00")
    assert "main/product_guide[0]" in result.stdout
    assert "caller_hangup" in result.stdout
    assert result.stdout.rstrip().endswith("outcome: hung_up_in_ivr")


def test_simulate_a_flow_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\nprompts:\n  bye: {en: Bye.}\nnodes:\n  start: [{play: bye}, hangup]\n", encoding="utf-8"
    )
    result = invoke("simulate", str(path))
    assert result.exit_code == 0, result.output
    assert "'Bye.'" in result.stdout
    assert result.stdout.rstrip().endswith("outcome: hangup")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("simulate", "nosuchflow"), "no flow 'nosuchflow'"),
        (("simulate", "main", "--at", "tonight"), "not an ISO date"),
    ],
)
def test_simulate_refuses_bad_arguments(args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code != 0
    assert message in result.output


def test_graph_writes_mermaid_and_svg(tmp_path: Path) -> None:
    result = invoke("graph", "main", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    mermaid = (tmp_path / "main.mmd").read_text(encoding="utf-8")
    assert "flowchart TD" in mermaid
    assert 'n_main_menu -->|"1"| n_product_guide' in mermaid
    assert 'n_product_guide -->|"*, fail"| n_main_menu' in mermaid
    assert 'n_entry -->|"closed"| n_flow__after_hours' in mermaid
    # Our own output, not untrusted input.
    svg = ET.fromstring((tmp_path / "main.svg").read_text(encoding="utf-8"))  # noqa: S314
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    ns = {"s": "http://www.w3.org/2000/svg"}
    titles = [t.text for t in svg.findall(".//s:g/s:text[@font-weight='bold']", ns)]
    assert {"entry", "main_menu", "product_code", "flow after_hours", "flow holiday"} <= set(titles)
    assert len(svg.findall(".//s:path[@marker-end]", ns)) >= 20
    assert str(tmp_path / "main.svg") in result.stdout


def test_every_shipped_flow_can_be_drawn(tmp_path: Path) -> None:
    for path in sorted(SHIPPED_FLOWS.glob("*.yaml")):
        result = invoke("graph", path.stem, "--out", str(tmp_path))
        assert result.exit_code == 0, result.output
        ET.fromstring((tmp_path / f"{path.stem}.svg").read_text(encoding="utf-8"))  # noqa: S314


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = path.read_text(encoding="utf-8", errors="replace")
        if text in seen:
            return seen
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the engine's log:\n{path.read_text(errors='replace')[-3000:]}")


def test_sighup_reloads_the_flows_of_a_running_engine_and_refuses_broken_ones(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, flows)
    env = {
        **os.environ,
        "CALLCENTER_CONFIG": "",
        "CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "data"),
        "CALLCENTER_PATHS_RECORDINGS_DIR": str(tmp_path / "data" / "recordings"),
        "CALLCENTER_WEB_PORT": str(_free_port()),
        "CALLCENTER_AGI_PORT": str(_free_port()),
        # Nothing listens there: the engine keeps retrying AMI in the background, which this test ignores.
        "CALLCENTER_AMI_PORT": str(_free_port()),
        "CALLCENTER_AMI_PASSWORD": "not-a-real-secret-1",
        "CALLCENTER_ASTERISK_SOUNDS_DIR": str(tmp_path / "sounds"),
        "CALLCENTER_FLOWS_DIRECTORY": str(flows),
        "CALLCENTER_FLOWS_PREPARE_PROMPTS": "false",
    }
    log = tmp_path / "engine.log"
    callcenter = Path(sys.executable).with_name("callcenter")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(callcenter), "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_text(log, "web server on", proc)
        main = flows / "main.yaml"
        good = main.read_text(encoding="utf-8")
        main.write_text(good.replace("on_fail: agent_fallback", "on_fail: nowhere", 1), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        seen = _wait_for_text(log, "IVR flows not reloaded (sighup)", proc)
        assert "unknown node 'nowhere'" in seen
        main.write_text(good, encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        _wait_for_text(log, "IVR flows reloaded (sighup): after_hours, holiday, main", proc)
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]
