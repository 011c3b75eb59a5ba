"""SIPp phones for tests and the demo: scenario builders and a process wrapper that stops what it starts.

Callers come from the PSTN address (Asterisk identifies them by source IP); desk phones answer at the static
contacts of their endpoints. DTMF is sent as RFC 4733 events by replaying sip-tester's captures.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

PCAP_DIR = Path("/usr/share/sip-tester")
# sip-tester's speech-like capture is A-law (payload 8); its DTMF captures use payload 101.
SPEECH_PCAP = PCAP_DIR / "g711a.pcap"
_DTMF_NAMES = {**{str(d): str(d) for d in range(10)}, "#": "pound", "*": "star"}


class SippError(Exception):
    pass


def dtmf_pcap(digit: str) -> Path:
    if digit not in _DTMF_NAMES:
        raise SippError(f"no DTMF capture for {digit!r}")
    return PCAP_DIR / f"dtmf_2833_{_DTMF_NAMES[digit]}.pcap"


_PCAP_HEADER = 24
_PACKET_HEADER = 16
_ETHERNET = 14
_UDP = 8


def renumbered_dtmf(digit: str, position: int, directory: Path) -> Path:
    """sip-tester's capture of ``digit``, renumbered as the key at ``position`` (0-based) of one call.

    The captures were taken one after another on one RTP stream, so each carries fixed sequence numbers and a
    fixed timestamp, and Asterisk drops an RFC 4733 event that is not newer than the last one it saw (it takes
    it for a retransmission). Replayed as they are, a key pressed twice in a row, or after a key whose capture
    is newer (9 then 1), never arrives. The copy made here keeps each capture's packets and spacing but moves
    its sequence numbers and timestamp past those of every earlier key of the call.
    """
    raw = dtmf_pcap(digit).read_bytes()
    out = bytearray(raw[:_PCAP_HEADER])
    offset = _PCAP_HEADER
    first: tuple[int, int] | None = None
    while offset + _PACKET_HEADER <= len(raw):
        header = raw[offset : offset + _PACKET_HEADER]
        (length,) = struct.unpack("<I", header[8:12])
        frame = bytearray(raw[offset + _PACKET_HEADER : offset + _PACKET_HEADER + length])
        offset += _PACKET_HEADER + length
        rtp = _ETHERNET + (frame[_ETHERNET] & 0x0F) * 4 + _UDP
        seq, timestamp = struct.unpack("!HI", frame[rtp + 2 : rtp + 8])
        if first is None:
            first = (seq, timestamp)
        # 64 sequence numbers and 2 s of 8 kHz timestamps per key: far more than one key's few packets.
        new_seq = ((position + 1) * 64 + seq - first[0]) & 0xFFFF
        new_timestamp = ((position + 1) * 16000 + timestamp - first[1]) & 0xFFFFFFFF
        frame[rtp + 2 : rtp + 8] = struct.pack("!HI", new_seq, new_timestamp)
        out += header + frame
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"dtmf_{position:03d}_{_DTMF_NAMES[digit]}.pcap"
    target.write_bytes(bytes(out))
    return target


def _sip_quoted(text: str) -> str:
    """A SIP quoted-string for a display name; CR/LF never reach the wire."""
    text = text.replace("\r", " ").replace("\n", " ")
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _cdata(text: str) -> str:
    return text.replace("]]>", "]]]]><![CDATA[>")


# The SIP messages the phones' scenarios send (SIPp fills in the [keywords]); each ends with its blank line.
RINGING = """SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0
"""
# The answer of a desk phone: A-law, mu-law and RFC 4733 keys.
ANSWER = """SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=phone 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 0 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
"""
# The answer to a request without a body (a BYE).
OK = """SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
"""
BYE = """BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0
"""


def ack(number: str) -> str:
    """The ACK of a caller whose Contact user is ``number``."""
    return f"""ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:{number}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0
"""


# The rtpmap line of each payload type a phone may offer.
_RTPMAPS = {
    "0": "a=rtpmap:0 PCMU/8000",
    "8": "a=rtpmap:8 PCMA/8000",
    "101": "a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15",
}


def invite(number: str, name: str, payloads: str) -> str:
    """A caller's INVITE from ``number`` shown as ``name`` (quoted for SIP and CDATA already), offering the RTP
    ``payloads`` ("0 8 101": mu-law, A-law, RFC 4733 keys)."""
    rtpmaps = "\n".join(_RTPMAPS[payload] for payload in payloads.split())
    return f"""INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{name}" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{number}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP {payloads}
{rtpmaps}
a=sendrecv
"""


def send(message: str, attributes: str = "") -> str:
    """A ``<send>`` of ``message`` (one of the texts above); ``attributes`` such as ' retrans="500"'."""
    return f"  <send{attributes}>\n    <![CDATA[\n{message}\n    ]]>\n  </send>"


@dataclass(frozen=True, slots=True)
class CallerScript:
    """What a calling phone does once answered: wait, send keys, maybe talk, then hang up or wait for BYE."""

    caller_number: str = "5550100"
    caller_name: str = "Test Caller"
    digits: str = ""
    wait_before_digits_ms: int = 2000
    gap_between_digits_ms: int = 800
    talk_ms: int = 3000
    speech: bool = False
    # Silence between the last key and the speech (e.g. while a voicemail prompt plays before the beep).
    pause_before_speech_ms: int = 0
    # True: wait for Asterisk to hang up (e.g. the IVR ends the call) instead of sending BYE.
    remote_hangup: bool = False
    offer_alaw: bool = field(default=False)


def caller_scenario(script: CallerScript, dtmf_files: list[Path] | None = None) -> str:
    """The UAC scenario of ``script``; ``dtmf_files`` are the captures to play for its keys, one per key
    (default: sip-tester's own, which only work for keys in ascending capture order, see renumbered_dtmf)."""
    if dtmf_files is not None and len(dtmf_files) != len(script.digits):
        raise SippError("one DTMF capture per key")
    number = "".join(ch for ch in script.caller_number if ch.isalnum() or ch in "+*#") or "anonymous"
    name = _cdata(_sip_quoted(script.caller_name))
    codec = "8 101" if script.offer_alaw or script.speech else "0 8 101"
    steps: list[str] = [f'  <pause milliseconds="{script.wait_before_digits_ms}"/>']
    for index, digit in enumerate(script.digits):
        if index:
            steps.append(f'  <pause milliseconds="{script.gap_between_digits_ms}"/>')
        capture = dtmf_files[index] if dtmf_files is not None else dtmf_pcap(digit)
        steps.append(f'  <nop><action><exec play_pcap_audio="{escape(str(capture))}"/></action></nop>')
    if script.speech:
        if script.pause_before_speech_ms:
            steps.append(f'  <pause milliseconds="{script.pause_before_speech_ms}"/>')
        steps.append(f'  <nop><action><exec play_pcap_audio="{escape(str(SPEECH_PCAP))}"/></action></nop>')
    steps.append(f'  <pause milliseconds="{script.talk_ms}"/>')
    if script.remote_hangup:
        ending = f'  <recv request="BYE"/>\n{send(OK)}'
    else:
        ending = send(BYE, ' retrans="500"') + '\n  <recv response="200" crlf="true"/>'
    body = "\n".join(steps)
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="callcenter caller">
{send(invite(number, name, codec), ' retrans="500"')}
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
{send(ack(number))}
{body}
{ending}
</scenario>
"""


def answering_scenario(ring_ms: int = 300, speech: bool = False) -> str:
    """A desk phone that rings briefly, answers, optionally talks, and waits for the far end's BYE."""
    talk = f'  <nop><action><exec play_pcap_audio="{escape(str(SPEECH_PCAP))}"/></action></nop>\n' if speech else ""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="callcenter desk phone">
  <recv request="INVITE" crlf="true"/>
{send(RINGING)}
  <pause milliseconds="{ring_ms}"/>
{send(ANSWER, ' retrans="500"')}
  <recv request="ACK" rtd="true" crlf="true"/>
{talk}  <recv request="BYE"/>
{send(OK)}
</scenario>
"""


class SippProcess:
    """One running SIPp. ``stop()`` ends it by its own handle; also used as a context manager."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.name = name
        self.args = args
        self.workdir = workdir
        self._log = open(workdir / f"{name}.out", "w+b")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise SippError(f"SIPp {self.name} still running after {timeout:.0f} s") from exc

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # SIPp's "quit after current calls" is too slow here
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(1.0)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3.0)
        if not self._log.closed:
            self._log.close()

    def output(self) -> str:
        self._log.flush()
        return (self.workdir / f"{self.name}.out").read_text(encoding="utf-8", errors="replace")

    def errors(self) -> str:
        texts = [path.read_text(encoding="utf-8", errors="replace") for path in self.workdir.glob("*_errors.log")]
        return "\n".join(texts)

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Phones:
    """Starts SIPp processes in one work directory and stops every one of them on ``close()``."""

    def __init__(self, sip_host: str, sip_port: int, workdir: Path | None = None) -> None:
        if shutil.which("sipp") is None:
            raise SippError("sipp is not installed (apt-get install sip-tester)")
        self.sip_host = sip_host
        self.sip_port = sip_port
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cc-sipp-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.processes: list[SippProcess] = []
        # Media ports stay clear of Asterisk's RTP range (sip.rtp_start..rtp_end, 10000-20000 by default) and
        # wrap around, so a long demo never runs out of them.
        self._media_base = 30000 + (os.getpid() % 100) * 100
        self._media_next = 0

    def _next_media_port(self) -> int:
        # SIPp uses the given port and the next ones (RTP, RTCP, and the same again for video).
        port = self._media_base + self._media_next
        self._media_next = (self._media_next + 4) % 10000
        return port

    def _start(self, name: str, scenario: str, extra: list[str]) -> SippProcess:
        path = self.workdir / f"{name}.xml"
        path.write_text(scenario, encoding="utf-8")
        args = [
            "sipp",
            "-sf",
            str(path),
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(self.workdir / f"{name}_errors.log"),
        ]
        process = SippProcess(name, [*args, *extra], self.workdir)
        self.processes.append(process)
        return process

    def call(
        self,
        name: str,
        did: str,
        script: CallerScript,
        *,
        local_ip: str,
        local_port: int,
        calls: int = 1,
        rate: float = 1.0,
        timeout_s: int = 60,
    ) -> SippProcess:
        """Places ``calls`` calls from ``local_ip`` (the PSTN address for callers) to ``did``."""
        extra = [
            f"{self.sip_host}:{self.sip_port}",
            "-s", did,
            "-i", local_ip,
            "-p", str(local_port),
            "-mi", local_ip,
            "-mp", str(self._next_media_port()),
            "-m", str(calls),
            "-r", str(rate),
            "-l", str(max(1, calls)),
            "-timeout", f"{timeout_s}s",
            "-timeout_error",
            "-recv_timeout", f"{timeout_s * 1000}",
        ]  # fmt: skip
        captures = [
            renumbered_dtmf(digit, index, self.workdir / f"{name}-dtmf") for index, digit in enumerate(script.digits)
        ]
        return self._start(name, caller_scenario(script, captures), extra)

    def desk_phone(
        self,
        name: str,
        *,
        local_ip: str,
        local_port: int,
        calls: int = 1,
        ring_ms: int = 300,
        speech: bool = False,
    ) -> SippProcess:
        """A phone that answers ``calls`` calls at ``local_ip:local_port`` (its endpoint's static contact)."""
        extra = [
            "-i", local_ip,
            "-p", str(local_port),
            "-mi", local_ip,
            "-mp", str(self._next_media_port()),
            "-m", str(calls),
            "-rtp_echo",
        ]  # fmt: skip
        return self._start(name, answering_scenario(ring_ms, speech), extra)

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Phones:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def wait_until(predicate: object, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(interval)
    return False
