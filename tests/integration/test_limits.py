"""Size, line-length and bare CR/LF limits: refused with the documented
replies, and nothing refused reaches the upstream sink. Each negative case
is followed by a sentinel message on the same connection; once the sentinel
has arrived (plus a short grace), the sink must hold the sentinel only."""
import smtplib

import harness as h
from harness import assert_queued, assert_reply, relay_with_sink

SENTINEL = b"Subject: sentinel\r\nMessage-ID: <sentinel@client.test>\r\n\r\nonly me\r\n"


def _sentinel(c, sink, expect_total=1):
    assert_queued(c.send_message(h.SENDER, [h.rcpt(99)], SENTINEL), "sentinel")
    ms = sink.wait_for(expect_total)
    sink.assert_no_messages(0.5, expect=expect_total)
    for m in ms:
        h.assert_delivered(m, SENTINEL, rcpts=[h.rcpt(99)])


@h.timeout(150)
def test_size_exactly_50mib_accepted():
    """RFC 1870 size exactly 52428800 octets: 250, delivered byte-exact."""
    msg = h.big_message(h.MAX_SIZE, "fifty-mib")
    assert len(msg) == h.MAX_SIZE
    with relay_with_sink() as (relay, sink):
        s = relay.smtplib(timeout=120)
        try:
            s.ehlo("client.test")
            assert s.has_extn("size") and s.esmtp_features["size"] == "52428800"
            code, resp = s.mail(h.SENDER, [f"SIZE={h.MAX_SIZE}"])
            assert code == 250, f"MAIL SIZE={h.MAX_SIZE}: {code} {resp!r}"
            code, resp = s.rcpt(h.rcpt())
            assert code == 250, f"RCPT: {code} {resp!r}"
            code, resp = s.data(msg)
            assert code == 250, f"end of data for exactly 50 MiB: {code} {resp!r}"
            h.smtplib_queue_id(resp)
            s.quit()
        finally:
            s.close()
        m = sink.wait_for(1, timeout=120)[0]
        h.assert_delivered(m, msg, mail_from=h.SENDER, rcpts=[h.rcpt()])


@h.timeout(150)
def test_size_50mib_plus_one_refused():
    """52428801 octets without a SIZE parameter: 552 5.3.4 after the end of
    data, nothing delivered, and the session carries on."""
    msg = h.big_message(h.MAX_SIZE + 1, "fifty-mib-plus-one")
    assert len(msg) == h.MAX_SIZE + 1
    with relay_with_sink() as (relay, sink):
        c = relay.client(timeout=120)
        r = c.send_message(h.SENDER, [h.rcpt()], msg)
        assert_reply(r, 552, "5.3.4", what="52428801-octet message")
        _sentinel(c, sink)


def test_mail_size_parameter_over_limit():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}> SIZE={h.MAX_SIZE + 1}"), 552, "5.3.4",
                     what="MAIL SIZE=52428801")
        # RFC 1870: size-value ::= 1*20DIGIT, so 20 nines are valid syntax and
        # simply over the limit (not a 501, and no overflow).
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}> SIZE=99999999999999999999"), 552, "5.3.4",
                     what="MAIL SIZE=<20 digits> (valid per RFC 1870 1*20DIGIT)")
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}> SIZE={h.MAX_SIZE}"), 250, what="MAIL SIZE=52428800")
        assert_reply(c.cmd("RSET"), 250)
        # smtplib sees the same refusal
        s = relay.smtplib()
        try:
            s.ehlo("client.test")
            code, resp = s.mail(h.SENDER, [f"SIZE={h.MAX_SIZE + 1}"])
            assert code == 552 and resp.startswith(b"5.3.4"), f"smtplib MAIL SIZE: {code} {resp!r}"
        finally:
            s.close()
        _sentinel(c, sink)


BARE = [
    ("bare LF in a line", b"Subject: lf\r\n\r\nabc\ndef\r\n"),
    ("bare CR in a line", b"Subject: cr\r\n\r\nabc\rdef\r\n"),
    ("bare LF line end", b"Subject: lf\r\n\r\nabc\n\r\n"),
    ("CR CR LF", b"Subject: crcrlf\r\n\r\nabc\r\r\n"),
    ("LF at start", b"\nSubject: x\r\n\r\nbody\r\n"),
    ("bare CR before a dot", b"Subject: x\r\n\r\nbody\r\n\r.\r\n"),
    ("bare LF in a header", b"Subject: x\nBcc: someone\r\n\r\nbody\r\n"),
]


def test_bare_lf_and_cr_refused():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        for what, content in BARE:
            rs = c.mail_rcpt_data(h.SENDER, [h.rcpt()])
            assert [r.code for r in rs] == [250, 250, 354], f"{what}: {[str(r) for r in rs]}"
            c.send(content + b".\r\n")  # our content has no leading dots: no stuffing needed
            assert_reply(c.read_reply(), 550, "5.6.0", what=what)
        _sentinel(c, sink)


# SMTP smuggling: an end of data that is not CRLF.CRLF, followed by a second
# transaction. ringrelay must treat all of it as one message (refused), send
# exactly one reply, and deliver nothing.
SMUGGLE_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r.\r", b"\r\n.\r", b"\n.\r"]


def test_smuggling_refused():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        for end in SMUGGLE_ENDS:
            rs = c.mail_rcpt_data(h.SENDER, [h.rcpt()])
            assert [r.code for r in rs] == [250, 250, 354], [str(r) for r in rs]
            c.send(b"Subject: innocent\r\n\r\nhello" + end
                   + f"MAIL FROM:<evil@{h.SENDER_DOMAIN}>\r\nRCPT TO:<{h.rcpt(66)}>\r\nDATA\r\n".encode()
                   + b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
            r = c.read_reply()
            assert_reply(r, 550, "5.6.0", what=f"smuggling with end {end!r}")
            # the next reply must be the marker's: nothing smuggled was run
            r = c.cmd("HELP")
            assert r.code in (211, 214), f"after smuggling attempt {end!r}: extra reply {r} (smuggled commands ran?)"
        _sentinel(c, sink)
        assert all(h.rcpt(66) not in m.rcpts for m in sink.messages)


def test_long_text_line_refused():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        cases = [
            ("1001-octet line", b"Subject: long\r\n\r\n" + b"x" * 999 + b"\r\n"),
            ("1001-octet header", b"Subject: " + b"y" * 990 + b"\r\n\r\nbody\r\n"),
            ("100 kB line", b"Subject: long\r\n\r\nshort\r\n" + b"z" * 100000 + b"\r\nend\r\n"),
        ]
        for what, content in cases:
            assert len(max(content.split(b"\r\n"), key=len)) + 2 > 1000
            r = c.send_message(h.SENDER, [h.rcpt()], content)
            assert r.code in (500, 550, 552, 554), f"{what}: expected 5xx (500 5.5.6 / 550 5.6.0), got {r}"
            assert r.enhanced and r.enhanced.startswith("5."), f"{what}: no 5.x.x enhanced code: {r}"
        # a 1000-octet line followed by a 1001-octet one, split over writes
        rs = c.mail_rcpt_data(h.SENDER, [h.rcpt()])
        assert [x.code for x in rs] == [250, 250, 354]
        c.send(b"Subject: two\r\n\r\n" + b"a" * 998)
        c.send(b"\r\n" + b"b" * 500)
        c.send(b"b" * 499 + b"\r\n.\r\n")
        r = c.read_reply()
        assert r.code // 100 == 5 and r.enhanced and r.enhanced.startswith("5."), f"split long line: {r}"
        _sentinel(c, sink)


def test_too_many_hops_refused_as_a_loop():
    """More Received: fields than limits.hops (default 50) is a mail loop:
    554 5.4.6 after the end of data, nothing delivered; exactly 50 passes
    (and leaves with our own Received: on top)."""
    def with_hops(n, tag):
        hops = b"".join(b"Received: from hop%d.test by relay%d.test; Thu, 3 Dec 2026 08:00:00 "
                        b"+0000\r\n" % (i, i) for i in range(n))
        return hops + h.make_message(500, tag=tag)
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        r = c.send_message(h.SENDER, [h.rcpt()], with_hops(51, "loop"))
        assert_reply(r, 554, "5.4.6", "51 Received headers")
        assert "hops" in r.text and "loop" in r.text, f"the reply should say why: {r}"
        content = with_hops(50, "fifty")
        assert_queued(c.send_message(h.SENDER, [h.rcpt()], content), "50 Received headers")
        m = sink.wait_for(1)[0]
        h.assert_delivered(m, content, mail_from=h.SENDER)
        assert len(sink.messages) == 1, "the looping message was delivered"


def test_bdat_bare_lf_and_long_line_refused():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        r = c.bdat_message(h.SENDER, [h.rcpt()], [b"Subject: bdat lf\r\n\r\nabc\ndef\r\n"])[0]
        assert_reply(r, 550, "5.6.0", what="BDAT LAST with a bare LF")
        r = c.bdat_message(h.SENDER, [h.rcpt()], [b"Subject: bdat cr\r\n\r\nabc\rdef\r\n"])[0]
        assert_reply(r, 550, "5.6.0", what="BDAT LAST with a bare CR")
        r = c.bdat_message(h.SENDER, [h.rcpt()], [b"Subject: bdat long\r\n\r\n" + b"q" * 1200 + b"\r\n"])[0]
        assert r.code // 100 == 5 and r.enhanced and r.enhanced.startswith("5."), f"BDAT long line: {r}"
        _sentinel(c, sink)


def test_refused_messages_via_smtplib():
    """The same refusals seen through smtplib (which sends bare LF as is)."""
    with relay_with_sink() as (relay, sink):
        s = relay.smtplib()
        try:
            s.ehlo("client.test")
            for content in (b"Subject: a\r\n\r\nbare\nlf\r\n", b"Subject: b\r\n\r\n" + b"w" * 2000 + b"\r\n"):
                try:
                    s.sendmail(h.SENDER, [h.rcpt()], content)
                    raise AssertionError(f"accepted: {content[:40]!r}")
                except smtplib.SMTPDataError as e:
                    assert e.smtp_code // 100 == 5 and e.smtp_error[:2] == b"5.", f"{e.smtp_code} {e.smtp_error!r}"
        finally:
            s.close()
        c = relay.client()
        _sentinel(c, sink)
