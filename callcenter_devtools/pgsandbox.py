"""A PostgreSQL of a test's own: ``initdb`` on a temporary directory, started and stopped with ``pg_ctl`` on a free
loopback port, removed afterwards. Never the machine's own service (127.0.0.1:5432): a test that stops the
database to see what the engine does must stop only a database it started.

    with PgSandbox() as pg:          # initdb + start
        url = pg.url                 # postgresql+asyncpg://postgres@127.0.0.1:<port>/postgres
        pg.stop()                    # an outage (pg_ctl stop -m fast: connections are cut)
        pg.start()                   # back, same data, same port

Used by the integration tier (tests/integration/test_call_records_through_faults.py) and meant for the chaos tier.
The server runs as the ``postgres`` system user when the tests run as root (initdb refuses root), in a directory
that user owns. Every process it starts is stopped by :meth:`PgSandbox.close`, by its data directory's pid.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

SERVICE_USER = "postgres"
START_TIMEOUT_S = 60


class PgSandboxError(Exception):
    pass


def postgres_bindir() -> Path | None:
    """The directory of initdb and pg_ctl: Debian keeps them under /usr/lib/postgresql/<version>/bin, off PATH."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(Path(path).parts[-3].split(".")[0])
    )
    return Path(candidates[-1]).parent if candidates else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class PgSandbox:
    def __init__(self, *, port: int | None = None, host: str = "127.0.0.1", bindir: Path | None = None) -> None:
        found = bindir or postgres_bindir()
        if found is None or not (found / "initdb").exists():
            raise PgSandboxError("PostgreSQL's initdb and pg_ctl are not installed (apt-get install postgresql)")
        self.bindir = found
        self.host = host
        self.port = port or free_port(host)
        if self.port == 5432:
            raise PgSandboxError("5432 is the machine's own PostgreSQL; a sandbox takes another port")
        self.root = Path(tempfile.mkdtemp(prefix="cc-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(SERVICE_USER)
            except KeyError as exc:
                raise PgSandboxError(f"running as root needs the {SERVICE_USER} user to run the server") from exc
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", SERVICE_USER, "--"]
        self._initialised = False

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@{self.host}:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self._as, *command], capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if done.returncode != 0:
            raise PgSandboxError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def init(self) -> None:
        if self._initialised:
            return
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self._initialised = True

    def start(self) -> None:
        """Starts the server (initialising it first) and waits until it accepts connections."""
        self.init()
        options = f"-p {self.port} -h {self.host} -k {self.root} -c fsync=off -c full_page_writes=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1):
                return
            time.sleep(0.1)
        raise PgSandboxError(f"PostgreSQL did not listen on {self.host}:{self.port}: {self.log_text()[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        """Stops the server: ``fast`` cuts every connection and shuts down cleanly, ``immediate`` is a crash."""
        if self.pid() is None:
            return
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def pid(self) -> int | None:
        """The postmaster's pid while it runs (its data directory's postmaster.pid)."""
        try:
            first = (self.data / "postmaster.pid").read_text(encoding="ascii").splitlines()[0]
            pid = int(first)
        except (FileNotFoundError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, PermissionError):
            return ""

    def close(self) -> None:
        """Stops the server if it runs and removes its directory."""
        try:
            with contextlib.suppress(PgSandboxError, subprocess.TimeoutExpired):
                self.stop("immediate")
            pid = self.pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgSandbox:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
