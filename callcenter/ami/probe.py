"""A one-shot AMI check: connect, read the banner, log in, log off. Used by `callcenter asterisk status`.

It is not the engine's AMI connection (that one stays open, reconnects and matches actions by ActionID);
it answers one question: does Asterisk's manager interface accept our credentials right now?
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str
    banner: str = ""


def _line(name: str, value: str) -> str:
    if any(ch in value for ch in "\r\n") or any(ch in name for ch in "\r\n:"):
        raise ValueError(f"AMI header {name!r} carries CR, LF or ':'")
    return f"{name}: {value}\r\n"


async def _read_message(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if not raw.endswith(b"\n"):
            raise ConnectionError("AMI closed the connection")
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if headers:
                return headers
            continue
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
        if len(headers) > 128:
            raise ConnectionError("AMI message with more than 128 headers")


async def probe_ami(
    host: str,
    port: int,
    username: str,
    secret: str,
    timeout: float = 3.0,  # noqa: ASYNC109 - one bound for the whole probe
) -> ProbeResult:
    try:
        login = _line("Action", "Login") + _line("ActionID", "probe-1") + _line("Username", username)
        login += _line("Secret", secret) + _line("Events", "off") + "\r\n"
    except ValueError as exc:
        return ProbeResult(False, str(exc))
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            banner = (await reader.readline()).decode("utf-8", errors="replace").strip()
            if not banner.startswith("Asterisk Call Manager"):
                return ProbeResult(False, f"not an AMI banner: {banner[:60]!r}")
            writer.write(login.encode())
            await writer.drain()
            while True:
                reply = await _read_message(reader)
                if reply.get("actionid") == "probe-1":
                    break
            if reply.get("response", "").lower() != "success":
                return ProbeResult(False, f"login refused: {reply.get('message', 'no message')}", banner)
            writer.write((_line("Action", "Logoff") + "\r\n").encode())
            await writer.drain()
            return ProbeResult(True, "login accepted", banner)
    except TimeoutError:
        return ProbeResult(False, f"no answer from {host}:{port} within {timeout:.0f} s")
    except OSError as exc:
        return ProbeResult(False, f"cannot connect to {host}:{port}: {exc.strerror or exc}")
    except ConnectionError as exc:
        return ProbeResult(False, str(exc))
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
