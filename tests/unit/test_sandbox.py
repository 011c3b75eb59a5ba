"""The sandbox manager without Asterisk: rendered configs, paths inside the chroot, clear refusals."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from callcenter.ami.reducer import HANDLERS
from callcenter.config import Config, Phone, load_config
from callcenter.live import CHANNEL_EVENTS
from callcenter.secrets import agi_secret, phone_passwords
from callcenter_devtools.sandbox import Sandbox, SandboxError, host_path


def _config(tmp_path: Path, **sections: dict[str, object]) -> Config:
    base = load_config(environ={})
    update: dict[str, object] = {
        "asterisk": base.asterisk.model_copy(update={"sandbox_dir": tmp_path / "root", **sections.get("asterisk", {})}),
        "paths": base.paths.model_copy(update={"data_dir": tmp_path / "data", "recordings_dir": tmp_path / "rec"}),
    }
    if "sip" in sections:
        update["sip"] = base.sip.model_copy(update=sections["sip"])
    if "ami" in sections:
        update["ami"] = base.ami.model_copy(update=sections["ami"])
    return base.model_copy(update=update)


def _rendered(tmp_path: Path, config: Config) -> dict[str, str]:
    box = Sandbox(config, progress=lambda _line: None)
    return {path.name: path.read_text(encoding="utf-8") for path in box.render()}


def test_render_writes_only_our_files_with_the_config_values(tmp_path: Path) -> None:
    phones = [
        Phone(extension="1001", kind="agent", password="s3cret-pass", contact="sip:1001@127.0.0.3:5081"),
        Phone(extension="3001", kind="supervisor", password="boss-pass1"),
    ]
    config = _config(tmp_path, sip={"port": 5999, "phones": phones, "dids": ["4444"]}, ami={"port": 5555})
    etc = config.asterisk.sandbox_dir / "etc/asterisk"
    etc.mkdir(parents=True)
    (etc / "sip.conf").write_text("; Debian sample", encoding="utf-8")
    files = _rendered(tmp_path, config)
    assert not (etc / "sip.conf").exists()
    assert set(files) >= {"pjsip.conf", "extensions.conf", "queues.conf", "manager.conf", "modules.conf"}
    pjsip = files["pjsip.conf"]
    assert "bind = 127.0.0.1:5999" in pjsip
    assert "match = 127.0.0.2" in pjsip
    assert "contact = sip:1001@127.0.0.3:5081" in pjsip
    assert "password = s3cret-pass" in pjsip
    assert "dtmf_mode = rfc4733" in pjsip
    extensions = files["extensions.conf"]
    assert "exten => 4444,1,Set(__CC_DID=${EXTEN})" in extensions
    secret = agi_secret(config)
    assert secret
    assert (
        f"AGI(agi://127.0.0.1:4573/ivr?linkedid=${{CHANNEL(linkedid)}}&did=${{CC_DID}}&secret={secret})" in extensions
    )
    # Only an explicit queue or hangup is obeyed; a refused or dropped session (AGISTATUS SUCCESS with no
    # action) falls through to the fallback queue like an unreachable engine.
    inbound = extensions[extensions.index("[cc-inbound]") : extensions.index("(fallback),Answer()")]
    assert inbound.index('"queue"]?queue') < inbound.index("Goto(fallback)") < inbound.index("n(done),Hangup()")
    # Every queue runs the full-recording subroutine on the member that answers; callbacks and desk calls too.
    assert "Queue(${CC_QUEUE},,,,,,cc-record)" in extensions
    assert "Queue(support,,,,,,cc-record)" in extensions
    assert extensions.count("Gosub(cc-record,s,1)") >= 2
    assert "MixMonitor(${CC_REC_FILE},b)" in extensions
    assert f"CC_RECORDINGS = {tmp_path / 'rec'}" in extensions


def test_manager_user_is_loopback_only_without_command_or_config(tmp_path: Path) -> None:
    manager = _rendered(tmp_path, _config(tmp_path))["manager.conf"]
    assert "bindaddr = 127.0.0.1" in manager
    assert "permit = 127.0.0.0/255.0.0.0" in manager
    classes = {
        key: {part.strip() for part in value.split(",")}
        for key, value in (line.split("=", 1) for line in manager.splitlines() if line.startswith(("read", "write")))
    }
    for key in ("read ", "write "):
        assert not classes[key] & {"command", "config", "all"}
    # system is written (MixMonitor and its mute and stop, see docs/decisions.md), never read.
    assert "system" not in classes["read "]
    assert classes["write "] == {"call", "agent", "originate", "reporting", "system"}
    assert "live_dangerously = yes" not in manager
    # Name-based filters only: a regex filter would also match caller-controlled header values.
    filters = [line for line in manager.splitlines() if line.startswith("eventfilter")]
    assert "eventfilter(action(exclude),name(VarSet)) =" in filters
    assert all(line.startswith("eventfilter(action(exclude),name(") for line in filters)


def test_no_event_the_engine_reads_is_filtered_out(tmp_path: Path) -> None:
    manager = _rendered(tmp_path, _config(tmp_path))["manager.conf"]
    dropped = {
        line.removeprefix("eventfilter(action(exclude),name(").partition(")")[0]
        for line in manager.splitlines()
        if line.startswith("eventfilter")
    }
    assert {"VarSet", "NewConnectedLine", "DialEnd"} <= dropped
    # DTMF stays: what a spy's mode switch sends (PlayDTMF) is seen as DTMF events on the spy's channel.
    assert not dropped & {"DTMFBegin", "DTMFEnd"}
    # What the live model folds, and what the live service hands on (the dialplan's UserEvents, the spies').
    read = set(HANDLERS) | CHANNEL_EVENTS | {"UserEvent", "ChanSpyStart", "ChanSpyStop"}
    assert not dropped & read


def test_queues_never_use_the_reserved_general_name(tmp_path: Path) -> None:
    queues = _rendered(tmp_path, _config(tmp_path))["queues.conf"]
    sections = [line.strip("[]") for line in queues.splitlines() if line.startswith("[")]
    assert sections == ["general", "support", "expert"]
    assert "persistentmembers = yes" in queues


def test_host_path_follows_absolute_links_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/alternatives").mkdir(parents=True)
    (root / "usr/share/sounds/real").mkdir(parents=True)
    (root / "etc/alternatives/en").symlink_to("/usr/share/sounds/real")
    (root / "usr/share/sounds/en").symlink_to("/etc/alternatives/en")
    assert host_path(root, "/usr/share/sounds/en/x.wav") == root / "usr/share/sounds/real/x.wav"


def test_install_refuses_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxError, match="needs root"):
        Sandbox(_config(tmp_path)).install()


def test_install_refuses_without_debootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr("callcenter_devtools.sandbox.shutil.which", lambda _name: None)
    with pytest.raises(SandboxError, match="apt-get install debootstrap"):
        Sandbox(_config(tmp_path)).install()


def test_install_refuses_without_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr("callcenter_devtools.sandbox.shutil.which", lambda _name: "/usr/sbin/debootstrap")
    config = _config(tmp_path, asterisk={"min_free_mb": 10**9})
    with pytest.raises(SandboxError, match="not enough space"):
        Sandbox(config).install()


def test_install_refuses_an_unreachable_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr("callcenter_devtools.sandbox.shutil.which", lambda _name: "/usr/sbin/debootstrap")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = _config(tmp_path, asterisk={"mirror": f"http://127.0.0.1:{port}/debian"})
    with pytest.raises(SandboxError, match="mirror is unreachable"):
        Sandbox(config).install()


def test_start_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        box = Sandbox(_config(tmp_path, sip={"port": port}))
        with pytest.raises(SandboxError, match=rf"UDP port 127.0.0.1:{port} is already taken.*sip.port"):
            box._check_ports()


def test_stop_without_a_running_asterisk_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = Sandbox(_config(tmp_path))
    pid_file = box.pid_file
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")  # a live pid that is not this sandbox's Asterisk
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append((pid, sig)))
    monkeypatch.setattr("callcenter_devtools.sandbox.subprocess.run", lambda *a, **k: pytest.fail(f"ran {a}"))
    assert box.running_pid() is None
    assert box.stop() is False
    assert killed == []
    assert pid_file.read_text(encoding="utf-8") == f"{os.getpid()}\n"


def test_the_dialplan_carries_the_agi_secret_the_engine_checks_and_none_when_not_required(tmp_path: Path) -> None:
    config = _config(tmp_path)
    extensions = _rendered(tmp_path, config)["extensions.conf"]
    secret = agi_secret(config)
    assert secret is not None
    assert len(secret) >= 24
    inbound = [line for line in extensions.splitlines() if "AGI(agi://" in line]
    assert len(inbound) == 1
    assert inbound[0].endswith(f"&secret={secret})")
    # The file the engine reads at its next start holds the same secret, readable by its owner only.
    assert (config.data_dir / "agi.secret").stat().st_mode & 0o777 == 0o600
    assert agi_secret(config) == secret

    relaxed = config.model_copy(update={"agi": config.agi.model_copy(update={"require_secret": False})})
    assert agi_secret(relaxed) is None
    plain = _rendered(tmp_path, relaxed)["extensions.conf"]
    assert "secret=" not in plain
    assert "AGI(agi://127.0.0.1:4573/ivr?linkedid=${CHANNEL(linkedid)}&did=${CC_DID})" in plain


def test_pjsip_gets_the_generated_phone_passwords_not_fixed_strings(tmp_path: Path) -> None:
    config = _config(tmp_path)
    pjsip = _rendered(tmp_path, config)["pjsip.conf"]
    passwords = phone_passwords(config)
    assert set(passwords) == {phone.extension for phone in config.sip.phones}
    for password in passwords.values():
        assert f"password = {password}" in pjsip
    for fixed in ("agent1001", "agent1002", "agent1003", "expert2001", "expert2002", "super3001"):
        assert fixed not in pjsip
