"""Sender verification at MAIL FROM (SPEC.md §4, issue 5) on the real
binary, against a real DNS server process (dns_server.py) serving test
names: each cause gets its own reply and log field, the null sender is
never looked up, answers are cached, a SERVFAIL or a server that never
answers is a temporary 451 4.4.3, and a refused MAIL ends the transaction
(pipelined RCPT and DATA get 503). Clients come from trusted_networks, so
no AUTH is needed; the check is the same for authenticated senders."""
import contextlib
import time

import harness as h
from dns_server import DNSServer
from harness import assert_queued, assert_reply
from test_auth import connect

D = "ringrelay-it.net"
NAMES = {
    f"ok.{D}": {"MX": [f"10 mx.ok.{D}.", f"20 mx2.ok.{D}."]},
    f"mx.ok.{D}": {"A": ["192.0.2.10"]},
    f"mx2.ok.{D}": {"AAAA": ["2001:db8::10"]},
    f"aonly.{D}": {"A": ["192.0.2.11"]},
    f"mxip.{D}": {"MX": ["10 192.0.2.12."]},
    f"mxcname.{D}": {"MX": [f"10 alias.{D}."]},
    f"alias.{D}": {"CNAME": f"mx.ok.{D}."},
    f"nullmx.{D}": {"MX": ["0 ."]},
    f"txtonly.{D}": {"TXT": ["v=spf1 -all"]},
    f"broken.{D}": "servfail",
    f"slow.{D}": "timeout",
    "allowed.test": {"MX": ["10 mx.allowed.test."]},
    "mx.allowed.test": {"A": ["192.0.2.13"]},
    # What the harness sends from, for the end-to-end message.
    h.SENDER_DOMAIN: {"MX": [f"10 mx.{h.SENDER_DOMAIN}."]},
    f"mx.{h.SENDER_DOMAIN}": {"A": ["127.0.0.1"]},
}

NO_MX = ("451", "4.1.8", "Sender verify failed: domain has no MX or A record")
MX_IP = ("451", "4.1.8", "Sender verify failed: MX points to an IP address")
MX_CNAME = ("451", "4.1.8", "Sender verify failed: MX points to a CNAME")
NOT_PUBLIC = ("451", "4.1.8", "Sender verify failed: domain is not a public domain")
SERVFAIL = ("451", "4.4.3", "Temporary local error: DNS lookup failed (SERVFAIL)")
NULL_MX = ("550", "5.7.27", "Sender domain accepts no mail (null MX)")


@contextlib.contextmanager
def verifying_relay(**sets):
    """A sink, a DNS server with NAMES and a relay checking senders with it
    (dns.timeout 1 s, "test" allowed though reserved). Yields (relay, sink, dns)."""
    with h.RecordingSink() as sink, DNSServer(NAMES) as dns:
        config = {"sender_verify": {"enabled": True, "allow_reserved": ["test"]},
                  "dns": {"timeout": "1s"}}
        with h.Relay(relayhost=sink.address, config=config, sets=dns.relay_sets()) as relay:
            yield relay, sink, dns


def wait_log(relay, needles, timeout: float = 10.0) -> str:
    """The relay's log once it holds every needle: a shard writes its log
    lines through its ring, shortly after the reply that followed them."""
    deadline = time.monotonic() + timeout
    while True:
        log = relay.log_text()
        missing = [n for n in needles if n not in log]
        if not missing or time.monotonic() > deadline:
            assert not missing, f"log lines never written: {missing}"
            return log
        time.sleep(0.05)


def mail(c, sender: str) -> h.Reply:
    r = c.cmd(f"MAIL FROM:<{sender}>", timeout=15)
    if r.code == 250:
        assert c.cmd("RSET").code == 250
    return r


def expect(r: h.Reply, want, what: str) -> None:
    code, enhanced, text = want
    assert_reply(r, int(code), enhanced, what)
    assert text in r.text, f"{what}: reply text should contain {text!r}: {r}"


def test_each_cause_gets_its_reply_and_log_field():
    cases = [
        (f"a@ok.{D}", None, "ok"),
        (f"a@aonly.{D}", None, "ok"),
        (f"a@nomx.{D}", NO_MX, "no_mx"),
        (f"a@txtonly.{D}", NO_MX, "no_mx"),
        (f"a@mxip.{D}", MX_IP, "mx_ip"),
        (f"a@mxcname.{D}", MX_CNAME, "mx_cname"),
        (f"a@nullmx.{D}", NULL_MX, "null_mx"),
        (f"a@broken.{D}", SERVFAIL, "servfail"),
        ("a@host.local", NOT_PUBLIC, "not_public"),
        ("a@localhost", NOT_PUBLIC, "not_public"),
        ("a@printer", NOT_PUBLIC, "not_public"),
        ("a@shop.invalid", NOT_PUBLIC, "not_public"),
        ("a@allowed.test", None, "ok"),
        ("a@other.test", NO_MX, "no_mx"),  # allowed, but not served: NXDOMAIN
    ]
    with verifying_relay() as (relay, sink, dns):
        c = connect(relay)
        for sender, want, field in cases:
            r = mail(c, sender)
            if want is None:
                assert r.code == 250, f"MAIL FROM:<{sender}> should be accepted: {r}"
            else:
                expect(r, want, f"MAIL FROM:<{sender}>")
        c.close()
        wait_log(relay, [f"sender refused from=<{sender}> sender_verify={field}"
                         for sender, want, field in cases if want is not None])
        null_mx = mail(connect(relay), f"b@nullmx.{D}")
        assert "bounces" in null_mx.text.lower(), (
            f"the null MX reply should say bounces could not reach the sender: {null_mx}")


def test_timeout_is_temporary_and_the_null_sender_needs_no_lookup():
    with verifying_relay() as (relay, sink, dns):
        c = connect(relay)
        started = time.monotonic()
        r = mail(c, f"a@slow.{D}")
        expect(r, SERVFAIL, "a DNS server that never answers")
        assert time.monotonic() - started < 10, "the lookup outlived dns.timeout by far"
        wait_log(relay, ["sender_verify=timeout"])
        before = len(dns.queries)
        assert mail(c, "").code == 250, "MAIL FROM:<> must be accepted"
        assert len(dns.queries) == before, "the null sender was looked up"
        c.close()


def test_answers_are_cached_and_failures_are_not():
    with verifying_relay() as (relay, sink, dns):
        # One shard: both connections share one resolver and cache.
        relay.stop()
        relay.config["shards"] = 1
        relay.start()
        c = connect(relay)
        assert mail(c, f"a@ok.{D}").code == 250
        asked = len(dns.queries)
        assert asked >= 2, f"expected MX and target lookups, saw {dns.queries}"
        for i in range(5):
            assert mail(c, f"user{i}@ok.{D}").code == 250
        assert len(dns.queries) == asked, f"cached answers were asked again: {dns.queries[asked:]}"
        expect(mail(c, f"a@broken.{D}"), SERVFAIL, "SERVFAIL")
        asked = len(dns.queries)
        expect(mail(c, f"a@broken.{D}"), SERVFAIL, "SERVFAIL again")
        assert len(dns.queries) > asked, "a SERVFAIL was cached"
        c.close()


def test_a_refused_sender_ends_the_transaction_and_a_verified_one_is_delivered():
    with verifying_relay() as (relay, sink, dns):
        c = connect(relay)
        c.send(f"MAIL FROM:<a@nomx.{D}>\r\nRCPT TO:<{h.rcpt(0)}>\r\nDATA\r\n".encode())
        replies = c.read_replies(3, timeout=15)
        expect(replies[0], NO_MX, "pipelined MAIL")
        assert [r.code for r in replies[1:]] == [503, 503], f"RCPT and DATA after it: {replies}"
        content = h.make_message(2000, tag="verified")
        assert_queued(c.send_message(h.SENDER, [h.rcpt(1)], content), "from a verified sender")
        c.close()
        m = sink.wait_for(1)[0]
        h.assert_delivered(m, content, mail_from=h.SENDER)
