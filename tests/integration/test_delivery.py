"""Messages go through ringrelay to a recording upstream sink and arrive
byte-exact (minus the one Received: header ringrelay prepends)."""
import collections
import re
import tempfile
import threading
import time
from pathlib import Path

import harness as h
from harness import assert_queued, assert_reply, relay_with_sink


def _send_and_check(relay, sink, msg: bytes, n_before: int = 0, mail_options=(), timeout=30):
    qid = h.smtplib_send(relay, h.SENDER, [h.rcpt()], msg, mail_options=mail_options)
    m = sink.wait_for(n_before + 1, timeout=timeout)[n_before]
    h.assert_delivered(m, h.smtplib_content(msg), mail_from=h.SENDER, rcpts=[h.rcpt()])
    return qid, m


def test_empty_body():
    with relay_with_sink() as (relay, sink):
        # headers and the empty line, no body
        msg = b"From: <" + h.SENDER.encode() + b">\r\nSubject: empty body\r\n\r\n"
        _send_and_check(relay, sink, msg)
        # smtplib with an empty message sends one empty line
        _send_and_check(relay, sink, b"", n_before=1)
        # a DATA with nothing at all before the terminator
        c = relay.client()
        assert_queued(c.send_message(h.SENDER, [h.rcpt()], b""))
        m = sink.wait_for(3)[2]
        header, rest = h.split_received(m.data)
        h.assert_bytes_equal(rest, b"", "zero-octet message (minus Received:)")


def test_received_header():
    """One Received: header at the top: CRLF lines under 1000 octets, naming
    the client HELO and address, the queue ID, the single recipient and an
    RFC 5322 date with a numeric zone."""
    with relay_with_sink() as (relay, sink):
        msg = h.make_message(500, tag="received")
        qid, m = _send_and_check(relay, sink, msg)
        header, rest = h.split_received(m.data)
        assert not rest.lower().startswith(b"received:"), "more than one Received: header was prepended"
        text = header.decode("utf-8", "replace")
        for line in header.split(h.CRLF)[:-1]:
            assert len(line) + 2 <= 1000, f"Received: line over 1000 octets: {line[:80]!r}"
        assert qid in text or qid.lower() in text.lower(), f"queue ID {qid} not in {text!r}"
        assert "client.test" in text, f"client HELO name not in {text!r}"
        assert "127.0.0.1" in text, f"client address not in {text!r}"
        assert h.rcpt() in text, f"single recipient not in {text!r}"
        assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}", text), \
            f"no RFC 5322 date with numeric zone in {text!r}"


def test_1kb():
    with relay_with_sink() as (relay, sink):
        _send_and_check(relay, sink, h.make_message(1024, tag="1k"))


def test_1mb():
    with relay_with_sink() as (relay, sink):
        _send_and_check(relay, sink, h.make_message(1048576, tag="1m"))


@h.timeout(90)
def test_10mib_plus_1():
    with relay_with_sink() as (relay, sink):
        msg = h.make_message(10 * 1048576 + 1, tag="10m1")
        assert len(msg) == 10485761
        _send_and_check(relay, sink, msg, timeout=60)


def test_small_bodies_go_from_memory_others_from_the_spool():
    """Bodies up to 16 KiB go upstream from memory (one send with the
    Received header and the terminator), longer ones and every retry after
    a deferral are read back from the spool: all arrive exact, dot-lines
    included. The debug log names the path each body took."""
    dotted = (b"Subject: dots\r\n\r\n.\r\n..x\r\n" + b"line\r\n" * 20 + b".\r\n")
    cases = [("mem", h.make_message(1024, tag="mem1k"), "memory"),
             ("dotted", dotted, "memory"),
             ("15k", h.make_message(15 * 1024, tag="mem15k"), "memory"),
             ("over", h.make_message(16 * 1024 + 100, tag="spool16k"), "the spool")]
    with relay_with_sink(config={"log": {"level": "debug"}}) as (relay, sink):
        for i, (name, msg, path) in enumerate(cases):
            qid, _ = _send_and_check(relay, sink, msg, n_before=i)
            _wait_for_log(relay, f"upstream body from {path} id={qid}", name)
    with relay_with_sink(sink_kwargs={"policy": h.fail_first(1)},
                         config={"log": {"level": "debug"}}) as (relay, sink):
        msg = h.make_message(2000, tag="retried")
        qid = h.smtplib_send(relay, h.SENDER, [h.rcpt()], msg)
        m = sink.wait_for(1, timeout=30)[0]
        h.assert_delivered(m, h.smtplib_content(msg), mail_from=h.SENDER, rcpts=[h.rcpt()])
        assert [a.code for a in sink.attempts] == [451, 250], sink.summary()
        _wait_for_log(relay, f"upstream body from memory id={qid}", "first attempt")
        _wait_for_log(relay, f"upstream body from the spool id={qid}", "retry")


def test_a_copy_budget_of_zero_sends_every_body_from_the_spool():
    """io.body_copy_budget 0 keeps no body in memory: even a 1 KB message
    goes upstream from the spool on its first attempt, and arrives exact."""
    config = {"log": {"level": "debug"}, "io": {"body_copy_budget": 0}}
    with relay_with_sink(config=config) as (relay, sink):
        qid, _ = _send_and_check(relay, sink, h.make_message(1024, tag="nocopy"))
        _wait_for_log(relay, f"upstream body from the spool id={qid}", "budget 0")
        assert f"upstream body from memory id={qid}" not in relay.log_text(), \
            "a body went from memory with a copy budget of 0"


def test_queued_messages_are_pipelined_behind_the_end_of_data():
    """With one upstream connection and a slow final reply, messages wait
    in the queue; each next one's MAIL/RCPT/DATA goes out right behind the
    previous end of data (RFC 2920 3.1). All arrive exact, over one
    connection, and each reply stays with its own message: the one refused
    with 451 at its end of data is retried alone."""
    refused = []

    def policy(txn):
        if h.message_tag(h.split_received(txn.data)[1]) == "pipe3" and not refused:
            refused.append(txn)
            return (451, "4.3.0 Try again")
        return None

    with relay_with_sink(sink_kwargs={"reply_delay": 0.2, "policy": policy},
                         config={"log": {"level": "debug"},
                                 "delivery": {"connections_per_host": 1}}) as (relay, sink):
        msgs = [h.make_message(800 + 300 * i, tag=f"pipe{i}") for i in range(8)]
        c = relay.client()
        for i, m in enumerate(msgs):
            assert_queued(c.send_message(h.SENDER, [h.rcpt(i)], m))
        _check_multiset(sink, msgs, lambda i: {h.rcpt(i)})
        assert len({a.conn for a in sink.attempts}) == 1, sink.summary()
        assert [a.code for a in sink.attempts].count(451) == 1, sink.summary()
        _wait_for_log(relay, "pipelined behind id=", "pipelining")


def test_an_idle_connection_closed_with_quit_is_not_a_failed_host():
    """A pool connection that becomes ready after the others have taken
    every job carries no mail, idles, and is closed with QUIT. That is no
    failure: the relay host must not rest, so the next message goes out at
    once (ringrelay 9a17b99 counted such a connection as a failed host and
    stopped delivering for a minute and more)."""
    # The first final reply comes 0.5 s late, so the second message finds
    # the first connection busy and a second one is opened; its greeting
    # comes after both messages went over the first.
    with relay_with_sink(sink_kwargs={"greeting_delay": lambda n: 1.5 if n > 1 else 0,
                                      "reply_delay": 0.5},
                         config={"delivery": {"connections_per_host": 2}}) as (relay, sink):
        c = relay.client()
        first = [h.make_message(900 + 100 * i, tag=f"idle{i}") for i in range(2)]
        for i, m in enumerate(first):
            assert_queued(c.send_message(h.SENDER, [h.rcpt(i)], m))
        _check_multiset(sink, first, lambda i: {h.rcpt(i)})
        carried = {a.conn for a in sink.attempts}

        def idle_quits():
            found = (re.match(r"\S+ \[(\d+)\] >>> QUIT", line)
                     for line in sink.transcript_tail(400).splitlines())
            return {int(m[1]) for m in found if m} - carried

        deadline = time.monotonic() + 20
        while not idle_quits():
            assert time.monotonic() < deadline, (
                f"no connection without mail was closed with QUIT (mail went over {carried}):\n"
                f"{sink.transcript_tail(60)}")
            time.sleep(0.1)
        time.sleep(0.5)
        assert "unreachable" not in relay.log_text(), relay.log_tail()
        late = h.make_message(1500, tag="idle-late")
        assert_queued(c.send_message(h.SENDER, [h.rcpt(9)], late))
        sink.wait_for(3, timeout=10)
        assert "unreachable" not in relay.log_text(), relay.log_tail()


def _wait_for_log(relay, text: str, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while text.lower() not in relay.log_text().lower():
        assert time.monotonic() < deadline, f"{what}: no log line {text!r}\n{relay.log_tail()}"
        time.sleep(0.05)


def test_dot_lines():
    """Lines ".", "..", ".x" (first, middle and last) survive both hops' dot-stuffing."""
    with relay_with_sink() as (relay, sink):
        variants = [
            b".\r\n..\r\n.x\r\n",                                   # dot lines at the very start
            b"Subject: dots\r\n\r\nbefore\r\n.\r\nafter\r\n..\r\n.x\r\n...\r\n. \r\n.\r\n",
            b"Subject: dot last\r\n\r\ntext\r\n..\r\n",
            b"Subject: dotty\r\n\r\n" + b"".join(b"." * i + b"\r\n" for i in range(1, 12)),
        ]
        for i, v in enumerate(variants):  # via smtplib (it stuffs)
            _send_and_check(relay, sink, v, n_before=i)
        c = relay.client()                # via raw bytes, stuffed by us
        for i, v in enumerate(variants):
            assert_queued(c.send_message(h.SENDER, [h.rcpt()], v))
            m = sink.wait_for(len(variants) + i + 1)[len(variants) + i]
            h.assert_delivered(m, v)


def test_8bit_content():
    with relay_with_sink() as (relay, sink):
        msg = h.make_8bit_message()
        _, m = _send_and_check(relay, sink, msg, mail_options=["BODY=8BITMIME"])
        params = [p.upper() for p in m.mail_params]
        assert "BODY=8BITMIME" in params, f"upstream MAIL lacks BODY=8BITMIME: {m.mail_params}"


def test_smtputf8_envelope():
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        sender = f"jörg.müller@{h.SENDER_DOMAIN}"
        to = f"日本@{h.RCPT_DOMAIN}"
        content = ("From: Jörg <" + sender + ">\r\nTo: <" + to + ">\r\nSubject: Grüße\r\n\r\nÜmlaut\r\n").encode()
        r = c.send_message(sender, [to], content, params="SMTPUTF8 BODY=8BITMIME")
        assert_queued(r)
        m = sink.wait_for(1)[0]
        h.assert_delivered(m, content, mail_from=sender, rcpts=[to])
        assert "SMTPUTF8" in [p.upper() for p in m.mail_params], f"upstream MAIL lacks SMTPUTF8: {m.mail_params}"


def test_text_line_exactly_1000():
    """A text line of exactly 1000 octets including CRLF is accepted; the
    dot added for transparency does not count (RFC 5321 4.5.3.1.6)."""
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        plain = b"Subject: long line\r\n\r\n" + b"L" * 998 + b"\r\n"
        r = c.send_message(h.SENDER, [h.rcpt()], plain)
        assert_queued(r, "a 1000-octet line (998 + CRLF)")
        h.assert_delivered(sink.wait_for(1)[0], plain)
        dotted = b"Subject: long dot line\r\n\r\n." + b"d" * 997 + b"\r\n"
        r = c.send_message(h.SENDER, [h.rcpt()], dotted)  # 1001 octets on the wire, stuffed
        assert_queued(r, "a 1000-octet line starting with '.' (1001 on the wire with the "
                         "transparency dot, which RFC 5321 4.5.3.1.6 says not to count)")
        h.assert_delivered(sink.wait_for(2)[1], dotted)


def _bdat_content():
    return (b"Subject: bdat chunks\r\n\r\n"
            b".\r\n..\r\n.x\r\n"
            b"a line\r\n.\r\n"                  # CRLF.CRLF inside a chunk: not an end
            b"split CR|LF here\r\n"
            + h.make_message(70000, tag="bdat-part")
            + b"tail\r\n.\r\n")


def _bdat_chunks(content: bytes):
    i = content.index(b"|LF here\r") + len(b"|LF here\r")  # chunk ends between CR and LF
    j = content.index(b"a line\r\n.\r\n") + len(b"a line\r\n.")  # ends after the dot
    assert j < i
    return [content[:1], content[1:j], content[j:i], content[i:i + 3], content[i + 3:], b""]


def _check_bdat(chunking_sink: bool):
    with relay_with_sink(sink_kwargs={"chunking": chunking_sink}) as (relay, sink):
        c = relay.client()
        assert "CHUNKING" in c.extensions, "EHLO does not advertise CHUNKING"
        content = _bdat_content()
        chunks = _bdat_chunks(content)
        assert b"".join(chunks) == content
        replies = c.bdat_message(h.SENDER, [h.rcpt()], chunks)
        for r in replies[:-1]:
            assert_reply(r, 250, what="BDAT chunk")
        assert_queued(replies[-1], "BDAT 0 LAST")
        # one chunk with LAST, a second message on the same connection
        single = h.make_message(300000, tag="bdat-single")
        assert_queued(c.bdat_message(h.SENDER, [h.rcpt(1)], [single])[0], "BDAT LAST")
        ms = sink.wait_for(2)
        by_rcpt = {m.rcpts[0]: m for m in ms}
        h.assert_delivered(by_rcpt[h.rcpt()], content, mail_from=h.SENDER, rcpts=[h.rcpt()])
        h.assert_delivered(by_rcpt[h.rcpt(1)], single, rcpts=[h.rcpt(1)])
        return ms


def test_bdat_chunks_to_data_upstream():
    """BDAT in several chunks (split inside CRLF, a CRLF.CRLF inside a
    chunk, BDAT 0 LAST); the sink has no CHUNKING, so ringrelay must
    dot-stuff for DATA upstream."""
    ms = _check_bdat(chunking_sink=False)
    assert all(m.via == "DATA" for m in ms)


def test_bdat_chunks_to_chunking_upstream():
    _check_bdat(chunking_sink=True)


def test_20_pipelined_messages():
    """20 messages on one connection, maximally pipelined with DATA: each
    end of data travels in one write with the next MAIL/RCPT/DATA."""
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        msgs = [h.make_message(500 + 997 * i, tag=f"pipe{i}") for i in range(20)]
        env = lambda i: (f"MAIL FROM:<{h.SENDER}>\r\nRCPT TO:<{h.rcpt(i)}>\r\n"
                         f"RCPT TO:<{h.rcpt(100 + i)}>\r\nDATA\r\n").encode()
        c.send(env(0))
        qids = []
        for i, m in enumerate(msgs):
            rs = c.read_replies(4)
            assert [r.code for r in rs] == [250, 250, 250, 354], f"message {i}: {[str(r) for r in rs]}"
            tail = env(i + 1) if i + 1 < len(msgs) else b"QUIT\r\n"
            c.send(h.data_wire(m) + tail)
            qids.append(assert_queued(c.read_reply(), f"message {i}"))
        assert_reply(c.read_reply(), 221, what="QUIT")
        assert len(set(qids)) == 20, f"queue IDs not unique: {qids}"
        _check_multiset(sink, msgs, lambda i: {h.rcpt(i), h.rcpt(100 + i)})


def test_20_pipelined_messages_bdat():
    """20 BDAT transactions written in a single send, then all replies read."""
    with relay_with_sink() as (relay, sink):
        c = relay.client()
        msgs = [h.make_message(300 + 1500 * i, tag=f"pbdat{i}") for i in range(20)]
        out = b""
        for i, m in enumerate(msgs):
            out += f"MAIL FROM:<{h.SENDER}>\r\nRCPT TO:<{h.rcpt(i)}>\r\n".encode()
            half = len(m) // 2
            out += f"BDAT {half}\r\n".encode() + m[:half] + f"BDAT {len(m) - half} LAST\r\n".encode() + m[half:]
        out += b"QUIT\r\n"
        c.send(out)
        qids = []
        for i in range(20):
            rs = c.read_replies(4)
            assert [r.code for r in rs] == [250, 250, 250, 250], f"message {i}: {[str(r) for r in rs]}"
            qids.append(assert_queued(rs[3], f"message {i}"))
        assert_reply(c.read_reply(), 221, what="QUIT")
        assert len(set(qids)) == 20
        _check_multiset(sink, msgs, lambda i: {h.rcpt(i)})


def _check_multiset(sink, msgs, rcpts_of, timeout=30):
    """Every message arrives once, byte-exact, to its recipients (a message
    may be split into several upstream transactions by recipient)."""
    want = {h.message_tag(m): (m, rcpts_of(i)) for i, m in enumerate(msgs)}
    total_rcpts = sum(len(r) for _, r in want.values())

    def done(ms):
        return sum(len(m.rcpts) for m in ms) >= total_rcpts
    ms = sink.wait_for(1, timeout=timeout, pred=done)
    seen = collections.defaultdict(list)
    for m in ms:
        _, rest = h.split_received(m.data)
        tag = h.message_tag(rest)
        assert tag in want, f"unexpected message delivered: {rest[:200]!r}"
        h.assert_delivered(m, want[tag][0], mail_from=h.SENDER)
        seen[tag].extend(m.rcpts)
    for tag, (_, rc) in want.items():
        assert sorted(seen.get(tag, [])) == sorted(rc), f"{tag}: delivered to {seen.get(tag)}, want {sorted(rc)}"


@h.timeout(120)
def test_50_parallel_connections():
    n = 50
    with relay_with_sink() as (relay, sink):
        msgs = [h.make_message(1000 + 613 * i, tag=f"par{i}") for i in range(n)]
        barrier = threading.Barrier(n, timeout=30)
        qids, errors = [None] * n, []

        def worker(i):
            s = None
            try:
                s = relay.smtplib(timeout=60)
                code, resp = s.ehlo("client.test")
                assert code == 250, f"EHLO {code} {resp!r}"
                barrier.wait()
                code, resp = s.mail(h.SENDER, [f"SIZE={len(msgs[i])}"])
                assert code == 250, f"MAIL {code} {resp!r}"
                code, resp = s.rcpt(h.rcpt(i))
                assert code == 250, f"RCPT {code} {resp!r}"
                code, resp = s.data(msgs[i])
                assert code == 250, f"end of data {code} {resp!r}"
                qids[i] = h.smtplib_queue_id(resp)
                s.quit()
            except BaseException as e:  # noqa: BLE001
                errors.append(f"connection {i}: {type(e).__name__}: {e}")
                barrier.abort()
            finally:
                if s is not None:
                    s.close()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert not errors, f"{len(errors)} connections failed: {errors[:5]}"
        assert len(set(qids)) == n, f"queue IDs not unique: {collections.Counter(qids).most_common(3)}"
        _check_multiset(sink, msgs, lambda i: {h.rcpt(i)}, timeout=60)


# ---------------------------------------------------------------- swaks

def _swaks_template():
    # literal newlines; swaks sends CRLF and appends a final CRLF after %BODY%
    return "From: <%FROM_ADDRESS%>\nTo: <%TO_ADDRESS%>\nSubject: swaks test\n\n%BODY%"


def _swaks_expected(rcpts: str, body: bytes) -> bytes:
    return (f"From: <{h.SENDER}>\r\nTo: <{rcpts}>\r\nSubject: swaks test\r\n\r\n").encode() \
        + body.replace(b"\n", b"\r\n") + b"\r\n"


def test_swaks_basic():
    with relay_with_sink() as (relay, sink):
        body = "Hello from swaks.\n.\n..\n.x\nlast line"
        p = h.swaks(relay, "--from", h.SENDER, "--to", h.rcpt(), "--data", _swaks_template(), "--body", body)
        assert p.returncode == 0, f"swaks failed ({p.returncode}):\n{p.stdout}"
        assert len(h.swaks_queue_ids(p.stdout)) == 1, f"no 'queued as' in swaks output:\n{p.stdout}"
        m = sink.wait_for(1)[0]
        h.assert_delivered(m, _swaks_expected(h.rcpt(), body.encode()), mail_from=h.SENDER, rcpts=[h.rcpt()])


def test_swaks_pipeline_multiple_recipients():
    with relay_with_sink() as (relay, sink):
        to = ",".join(h.rcpt(i) for i in range(3))
        body = "pipelined by swaks"
        p = h.swaks(relay, "--pipeline", "--from", h.SENDER, "--to", to, "--data", _swaks_template(), "--body", body)
        assert p.returncode == 0, f"swaks failed ({p.returncode}):\n{p.stdout}"
        assert "PIPELINING" in p.stdout
        want = {h.rcpt(i) for i in range(3)}
        ms = sink.wait_for(1, pred=lambda ms: set().union(*(set(m.rcpts) for m in ms)) >= want)
        assert sorted(r for m in ms for r in m.rcpts) == sorted(want)
        for m in ms:
            h.assert_delivered(m, _swaks_expected(to, body.encode()), mail_from=h.SENDER)


def test_swaks_body_from_file():
    with relay_with_sink() as (relay, sink), tempfile.TemporaryDirectory() as d:
        lines = [f"line {i} " + "abcdefghij" * (i % 90) for i in range(3000)]
        lines[10], lines[20], lines[30] = ".", "..", ".x"
        lines.append("Grüße, 8-bit: äöü")
        body = "\n".join(lines).encode()
        path = Path(d) / "body.txt"
        path.write_bytes(body)
        p = h.swaks(relay, "--from", h.SENDER, "--to", h.rcpt(), "--data", _swaks_template(),
                    "--body", f"@{path}", "--pipeline", "--suppress-data")
        assert p.returncode == 0, f"swaks failed ({p.returncode}):\n{p.stdout[-3000:]}"
        m = sink.wait_for(1)[0]
        h.assert_delivered(m, _swaks_expected(h.rcpt(), body), mail_from=h.SENDER, rcpts=[h.rcpt()])
