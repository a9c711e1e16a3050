"""MX routing and bounces (delivery.relayhost ""), on the real binary against
a real DNS server process (dns_server.py) and recording sinks that all
listen on one port (delivery.mx_port) on their own 127.0.0.x addresses.

Covered: MX preference order; the next MX when a connection is refused or
the greeting is 421; the implicit MX (a domain's own A record when it has
no MX); one upstream transaction per recipient domain; retry after an
upstream 451 and delivery on a later attempt; a message to two domains,
one deferred and one in flight, keeps both recipients across kill -9. Each
failure that ends in an
RFC 3464 bounce, which goes back through the relay's own queue (MAIL
FROM:<>, RCPT TO the sender, routed by the MX of the sender's domain to a
"bounce sink") and is parsed with the `email` package: upstream 550 at RCPT
and at end of data (Diagnostic-Code with the upstream's reply, the original
Subject in the returned headers), null MX (5.1.10), NXDOMAIN (5.1.2), an MX
that is the relay itself (loop, 5.4.6), 8-bit body to an upstream without
8BITMIME (5.6.3), SMTPUTF8 message to an upstream without SMTPUTF8 (5.6.7),
expiry after delivery.max_age (4.4.7, Action: failed). A message with the
null sender gets no bounce."""
from __future__ import annotations

import contextlib
import email
import email.parser
import email.policy
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import harness as h
from dns_server import DNSServer
from harness import assert_queued

D = "mx.ringrelay-it.net"
BOUNCE_MX = f"mx.{h.SENDER_DOMAIN}"     # the sender domain's MX: the bounce sink
RELAY_HOSTNAME = "relay.test"           # the harness's `hostname`


def addr(local: str, domain: str) -> str:
    return f"{local}@{domain}"


# --------------------------------------------------------------------------
# a world of sinks on one port, a DNS server naming them, a relay routing by MX

@dataclass
class World:
    relay: h.Relay
    dns: DNSServer
    port: int
    ip: dict                        # label -> 127.0.0.x (sinks and dead addresses)
    sinks: dict                     # label -> RecordingSink
    bounce: h.RecordingSink         # the sender domain's MX

    def __getitem__(self, label: str) -> h.RecordingSink:
        return self.sinks[label]


def _distinct_ips(n: int) -> list:
    out: list = []
    while len(out) < n:
        ip = h.sink_ip()
        if ip not in out:
            out.append(ip)
    return out


@contextlib.contextmanager
def mx_world(sinks: dict, names: Callable[[dict], dict], dead=(), delivery: Optional[dict] = None):
    """sinks: label -> RecordingSink keyword arguments; a sink "bounce" (the
    MX of the sender's domain) is always added. dead: labels of addresses
    where nothing listens. names(ip) -> the DNS names of the test, given
    ip[label]. Every sink listens on the same port, which is the relay's
    delivery.mx_port. Yields a World; everything is closed afterwards."""
    labels = ["bounce", *sinks, *dead]
    assert len(set(labels)) == len(labels), f"duplicate labels: {labels}"
    ip = dict(zip(labels, _distinct_ips(len(labels))))
    with contextlib.ExitStack() as stack:
        made: dict = {}
        for attempt in range(10):  # a port free on 127.0.0.1 may be taken on 127.0.0.x
            port = h.free_port()
            try:
                for label in ["bounce", *sinks]:
                    made[label] = h.RecordingSink(host=ip[label], port=port, start=False,
                                                  **(sinks.get(label) or {}))
                    made[label].start()
                break
            except OSError:
                for s in made.values():
                    s.close()
                made = {}
                if attempt == 9:
                    raise
        for s in made.values():
            stack.callback(s.close)
        zone = {
            h.SENDER_DOMAIN: {"MX": [f"10 {BOUNCE_MX}."]},
            BOUNCE_MX: {"A": [ip["bounce"]]},
        }
        zone.update(names(ip))
        dns = stack.enter_context(DNSServer(zone))
        cfg = {"relayhost": "", "mx_port": port, "retry_schedule": [1, 1, 2], "max_age": 3600}
        cfg.update(delivery or {})
        relay = stack.enter_context(h.Relay(config={"delivery": cfg}, sets=dns.relay_sets()))
        yield World(relay=relay, dns=dns, port=port, ip=ip,
                    sinks={k: v for k, v in made.items() if k != "bounce"}, bounce=made["bounce"])


# --------------------------------------------------------------------------
# log lines

def wait_log(relay: h.Relay, patterns, timeout: float = 15.0) -> str:
    """The relay's log once every regex in `patterns` matches a line of it
    (a shard writes its log lines through its ring, a little later)."""
    compiled = [re.compile(p, re.M) for p in patterns]
    deadline = time.monotonic() + timeout
    while True:
        log = relay.log_text()
        missing = [c.pattern for c in compiled if not c.search(log)]
        if not missing:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"log lines never written: {missing}\nlog tail:\n{relay.log_tail(30)}")
        time.sleep(0.1)


def delivered_re(rcpt: str, mx: Optional[str] = None, ip: Optional[str] = None,
                 port: Optional[int] = None, qid: Optional[str] = None) -> str:
    """`delivered id=... to=<rcpt> relay=<mx-name>[<ip>]:<port>` (the MX
    name with or without its final dot)."""
    pat = r"(?i)\bdelivered id=" + (re.escape(qid) if qid else r"\S+") + r" to=<" + re.escape(rcpt) + r">"
    if mx or ip or port:
        pat += r".* relay=" + (re.escape(mx) + r"\.?" if mx else r"[^\s\[]*")
        pat += r"\[" + (re.escape(ip) if ip else r"[^\]]*") + r"\]"
        pat += r":" + (str(port) if port else r"\d+") + r"\b"
    return pat


def outcome_re(what: str, rcpt: str, qid: Optional[str] = None) -> str:
    """A `deferred` / `failed` line for the recipient."""
    return (r"(?i)\b" + what + r" id=" + (re.escape(qid) if qid else r"\S+")
            + r" to=<" + re.escape(rcpt) + r">")


def log_lines(relay: h.Relay, what: str, rcpt: str) -> list:
    return [l for l in relay.log_text().splitlines() if re.search(outcome_re(what, rcpt), l)]


# --------------------------------------------------------------------------
# bounces

@dataclass
class Bounce:
    envelope: h.SinkMessage
    message: email.message.EmailMessage
    text: str                               # the text/plain part
    report: email.message.Message           # per-message fields
    recipients: dict = field(default_factory=dict)   # address -> its fields (Message)
    headers: Optional[email.message.Message] = None  # the returned header section

    def status(self, rcpt: str) -> str:
        return self.field(rcpt, "Status")

    def field(self, rcpt: str, name: str) -> str:
        assert rcpt in self.recipients, (
            f"bounce reports {sorted(self.recipients)}, not {rcpt}")
        value = self.recipients[rcpt].get(name)
        assert value is not None, f"bounce: no {name} for {rcpt}: {list(self.recipients[rcpt].items())}"
        return " ".join(str(value).split())


def _fields(block: bytes) -> email.message.Message:
    text = block.decode("utf-8", "replace")
    return email.parser.HeaderParser(policy=email.policy.default).parsestr(text)


def _raw_parts(data: bytes, boundary: str) -> list:
    """The bodies of the multipart's parts, as sent (RFC 2046 5.1.1)."""
    delim = b"\r\n--" + boundary.encode()
    out = []
    for chunk in data.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        _, sep, body = chunk.partition(b"\r\n\r\n")
        assert sep, f"part without an empty line after its header: {chunk[:300]!r}"
        out.append(body)
    return out


def parse_bounce(m: h.SinkMessage, sender: str = h.SENDER) -> Bounce:
    """Checks a bounce's envelope and MIME structure (multipart/report,
    RFC 6522 / RFC 3464, or the RFC 6533 global forms) and returns its parts."""
    assert m.mail_from == "", f"a bounce must have the null sender, got MAIL FROM:<{m.mail_from}>"
    assert m.rcpts == [sender], f"a bounce goes to the original sender {sender}, got {m.rcpts}"
    data = m.data
    if data[:9].lower() == b"received:":
        _, data = h.split_received(data)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report", (
        f"bounce Content-Type {msg.get_content_type()}, want multipart/report:\n{data[:1500]!r}")
    report_type = (msg.get_param("report-type") or "").lower()
    assert report_type in ("delivery-status", "global-delivery-status"), (
        f"bounce report-type={report_type!r}")
    glob = report_type == "global-delivery-status"
    want = (["text/plain", "message/global-delivery-status", "message/global-headers"] if glob else
            ["text/plain", "message/delivery-status", "text/rfc822-headers"])
    types = [p.get_content_type() for p in msg.iter_parts()]
    assert types == want, f"bounce parts {types}, want {want}"
    assert sender in str(msg.get("To", "")), f"bounce To: {msg.get('To')!r}, want the sender {sender}"
    raw = _raw_parts(data, msg.get_boundary())
    assert len(raw) == 3, f"bounce has {len(raw)} parts in its body, want 3"
    blocks = [b for b in re.split(rb"\r\n\r\n+", raw[1].strip(b"\r\n")) if b.strip()]
    assert len(blocks) >= 2, f"delivery-status part without per-recipient fields: {raw[1]!r}"
    report = _fields(blocks[0] + b"\r\n")
    recipients = {}
    for b in blocks[1:]:
        f = _fields(b + b"\r\n")
        final = f.get("Final-Recipient")
        assert final is not None, f"per-recipient block without Final-Recipient: {b!r}"
        kind, sep, address = str(final).partition(";")
        assert sep and kind.strip().lower() in ("rfc822", "utf-8"), f"Final-Recipient: {final!r}"
        recipients[address.strip()] = f
    headers = _fields(raw[2].split(b"\r\n\r\n")[0] + b"\r\n")
    text = raw[0].decode("utf-8", "replace")
    return Bounce(envelope=m, message=msg, text=text, report=report, recipients=recipients,
                  headers=headers)


def expect_bounce(world: World, rcpt: str, status: str, qid: Optional[str] = None,
                  subject: Optional[str] = None, timeout: float = 20.0, only: bool = True) -> Bounce:
    """Waits for one bounce at the bounce sink reporting `rcpt` as failed
    with `status` (exact "5.1.10", or a regex when it starts with "^"),
    and (when only) that no second bounce follows."""
    def has(ms):
        return any(rcpt in b.data.decode("utf-8", "replace") for b in ms)
    ms = world.bounce.wait_for(1, timeout=timeout, pred=has)
    bounces = [parse_bounce(m) for m in ms]
    mine = [b for b in bounces if rcpt in b.recipients]
    assert len(mine) == 1, f"{len(mine)} bounces report {rcpt}: {[sorted(b.recipients) for b in bounces]}"
    b = mine[0]
    action = b.field(rcpt, "Action")
    assert action.lower() == "failed", f"Action: {action}, want failed"
    got = b.status(rcpt)
    if status.startswith("^"):
        assert re.match(status, got), f"Status: {got}, want {status}"
    else:
        assert got == status, f"Status: {got}, want {status}"
    assert RELAY_HOSTNAME in str(b.report.get("Reporting-MTA", "")), (
        f"Reporting-MTA: {b.report.get('Reporting-MTA')!r}")
    if qid is not None:
        got_qid = str(b.report.get("X-Ringrelay-Queue-ID", ""))
        assert got_qid.strip().lower() == qid.lower(), f"X-Ringrelay-Queue-ID {got_qid!r}, want {qid}"
    if subject is not None:
        assert str(b.headers.get("Subject", "")) == subject, (
            f"returned headers' Subject {b.headers.get('Subject')!r}, want {subject!r}")
    if only:
        world.bounce.assert_no_messages(1.5, expect=len(ms))
    return b


def subject_of(content: bytes) -> str:
    m = re.search(rb"^Subject: (.*)\r$", content, re.M)
    assert m, "message without Subject"
    return m.group(1).decode()


def send(world: World, rcpts: list, content: bytes, sender: str = h.SENDER,
         params: str = "") -> str:
    """One message through the relay with the raw client; its queue ID."""
    with world.relay.client() as c:
        qid = assert_queued(c.send_message(sender, rcpts, content, params=params))
        c.cmd("QUIT")
    return qid


# --------------------------------------------------------------------------
# routing

def test_mx_preference_order():
    """MX 10 and MX 20: every message goes to the MX 10, none to the MX 20."""
    dom = f"pref.{D}"
    names = lambda ip: {
        dom: {"MX": [f"20 mx2.{dom}.", f"10 mx1.{dom}."]},
        f"mx1.{dom}": {"A": [ip["a"]]},
        f"mx2.{dom}": {"A": [ip["b"]]},
    }
    with mx_world({"a": {}, "b": {}}, names) as w:
        rcpt = addr("pref", dom)
        msgs = [h.make_message(1500 + 100 * i, tag=f"mxpref{i}") for i in range(3)]
        qids = [send(w, [rcpt], m) for m in msgs]
        got = w["a"].wait_for(3)
        by_tag = {h.message_tag(h.split_received(m.data)[1]): m for m in got}
        for m in msgs:
            h.assert_delivered(by_tag[h.message_tag(m)], m, mail_from=h.SENDER, rcpts=[rcpt])
        w["a"].assert_no_messages(1.0, expect=3)
        w["b"].assert_no_messages(0, expect=0)
        assert not w["b"].attempts, f"the MX 20 was used: {w['b'].attempts}"
        wait_log(w.relay, [delivered_re(rcpt, f"mx1.{dom}", w.ip["a"], w.port, qid) for qid in qids])


def test_next_mx_when_connection_refused():
    """MX 10 is an address where nothing listens: delivered at the MX 20."""
    dom = f"refused.{D}"
    names = lambda ip: {
        dom: {"MX": [f"10 mx1.{dom}.", f"20 mx2.{dom}."]},
        f"mx1.{dom}": {"A": [ip["dead"]]},
        f"mx2.{dom}": {"A": [ip["b"]]},
    }
    with mx_world({"b": {}}, names, dead=["dead"]) as w:
        rcpt = addr("refused", dom)
        content = h.make_message(2000, tag="mxrefused")
        qid = send(w, [rcpt], content)
        h.assert_delivered(w["b"].wait_for(1)[0], content, mail_from=h.SENDER, rcpts=[rcpt])
        w["b"].assert_no_messages(1.0, expect=1)
        wait_log(w.relay, [delivered_re(rcpt, f"mx2.{dom}", w.ip["b"], w.port, qid)])


def test_next_mx_when_greeting_is_421():
    """MX 10 greets with 421 and closes: delivered at the MX 20."""
    dom = f"busy.{D}"
    names = lambda ip: {
        dom: {"MX": [f"10 mx1.{dom}.", f"20 mx2.{dom}."]},
        f"mx1.{dom}": {"A": [ip["a"]]},
        f"mx2.{dom}": {"A": [ip["b"]]},
    }
    sinks = {"a": {"greeting": lambda n: (421, "4.3.2 busy, try another MX")}, "b": {}}
    with mx_world(sinks, names) as w:
        rcpt = addr("busy", dom)
        content = h.make_message(1800, tag="mx421")
        qid = send(w, [rcpt], content)
        h.assert_delivered(w["b"].wait_for(1)[0], content, mail_from=h.SENDER, rcpts=[rcpt])
        w["b"].assert_no_messages(1.0, expect=1)
        assert w["a"].refused_greetings >= 1, "the MX 10 was never tried"
        assert not w["a"].attempts, f"the MX 10 refused its greeting, yet got a message: {w['a'].attempts}"
        wait_log(w.relay, [delivered_re(rcpt, f"mx2.{dom}", w.ip["b"], w.port, qid)])


def test_implicit_mx_a_record():
    """A domain without MX records (NODATA) but with an A record: its own
    address is the MX (RFC 5321 5.1)."""
    dom = f"aonly.{D}"
    names = lambda ip: {dom: {"A": [ip["a"]]}}
    with mx_world({"a": {}}, names) as w:
        rcpt = addr("aonly", dom)
        content = h.make_message(1300, tag="mxaonly")
        qid = send(w, [rcpt], content)
        h.assert_delivered(w["a"].wait_for(1)[0], content, mail_from=h.SENDER, rcpts=[rcpt])
        w["a"].assert_no_messages(1.0, expect=1)
        wait_log(w.relay, [delivered_re(rcpt, None, w.ip["a"], w.port, qid)])


def test_one_transaction_per_domain():
    """One message to two recipients in one domain and one in another: each
    domain's MX gets the message once, with only its own recipients."""
    one, two = f"one.{D}", f"two.{D}"
    names = lambda ip: {
        one: {"MX": [f"10 mx.{one}."]},
        f"mx.{one}": {"A": [ip["one"]]},
        two: {"MX": [f"10 mx.{two}."]},
        f"mx.{two}": {"A": [ip["two"]]},
    }
    with mx_world({"one": {}, "two": {}}, names) as w:
        r1, r2, r3 = addr("first", one), addr("second", two), addr("third", one)
        content = h.make_message(4000, tag="mxsplit")
        send(w, [r1, r2, r3], content)
        h.assert_delivered(w["one"].wait_for(1)[0], content, mail_from=h.SENDER, rcpts=[r1, r3])
        h.assert_delivered(w["two"].wait_for(1)[0], content, mail_from=h.SENDER, rcpts=[r2])
        w["one"].assert_no_messages(1.5, expect=1)
        w["two"].assert_no_messages(0, expect=1)
        assert len(w["one"].attempts) == 1 and len(w["two"].attempts) == 1, (
            f"upstream transactions: {w['one'].attempts} / {w['two'].attempts}")


def test_retry_after_451_then_delivered():
    """The upstream answers 451 to the first transaction, 250 afterwards:
    the recipient is deferred, then delivered exactly once."""
    dom = f"later.{D}"
    names = lambda ip: {dom: {"MX": [f"10 mx.{dom}."]}, f"mx.{dom}": {"A": [ip["a"]]}}
    with mx_world({"a": {"policy": h.fail_first(1, 451, "4.3.0 try later")}}, names) as w:
        rcpt = addr("later", dom)
        content = h.make_message(2500, tag="mx451")
        qid = send(w, [rcpt], content)
        h.assert_delivered(w["a"].wait_for(1, timeout=30)[0], content, mail_from=h.SENDER, rcpts=[rcpt])
        w["a"].assert_no_messages(2.0, expect=1)
        codes = [a.code for a in w["a"].attempts]
        assert codes == [451, 250], f"upstream attempts {codes}, want [451, 250]"
        wait_log(w.relay, [outcome_re("deferred", rcpt, qid), delivered_re(rcpt, qid=qid)])
        w.bounce.assert_no_messages(0, expect=0)


def test_a_deferred_domain_keeps_the_other_domains_recipients_across_kill9():
    """One message to two domains: domain `slow` answers 451 (deferred, so a
    deferred record is written), while domain `hang` has the message but has
    not answered yet. kill -9, restart: the recipient at `hang` is still
    pending (the deferred record lists every pending recipient of the
    message, not only the deferred domain's), and both domains get the
    message after the restart; no bounce."""
    slow, hang = f"slow.{D}", f"hang.{D}"
    refuse = {"on": True}
    names = lambda ip: {
        slow: {"MX": [f"10 mx.{slow}."]}, f"mx.{slow}": {"A": [ip["slow"]]},
        hang: {"MX": [f"10 mx.{hang}."]}, f"mx.{hang}": {"A": [ip["hang"]]},
    }
    sinks = {"slow": {"policy": lambda txn: (451, "4.3.0 later") if refuse["on"] else None},
             "hang": {"reply_delay": 30.0}}
    with mx_world(sinks, names, delivery={"retry_schedule": [2]}) as w:
        r1, r2 = addr("one", slow), addr("two", hang)
        content = h.make_message(3000, tag="mxkill")
        qid = send(w, [r1, r2], content)
        wait_log(w.relay, [outcome_re("deferred", r1, qid)])
        deadline = time.monotonic() + 15
        while not w["hang"].attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w["hang"].attempts, "the message never reached the domain that hangs"
        w.relay.kill()
        refuse["on"] = False
        w["hang"].reply_delay = 0.0
        before = len(w["hang"].messages)
        w.relay.start()
        got = w["hang"].wait_for(before + 1, timeout=30)[-1]
        h.assert_delivered(got, content, mail_from=h.SENDER, rcpts=[r2])
        h.assert_delivered(w["slow"].wait_for(1, timeout=30)[0], content, mail_from=h.SENDER,
                           rcpts=[r1])
        w.bounce.assert_no_messages(1.0, expect=0)


# --------------------------------------------------------------------------
# failures and bounces

def test_null_mx_bounces_5_1_10():
    """A recipient domain with a null MX (RFC 7505) fails at once: bounce
    with 5.1.10; its A record is not used."""
    dom = f"nullmx.{D}"
    names = lambda ip: {dom: {"MX": ["0 ."], "A": [ip["trap"]]}}
    with mx_world({"trap": {}}, names) as w:
        rcpt = addr("nobody", dom)
        content = h.make_message(1200, tag="mxnull")
        qid = send(w, [rcpt], content)
        expect_bounce(w, rcpt, "5.1.10", qid=qid, subject=subject_of(content))
        w["trap"].assert_no_messages(0, expect=0)
        assert not w["trap"].attempts, "the null MX domain's A record was used"
        wait_log(w.relay, [outcome_re("failed", rcpt, qid)])
        assert not log_lines(w.relay, "deferred", rcpt), "a null MX was deferred"


def test_upstream_550_bounce():
    """A 550 at RCPT and a 550 at end of data each give the sender an RFC
    3464 bounce: null sender, the sender as recipient, multipart/report
    with the recipient, Action failed, a 5.x.y Status, the upstream's reply
    as Diagnostic-Code and the original Subject in the returned headers."""
    dom = f"reject.{D}"
    unknown, refused = addr("unknown", dom), addr("refused", dom)
    rcpt_text = "5.1.1 <unknown> User unknown in test sink"
    data_text = "5.7.1 Message content rejected by test sink"
    sink = {
        "rcpt_policy": lambda a: (550, rcpt_text) if a == unknown else None,
        "policy": lambda txn: (550, data_text) if refused in txn.rcpts else None,
    }
    names = lambda ip: {dom: {"MX": [f"10 mx.{dom}."]}, f"mx.{dom}": {"A": [ip["a"]]}}
    with mx_world({"a": sink}, names) as w:
        cases = [(unknown, rcpt_text), (refused, data_text)]
        sent = []
        for i, (rcpt, text) in enumerate(cases):
            content = h.make_message(1600 + i, tag=f"mx550-{i}")
            sent.append((rcpt, text, content, send(w, [rcpt], content)))
        w.bounce.wait_for(2, timeout=30)
        for rcpt, text, content, qid in sent:
            b = expect_bounce(w, rcpt, r"^5\.\d{1,3}\.\d{1,3}$", qid=qid,
                              subject=subject_of(content), only=False)
            diag = b.field(rcpt, "Diagnostic-Code")
            assert diag.lower().startswith("smtp;"), f"Diagnostic-Code type: {diag}"
            assert text in diag, f"Diagnostic-Code {diag!r} lacks the upstream reply {text!r}"
            assert set(b.recipients) == {rcpt}, f"bounce for {rcpt} reports {sorted(b.recipients)}"
            assert str(b.message.get("Auto-Submitted", "")).lower().startswith("auto-replied"), (
                f"Auto-Submitted: {b.message.get('Auto-Submitted')!r}")
            assert rcpt in b.text, f"the text part does not name {rcpt}: {b.text[:800]!r}"
            wait_log(w.relay, [outcome_re("failed", rcpt, qid)])
        w.bounce.assert_no_messages(1.5, expect=2)
        assert not w["a"].messages, f"refused messages count as accepted: {w['a'].messages}"
        assert not log_lines(w.relay, "deferred", unknown) and not log_lines(w.relay, "deferred", refused), \
            "a 5xx was deferred"


def test_bounce_returns_a_header_section_that_arrived_in_pieces():
    """A header section that reaches the relay in several pieces (here two
    sends 0.4 s apart, so the spool stores it as two body records) comes
    back whole in the bounce's returned headers, up to the empty line and
    no further."""
    dom = f"pieces.{D}"
    names = lambda ip: {dom: {"MX": [f"10 mx.{dom}."]}, f"mx.{dom}": {"A": [ip["a"]]}}
    sink = {"policy": h.always(550, "5.7.1 Rejected by test sink")}
    with mx_world({"a": sink}, names) as w:
        rcpt = addr("pieces", dom)
        first = (b"From: <" + h.SENDER.encode() + b">\r\nTo: <" + rcpt.encode() + b">\r\n"
                 b"Subject: sent in two pieces\r\n")
        rest = (b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 60) for i in range(40)) +
                b"X-Late-Header: the last field\r\n\r\nbody line that stays home\r\n")
        with w.relay.client() as c:
            c.ehlo()
            replies = c.mail_rcpt_data(h.SENDER, [rcpt])
            assert [r.code for r in replies] == [250, 250, 354], [str(r) for r in replies]
            c.send(first)
            time.sleep(0.4)
            c.send(h.data_wire(rest))
            qid = assert_queued(c.read_reply())
            c.cmd("QUIT")
        b = expect_bounce(w, rcpt, r"^5\.\d{1,3}\.\d{1,3}$", qid=qid,
                          subject="sent in two pieces")
        assert str(b.headers.get("X-Late-Header", "")) == "the last field", (
            f"returned headers lack the second piece: {list(b.headers.keys())}")
        assert str(b.headers.get("X-Filler-39", "")) == "f" * 60, list(b.headers.keys())
        assert b"stays home" not in b.envelope.data, "the bounce returned body text"


def test_null_sender_gets_no_bounce():
    """MAIL FROM:<> (itself a bounce) and an upstream 550: logged as failed,
    never bounced (RFC 5321 4.5.5)."""
    dom = f"nobounce.{D}"
    names = lambda ip: {dom: {"MX": [f"10 mx.{dom}."]}, f"mx.{dom}": {"A": [ip["a"]]}}
    sink = {"policy": h.always(550, "5.7.1 Rejected by test sink")}
    with mx_world({"a": sink}, names) as w:
        rcpt = addr("nobounce", dom)
        content = h.make_message(1100, tag="mxnullsender")
        qid = send(w, [rcpt], content, sender="")
        deadline = time.monotonic() + 20
        while not w["a"].attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w["a"].attempts, "the message never reached the upstream"
        wait_log(w.relay, [outcome_re("failed", rcpt, qid)])
        w.bounce.assert_no_messages(3.0, expect=0)
        w["a"].assert_no_messages(0, expect=0)
        assert len(w["a"].attempts) == 1, f"a 5xx was retried: {w['a'].attempts}"


def test_no_8bitmime_upstream_bounces_5_6_3():
    """An 8-bit body (BODY=8BITMIME) and an upstream without 8BITMIME: not
    sent (ringrelay does not convert), bounced with 5.6.3."""
    dom = f"seven.{D}"
    names = lambda ip: {dom: {"MX": [f"10 mx.{dom}."]}, f"mx.{dom}": {"A": [ip["a"]]}}
    with mx_world({"a": {"eight_bit_mime": False}}, names) as w:
        rcpt = addr("seven", dom)
        content = h.make_8bit_message(tag="mx8bit")
        qid = send(w, [rcpt], content, params="BODY=8BITMIME")
        expect_bounce(w, rcpt, "5.6.3", qid=qid, subject=subject_of(content))
        assert not w["a"].attempts, f"the 8-bit message was sent to a 7-bit upstream: {w['a'].attempts}"
        wait_log(w.relay, [outcome_re("failed", rcpt, qid)])


def test_no_smtputf8_upstream_bounces_5_6_7():
    """A message sent with SMTPUTF8 (non-ASCII recipient and Subject) and an
    upstream without SMTPUTF8: not sent, bounced with 5.6.7."""
    dom = f"ascii.{D}"
    names = lambda ip: {dom: {"MX": [f"10 mx.{dom}."]}, f"mx.{dom}": {"A": [ip["a"]]}}
    with mx_world({"a": {"smtputf8": False}}, names) as w:
        rcpt = addr("jörg", dom)
        subject = "Grüße an Jörg"
        content = (f"From: <{h.SENDER}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
                   f"Message-ID: <mxutf8@client.test>\r\n\r\nÜmlaut\r\n").encode()
        qid = send(w, [rcpt], content, params="SMTPUTF8 BODY=8BITMIME")
        expect_bounce(w, rcpt, "5.6.7", qid=qid, subject=subject)
        assert not w["a"].attempts, f"the SMTPUTF8 message was sent: {w['a'].attempts}"
        wait_log(w.relay, [outcome_re("failed", rcpt, qid)])


def test_mx_is_the_relay_itself_bounces_5_4_6():
    """The recipient domain's MX is the relay's own hostname: a loop, bounced
    with 5.4.6 and not sent (the name's address is a sink that must stay
    empty)."""
    dom = f"loop.{D}"
    names = lambda ip: {dom: {"MX": [f"10 {RELAY_HOSTNAME}."]}, RELAY_HOSTNAME: {"A": [ip["trap"]]}}
    with mx_world({"trap": {}}, names) as w:
        rcpt = addr("loop", dom)
        content = h.make_message(1400, tag="mxloop")
        qid = send(w, [rcpt], content)
        expect_bounce(w, rcpt, "5.4.6", qid=qid, subject=subject_of(content))
        assert not w["trap"].attempts and w["trap"].refused_greetings == 0, "the looping MX was used"
        wait_log(w.relay, [outcome_re("failed", rcpt, qid)])


@h.timeout(90)
def test_expired_while_deferred_bounces_4_4_7():
    """delivery.max_age 3 s and an upstream that always answers 451: the
    message expires and is bounced with Status 4.4.7, Action failed, the
    last reply reported. (The 451 carries no enhanced code, so the Status is
    the expiry's own 4.4.7 whichever way the last reply's code is used.)"""
    dom = f"expire.{D}"
    names = lambda ip: {dom: {"MX": [f"10 mx.{dom}."]}, f"mx.{dom}": {"A": [ip["a"]]}}
    reply = "Mailbox busy, come back much later"
    with mx_world({"a": {"policy": h.always(451, reply)}}, names, delivery={"max_age": 3}) as w:
        rcpt = addr("expire", dom)
        content = h.make_message(1700, tag="mxexpire")
        qid = send(w, [rcpt], content)
        b = expect_bounce(w, rcpt, "4.4.7", qid=qid, subject=subject_of(content), timeout=30)
        report = b.field(rcpt, "Diagnostic-Code") if b.recipients[rcpt].get("Diagnostic-Code") else ""
        assert reply in report or reply in " ".join(b.text.split()), (
            f"the bounce does not report the last reply {reply!r}: {report!r} / {b.text[:800]!r}")
        assert len(w["a"].attempts) >= 1 and not w["a"].messages
        wait_log(w.relay, [outcome_re("deferred", rcpt, qid), outcome_re("failed", rcpt, qid)])


def test_nxdomain_bounces_5_1_2():
    """A recipient domain that does not exist (NXDOMAIN): bounced with 5.1.2,
    never deferred."""
    dom = f"nxdomain.{D}"
    with mx_world({}, lambda ip: {}) as w:
        rcpt = addr("ghost", dom)
        content = h.make_message(1000, tag="mxnxdomain")
        qid = send(w, [rcpt], content)
        expect_bounce(w, rcpt, "5.1.2", qid=qid, subject=subject_of(content))
        wait_log(w.relay, [outcome_re("failed", rcpt, qid)])
        assert not log_lines(w.relay, "deferred", rcpt), "an NXDOMAIN was deferred"
