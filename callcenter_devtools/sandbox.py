"""The Asterisk sandbox: Asterisk 22 from Debian sid, in a debootstrap chroot, cached outside the repository.

Installing sid's asterisk on a bookworm host would remove libssl3 and break the machine, so Asterisk lives in
a chroot that shares the host's network namespace (it binds loopback ports the engine reaches directly).
`start` renders asterisk-conf/ into the chroot's /etc/asterisk, which then holds only our files, and runs
Asterisk as the chroot's own `asterisk` user. `stop` ends only the Asterisk whose pid file is ours and whose
root is this chroot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from callcenter import dialplan
from callcenter.agi.protocol import SECRET_PARAM
from callcenter.config import Config
from callcenter.prompts import PromptError, synthesize
from callcenter.secrets import agi_secret, ami_secret, phone_passwords

PACKAGES = ("asterisk", "asterisk-core-sounds-en-wav", "asterisk-moh-opsound-wav", "ca-certificates")
MARKER = ".callcenter-sandbox"
# Directories Asterisk writes to; they must belong to the chroot's asterisk user when it runs with -U.
# var/log/asterisk/cel-custom is listed because cel_custom never creates its directory (it only logs an error).
_WRITABLE = (
    "etc/asterisk",
    "var/lib/asterisk",
    "var/log/asterisk",
    "var/log/asterisk/cel-custom",
    "var/spool/asterisk",
    "run/asterisk",
)
_PROMPTS = {
    dialplan.PROMPT_APOLOGY: "We are sorry, our system is having a problem. Please hold for the next available agent.",
    dialplan.PROMPT_WELCOME: "Welcome to the hotline. Please press a key to choose a service.",
    dialplan.PROMPT_EXPERT_BUSY: (
        "All our experts are busy. Press 1 to leave a message for an expert after the tone, "
        "or press 2 to be called back."
    ),
    dialplan.PROMPT_CALLBACK_NOTED: "Thank you. An expert will call you back. Goodbye.",
}

Progress = Callable[[str], None]


class SandboxError(Exception):
    """The sandbox cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Status:
    installed: bool
    running: bool
    pid: int | None
    version: str
    uptime: str
    ami_ok: bool | None
    ami_detail: str


def _print(message: str) -> None:
    print(message, flush=True)


class Sandbox:
    def __init__(self, config: Config, progress: Progress = _print) -> None:
        self.config = config
        self.root = config.asterisk.sandbox_dir.resolve()
        self._progress = progress

    # -- paths ----------------------------------------------------------------------------------------

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def pid_file(self) -> Path:
        return self.root / "run/asterisk/asterisk.pid"

    @property
    def etc(self) -> Path:
        return self.root / "etc/asterisk"

    def installed(self) -> bool:
        return self.marker.is_file() and (self.root / "usr/sbin/asterisk").exists()

    # -- install --------------------------------------------------------------------------------------

    def preflight_install(self) -> None:
        if os.geteuid() != 0:
            raise SandboxError("the sandbox needs root (debootstrap and chroot): run this command as root")
        if shutil.which("debootstrap") is None:
            raise SandboxError("debootstrap is missing: install it with `apt-get install debootstrap`")
        probe = self.root
        while not probe.exists():
            probe = probe.parent
        free_mb = shutil.disk_usage(probe).free // (1024 * 1024)
        need = self.config.asterisk.min_free_mb
        if free_mb < need:
            raise SandboxError(
                f"not enough space for the sandbox in {probe}: {free_mb} MiB free, {need} MiB needed; "
                "free some space or set asterisk.sandbox_dir to a roomier disk"
            )
        self._check_mirror()

    def _check_mirror(self) -> None:
        mirror = self.config.asterisk.mirror.rstrip("/")
        url = f"{mirror}/dists/{self.config.asterisk.suite}/Release"
        if not url.startswith(("http://", "https://")):
            raise SandboxError(f"asterisk.mirror must be an http(s) URL, got {mirror!r}")
        request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - scheme checked above
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                if response.status >= 400:
                    raise SandboxError(f"the Debian mirror answered {response.status} for {url}")
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise SandboxError(
                f"the Debian {self.config.asterisk.suite} mirror is unreachable ({url}: {exc}); "
                "check the network or set asterisk.mirror to a reachable Debian mirror"
            ) from exc

    def install(self, *, force: bool = False) -> bool:
        """Builds the chroot and installs Asterisk inside. Returns False when it was already there."""
        if self.installed() and not force:
            return False
        self.preflight_install()
        self.root.mkdir(parents=True, exist_ok=True)
        suite = self.config.asterisk.suite
        if not (self.root / "usr/bin/apt-get").exists():
            self._progress(f"sandbox: debootstrap {suite} into {self.root} (about a minute)")
            self._run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=ca-certificates",
                    suite,
                    str(self.root),
                    self.config.asterisk.mirror,
                ],
                what="debootstrap",
            )
        self._progress("sandbox: installing Asterisk and its sounds inside the chroot")
        # Mirrors that serve a frozen copy of sid carry an expired Release file; apt refuses those by default.
        apt_conf = self.root / "etc/apt/apt.conf.d/99callcenter"
        apt_conf.write_text('Acquire::Check-Valid-Until "false";\n', encoding="utf-8")
        env = {
            "DEBIAN_FRONTEND": "noninteractive",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
        }
        self._chroot(["apt-get", "update", "-q"], env=env, what="apt-get update in the chroot")
        self._chroot(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
            env=env,
            what="apt-get install asterisk in the chroot",
        )
        self._chroot(["apt-get", "clean"], env=env, what="apt-get clean")
        dist = self.root / "etc/asterisk.dist"
        if not dist.exists() and self.etc.exists():
            # Keep Debian's sample configs for reference; /etc/asterisk will hold only ours.
            shutil.copytree(self.etc, dist)
        version = self._chroot_output(["asterisk", "-V"]).strip()
        self.marker.write_text(f"{version}\n", encoding="utf-8")
        self._progress(f"sandbox: {version} installed in {self.root}")
        return True

    # -- configuration ----------------------------------------------------------------------------------

    def render(self) -> list[Path]:
        """Renders every template of asterisk-conf/ into the chroot's /etc/asterisk, which holds only ours."""
        templates = self.config.asterisk.templates_dir
        if not templates.is_dir():
            raise SandboxError(f"asterisk-conf templates not found in {templates}; set asterisk.conf_dir")
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,  # noqa: S701 - Asterisk config files, not HTML; values are validated config
        )
        context = template_context(self.config)
        self.etc.mkdir(parents=True, exist_ok=True)
        for old in self.etc.iterdir():
            if old.is_file() or old.is_symlink():
                old.unlink()
        written = []
        for name in sorted(environment.list_templates()):
            if not name.endswith(".conf"):
                continue
            target = self.etc / name
            try:
                text = environment.get_template(name).render(context)
            except jinja2.TemplateError as exc:
                raise SandboxError(f"asterisk-conf/{name}: {exc}") from exc
            target.write_text(text, encoding="utf-8")
            target.chmod(0o640)
            written.append(target)
        return written

    def _prepare_dirs(self) -> tuple[int, int]:
        uid, gid = self._asterisk_ids()
        for relative in _WRITABLE:
            path = self.root / relative
            path.mkdir(parents=True, exist_ok=True)
            for item in [path, *path.rglob("*")]:
                with contextlib.suppress(FileNotFoundError):
                    os.lchown(item, uid, gid)
        recordings = self.config.recordings_dir
        recordings.mkdir(parents=True, exist_ok=True)
        os.chown(recordings, uid, gid)
        # Recordings are the customers' voices: Asterisk writes them, root (the engine) reads them, nobody else.
        recordings.chmod(0o750)
        return uid, gid

    def _ensure_private_ids(self) -> None:
        """Gives the chroot's asterisk user a uid and gid that no host account has.

        The chroot's files are owned by ids from its own /etc/passwd; if the host gives the same uid to someone
        else (on Debian hosts uid 101 is often postgres), that account could read the AMI secret, the phones'
        passwords and the recordings. Moving the chroot's user to free ids keeps them private to Asterisk.
        """
        uid, gid = self._asterisk_ids()
        host_uids = _ids_in(Path("/etc/passwd"))
        host_gids = _ids_in(Path("/etc/group"))
        if uid not in host_uids and gid not in host_gids:
            return
        taken_uids = host_uids | _ids_in(self.root / "etc/passwd")
        taken_gids = host_gids | _ids_in(self.root / "etc/group")
        new = next((n for n in range(61000, 62000) if n not in taken_uids and n not in taken_gids), None)
        if new is None:
            raise SandboxError("no free uid in 61000-61999 for the sandbox's asterisk user")
        self._progress(f"sandbox: moving the chroot's asterisk user from {uid}:{gid} to {new}:{new} (host ids clash)")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        self._chroot(["groupmod", "-g", str(new), "asterisk"], env=env, what="groupmod asterisk in the chroot")
        self._chroot(["usermod", "-u", str(new), "-g", str(new), "asterisk"], env=env, what="usermod asterisk")
        recordings = str(self.root / str(self.config.recordings_dir).lstrip("/"))
        for directory, dirs, files in os.walk(self.root):
            if directory.startswith((str(self.root / "proc"), str(self.root / "sys"), recordings)):
                dirs[:] = []
                continue
            for name in [*dirs, *files]:
                path = os.path.join(directory, name)
                info = os.lstat(path)
                if info.st_uid == uid or info.st_gid == gid:
                    os.lchown(
                        path, new if info.st_uid == uid else info.st_uid, new if info.st_gid == gid else info.st_gid
                    )

    def _asterisk_ids(self) -> tuple[int, int]:
        passwd = (self.root / "etc/passwd").read_text(encoding="utf-8")
        for line in passwd.splitlines():
            fields = line.split(":")
            if fields and fields[0] == "asterisk" and len(fields) > 3:
                return int(fields[2]), int(fields[3])
        raise SandboxError("the chroot has no asterisk user; reinstall with `callcenter asterisk install --force`")

    def _mount_recordings(self) -> None:
        """Binds the recordings directory into the chroot at the same path, so both sides name files alike."""
        source = self.config.recordings_dir
        target = self.root / str(source).lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        if self._is_mounted(target):
            return
        self._run(["mount", "--bind", str(source), str(target)], what="bind-mount the recordings directory")

    def _unmount_recordings(self) -> None:
        target = self.root / str(self.config.recordings_dir).lstrip("/")
        if self._is_mounted(target):
            subprocess.run(["umount", str(target)], check=False, capture_output=True)

    @staticmethod
    def _is_mounted(path: Path) -> bool:
        wanted = str(path.resolve())
        with open("/proc/mounts", encoding="utf-8") as mounts:
            return any(line.split()[1] == wanted for line in mounts if len(line.split()) > 1)

    def _make_prompts(self, uid: int, gid: int) -> None:
        base = host_path(self.root, "/usr/share/asterisk/sounds/en")
        for name, text in _PROMPTS.items():
            target = base / f"{name}.wav"
            try:
                synthesize(text, "en", target)
            except PromptError as exc:
                self._progress(f"sandbox: prompt {name} not made ({exc}); Asterisk will skip it")
                continue
            with contextlib.suppress(OSError):
                os.chown(target, uid, gid)

    # -- run --------------------------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The pid of this sandbox's Asterisk, or None; a stale pid file or someone else's process is ignored."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            root = Path(os.readlink(f"/proc/{pid}/root"))
            comm = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if root != self.root or comm != "asterisk":
            return None
        return pid

    def _check_ports(self) -> None:
        sip, ami = self.config.sip, self.config.ami
        for kind, host, port in (("udp", sip.host, sip.port), ("tcp", ami.host, ami.port)):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
            with socket.socket(family, sock_type) as probe:
                if kind == "tcp":
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError as exc:
                    setting = "sip.port" if kind == "udp" else "ami.port"
                    raise SandboxError(
                        f"{kind.upper()} port {host}:{port} is already taken ({exc.strerror}); stop what uses it "
                        f"(`ss -lunp | grep {port}`) or set {setting} in the config"
                    ) from exc

    def start(self) -> int:
        """Renders the configs and starts Asterisk; returns its pid. Already running: returns that pid."""
        if os.geteuid() != 0:
            raise SandboxError("starting the sandbox needs root (chroot): run this command as root")
        if not self.installed():
            raise SandboxError(f"no sandbox in {self.root}: run `callcenter asterisk install` first")
        existing = self.running_pid()
        if existing is not None:
            return existing
        self._check_ports()
        self._ensure_private_ids()
        self.render()
        uid, gid = self._prepare_dirs()
        self._make_prompts(uid, gid)
        self._mount_recordings()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        self._run(["chroot", str(self.root), "asterisk", "-U", "asterisk", "-G", "asterisk"], what="start Asterisk")
        deadline = time.monotonic() + self.config.asterisk.start_timeout
        while time.monotonic() < deadline:
            pid = self.running_pid()
            if pid is not None and self._fully_booted():
                return pid
            time.sleep(0.25)
        log_tail = self._log_tail()
        self.stop()
        raise SandboxError(
            f"Asterisk did not finish booting within {self.config.asterisk.start_timeout:.0f} s. "
            f"Last lines of its log:\n{log_tail}"
        )

    def _fully_booted(self) -> bool:
        try:
            result = self.cli("core waitfullybooted", timeout=5, check=False)
        except SandboxError:
            return False
        return result.returncode == 0 and "fully booted" in result.stdout.lower()

    def _log_tail(self, lines: int = 15) -> str:
        log = self.root / "var/log/asterisk/messages.log"
        try:
            return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> bool:
        """Stops this sandbox's Asterisk only; returns False when it was not running."""
        pid = self.running_pid()
        if pid is None:
            self._unmount_recordings()
            return False
        # A hung console still leaves the signals below.
        with contextlib.suppress(SandboxError):
            self.cli("core stop now", timeout=5, check=False)
        if not self._wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_gone(pid, 5.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_gone(pid, 5.0)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        self._unmount_recordings()
        return True

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").split()[2]
            except (OSError, IndexError):
                return True
            if state == "Z":
                return True
            time.sleep(0.1)
        return False

    def cli(self, command: str, *, timeout: float = 15, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs one Asterisk CLI command in the running sandbox (`asterisk -rx`)."""
        if "\n" in command or "\r" in command:
            raise SandboxError("a CLI command is one line")
        try:
            result = subprocess.run(
                ["chroot", str(self.root), "asterisk", "-rx", command],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(f"Asterisk CLI did not answer `{command}` within {timeout} s") from exc
        if check and result.returncode != 0:
            raise SandboxError(f"Asterisk CLI `{command}` failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def status(self, ami_check: Callable[[], tuple[bool, str]] | None = None) -> Status:
        installed = self.installed()
        pid = self.running_pid() if installed else None
        version = self.marker.read_text(encoding="utf-8").strip() if installed else ""
        uptime = ""
        if pid is not None:
            result = self.cli("core show uptime", timeout=5, check=False)
            uptime = " ".join(line.strip() for line in result.stdout.splitlines() if line.strip())
            shown = self.cli("core show version", timeout=5, check=False).stdout.strip()
            version = shown or version
        ami_ok: bool | None = None
        detail = "Asterisk is not running"
        if pid is not None and ami_check is not None:
            ami_ok, detail = ami_check()
        return Status(installed, pid is not None, pid, version, uptime, ami_ok, detail)

    # -- helpers ----------------------------------------------------------------------------------------

    def _chroot(self, args: list[str], *, env: dict[str, str], what: str) -> None:
        self._run(["chroot", str(self.root), *args], what=what, env=env)

    def _chroot_output(self, args: list[str]) -> str:
        return subprocess.run(
            ["chroot", str(self.root), *args], capture_output=True, text=True, check=True, timeout=60
        ).stdout

    def _run(self, args: list[str], *, what: str, env: dict[str, str] | None = None) -> None:
        try:
            result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800, check=False)
        except FileNotFoundError as exc:
            raise SandboxError(f"{what}: {args[0]} not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(f"{what}: gave up after 30 minutes") from exc
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-12:])
            hint = ""
            if "Temporary failure resolving" in tail or "Could not resolve" in tail or "Failed to fetch" in tail:
                hint = "\nthe Debian mirror is unreachable: check the network or set asterisk.mirror"
            raise SandboxError(f"{what} failed (exit {result.returncode}):\n{tail}{hint}")


def _ids_in(table: Path) -> set[int]:
    """The numeric ids (third field) of an /etc/passwd or /etc/group file."""
    ids = set()
    for line in table.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2].isdigit():
            ids.add(int(fields[2]))
    return ids


def host_path(root: Path, inner: str, max_links: int = 40) -> Path:
    """Where the chroot's path ``inner`` lives on the host: absolute symlinks inside resolve under ``root``.

    Debian's sounds/en is a symlink to /etc/alternatives/..., which the host would otherwise follow to its own /etc.
    """
    parts = [part for part in Path(inner).parts if part not in ("/", "")]
    current = root
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            links += 1
            if links > max_links:
                raise SandboxError(f"too many symlinks resolving {inner} in the sandbox")
            target = Path(os.readlink(candidate))
            if target.is_absolute():
                current = root
            parts = [p for p in target.parts if p not in ("/", "")] + parts
            continue
        current = candidate
    return current


def template_context(config: Config) -> dict[str, object]:
    """Everything the asterisk-conf/ templates may use: the config's values and the dialplan names."""
    names = {name: getattr(dialplan, name) for name in dir(dialplan) if name.isupper()}
    passwords = phone_passwords(config)
    secret = agi_secret(config)
    return {
        "sip": config.sip,
        "ami": config.ami,
        "ami_secret": ami_secret(config),
        "agi": config.agi,
        # Appended to the AGI URL's query (the secret is URL-safe by construction, see AgiConfig.secret).
        "agi_secret_query": f"&{SECRET_PARAM}={secret}" if secret else "",
        "queues": config.queues,
        "phones": [
            {
                "extension": phone.extension,
                "kind": phone.kind,
                "password": passwords[phone.extension],
                "contact": phone.contact,
            }
            for phone in config.sip.phones
        ],
        "recordings_dir": str(config.recordings_dir),
        "dp": names,
    }
