#!/usr/bin/python3
"""Checks the harness against itself, without ringrelay: smtplib, swaks and
the raw client talk straight to a RecordingSink, and the byte-comparison
helpers must accept what is equal and reject what is not.

Run: /usr/bin/python3 tests/integration/selftest.py   (exit 0 when all pass)
"""
import smtplib
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402


def check_message_sizes():
    for size in [0, 2, 150, 151, 152, 153, 1000, 1024, 4097, 1048576, 10485761]:
        m = h.make_message(size, tag=f"s{size}") if size >= 200 or size == 0 else None
        if m is None:
            continue
        assert len(m) == size, (size, len(m))
        assert m == b"" or m.endswith(h.CRLF)
        for line in m.split(h.CRLF)[:-1]:
            assert len(line) + 2 <= 1000
            assert b"\r" not in line and b"\n" not in line
    hdr_len = len(h._header("edge"))
    m = h.make_message(hdr_len + 1, tag="edge")
    assert len(m) == hdr_len + 1
    big = h.big_message(h.MAX_SIZE, "fifty")
    assert len(big) == h.MAX_SIZE
    assert max(len(l) for l in big.split(h.CRLF)) + 2 <= 1000
    assert any(l.startswith(b".") for l in big.split(h.CRLF))


def check_stuffing():
    c = b".\r\n..\r\n.x\r\nplain\r\n"
    assert h.dot_stuff(c) == b"..\r\n...\r\n..x\r\nplain\r\n"
    assert h.dot_unstuff(h.dot_stuff(c)) == c
    assert h.data_wire(b"") == b".\r\n"
    assert h.smtplib_content(b"") == b"\r\n"


def check_received_split():
    body = b"Subject: x\r\n\r\nhello\r\n"
    hdr = b"Received: from client.test (127.0.0.1)\r\n\tby relay.test with ESMTP id 0123456789ABCDEF\r\n\t; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    got_h, rest = h.split_received(hdr + body)
    assert got_h == hdr and rest == body
    try:
        h.split_received(body)
    except AssertionError:
        pass
    else:
        raise AssertionError("split_received accepted a message without Received:")
    try:
        h.assert_bytes_equal(b"abcdef", b"abcxef")
    except AssertionError as e:
        assert "offset 3" in str(e), e
    else:
        raise AssertionError("assert_bytes_equal accepted different bytes")
    assert h.first_difference(b"abc", b"abcd") == 3


def check_sink_smtplib():
    with h.RecordingSink() as sink:
        msgs = [b"", b"Subject: a\r\n\r\n.\r\n..\r\n.x\r\n", h.make_8bit_message(), h.make_message(300000, tag="big")]
        for m in msgs:
            s = smtplib.SMTP(sink.host, sink.port, local_hostname="client.test", timeout=10)
            s.sendmail(h.SENDER, [h.rcpt(1), h.rcpt(2)], m, mail_options=["BODY=8BITMIME"])
            s.quit()
        got = sink.wait_for(len(msgs), timeout=5)
        for m, g in zip(msgs, got):
            h.assert_bytes_equal(g.data, h.smtplib_content(m))
            assert g.mail_from == h.SENDER and g.rcpts == [h.rcpt(1), h.rcpt(2)]
            assert g.helo == "client.test"


def check_sink_raw_and_pipelining():
    with h.RecordingSink(chunking=True) as sink:
        c = h.SMTPClient(sink.host, sink.port)
        assert c.read_reply().code == 220
        r = c.ehlo()
        assert "CHUNKING" in c.extensions and r.code == 250
        # empty content, then pipelined messages, then BDAT
        h.assert_reply(c.send_message(h.SENDER, [h.rcpt()], b""), 250)
        c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        rs = c.read_replies(3)
        assert [x.code for x in rs] == [250, 250, 354]
        c.send(b"x\r\n.\r\nMAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nDATA\r\n..y\r\n.\r\n")
        rs = c.read_replies(4)
        assert [x.code for x in rs] == [250, 250, 250, 354], rs
        assert c.read_reply().code == 250
        reps = c.bdat_message(h.SENDER, [h.rcpt()], [b"ab", b"c\r\n.\r\n", b".x\r\n"])
        assert [x.code for x in reps] == [250, 250, 250]
        got = sink.wait_for(4, timeout=5)
        assert got[0].data == b""
        assert got[1].data == b"x\r\n" and got[2].data == b".y\r\n" and got[2].wire == b"..y\r\n"
        assert got[3].data == b"abc\r\n.\r\n.x\r\n" and got[3].via == "BDAT"
        # the sink records bare LF as received (it is the relay's job to refuse it)
        h.assert_reply(c.send_message(h.SENDER, [h.rcpt()], b"a\nb\r\n"), 250)
        assert sink.wait_for(5)[4].data == b"a\nb\r\n"
        c.close()


def check_sink_policies_and_restart():
    with h.RecordingSink(policy=h.fail_first(2), start=False) as sink:
        try:
            smtplib.SMTP(sink.host, sink.port, timeout=2)
        except OSError:
            pass
        else:
            raise AssertionError("sink listening before start()")
        sink.start()
        for i in range(3):
            s = smtplib.SMTP(sink.host, sink.port, timeout=5)
            try:
                s.sendmail(h.SENDER, [h.rcpt()], b"m\r\n")
                assert i == 2, "accepted too early"
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 451 and i < 2
            s.quit()
        assert len(sink.messages) == 1 and [a.code for a in sink.attempts] == [451, 451, 250]
        sink.stop()
        try:
            smtplib.SMTP(sink.host, sink.port, timeout=2)
        except OSError:
            pass
        else:
            raise AssertionError("sink still listening after stop()")
        sink.start()
        s = smtplib.SMTP(sink.host, sink.port, timeout=5)
        s.sendmail(h.SENDER, [h.rcpt()], b"again\r\n")
        s.quit()
        assert len(sink.wait_for(2)) == 2
    with h.RecordingSink(policy=h.always(550)) as sink:
        s = smtplib.SMTP(sink.host, sink.port, timeout=5)
        try:
            s.sendmail(h.SENDER, [h.rcpt()], b"m\r\n")
            raise AssertionError("accepted")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550
        s.quit()
        sink.assert_no_messages(0.1)


def check_swaks():
    with h.RecordingSink() as sink, tempfile.TemporaryDirectory() as d:
        body = Path(d) / "body.txt"
        content = "line one\n.\n..\n.x\nGrüße \xe9\nlast".encode()
        body.write_bytes(content)
        template = "From: <%FROM_ADDRESS%>\nTo: <%TO_ADDRESS%>\nSubject: swaks\n\n%BODY%"
        p = subprocess.run(["swaks", "--server", sink.address, "--helo", "client.test",
                            "--from", h.SENDER, "--to", h.rcpt(), "--data", template,
                            "--body", f"@{body}", "--pipeline"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
        assert p.returncode == 0, p.stdout
        m = sink.wait_for(1)[0]
        exp = (f"From: <{h.SENDER}>\r\nTo: <{h.rcpt()}>\r\nSubject: swaks\r\n\r\n").encode() + content.replace(b"\n", b"\r\n") + b"\r\n"
        h.assert_bytes_equal(m.data, exp, "swaks content")


def check_relay_missing_binary():
    import os
    os.environ["RINGRELAY_BIN"] = "/nonexistent/ringrelay"
    try:
        h.Relay(relayhost="127.0.0.2:1")
    except AssertionError as e:
        assert "not found" in str(e)
    else:
        raise AssertionError("Relay started without a binary")


def main():
    checks = [v for k, v in globals().items() if k.startswith("check_")]
    failed = 0
    for fn in checks:
        t0 = time.monotonic()
        try:
            fn()
            print(f"PASS {fn.__name__} ({time.monotonic() - t0:.1f}s)")
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc()
    print(f"selftest: {len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
