"""The SMTP dialogue of the real binary: greeting, EHLO, commands, sequence
and syntax errors, pipelining, limits, idle timeout, SIGTERM."""
import re
import time

import harness as h
from harness import assert_queued, assert_reply, relay_with_sink

REQUIRED_EXTENSIONS = ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING"]


def test_greeting_and_ehlo_keywords():
    with relay_with_sink() as (relay, sink):
        c = relay.client(ehlo=None)
        g = c.greeting
        assert g.code == 220, f"greeting: {g}"
        assert "relay.test" in g.lines[0].split(), f"greeting should name the configured hostname: {g}"
        r = c.ehlo("client.test")
        assert r.code == 250, f"EHLO: {r}"
        assert len(r.lines) > 1, f"EHLO should be a multi-line reply with extensions: {r}"
        assert r.lines[0].split()[0] == "relay.test", f"EHLO first line should name the host: {r}"
        for kw in REQUIRED_EXTENSIONS:
            assert kw in c.extensions, f"EHLO does not advertise {kw}: {r}"
        assert c.extensions.get("SIZE") == "52428800", f"EHLO should advertise 'SIZE 52428800': {r}"
        # a second EHLO is allowed and gives the same answer
        r2 = c.ehlo("client.test")
        assert r2.code == 250 and set(c.extensions) >= set(REQUIRED_EXTENSIONS), f"second EHLO: {r2}"
        c.close()


def test_helo_session_delivers():
    """HELO works (no extensions) and a message sent after it is delivered."""
    with relay_with_sink() as (relay, sink):
        c = relay.client(ehlo=None)
        r = c.cmd("HELO client.test")
        assert r.code == 250 and len(r.lines) == 1, f"HELO: {r}"
        content = h.make_message(700, tag="helo")
        qid = assert_queued(c.send_message(h.SENDER, [h.rcpt()], content))
        assert_reply(c.cmd("QUIT"), 221)
        m = sink.wait_for(1)[0]
        h.assert_delivered(m, content, mail_from=h.SENDER, rcpts=[h.rcpt()])
        # smtplib after HELO (no ESMTP): same result
        msg = h.make_message(900, tag="helo-smtplib")
        h.smtplib_send(relay, h.SENDER, [h.rcpt(2)], msg, helo=True)
        ms = sink.wait_for(2)
        h.assert_delivered(ms[1], h.smtplib_content(msg), rcpts=[h.rcpt(2)])
        assert qid
        # RFC 3848: the Received header says SMTP after HELO, ESMTP after EHLO.
        for m in ms:
            received, _ = h.split_received(m.data)
            assert re.search(rb"\r\n\twith SMTP id ", received), received
        msg = h.make_message(800, tag="ehlo")
        h.smtplib_send(relay, h.SENDER, [h.rcpt(3)], msg)
        received, _ = h.split_received(sink.wait_for(3)[2].data)
        assert re.search(rb"\r\n\twith ESMTP id ", received), received


def test_noop_rset_vrfy_help_quit():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        assert_reply(c.cmd("NOOP"), 250, what="NOOP")
        assert_reply(c.cmd("NOOP some argument"), 250, what="NOOP with argument")
        assert_reply(c.cmd("RSET"), 250, what="RSET")
        assert_reply(c.cmd("VRFY postmaster"), 252, what="VRFY")
        r = c.cmd("HELP")
        assert r.code in (211, 214), f"HELP: expected 214 (or 211), got {r}"
        assert r.enhanced and r.enhanced.startswith("2."), f"HELP reply has no enhanced code: {r}"
        # RSET clears a transaction: DATA afterwards is out of sequence
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250, what="MAIL")
        assert_reply(c.cmd(f"RCPT TO:<{h.rcpt()}>"), 250, what="RCPT")
        assert_reply(c.cmd("RSET"), 250, what="RSET in transaction")
        assert_reply(c.cmd("DATA"), 503, "5.5.1", what="DATA after RSET")
        # after RSET a new transaction works
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250, what="MAIL after RSET")
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("QUIT"), 221, what="QUIT")
        assert c.closed_by_server(5), "server did not close the connection after QUIT"
        sink.assert_no_messages(0.2)


def test_unknown_command():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        assert_reply(c.cmd("XYZZY"), 500, "5.5.1", what="unknown command")
        assert_reply(c.cmd("FOO bar baz"), 500, "5.5.1", what="unknown command with args")
        assert_reply(c.cmd("NOOP"), 250, what="session usable after 500")


def test_out_of_sequence():
    with relay_with_sink() as (relay, sink):
        c = relay.client(ehlo=None)
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 503, "5.5.1", what="MAIL before EHLO")
        c.ehlo()
        assert_reply(c.cmd(f"RCPT TO:<{h.rcpt()}>"), 503, "5.5.1", what="RCPT before MAIL")
        assert_reply(c.cmd("DATA"), 503, "5.5.1", what="DATA before MAIL")
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250, what="MAIL")
        assert_reply(c.cmd("DATA"), 503, "5.5.1", what="DATA before RCPT")
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 503, "5.5.1", what="second MAIL")
        assert_reply(c.cmd(f"RCPT TO:<{h.rcpt()}>"), 250, what="RCPT")
        r = c.cmd("DATA")
        assert r.code == 354, f"DATA: {r}"
        c.send(h.data_wire(b"Subject: seq\r\n\r\nok\r\n"))
        assert_queued(c.read_reply())
        h.assert_delivered(sink.wait_for(1)[0], b"Subject: seq\r\n\r\nok\r\n", rcpts=[h.rcpt()])


def test_bad_syntax():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}"), 501, "5.5.4", what="MAIL without '>'")
        assert_reply(c.cmd(f"MAIL FROM {h.SENDER}"), 501, "5.5.4", what="MAIL without ':<'")
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250, what="MAIL")
        assert_reply(c.cmd("RCPT TO:"), 501, "5.5.4", what="RCPT without address")
        r = assert_reply(c.cmd("RCPT TO:<not an address>"), 501, what="RCPT with spaces")
        assert r.enhanced in ("5.5.4", "5.1.3"), f"RCPT with spaces: want 501 5.5.4 or 5.1.3, got {r}"
        assert_reply(c.cmd("NOOP"), 250)


def test_pipelined_group_answered_in_order():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        assert "PIPELINING" in c.extensions
        group = [
            ("NOOP", 250),
            ("XYZZY", 500),
            (f"RCPT TO:<{h.rcpt()}>", 503),
            (f"MAIL FROM:<{h.SENDER}>", 250),
            (f"RCPT TO:<{h.rcpt(1)}>", 250),
            (f"RCPT TO:<{h.rcpt(2)}>", 250),
            ("RSET", 250),
            ("DATA", 503),
            ("VRFY someone", 252),
            ("NOOP", 250),
        ]
        c.send("".join(cmd + "\r\n" for cmd, _ in group))
        replies = c.read_replies(len(group))
        got = [r.code for r in replies]
        want = [code for _, code in group]
        assert got == want, f"pipelined replies out of order or wrong: got {got}, want {want}: " + \
            " / ".join(map(str, replies))
        for r in replies:
            assert r.enhanced and r.enhanced[0] == str(r.code)[0], f"reply without enhanced code: {r}"
        # a whole transaction in one write, DATA last (RFC 2920)
        content = b"Subject: pipelined\r\n\r\nbody\r\n"
        c.send(f"MAIL FROM:<{h.SENDER}>\r\nRCPT TO:<{h.rcpt(3)}>\r\nDATA\r\n")
        rs = c.read_replies(3)
        assert [r.code for r in rs] == [250, 250, 354], [str(r) for r in rs]
        c.send(h.data_wire(content) + b"QUIT\r\n")
        assert_queued(c.read_reply())
        assert_reply(c.read_reply(), 221, what="QUIT pipelined after end of data")
        h.assert_delivered(sink.wait_for(1)[0], content, rcpts=[h.rcpt(3)])


def test_command_line_limit():
    """Command lines are limited to 512 octets including CRLF."""
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        exact = "NOOP " + "x" * (512 - len("NOOP ") - 2)
        assert len(exact) + 2 == 512
        assert_reply(c.cmd(exact), 250, what="512-octet command line")
        over = exact + "x"
        r = c.cmd(over)
        assert r.code == 500, f"513-octet command line: expected 500 (5.5.6), got {r}"
        assert r.enhanced and r.enhanced.startswith("5."), f"no enhanced code: {r}"
        assert_reply(c.cmd("NOOP"), 250, what="session usable after an over-long line")
        r = c.cmd("NOOP " + "y" * 20000)
        assert r.code == 500, f"20005-octet command line: expected 500, got {r}"
        assert_reply(c.cmd("NOOP"), 250, what="session usable after a 20 kB line")
        # the tail of a long line must not be taken as a command
        r = c.cmd("MAIL FROM:<" + "z" * 600 + "@x.test> RCPT")
        assert r.code == 500, f"600-octet MAIL: expected 500, got {r}"
        assert_reply(c.cmd("NOOP"), 250)


@h.timeout(90)
def test_recipient_limit():
    """1000 recipients accepted, the 1001st refused with 452 4.5.3; the
    message then goes to the 1000."""
    with relay_with_sink() as (relay, sink):
        c = relay.client(timeout=30)
        rcpts = [h.rcpt(i) for i in range(1001)]
        cmds = [f"MAIL FROM:<{h.SENDER}>"] + [f"RCPT TO:<{r}>" for r in rcpts]
        c.send("".join(x + "\r\n" for x in cmds))
        replies = c.read_replies(len(cmds))
        assert_reply(replies[0], 250, what="MAIL")
        bad = [(i, str(r)) for i, r in enumerate(replies[1:1001]) if r.code != 250]
        assert not bad, f"recipients 1..1000 should get 250; first refusals: {bad[:3]}"
        assert_reply(replies[1001], 452, "4.5.3", what="1001st RCPT")
        r = c.cmd("DATA")
        assert r.code == 354, f"DATA: {r}"
        content = h.make_message(2000, tag="thousand")
        c.send(h.data_wire(content))
        assert_queued(c.read_reply())
        want = set(rcpts[:1000])

        def covered(ms):
            return set().union(*(set(m.rcpts) for m in ms)) >= want
        ms = sink.wait_for(1, timeout=60, pred=covered)
        got = [r for m in ms for r in m.rcpts]
        assert sorted(got) == sorted(want), (
            f"delivered to {len(got)} recipients ({len(set(got))} distinct), want exactly the first 1000")
        for m in ms:
            h.assert_delivered(m, content, mail_from=h.SENDER)


@h.timeout(60)
def test_idle_timeout():
    with relay_with_sink(config={"limits": {"idle_timeout": 2}}) as (relay, sink):
        c = relay.client()
        t0 = time.monotonic()
        r = c.read_reply(timeout=20)
        waited = time.monotonic() - t0
        assert_reply(r, 421, "4.4.2", what="idle session")
        assert waited >= 1.0, f"421 came after {waited:.2f}s, before the 2 s idle timeout"
        assert c.closed_by_server(5), "connection not closed after 421"
        # idle in the middle of DATA: same reply, nothing delivered
        c2 = relay.client()
        rs = c2.mail_rcpt_data(h.SENDER, [h.rcpt()])
        assert [x.code for x in rs] == [250, 250, 354], [str(x) for x in rs]
        c2.send(b"Subject: half\r\n\r\nhalf a li")
        assert_reply(c2.read_reply(timeout=20), 421, "4.4.2", what="idle in DATA")
        assert c2.closed_by_server(5), "connection not closed after 421 in DATA"
        # an active session is not cut: NOOP every second for 4 s
        c3 = relay.client()
        for _ in range(4):
            time.sleep(1)
            assert_reply(c3.cmd("NOOP"), 250, what="NOOP on an active session")
        sink.assert_no_messages(0.5)


def test_sigterm_exits_zero():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        assert_reply(c.cmd("NOOP"), 250)
        content = b"Subject: before sigterm\r\n\r\nx\r\n"
        assert_queued(c.send_message(h.SENDER, [h.rcpt()], content))
        sink.wait_for(1)
        t0 = time.monotonic()
        rc = relay.stop()  # SIGTERM; fails if not gone within shutdown_grace + 10 s
        note_t = time.monotonic() - t0
        assert rc == 0, f"exit code after SIGTERM: {rc} (want 0)"
        assert c.closed_by_server(2), "client connection still open after the relay exited"
        h.note(f"SIGTERM with one idle session: exit 0 after {note_t:.2f}s")
        # and it starts again on the same port and spool
        relay.start()
        c = relay.client()
        assert_reply(c.cmd("QUIT"), 221)
