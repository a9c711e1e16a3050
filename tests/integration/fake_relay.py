#!/usr/bin/python3
"""A slow, simple stand-in for ringrelay that follows the documented
interface, used to check the integration tests themselves (a test that
fails against this model is either a harness bug or a disagreement with
the spec worth discussing). Not part of the product.

    RINGRELAY_BIN=tests/integration/fake_relay.py /usr/bin/python3 tests/integration/run.py

Model: asyncio, one process; each accepted message is a file in spool.dir,
fsynced before the 250; delivery to delivery.relayhost with retries per
delivery.retry_schedule; 5xx produces a bounce; restart re-queues the spool.
FAKE_RELAY_BUG=<name> switches on a deliberate bug (see BUGS) to prove
that the tests catch it.
"""
import argparse
import asyncio
import email.utils
import json
import os
import re
import signal
import sys
import time
import uuid
from pathlib import Path

CRLF = b"\r\n"
BUG = os.environ.get("FAKE_RELAY_BUG", "")
BUGS = {"no-stuff", "accept-bare-lf", "no-fsync-wait", "drop-on-restart", "double-received",
        "no-retry", "reply-order", "size-off-by-one"}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def load_config(path, sets):
    cfg = json.loads(Path(path).read_text())
    for s in sets:
        k, _, v = s.partition("=")
        try:
            v = json.loads(v)
        except ValueError:
            pass
        d = cfg
        parts = k.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    lim = {"command_line": 512, "text_line": 1000, "recipients": 1000, "message_size": 52428800,
           "idle_timeout": 300}
    lim.update(cfg.get("limits", {}))
    cfg["limits"] = lim
    return cfg


def stuff(b):
    if BUG == "no-stuff":
        return b
    return CRLF.join(b"." + l if l.startswith(b".") else l for l in b.split(CRLF))


def unstuff(b):
    return CRLF.join(l[1:] if l.startswith(b".") else l for l in b.split(CRLF))


class Relay:
    def __init__(self, cfg):
        self.cfg = cfg
        self.host = cfg.get("hostname", "relay.test")
        self.lim = cfg["limits"]
        self.spool = Path(cfg["spool"]["dir"])
        self.spool.mkdir(parents=True, exist_ok=True)
        d = cfg.get("delivery", {})
        self.relayhost = d.get("relayhost")
        self.schedule = d.get("retry_schedule", [60])
        self.sessions = set()
        self.tasks = set()
        self.seq = 0

    def qid(self):
        self.seq += 1
        return f"{int(time.time()) & 0xFFFFFFFF:08X}{(os.getpid() & 0xFFFF) << 16 | (self.seq & 0xFFFF):08X}"

    def commit(self, meta, content, qid=None):
        qid = qid or self.qid()
        meta = dict(meta, qid=qid)
        tmp = self.spool / f"{qid}.tmp"
        with open(tmp, "wb") as f:
            f.write(json.dumps(meta).encode() + b"\n" + content)
            f.flush()
            if BUG != "no-fsync-wait":
                os.fsync(f.fileno())
        os.rename(tmp, self.spool / f"{qid}.msg")
        if BUG != "no-fsync-wait":
            fd = os.open(self.spool, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        log(f"{qid} queued from=<{meta['from']}> rcpts={len(meta['rcpts'])} size={len(content)}")
        self.spawn(self.deliver(qid))
        return qid

    def spawn(self, coro):
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    def recover(self):
        if BUG == "drop-on-restart":
            return
        for p in sorted(self.spool.glob("*.msg")):
            log(f"{p.stem} recovered")
            self.spawn(self.deliver(p.stem))

    async def deliver(self, qid):
        path = self.spool / f"{qid}.msg"
        raw = path.read_bytes()
        nl = raw.index(b"\n")
        meta, content = json.loads(raw[:nl]), raw[nl + 1:]
        attempt = 0
        while True:
            try:
                code, text = await self.attempt(meta, content)
            except (OSError, asyncio.TimeoutError, ConnectionError, ValueError) as e:
                code, text = 421, f"4.4.1 connection failed: {e!r}"
            log(f"{qid} attempt {attempt}: {code} {text}")
            if code // 100 == 2:
                break
            if code // 100 == 5:
                if meta["from"]:
                    self.bounce(meta, code, text, content)
                break
            if BUG == "no-retry":
                return
            delay = self.schedule[min(attempt, len(self.schedule) - 1)]
            attempt += 1
            await asyncio.sleep(delay)
        path.unlink()
        fd = os.open(self.spool, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def bounce(self, meta, code, text, content):
        boundary = uuid.uuid4().hex
        rcpts = "".join(f"Final-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: {text.split()[0]}\r\n"
                        f"Diagnostic-Code: smtp; {code} {text}\r\n\r\n" for r in meta["rcpts"])
        body = (f"From: MAILER-DAEMON@{self.host}\r\nTo: <{meta['from']}>\r\nSubject: Undelivered Mail\r\n"
                f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
                f"boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
                f"Delivery failed: {code} {text}\r\n\r\n--{boundary}\r\n"
                f"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {self.host}\r\n\r\n"
                f"{rcpts}--{boundary}--\r\n").encode()
        self.commit({"from": "", "rcpts": [meta["from"]], "params": [], "received": ""}, body)

    async def attempt(self, meta, content):
        host, port = self.relayhost.rsplit(":", 1)
        r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port), limit=1 << 20), 10)

        async def reply():
            lines = []
            while True:
                l = (await asyncio.wait_for(r.readline(), 30)).decode("utf-8", "replace").rstrip("\r\n")
                if len(l) < 3:
                    raise ValueError(f"bad reply {l!r}")
                lines.append(l)
                if l[3:4] != "-":
                    return int(l[:3]), l[4:]
        try:
            code, text = await reply()
            if code != 220:
                return code, text
            w.write(f"EHLO {self.host}\r\n".encode())
            code, text = await reply()
            if code != 250:
                return code, text
            params = " ".join(p for p in meta["params"] if p.upper().startswith(("BODY=", "SMTPUTF8")))
            w.write(f"MAIL FROM:<{meta['from']}>{' ' + params if params else ''}\r\n".encode())
            code, text = await reply()
            if code != 250:
                return code, text
            ok = 0
            last = (250, "")
            for rc in meta["rcpts"]:
                w.write(f"RCPT TO:<{rc}>\r\n".encode())
                c, t = await reply()
                if c == 250:
                    ok += 1
                else:
                    last = (c, t)
            if not ok:
                return last
            w.write(b"DATA\r\n")
            code, text = await reply()
            if code != 354:
                return code, text
            rec = meta.get("received", "")
            rec = rec.encode() if isinstance(rec, str) else rec
            if BUG == "double-received":
                rec = rec + rec
            w.write(stuff(rec + content) + b".\r\n")
            code, text = await reply()
            w.write(b"QUIT\r\n")
            return code, text
        finally:
            w.close()


class Session(asyncio.Protocol):
    def __init__(self, relay):
        self.r = relay
        self.buf = bytearray()
        self.state = "cmd"
        self.greeted = False
        self.helo = ""
        self.skip_line = False
        self.scan = 0
        self.timer = None
        self.reset()

    def reset(self):
        self.mail = None
        self.params = []
        self.rcpts = []
        self.bdat = []
        self.bdat_need = 0
        self.bdat_last = False
        self.bdat_bad = None

    def connection_made(self, t):
        self.t = t
        self.peer = t.get_extra_info("peername")[0]
        self.r.sessions.add(self)
        self.send(f"220 {self.r.host} ESMTP ringrelay-fake")
        self.arm()

    def connection_lost(self, exc):
        self.r.sessions.discard(self)
        if self.timer:
            self.timer.cancel()

    def arm(self):
        if self.timer:
            self.timer.cancel()
        self.timer = asyncio.get_event_loop().call_later(self.r.lim["idle_timeout"], self.idle)

    def idle(self):
        self.send("421 4.4.2 relay.test Error: timeout exceeded")
        self.t.close()

    def send(self, line):
        self.t.write(line.encode() + CRLF)

    def data_received(self, data):
        self.arm()
        self.buf += data
        self.process()

    def process(self):
        while not self.t.is_closing():
            if self.state == "cmd":
                i = self.buf.find(CRLF)
                if i < 0:
                    if len(self.buf) > self.r.lim["command_line"]:
                        del self.buf[:]
                        self.skip_line = True
                    return
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                if self.skip_line or len(line) + 2 > self.r.lim["command_line"]:
                    self.skip_line = False
                    self.send("500 5.5.6 Line too long")
                    continue
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
                self.end_of_data(wire, unstuff(wire))
            elif self.state == "bdat":
                take = min(self.bdat_need, len(self.buf))
                self.bdat.append(bytes(self.buf[:take]))
                del self.buf[:take]
                self.bdat_need -= take
                if self.bdat_need:
                    return
                self.state = "cmd"
                if self.bdat_last:
                    c = b"".join(self.bdat)
                    self.end_of_data(c, c)
                else:
                    self.send(f"250 2.0.0 {sum(map(len, self.bdat))} octets received")

    def check(self, wire, content):
        n_crlf = wire.count(CRLF)
        if BUG != "accept-bare-lf" and (wire.count(b"\n") != n_crlf or wire.count(b"\r") != n_crlf):
            return "550 5.6.0 Message contains bare CR or LF"
        if any(len(l) + 2 > self.r.lim["text_line"] for l in content.split(CRLF)):
            return "500 5.5.6 Message line too long"
        limit = self.r.lim["message_size"] + (1 if BUG == "size-off-by-one" else 0)
        if len(content) > limit:
            return "552 5.3.4 Message size exceeds fixed limit"
        return None

    def end_of_data(self, wire, content):
        err = self.check(wire, content)
        if err:
            self.send(err)
        else:
            rec = (f"Received: from {self.helo} ({self.peer})\r\n\tby {self.r.host} with ESMTP id QID"
                   f"{' for <' + self.rcpts[0] + '>' if len(self.rcpts) == 1 else ''};\r\n"
                   f"\t{email.utils.formatdate()}\r\n")
            meta = {"from": self.mail, "rcpts": self.rcpts, "params": self.params}
            qid = self.r.qid()
            meta["received"] = rec.replace("QID", qid)
            real = self.r.commit(meta, content, qid)
            self.send(f"250 2.0.0 Ok: queued as {real}")
        self.reset()

    def command(self, line):
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb in ("EHLO", "HELO"):
            self.greeted = True
            self.helo = arg.strip()
            self.reset()
            if verb == "HELO":
                return self.send(f"250 {self.r.host}")
            ext = [self.r.host, "PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                   "CHUNKING"]
            for e in ext[:-1]:
                self.send("250-" + e)
            return self.send("250 " + ext[-1])
        if verb == "NOOP":
            return self.send("250 2.0.0 Ok")
        if verb == "RSET":
            self.reset()
            return self.send("250 2.0.0 Ok")
        if verb == "VRFY":
            return self.send("252 2.5.2 Cannot VRFY user")
        if verb == "HELP":
            return self.send("214 2.0.0 See RFC 5321")
        if verb == "QUIT":
            self.send("221 2.0.0 Bye")
            return self.t.close()
        if verb == "MAIL":
            if not self.greeted or self.mail is not None:
                return self.send("503 5.5.1 Bad sequence of commands")
            m = re.match(r"(?i)FROM:<([^<>\s]*)>((?: +\S+)*)\s*$", arg)
            if not m:
                return self.send("501 5.5.4 Syntax: MAIL FROM:<address>")
            params = m.group(2).split()
            for p in params:
                if p.upper().startswith("SIZE="):
                    v = p[5:]
                    if not v.isdigit() or int(v) > self.r.lim["message_size"]:
                        return self.send("552 5.3.4 Message size exceeds fixed limit")
            self.mail, self.params = m.group(1), params
            return self.send("250 2.1.0 Ok")
        if verb == "RCPT":
            if self.mail is None:
                return self.send("503 5.5.1 Bad sequence of commands")
            m = re.match(r"(?i)TO:<([^<>\s]+@[^<>\s]+)>(\s+\S+)*\s*$", arg)
            if not m:
                return self.send("501 5.5.4 Syntax: RCPT TO:<address>")
            if len(self.rcpts) >= self.r.lim["recipients"]:
                return self.send("452 4.5.3 Too many recipients")
            self.rcpts.append(m.group(1))
            return self.send("250 2.1.5 Ok")
        if verb == "DATA":
            if not self.rcpts:
                return self.send("503 5.5.1 Bad sequence of commands")
            self.state, self.scan = "data", 0
            return self.send("354 End data with <CR><LF>.<CR><LF>")
        if verb == "BDAT":
            m = re.match(r"(\d+)(\s+LAST)?\s*$", arg, re.I)
            if not m:
                return self.send("501 5.5.4 Syntax: BDAT size [LAST]")
            if not self.rcpts:
                self.send("503 5.5.1 Bad sequence of commands")  # still read the chunk
            self.bdat_need, self.bdat_last, self.state = int(m.group(1)), bool(m.group(2)), "bdat"
            return
        if BUG == "reply-order" and verb == "XYZZY":
            return
        self.send("500 5.5.1 Command unrecognized")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    cfg = load_config(a.config, a.set)
    relay = Relay(cfg)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    servers = []
    for lst in cfg["listeners"]:
        servers.append(loop.run_until_complete(
            loop.create_server(lambda: Session(relay), lst["address"], lst["port"], reuse_address=True)))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    relay.recover()
    log("ready")
    loop.run_until_complete(stop.wait())
    log("SIGTERM: shutting down")
    for s in servers:
        s.close()
    for s in list(relay.sessions):
        s.send("421 4.3.2 Shutting down")
        s.t.close()
    for t in list(relay.tasks):
        t.cancel()
    loop.run_until_complete(asyncio.sleep(0.1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
