"""The FastAGI socket as an asyncio Protocol: bytes in, lines out, each wait bounded by a deadline.

Written on the Protocol API rather than StreamReader for speed: a line that is already buffered is handed
over without a timer, a future or a trip through the event loop, and a deadline timer is armed only when the
session really has to wait. The environment block is parsed as it arrives, inside ``data_received``, with a
single deadline for the whole header, so a peer that trickles header lines cannot hold a slot for long, and a
peer that closes mid-header costs nothing but a log line.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, cast

from callcenter.agi import protocol
from callcenter.agi.exceptions import AgiConnectionLost, AgiError, AgiProtocolError, AgiTimeout
from callcenter.agi.protocol import AgiEnvironment


class ConnectionOwner(Protocol):
    """What a connection tells the server: it arrived, its header is complete, or its header failed."""

    def connection_admitted(self, connection: AgiConnection) -> bool: ...

    def header_ready(self, connection: AgiConnection, env: AgiEnvironment) -> None: ...

    def header_failed(self, connection: AgiConnection, error: AgiError) -> None: ...


def _expire(waiter: asyncio.Future[None], limit: float) -> None:
    if not waiter.done():
        waiter.set_exception(AgiTimeout(f"no line from Asterisk within {limit:.1f} s"))


class AgiConnection(asyncio.Protocol):
    def __init__(
        self,
        owner: ConnectionOwner,
        *,
        header_timeout: float,
        max_header_lines: int,
        max_line: int,
        max_header_bytes: int = 65536,
    ) -> None:
        self._owner = owner
        # The protocol is made as the connection is accepted: where the call's AGI answer latency starts.
        self.connected_at = time.monotonic()
        self._header_timeout = header_timeout
        self._max_header_lines = max_header_lines
        self._max_line = max_line
        self._max_header_bytes = max_header_bytes
        # How far the header has been searched for its blank line, so no byte is scanned twice.
        self._scanned = 0
        self._header_newlines = 0
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._lines: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: AgiError | None = None
        self._closed = False
        # True while the environment block is still arriving.
        self._header = True
        self._header_timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports all the same.
        self._transport = cast(asyncio.Transport, transport)
        if not self._owner.connection_admitted(self):
            self._header = False
            self._transport.close()
            return
        self._header_timer = self._loop.call_later(self._header_timeout, self._header_expired)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._header and not self._feed_header():
            return
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            self._lines.append(bytes(buffer[start:end]))
            start = end + 1
        if start:
            del buffer[:start]
        if len(buffer) > self._max_line:
            self._fail(AgiProtocolError(f"line longer than {self._max_line} bytes"))
            return
        if self._lines:
            self._wake()

    def eof_received(self) -> bool | None:
        # Asterisk never half-closes: EOF means the call's session is over. Let the transport close.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._header_timer is not None:
            self._header_timer.cancel()
        if self._header:
            self._header = False
            detail = f"connection closed mid-header ({exc})" if exc else "connection closed mid-header"
            self._owner.header_failed(self, AgiConnectionLost(detail))
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- the header ---------------------------------------------------------------------------------------

    def _feed_header(self) -> bool:
        """Parses the environment once its blank line has arrived; True when the header is done and good."""
        buffer = self._buffer
        if buffer[:4] != b"agi_"[: len(buffer)]:
            self._fail(AgiProtocolError("not an AGI environment line", bytes(buffer[:80]).decode("latin-1")))
            return False
        if len(buffer) > self._max_header_bytes:
            self._fail(AgiProtocolError(f"environment longer than {self._max_header_bytes} bytes"))
            return False
        # Resume two bytes back: the blank line may straddle the previous chunk's end.
        resume = max(0, self._scanned - 2)
        end, skip = buffer.find(b"\n\n", resume), 2
        if end < 0:
            end, skip = buffer.find(b"\n\r\n", resume), 3
        if end < 0:
            self._header_newlines += buffer.count(b"\n", self._scanned)
            self._scanned = len(buffer)
            # Bounded while incomplete: never more lines than allowed, never a line longer than allowed.
            if self._header_newlines > self._max_header_lines:
                self._fail(AgiProtocolError(f"environment longer than {self._max_header_lines} lines"))
            elif len(buffer) - (buffer.rfind(b"\n") + 1) > self._max_line:
                self._fail(AgiProtocolError(f"line longer than {self._max_line} bytes"))
            return False
        block = bytes(buffer[:end]).decode("utf-8", errors="replace")
        del buffer[: end + skip]
        self._header = False
        self._cancel_header_timer()
        try:
            env = protocol.parse_environment_block(block, self._max_header_lines)
        except AgiError as exc:
            self._owner.header_failed(self, exc)
            return False
        self._owner.header_ready(self, env)
        return True

    def _header_expired(self) -> None:
        self._header_timer = None
        if self._header:
            self._header = False
            self._owner.header_failed(self, AgiTimeout(f"header not complete within {self._header_timeout:.0f} s"))

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    # -- for the session ----------------------------------------------------------------------------------

    async def readline(self, timeout: float) -> str:  # noqa: ASYNC109 - a deadline per read is the point
        """The next line without its CR/LF. Raises AgiTimeout, AgiConnectionLost or AgiProtocolError."""
        lines = self._lines
        while not lines:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise AgiConnectionLost("connection closed" + (" mid-line" if self._buffer else ""))
            waiter = self._loop.create_future()
            self._waiter = waiter
            timer = self._loop.call_later(timeout, _expire, waiter, timeout)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return lines.popleft().decode("utf-8", errors="replace").rstrip("\r")

    def write(self, data: bytes) -> None:
        if self._closed or self._transport is None or self._transport.is_closing():
            raise AgiConnectionLost("connection closed")
        self._transport.write(data)

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109
        """Waits while the kernel's send buffer is full (it practically never is for AGI's short lines)."""
        if not self._paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError as exc:
            raise AgiConnectionLost(f"Asterisk did not read for {timeout:.0f} s") from exc
        finally:
            self._drain_waiter = None
        if self._closed:
            raise AgiConnectionLost("connection closed")

    def evict(self) -> None:
        """Closes a connection still in its header phase without reporting a header failure (the server has
        already counted it: it made room for a newer connection)."""
        self._header = False
        self._cancel_header_timer()
        if self._transport is not None:
            # abort(): nothing is owed to a peer that never sent its environment, and no lingering send buffer.
            self._transport.abort()

    def close(self) -> None:
        self._cancel_header_timer()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    @property
    def peer_host(self) -> str:
        """The peer's IP address alone ("" when the transport has none, as on a Unix socket)."""
        if self._transport is None:
            return ""
        address = self._transport.get_extra_info("peername")
        return str(address[0]) if isinstance(address, tuple) and address else ""

    @property
    def peer(self) -> str:
        if self._transport is None:
            return "?"
        address = self._transport.get_extra_info("peername")
        return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)

    # -- internals ----------------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: AgiError) -> None:
        self._error = error
        if self._header:
            self._header = False
            self._cancel_header_timer()
            self._owner.header_failed(self, error)
        self._wake()
        self.close()


ConnectionFactory = Callable[[], AgiConnection]
