"""Integration test harness for ringrelay.

Pieces (all stdlib + Debian's python3-dnspython; run with /usr/bin/python3):

- free_port / sink_ip:   ports and loopback addresses that do not clash.
- RecordingSink:         an upstream SMTP server (asyncio, in a thread) on
                         127.0.0.x that stores every transaction byte-exactly
                         (wire bytes and un-dot-stuffed content), with
                         configurable refusals (451 first N, always 550, per
                         recipient, at the greeting), optional CHUNKING,
                         8BITMIME / SMTPUTF8 left out of EHLO, stop/start.
- Relay:                 writes a temporary config, runs the real binary,
                         waits until it accepts connections, stops it with
                         SIGTERM (exit code must be 0), kill -9, restart on
                         the same spool and port; keeps a log per run.
- SMTPClient:            a raw-socket client: exact bytes out, parsed
                         replies in, pipelining, BDAT.
- make_message & co.:    messages of an exact RFC 1870 size.
- split_received / assert_delivered: strip our Received: header and compare
                         bytes, with a useful diff on mismatch.

Tests use context managers so that processes and temporary directories are
cleaned up even when an assertion fails; `dump_diagnostics()` prints the
relay log tails and sink summaries for a failed test.
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

REPO = Path(__file__).resolve().parents[2]
CRLF = b"\r\n"
MAX_SIZE = 52428800  # SIZE advertised by ringrelay (RFC 1870 octets)

SENDER_DOMAIN = os.environ.get("RINGRELAY_TEST_SENDER_DOMAIN", "sender.ringrelay-it.net")
RCPT_DOMAIN = os.environ.get("RINGRELAY_TEST_RCPT_DOMAIN", "rcpt.ringrelay-it.net")
SENDER = f"alice@{SENDER_DOMAIN}"


def rcpt(n=0) -> str:
    return f"user{n}@{RCPT_DOMAIN}"


def relay_binary() -> Path:
    return Path(os.environ.get("RINGRELAY_BIN", REPO / "build/src/app/ringrelay"))


# --------------------------------------------------------------------------
# registry of live objects, for diagnostics and last-resort cleanup

_registry_lock = threading.Lock()
_relays: list["Relay"] = []
_sinks: list["RecordingSink"] = []
_notes: list[str] = []


def note(text: str) -> None:
    """A line printed with the diagnostics (and by the runner on success with -v)."""
    with _registry_lock:
        _notes.append(text)
    print(text, flush=True)


def dump_diagnostics(log_lines: int = 60) -> str:
    out = []
    with _registry_lock:
        relays, sinks = list(_relays), list(_sinks)
    for r in relays:
        out.append(f"--- relay {r.name}: {r.describe()}")
        out.append(r.log_tail(log_lines))
    for s in sinks:
        out.append(f"--- sink {s.address}: {s.summary()}")
        tr = s.transcript_tail(30)
        if tr:
            out.append(tr)
    return "\n".join(out)


@atexit.register
def _cleanup_everything():
    with _registry_lock:
        relays, sinks = list(_relays), list(_sinks)
    for r in relays:
        with contextlib.suppress(Exception):
            r._hard_cleanup()
    for s in sinks:
        with contextlib.suppress(Exception):
            s.close()


def timeout(seconds: float):
    """Decorator: the runner's per-test timeout for this test."""
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


# --------------------------------------------------------------------------
# ports and addresses

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_ip_counter = itertools.count()


def sink_ip() -> str:
    """A loopback address in 127.0.0.2..127.0.0.254, different on each call."""
    n = (os.getpid() * 7 + next(_ip_counter)) % 253
    return f"127.0.0.{2 + n}"


# --------------------------------------------------------------------------
# byte helpers

def dot_stuff(content: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency for CRLF-delimited lines."""
    if not content:
        return content
    lines = content.split(CRLF)
    return CRLF.join(b"." + l if l.startswith(b".") else l for l in lines)


def dot_unstuff(wire: bytes) -> bytes:
    if not wire:
        return wire
    lines = wire.split(CRLF)
    return CRLF.join(l[1:] if l.startswith(b".") else l for l in lines)


def data_wire(content: bytes) -> bytes:
    """What a client sends after the 354: stuffed content + terminator.
    `content` must be empty or end with CRLF."""
    assert content == b"" or content.endswith(CRLF), "content must end with CRLF"
    return dot_stuff(content) + b".\r\n"


def smtplib_content(msg: bytes) -> bytes:
    """The message content smtplib.sendmail(msg=bytes) transfers (after the
    receiver removes dot-stuffing): a final CRLF is added when missing."""
    return msg if msg.endswith(CRLF) else msg + CRLF


def split_received(data: bytes) -> tuple[bytes, bytes]:
    """Split a delivered message into (our Received header, the rest).
    The header must be the very first field, lines end in CRLF, continuation
    lines start with SP or HTAB."""
    if not data[:9].lower() == b"received:":
        raise AssertionError(f"delivered message does not start with a Received: header: {data[:120]!r}")
    pos = data.find(CRLF)
    if pos < 0:
        raise AssertionError(f"Received: header without CRLF: {data[:300]!r}")
    pos += 2
    while data[pos:pos + 1] in (b" ", b"\t"):
        nxt = data.find(CRLF, pos)
        if nxt < 0:
            raise AssertionError(f"folded Received: header without CRLF: {data[:600]!r}")
        pos = nxt + 2
    header = data[:pos]
    if b"\n" in header.replace(CRLF, b"") or b"\r" in header.replace(CRLF, b""):
        raise AssertionError(f"Received: header has bare CR/LF: {header!r}")
    return header, data[pos:]


def first_difference(a: bytes, b: bytes) -> Optional[int]:
    if a == b:
        return None
    n = min(len(a), len(b))
    lo, hi = 0, n
    # binary search on prefix equality (fast for 50 MiB)
    while lo < hi:
        mid = (lo + hi) // 2
        if a[lo:mid + 1] == b[lo:mid + 1]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def assert_bytes_equal(actual: bytes, expected: bytes, what: str = "content") -> None:
    if actual == expected:
        return
    i = first_difference(actual, expected)
    s = max(0, i - 40)
    raise AssertionError(
        f"{what} differs: got {len(actual)} octets, expected {len(expected)}; "
        f"first difference at offset {i}\n"
        f"  got:      {actual[s:i + 60]!r}\n"
        f"  expected: {expected[s:i + 60]!r}")


def assert_delivered(msg: "SinkMessage", expected: bytes, mail_from: Optional[str] = None,
                     rcpts: Optional[Iterable[str]] = None) -> bytes:
    """Checks one sink message against what the client meant to send.
    Returns the Received header."""
    header, rest = split_received(msg.data)
    assert_bytes_equal(rest, expected, "delivered content (minus Received:)")
    if mail_from is not None:
        assert msg.mail_from == mail_from, f"envelope sender {msg.mail_from!r} != {mail_from!r}"
    if rcpts is not None:
        assert sorted(msg.rcpts) == sorted(rcpts), f"envelope recipients {msg.rcpts!r} != {sorted(rcpts)!r}"
    return header


MSGID_RE = re.compile(rb"^Message-ID: <([^>@\r\n]+)@client\.test>\r$", re.M | re.I)


def message_tag(content: bytes) -> Optional[str]:
    """The tag make_message put in the Message-ID ("<tag@client.test>")."""
    m = MSGID_RE.search(content[:8192])
    return m.group(1).decode() if m else None


# --------------------------------------------------------------------------
# messages

_PRINTABLE = bytes(0x20 + (i % 95) for i in range(256))  # maps any byte to SP..~


def _header(tag: str, extra: bytes = b"", pad: bytes = b"") -> bytes:
    return (b"From: Alice <" + SENDER.encode() + b">\r\n"
            b"To: <" + rcpt().encode() + b">\r\n"
            b"Subject: ringrelay integration " + tag.encode() + pad + b"\r\n"
            b"Message-ID: <" + tag.encode() + b"@client.test>\r\n" + extra + b"\r\n")


def make_message(size: int, tag: str = "msg", seed: int = 0, min_line: int = 1,
                 max_line: int = 1000, dot_every: int = 37) -> bytes:
    """A message whose RFC 1870 size (octets incl. CRLF, no stuffing) is
    exactly `size`: a header block, then body lines of 2..max_line octets
    incl. CRLF (never over 1000), some starting with ".", some empty."""
    assert 2 <= max_line <= 1000 and min_line <= max_line - 2
    if size == 0:
        return b""
    hdr = _header(tag)
    budget = size - len(hdr)
    if budget == 1:  # a 1-octet line is impossible: lengthen the Subject instead
        hdr = _header(tag, pad=b"+")
        budget = size - len(hdr)
    if budget < 0:
        raise ValueError(f"size {size} is smaller than the header ({len(hdr)})")
    rng = random.Random(f"{tag}/{seed}/{size}")
    pool = rng.randbytes(min(budget, 4 << 20) + 2048).translate(_PRINTABLE)
    plen = len(pool) - 1024
    parts = [hdr]
    remaining = budget
    n = 0
    while remaining > 0:
        if remaining <= max_line:
            total = remaining
        else:
            total = rng.randint(max(2, min_line + 2), max_line)
            if remaining - total < 2:
                total = remaining - 2
        text_len = total - 2
        off = rng.randrange(plen)
        line = pool[off:off + text_len]
        n += 1
        # Dot lines stay under the maximum (<= 999 octets incl. CRLF), so
        # their stuffed form is <= 1000 octets on the wire: the 1000-octet
        # stuffed case has its own test (test_text_line_exactly_1000).
        if text_len and text_len < 998 and n % dot_every == 0:
            line = b"." + line[1:]
        elif text_len and text_len < 998 and n % 53 == 0:
            line = b"." * text_len if text_len < 3 else b".." + line[2:]
        elif text_len >= 998 and line.startswith(b"."):
            line = b"x" + line[1:]
        elif n % 61 == 0 and remaining - total >= 2 and remaining > max_line:
            parts.append(CRLF)  # an empty line as well
            remaining -= 2
            continue
        parts.append(line + CRLF)
        remaining -= total
    out = b"".join(parts)
    assert len(out) == size, (len(out), size)
    return out


@functools.lru_cache(maxsize=4)
def big_message(size: int, tag: str) -> bytes:
    """Large messages with long lines (fewer lines, faster sinks)."""
    return make_message(size, tag=tag, seed=1, min_line=900, max_line=1000, dot_every=101)


def make_8bit_message(tag: str = "8bit") -> bytes:
    body = [
        "Grüße aus Köln — naïve café, 日本語のテキスト, emoji 📨".encode(),
        bytes(range(0x80, 0x100)),               # every high octet once
        bytes(b for b in range(1, 0x80) if b not in (0x0a, 0x0d)),  # every low octet but CR/LF
        b"latin-1: " + "déjà vu".encode("latin-1"),
        b"\xff\xfe\xfd invalid utf-8 \xc3\x28 \xa0\xa1",
        b".\xe2\x80\xa2 dot then 8-bit",
        b"\x01\x02\x7f control octets",
    ]
    return (_header(tag, b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         b"Content-Transfer-Encoding: 8bit\r\n")
            + CRLF.join(body) + CRLF)


# --------------------------------------------------------------------------
# recording sink

@dataclass
class SinkMessage:
    mail_from: str
    rcpts: list
    data: bytes              # content after dot-unstuffing (or BDAT bytes)
    wire: bytes              # bytes as received between 354 and CRLF.CRLF
    via: str                 # "DATA" or "BDAT"
    helo: str
    mail_params: list
    conn: int
    attempt: int             # 0-based count of end-of-data events on this sink
    time: float = 0.0        # time.monotonic() when the final reply was sent
    code: int = 250
    reply: str = ""

    def __repr__(self):
        return (f"<SinkMessage #{self.attempt} conn={self.conn} from={self.mail_from!r} "
                f"rcpts={len(self.rcpts)} via={self.via} {len(self.data)} octets -> {self.code}>")


Policy = Callable[[SinkMessage], Optional[tuple]]


def fail_first(n: int, code: int = 451, text: str = "4.3.0 Temporary failure, try again later") -> Policy:
    """End-of-data policy: refuse the first n transactions, then accept."""
    counter = itertools.count()
    return lambda txn: (code, text) if next(counter) < n else None


def always(code: int = 550, text: str = "5.7.1 Rejected by test sink") -> Policy:
    return lambda txn: (code, text)


class _SinkProtocol(asyncio.Protocol):
    def __init__(self, sink: "RecordingSink", conn_id: int):
        self.sink = sink
        self.conn = conn_id
        self.buf = bytearray()
        self.state = "cmd"
        self.scan = 0
        self.helo = ""
        self.reset()

    def reset(self):
        self.mail_from = None
        self.params: list = []
        self.rcpts: list = []
        self.bdat_parts: list = []
        self.bdat_need = 0
        self.bdat_last = False

    # asyncio callbacks
    def connection_made(self, transport):
        self.t = transport
        self.sink._transports.add(transport)
        self.sink._log(self.conn, "connect")
        refusal = self.sink.greeting(self.conn) if self.sink.greeting else None
        if refusal:
            with self.sink._cond:
                self.sink.refused_greetings += 1
                self.sink._cond.notify_all()
            self.reply(f"{refusal[0]} {refusal[1]}")
            self.t.close()
            return
        delay = self.sink.greeting_delay(self.conn) if self.sink.greeting_delay else 0
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._greet)
        else:
            self._greet()

    def _greet(self):
        if not self.t.is_closing():
            self.reply(f"220 {self.sink.hostname} ESMTP ringrelay-test-sink")

    def connection_lost(self, exc):
        self.sink._transports.discard(self.t)
        self.sink._log(self.conn, f"disconnect ({exc or 'eof'})")

    def data_received(self, data):
        self.buf += data
        try:
            self.process()
        except Exception as e:  # a sink bug must be visible, not hang a test
            self.sink._log(self.conn, f"SINK ERROR {e!r}")
            self.sink.errors.append(repr(e))
            self.t.abort()

    def reply(self, line: str):
        self.sink._log(self.conn, "<<< " + line)
        self.t.write(line.encode("utf-8") + CRLF)

    # state machine
    def process(self):
        while not self.t.is_closing():
            if self.state == "cmd":
                i = self.buf.find(CRLF)
                if i < 0:
                    if len(self.buf) > 4096:
                        self.reply("500 5.5.6 Line too long")
                        self.t.close()
                    return
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                self.command(line.decode("utf-8", "surrogateescape"))
            elif self.state == "data":
                if self.scan == 0 and len(self.buf) < 3 and b".\r\n".startswith(bytes(self.buf)):
                    return
                if self.scan == 0 and self.buf.startswith(b".\r\n"):
                    wire, cut = b"", 3
                else:
                    j = self.buf.find(b"\r\n.\r\n", self.scan)
                    if j < 0:
                        self.scan = max(0, len(self.buf) - 4)
                        return
                    wire, cut = bytes(self.buf[:j + 2]), j + 5
                del self.buf[:cut]
                self.scan = 0
                self.state = "cmd"
                self.finish("DATA", wire, dot_unstuff(wire))
            elif self.state == "wait":
                return
            elif self.state == "bdat":
                take = min(self.bdat_need, len(self.buf))
                if take:
                    self.bdat_parts.append(bytes(self.buf[:take]))
                    del self.buf[:take]
                    self.bdat_need -= take
                if self.bdat_need:
                    return
                self.state = "cmd"
                if self.bdat_last:
                    content = b"".join(self.bdat_parts)
                    self.finish("BDAT", content, content)
                else:
                    self.reply(f"250 2.0.0 {sum(map(len, self.bdat_parts))} octets received")

    def command(self, line: str):
        self.sink._log(self.conn, ">>> " + (line if len(line) < 300 else line[:300] + "..."))
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        s = self.sink
        if verb == "EHLO":
            self.helo = arg
            self.reset()
            ext = ["PIPELINING", "SIZE 104857600"]
            if s.eight_bit_mime:
                ext.append("8BITMIME")
            if s.smtputf8:
                ext.append("SMTPUTF8")
            ext.append("ENHANCEDSTATUSCODES")
            if s.chunking:
                ext.append("CHUNKING")
            lines = [s.hostname] + ext
            for l in lines[:-1]:
                self.reply("250-" + l)
            self.reply("250 " + lines[-1])
        elif verb == "HELO":
            self.helo = arg
            self.reset()
            self.reply(f"250 {s.hostname}")
        elif verb == "MAIL":
            m = re.match(r"(?i)FROM:\s*<([^>]*)>\s*(.*)$", arg)
            if not m:
                return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            if self.mail_from is not None:
                return self.reply("503 5.5.1 Nested MAIL command")
            self.mail_from = m.group(1)
            self.params = m.group(2).split()
            self.reply("250 2.1.0 Ok")
        elif verb == "RCPT":
            m = re.match(r"(?i)TO:\s*<([^>]*)>", arg)
            if not m:
                return self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            if self.mail_from is None:
                return self.reply("503 5.5.1 Need MAIL command")
            refusal = s.rcpt_policy(m.group(1)) if s.rcpt_policy else None
            if refusal:
                s.rcpt_refusals.append((m.group(1), refusal[0]))
                return self.reply(f"{refusal[0]} {refusal[1]}")
            self.rcpts.append(m.group(1))
            self.reply("250 2.1.5 Ok")
        elif verb == "DATA":
            if not self.rcpts:
                return self.reply("503 5.5.1 Need RCPT command")
            self.state = "data"
            self.scan = 0
            self.reply("354 End data with <CR><LF>.<CR><LF>")
        elif verb == "BDAT" and s.chunking:
            m = re.match(r"(\d+)(\s+LAST)?\s*$", arg, re.I)
            if not m:
                return self.reply("501 5.5.4 Syntax: BDAT size [LAST]")
            self.bdat_need = int(m.group(1))
            self.bdat_last = bool(m.group(2))
            self.state = "bdat"
        elif verb == "RSET":
            self.reset()
            self.reply("250 2.0.0 Ok")
        elif verb == "NOOP":
            self.reply("250 2.0.0 Ok")
        elif verb == "QUIT":
            if self.sink.ignore_quit:
                return
            self.reply("221 2.0.0 Bye")
            self.t.close()
        else:
            self.reply("500 5.5.2 Command not recognized")

    def finish(self, via: str, wire: bytes, content: bytes):
        s = self.sink
        if not self.rcpts:
            self.reset()
            return self.reply("503 5.5.1 No valid recipients")
        with s._cond:
            attempt = s._attempt_counter
            s._attempt_counter += 1
        txn = SinkMessage(mail_from=self.mail_from, rcpts=list(self.rcpts), data=content,
                          wire=wire, via=via, helo=self.helo, mail_params=list(self.params),
                          conn=self.conn, attempt=attempt)
        refusal = s.policy(txn) if s.policy else None
        if refusal:
            txn.code, txn.reply = refusal[0], f"{refusal[0]} {refusal[1]}"
        else:
            txn.code, txn.reply = 250, f"250 2.0.0 Ok: stored as #{attempt}"
        txn.time = time.monotonic()
        with s._cond:
            s._attempts.append(txn)
            if txn.code == 250:
                s._messages.append(txn)
            s._cond.notify_all()
        self.reset()
        if s.reply_delay > 0:
            # The transaction is recorded (committed, as a real MTA would
            # have) now; the reply goes out later and nothing else on this
            # connection is processed until then.
            self.state = "wait"
            asyncio.get_running_loop().call_later(s.reply_delay, self._delayed_reply, txn.reply)
        else:
            self.reply(txn.reply)

    def _delayed_reply(self, text: str):
        if self.t.is_closing():
            return
        self.reply(text)
        self.state = "cmd"
        self.process()


class RecordingSink:
    """Upstream SMTP server that records every transaction.

    policy(txn) -> None to accept, or (code, "x.y.z text") to refuse at end
    of data; rcpt_policy(address) likewise at RCPT. `messages` are the
    accepted transactions, `attempts` every transaction that reached end of
    data (accepted or not). Replies carry enhanced status codes.
    reply_delay: seconds between recording a transaction (its `time`) and
    sending the final reply, to widen the window in which a relay crash
    races an upstream delivery.

    EHLO advertises PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
    ENHANCEDSTATUSCODES (and CHUNKING when `chunking`); eight_bit_mime=False
    / smtputf8=False leave out 8BITMIME / SMTPUTF8 (the sink still takes
    whatever it is sent: tests check the relay did not send it).
    greeting(conn_number) -> None for the normal 220, or (code, "x.y.z
    text") to greet with that reply and close the connection at once (conn
    numbers count from 1 per sink); `refused_greetings` counts those.
    greeting_delay(conn_number) -> seconds to wait before the 220 (0: at
    once), so a connection can become ready after the others.
    ignore_quit: never answer QUIT and keep the connection open (a peer
    that hangs at the end of a session).
    """

    def __init__(self, host: Optional[str] = None, port: Optional[int] = None,
                 policy: Optional[Policy] = None, rcpt_policy=None, chunking: bool = False,
                 hostname: str = "sink.test", start: bool = True, reply_delay: float = 0.0,
                 eight_bit_mime: bool = True, smtputf8: bool = True,
                 greeting: Optional[Callable[[int], Optional[tuple]]] = None,
                 ignore_quit: bool = False,
                 greeting_delay: Optional[Callable[[int], float]] = None):
        self.host = host or sink_ip()
        self.port = port or free_port(self.host)
        self.policy = policy
        self.rcpt_policy = rcpt_policy
        self.chunking = chunking
        self.hostname = hostname
        self.reply_delay = reply_delay
        self.eight_bit_mime = eight_bit_mime
        self.smtputf8 = smtputf8
        self.greeting = greeting
        self.greeting_delay = greeting_delay
        self.ignore_quit = ignore_quit
        self.refused_greetings = 0
        self.errors: list = []
        self.rcpt_refusals: list = []
        self._cond = threading.Condition()
        self._messages: list[SinkMessage] = []
        self._attempts: list[SinkMessage] = []
        self._attempt_counter = 0
        self._transcript = collections.deque(maxlen=400)
        self._transports: set = set()
        self._conn_ids = itertools.count(1)
        self._server = None
        self._closed = False
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"sink-{self.host}", daemon=True)
        self._thread.start()
        with _registry_lock:
            _sinks.append(self)
        if start:
            self.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _log(self, conn: int, text: str):
        self._transcript.append(f"{time.strftime('%H:%M:%S')} [{conn}] {text}")

    def _call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self):
        async def go():
            self._server = await self.loop.create_server(
                lambda: _SinkProtocol(self, next(self._conn_ids)), self.host, self.port,
                reuse_address=True)
        if self._server is None:
            self._call(go())
            self._log(0, f"listening on {self.address}")

    def stop(self):
        """Stop listening and drop every open connection."""
        async def go():
            if self._server is not None:
                self._server.close()
                self._server = None
            for t in list(self._transports):
                t.abort()
            await asyncio.sleep(0)
        if not self._closed:
            self._call(go())
            self._log(0, "stopped")

    def close(self):
        if self._closed:
            return
        with contextlib.suppress(Exception):
            self.stop()
        self._closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def messages(self) -> list[SinkMessage]:
        with self._cond:
            return list(self._messages)

    @property
    def attempts(self) -> list[SinkMessage]:
        with self._cond:
            return list(self._attempts)

    def clear(self):
        with self._cond:
            self._messages.clear()
            self._attempts.clear()

    def wait_for(self, n: int, timeout: float = 20.0,
                 pred: Optional[Callable[[list], bool]] = None) -> list[SinkMessage]:
        """Waits until at least n messages were accepted (and pred(messages)
        holds, when given); returns them. Fails with a summary on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ok = len(self._messages) >= n and (pred is None or pred(list(self._messages)))
                if ok:
                    return list(self._messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"sink {self.address}: waited {timeout:.0f}s for {n} messages, "
                        f"have {len(self._messages)} ({len(self._attempts)} attempts)")
                self._cond.wait(min(left, 0.5))

    def assert_no_messages(self, seconds: float = 1.0, expect: int = 0):
        """Waits `seconds`, then asserts exactly `expect` messages arrived."""
        time.sleep(seconds)
        got = self.messages
        assert len(got) == expect, (
            f"sink {self.address}: expected {expect} messages, got {len(got)}: "
            + "; ".join(f"{m!r} {m.data[:200]!r}" for m in got[:5]))

    def summary(self) -> str:
        with self._cond:
            return (f"{len(self._messages)} accepted, {len(self._attempts)} attempts, "
                    + (f"{self.refused_greetings} greetings refused, " if self.greeting else "")
                    + f"running={self.running}, errors={self.errors[:3]}")

    def transcript_tail(self, n: int = 30) -> str:
        return "\n".join(list(self._transcript)[-n:])


# --------------------------------------------------------------------------
# the relay under test

def _deep_merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v
    return base


class Relay:
    """The real ringrelay binary with a temporary config and spool.

    relayhost: "ip:port" (or a RecordingSink). config: dict deep-merged
    into the default config. sets: extra "--set key=value" arguments.
    Sender verification (DNS) is off unless a test turns it on with
    config={"sender_verify": {...}} and sets=DNSServer(...).relay_sets()
    (dns_server.py): the test domains are not in any real DNS.
    Environment: RINGRELAY_BIN, RINGRELAY_EXTRA_CONFIG (JSON deep-merged),
    RINGRELAY_LOG_LEVEL, RINGRELAY_KEEP_TMP=1 (keep temp dirs).
    """

    _names = itertools.count(1)

    def __init__(self, relayhost=None, config: Optional[dict] = None, sets: Iterable[str] = (),
                 shards: int = 2, start: bool = True, ready_timeout: float = 15.0):
        self.name = f"relay{next(self._names)}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"ringrelay-it-{self.name}-"))
        self.spool_dir = self.dir / "spool"
        self.spool_dir.mkdir()
        self.config_path = self.dir / "ringrelay.json"
        self.log_path = self.dir / "relay.log"
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        if isinstance(relayhost, RecordingSink):
            relayhost = relayhost.address
        self.relayhost = relayhost
        self.ready_timeout = ready_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.runs = 0
        self.exit_codes: list = []
        self._saved_tail = ""
        self._closed = False
        cfg = {
            "shards": shards,
            "hostname": "relay.test",
            "listeners": [{"address": self.host, "port": self.port, "tls": "none"}],
            "trusted_networks": ["127.0.0.0/8"],
            "spool": {"dir": str(self.spool_dir)},
            "delivery": {"retry_schedule": [1, 1, 2], "max_age": 3600},
            "sender_verify": {"enabled": False},
            "log": {"level": os.environ.get("RINGRELAY_LOG_LEVEL", "info")},
            "shutdown_grace": 3,
            # Relative to the relay's directory (its cwd): one socket per
            # relay, and short enough for a Unix socket path.
            "control": {"socket": "control.sock"},
        }
        if relayhost:
            cfg["delivery"]["relayhost"] = relayhost
        extra = os.environ.get("RINGRELAY_EXTRA_CONFIG")
        if extra:
            _deep_merge(cfg, json.loads(extra))
        if config:
            _deep_merge(cfg, config)
        self.config = cfg
        self.sets = list(sets)
        with _registry_lock:
            _relays.append(self)
        if start:
            self.start()

    # -- lifecycle
    @property
    def address(self) -> tuple:
        return (self.host, self.port)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        binary = relay_binary()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise AssertionError(f"ringrelay binary not found or not executable: {binary} "
                                 f"(build it, or set RINGRELAY_BIN)")
        assert not self.running(), "relay already running"
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.runs += 1
        cmd = [str(binary), "--config", str(self.config_path)]
        for s in self.sets:
            cmd += ["--set", s]
        with open(self.log_path, "ab") as log:
            log.write(f"==== run {self.runs}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=self.dir)
        self._wait_ready()

    def _started(self) -> bool:
        """This run logged "ringrelay started": every shard takes mail and
        the control socket answers (the listening sockets accept earlier).
        Above log level info the line is not written: then the port decides."""
        if self.config.get("log", {}).get("level", "info") not in ("info", "debug"):
            return True
        try:
            text = self.log_path.read_bytes()
        except OSError:
            return False
        run = text.rfind(f"==== run {self.runs}:".encode())
        return run >= 0 and b"ringrelay started" in text[run:]

    def _wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_codes.append(rc)
                raise AssertionError(f"{self.name} exited with {rc} during startup:\n{self.log_tail(40)}")
            if self._started():
                try:
                    with socket.create_connection(self.address, timeout=0.5):
                        return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not accepting on {self.host}:{self.port} after "
                                     f"{self.ready_timeout}s:\n{self.log_tail(40)}")
            time.sleep(0.05)

    def stop(self, timeout: Optional[float] = None) -> int:
        """SIGTERM and wait; returns the exit code. If the process does not
        exit within shutdown_grace + 10 s it is killed and this fails."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            limit = timeout if timeout is not None else float(self.config.get("shutdown_grace", 3)) + 10
            try:
                self.proc.wait(limit)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_codes.append("hung")
                self.proc = None
                raise AssertionError(f"{self.name} did not exit within {limit}s of SIGTERM")
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        self.proc = None
        return rc

    def kill(self):
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.exit_codes.append("SIGKILL")
        self.proc = None

    def restart(self):
        """Start again with the same config, spool and port."""
        if self.running():
            rc = self.stop()
            assert rc == 0, f"{self.name} exited with {rc} on SIGTERM"
        self.start()

    def close(self, check_exit: bool = True):
        if self._closed:
            return
        rc = 0
        try:
            if self.running():
                rc = self.stop()
            elif self.proc is not None:  # died on its own
                rc = self.proc.returncode
                self.exit_codes.append(rc)
                self.proc = None
        finally:
            self._saved_tail = self.log_tail(80)
            self._closed = True
            if not os.environ.get("RINGRELAY_KEEP_TMP"):
                shutil.rmtree(self.dir, ignore_errors=True)
        if check_exit and rc != 0:
            raise AssertionError(f"{self.name} exited with code {rc} after SIGTERM (expected 0)")

    def _hard_cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._closed and not os.environ.get("RINGRELAY_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # On a failing test: still clean up, but do not mask its assertion.
        self.close(check_exit=exc_type is None)

    # -- diagnostics
    def describe(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"{self.host}:{self.port} {state}, runs={self.runs}, exits={self.exit_codes}, dir={self.dir}"

    def log_tail(self, n: int = 60) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 65536))
                text = f.read().decode("utf-8", "replace")
            lines = text.splitlines()
            # A sanitizer report is the point of the tail: start at its
            # first line (where the bad access is), not in its last frames.
            for i, line in enumerate(lines):
                if "ERROR: AddressSanitizer" in line or ": runtime error:" in line:
                    return "\n".join(lines[max(0, i - 3):i + n])
            return "\n".join(lines[-n:])
        except OSError:
            return self._saved_tail or "(no log)"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return self._saved_tail

    # -- clients
    def client(self, timeout: float = 10.0, ehlo: Optional[str] = "client.test") -> "SMTPClient":
        """A raw client that has read the greeting (and sent EHLO, unless None)."""
        c = SMTPClient(self.host, self.port, timeout=timeout)
        g = c.read_reply()
        assert g.code == 220, f"greeting: {g}"
        c.greeting = g
        if ehlo:
            r = c.ehlo(ehlo)
            assert r.code == 250, f"EHLO: {r}"
        return c

    def smtplib(self, timeout: float = 30.0):
        import smtplib
        return smtplib.SMTP(self.host, self.port, local_hostname="client.test", timeout=timeout)


@contextlib.contextmanager
def relay_with_sink(sink_kwargs: Optional[dict] = None, **relay_kwargs):
    """A RecordingSink and a Relay delivering to it; both cleaned up after."""
    with RecordingSink(**(sink_kwargs or {})) as sink:
        with Relay(relayhost=sink.address, **relay_kwargs) as relay:
            yield relay, sink


# --------------------------------------------------------------------------
# raw SMTP client

ENHANCED_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


@dataclass
class Reply:
    code: int
    lines: list = field(default_factory=list)   # text after "ddd-"/"ddd "

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> Optional[str]:
        m = ENHANCED_RE.match(self.lines[0]) if self.lines else None
        return m.group(0) if m else None

    def __str__(self):
        return " | ".join(f"{self.code} {l}" for l in self.lines) or str(self.code)


class ConnectionClosed(AssertionError):
    pass


class ReplyTimeout(AssertionError):
    pass


class SMTPClient:
    """Raw-socket SMTP client: send exact bytes, read parsed replies."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.extensions: dict = {}
        self.greeting: Optional[Reply] = None

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, timeout: Optional[float]) -> bool:
        t = timeout if timeout is not None else self.timeout
        self.sock.settimeout(t)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise ReplyTimeout(f"no reply from the server within {t:.0f}s "
                               f"(partial data: {bytes(self.buf[:200])!r})") from None
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_line(self, timeout: Optional[float] = None) -> str:
        while True:
            i = self.buf.find(CRLF)
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line.decode("utf-8", "replace")
            if self.eof or not self._fill(timeout):
                raise ConnectionClosed(f"connection closed by server (pending {bytes(self.buf)!r})")

    def read_reply(self, timeout: Optional[float] = None) -> Reply:
        lines, code = [], None
        while True:
            line = self.read_line(timeout)
            m = re.match(r"^(\d{3})([ -]?)(.*)$", line)
            if not m:
                raise AssertionError(f"malformed reply line {line!r}")
            c = int(m.group(1))
            if code is not None and c != code:
                raise AssertionError(f"reply code changed inside multi-line reply: {lines} then {line!r}")
            code = c
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(code, lines)

    def read_replies(self, n: int, timeout: Optional[float] = None) -> list:
        return [self.read_reply(timeout) for _ in range(n)]

    def cmd(self, line: str, timeout: Optional[float] = None) -> Reply:
        self.send(line.encode("utf-8") + CRLF)
        return self.read_reply(timeout)

    def ehlo(self, name: str = "client.test") -> Reply:
        r = self.cmd(f"EHLO {name}")
        self.extensions = {}
        for l in r.lines[1:]:
            kw, _, arg = l.partition(" ")
            self.extensions[kw.upper()] = arg
        return r

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within timeout (any
        pending bytes are discarded)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                if not self._fill(left):
                    return True
            except ReplyTimeout:
                return False
            except OSError:
                return True
        return True

    # transactions
    def mail_rcpt_data(self, mail_from: str, rcpts: list, params: str = "") -> list:
        """Pipelines MAIL, RCPT..., DATA; returns the replies."""
        cmds = [f"MAIL FROM:<{mail_from}>{(' ' + params) if params else ''}"]
        cmds += [f"RCPT TO:<{r}>" for r in rcpts]
        cmds.append("DATA")
        self.send("".join(c + "\r\n" for c in cmds))
        return self.read_replies(len(cmds))

    def send_message(self, mail_from: str, rcpts: list, content: bytes, params: str = "",
                     timeout: Optional[float] = None) -> Reply:
        """One full transaction with DATA; asserts the envelope replies and
        returns the reply to the end of data."""
        replies = self.mail_rcpt_data(mail_from, rcpts, params)
        for r in replies[:-1]:
            assert r.code == 250, f"envelope refused: {[str(x) for x in replies]}"
        assert replies[-1].code == 354, f"DATA: {replies[-1]}"
        self.send(data_wire(content))
        return self.read_reply(timeout)

    def bdat_message(self, mail_from: str, rcpts: list, chunks: list, params: str = "",
                     timeout: Optional[float] = None) -> list:
        """MAIL, RCPT..., BDAT chunks (the last with LAST), all pipelined;
        returns the BDAT replies (envelope replies are asserted 250)."""
        out = [f"MAIL FROM:<{mail_from}>{(' ' + params) if params else ''}\r\n".encode()]
        out += [f"RCPT TO:<{r}>\r\n".encode() for r in rcpts]
        for i, c in enumerate(chunks):
            last = " LAST" if i == len(chunks) - 1 else ""
            out.append(f"BDAT {len(c)}{last}\r\n".encode() + c)
        self.send(b"".join(out))
        env = self.read_replies(1 + len(rcpts), timeout)
        for r in env:
            assert r.code == 250, f"envelope refused: {[str(x) for x in env]}"
        return self.read_replies(len(chunks), timeout)


# --------------------------------------------------------------------------
# assertions on replies

QUEUED_RE = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})$")


def assert_reply(reply: Reply, code: int, enhanced: Optional[str] = None, what: str = "") -> Reply:
    """Asserts the code, that an enhanced status code of the same class is
    present, and (if given) that the enhanced code is exactly `enhanced`."""
    prefix = f"{what}: " if what else ""
    assert reply.code == code, f"{prefix}expected {code}{' ' + enhanced if enhanced else ''}, got {reply}"
    enh = reply.enhanced
    assert enh is not None, f"{prefix}reply has no enhanced status code: {reply}"
    assert enh[0] == str(code)[0], f"{prefix}enhanced code class differs from reply code: {reply}"
    if enhanced is not None:
        assert enh == enhanced, f"{prefix}expected enhanced code {enhanced}, got {reply}"
    return reply


def assert_queued(reply: Reply, what: str = "end of data") -> str:
    """Asserts "250 2.0.0 Ok: queued as <16 hex>" and returns the queue ID."""
    assert reply.code == 250, f"{what}: expected 250 queued, got {reply}"
    m = QUEUED_RE.match(reply.lines[0])
    assert m, f"{what}: expected '250 2.0.0 Ok: queued as <16 hex digits>', got {reply}"
    return m.group(1)


def smtplib_queue_id(resp: bytes) -> str:
    text = resp.decode("utf-8", "replace")
    m = QUEUED_RE.match(text)
    assert m, f"expected '2.0.0 Ok: queued as <16 hex digits>', got {text!r}"
    return m.group(1)


def smtplib_send(relay: Relay, mail_from: str, rcpts: list, msg: bytes, mail_options=(),
                 helo: bool = False) -> str:
    """Sends one message with smtplib (MAIL/RCPT/DATA with its own dot
    stuffing) and returns the queue ID from the 250 reply."""
    s = relay.smtplib()
    try:
        if helo:
            code, resp = s.helo("client.test")
            assert code == 250, f"HELO: {code} {resp!r}"
        else:
            code, resp = s.ehlo("client.test")
            assert code == 250, f"EHLO: {code} {resp!r}"
        opts = list(mail_options)
        if not helo and s.has_extn("size"):
            opts.append(f"SIZE={len(msg)}")
        code, resp = s.mail(mail_from, opts)
        assert code == 250, f"MAIL: {code} {resp!r}"
        for r in rcpts:
            code, resp = s.rcpt(r)
            assert code == 250, f"RCPT {r}: {code} {resp!r}"
        code, resp = s.data(msg)
        assert code == 250, f"end of data: {code} {resp!r}"
        qid = smtplib_queue_id(resp)
        s.quit()
        return qid
    finally:
        s.close()


# --------------------------------------------------------------------------
# swaks

def swaks(relay: Relay, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    cmd = ["swaks", "--server", f"{relay.host}:{relay.port}", "--helo", "client.test", *args]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          text=True, errors="replace")


def swaks_queue_ids(output: str) -> list:
    return re.findall(r"^<[-~]\s+250 2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})\s*$", output, re.M)
