"""TLS on the real binary: STARTTLS on every plain port (RFC 3207), implicit
TLS (RFC 8314), the STARTTLS command-injection defence (CVE-2011-0411),
sequence rules, handshake timeout, a TLS close in the middle of DATA, and a
large message over TLS delivered byte-exact."""
import contextlib
import json
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import harness as h
from harness import assert_reply

CERT_DIR = Path(__file__).resolve().parents[1] / "unit" / "tls"
TLS = {"cert": str(CERT_DIR / "test_cert.pem"), "key": str(CERT_DIR / "test_key.pem")}


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test certificate is self-signed
    return ctx


@contextlib.contextmanager
def tls_relay(extra_listeners=(), tls=None, **kw):
    """A relay whose first listener (the one the harness waits on) offers
    STARTTLS, plus extra listeners, and a sink behind it."""
    with h.RecordingSink() as sink:
        with h.Relay(relayhost=sink.address, start=False, **kw) as relay:
            relay.config["listeners"] = [
                {"address": relay.host, "port": relay.port, "tls": "starttls"}, *extra_listeners]
            relay.config["tls"] = TLS if tls is None else tls
            relay.start()
            yield relay, sink


def read_reply(f) -> list:
    lines = []
    while True:
        line = f.readline()
        assert line, "connection closed while waiting for a reply"
        lines.append(line.decode().rstrip("\r\n"))
        if line[3:4] == b" ":
            return lines


def test_starttls_on_each_plain_port_delivers_with_esmtps():
    ports = [h.free_port(), h.free_port()]
    extra = [{"address": "127.0.0.1", "port": p, "tls": "starttls"} for p in ports]
    with tls_relay(extra) as (relay, sink):
        for i, port in enumerate([relay.port, *ports]):
            content = h.make_message(3000, tag=f"starttls-{i}")
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                s.ehlo("client.test")
                assert s.has_extn("starttls"), f"port {port}: EHLO lacks STARTTLS"
                code, _ = s.starttls(context=client_context())
                assert code == 220, f"port {port}: STARTTLS answered {code}"
                s.ehlo("client.test")
                assert not s.has_extn("starttls"), "STARTTLS offered again inside TLS"
                s.sendmail(h.SENDER, [h.rcpt(i)], content)
            m = sink.wait_for(i + 1)[i]
            h.assert_delivered(m, content)
            received, _ = h.split_received(m.data)
            assert b"with ESMTPS" in received and b"TLSv1." in received, \
                f"the Received header does not record TLS: {received!r}"


def test_implicit_tls_greets_inside_tls():
    port = h.free_port()
    with tls_relay([{"address": "127.0.0.1", "port": port, "tls": "implicit"}]) as (relay, sink):
        content = h.make_message(2000, tag="implicit")
        with smtplib.SMTP_SSL("127.0.0.1", port, context=client_context(), timeout=20) as s:
            code, _ = s.ehlo("client.test")
            assert code == 250
            assert not s.has_extn("starttls"), "STARTTLS must not be offered inside implicit TLS"
            s.sendmail(h.SENDER, [h.rcpt()], content)
        h.assert_delivered(sink.wait_for(1)[0], content)
        out = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--tlsc", "--helo",
                              "client.test", "--from", h.SENDER, "--to", h.rcpt(1)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=60)
        assert len(h.swaks_queue_ids(out.stdout)) == 1, out.stdout[-2000:]


def test_starttls_injection_is_discarded():
    """Commands pipelined behind STARTTLS in the same write were sent in the
    clear; they must not run inside the TLS session (RFC 3207 4.2)."""
    with tls_relay() as (relay, sink):
        s = socket.create_connection(relay.address, timeout=10)
        f = s.makefile("rb")
        read_reply(f)
        s.sendall(b"EHLO client.test\r\n")
        read_reply(f)
        s.sendall(b"STARTTLS\r\nMAIL FROM:<" + h.SENDER.encode() + b">\r\n")
        assert read_reply(f)[0].startswith("220 "), "STARTTLS not accepted"
        t = client_context().wrap_socket(s, server_hostname="relay.test")
        tf = t.makefile("rb")
        # After TLS the session starts over: MAIL needs EHLO again, and the
        # injected MAIL must not have opened a transaction.
        t.sendall(b"RCPT TO:<" + h.rcpt().encode() + b">\r\n")
        r = read_reply(tf)
        assert r[0].startswith("503 5.5.1"), f"an injected MAIL survived STARTTLS: {r}"
        t.sendall(b"EHLO client.test\r\nRCPT TO:<" + h.rcpt().encode() + b">\r\n")
        read_reply(tf)
        r = read_reply(tf)
        assert r[0].startswith("503 5.5.1"), f"RCPT after a fresh EHLO must need MAIL: {r}"
        t.close()


def test_starttls_sequence_rules():
    with tls_relay() as (relay, sink):
        c = relay.client()
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250)
        r = c.cmd("STARTTLS")
        assert r.code == 503 and r.enhanced == "5.5.1", f"STARTTLS inside a transaction: {r}"
        c.close()
        with smtplib.SMTP(*relay.address, timeout=10) as s:
            s.ehlo("client.test")
            s.starttls(context=client_context())
            s.ehlo("client.test")
            code, msg = s.docmd("STARTTLS")
            assert code == 503, f"STARTTLS twice: {code} {msg}"


def test_no_certificate_no_starttls():
    with tls_relay(tls={}) as (relay, sink):
        c = relay.client()
        assert "STARTTLS" not in c.extensions, "STARTTLS offered without a certificate"
        r = c.cmd("STARTTLS")
        assert r.code == 502, f"STARTTLS without a certificate: {r}"


def test_stalled_handshake_times_out():
    port = h.free_port()
    listeners = [{"address": "127.0.0.1", "port": port, "tls": "implicit"}]
    with tls_relay(listeners, tls={**TLS, "handshake_timeout": 1}) as (relay, sink):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.settimeout(10)
        start = time.time()
        assert s.recv(100) == b"", "the server sent something before the handshake"
        assert time.time() - start < 9, "a stalled handshake was not closed"
        assert "TLS handshake timed out" in relay.log_text()


def test_tls_close_mid_data_discards_the_message():
    with tls_relay() as (relay, sink):
        s = socket.create_connection(relay.address, timeout=10)
        f = s.makefile("rb")
        read_reply(f)
        s.sendall(b"EHLO client.test\r\nSTARTTLS\r\n")
        read_reply(f)
        read_reply(f)
        t = client_context().wrap_socket(s, server_hostname="relay.test")
        tf = t.makefile("rb")
        t.sendall(b"EHLO client.test\r\n")
        read_reply(tf)
        t.sendall(f"MAIL FROM:<{h.SENDER}>\r\nRCPT TO:<{h.rcpt()}>\r\nDATA\r\n".encode())
        for _ in range(3):
            read_reply(tf)
        t.sendall(b"Subject: cut\r\n\r\npart of a body\r\n")
        t.unwrap()  # close_notify in the middle of DATA
        s.close()
        content = h.make_message(500, tag="after-cut")
        h.smtplib_send(relay, h.SENDER, [h.rcpt()], content)
        m = sink.wait_for(1)[0]
        h.assert_delivered(m, content)
        sink.assert_no_messages(1.0, expect=1)


def test_large_message_over_starttls_is_byte_exact():
    with tls_relay() as (relay, sink):
        content = h.make_message(10 * 1024 * 1024 + 1, tag="tls-big")
        with smtplib.SMTP(*relay.address, timeout=60) as s:
            s.ehlo("client.test")
            s.starttls(context=client_context())
            s.ehlo("client.test")
            s.sendmail(h.SENDER, [h.rcpt()], content)
        h.assert_delivered(sink.wait_for(1, timeout=60)[0], content)


def test_upstream_starttls_is_used_when_offered():
    """Relay A delivers to relay B, which offers STARTTLS: A uses it, and the
    body (spliced on plaintext links) arrives byte-exact through TLS, for a
    DATA body and a raw BDAT body alike."""
    with h.RecordingSink() as sink:
        with h.Relay(relayhost=sink.address, start=False) as b:
            b.config["listeners"] = [{"address": b.host, "port": b.port, "tls": "starttls"}]
            b.config["tls"] = TLS
            b.config["hostname"] = "relay-b.test"
            b.start()
            with h.Relay(relayhost=f"{b.host}:{b.port}") as a:
                data_msg = h.make_message(1024 * 1024 + 7, tag="upstream-tls")
                h.smtplib_send(a, h.SENDER, [h.rcpt()], data_msg)
                c = a.client()
                raw = h.make_message(70000, tag="upstream-tls-bdat")
                replies = c.bdat_message(h.SENDER, [h.rcpt(1)], [raw[:30000], raw[30000:]])
                assert [r.code for r in replies] == [250, 250], [str(r) for r in replies]
                c.close()
                got = sink.wait_for(2, timeout=30)
                by_tag = {h.message_tag(m.data): m for m in got}
                for content in (data_msg, raw):
                    m = by_tag[h.message_tag(content)]
                    first, rest = h.split_received(m.data)
                    assert b"relay-b.test" in first and b"with ESMTPS" in first, \
                        f"B's Received header should record TLS from A: {first!r}"
                    second, body = h.split_received(rest)
                    assert b"relay.test" in second, f"A's Received header missing: {second!r}"
                    h.assert_bytes_equal(body, content)
            assert b.log_text().count("TLS established") >= 1, "A never used STARTTLS to B"


class BrokenTLSUpstream:
    """An upstream that offers STARTTLS, accepts it, then answers the
    ClientHello with garbage. Without STARTTLS it takes mail in plaintext
    and records the MAIL FROM lines it saw."""

    def __init__(self):
        self.host = h.sink_ip()
        self.port = h.free_port(self.host)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, self.port))
        self.sock.listen(16)
        self.handshakes = 0
        self.plain_mails = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 broken.test ESMTP\r\n")
        in_data = False
        for line in f:
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    conn.sendall(b"250 2.0.0 stored\r\n")
                continue
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                conn.sendall(b"250-broken.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            elif cmd == b"STARTTLS":
                conn.sendall(b"220 2.0.0 go ahead\r\n")
                conn.recv(4096)  # the ClientHello
                self.handshakes += 1
                conn.sendall(b"this is not a TLS record\r\n" * 4)
                conn.close()
                return
            elif cmd.startswith(b"MAIL"):
                self.plain_mails.append(line)
                conn.sendall(b"250 2.1.0 ok\r\n")
            elif cmd.startswith(b"RCPT"):
                conn.sendall(b"250 2.1.5 ok\r\n")
            elif cmd == b"DATA":
                in_data = True
                conn.sendall(b"354 go\r\n")
            elif cmd == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                conn.close()
                return
            else:
                conn.sendall(b"250 ok\r\n")

    def close(self):
        self.stop = True
        self.sock.close()


def test_failed_upstream_handshake_defers_unless_fallback_is_configured():
    for fallback in (False, True):
        up = BrokenTLSUpstream()
        try:
            with h.Relay(relayhost=up.address,
                         config={"delivery": {"tls_fallback": fallback}}) as relay:
                h.smtplib_send(relay, h.SENDER, [h.rcpt()], h.make_message(800, tag="broken-tls"))
                deadline = time.time() + 12
                def done():
                    if fallback:
                        return " delivered id=" in relay.log_text()
                    return up.handshakes >= 2
                while time.time() < deadline and not done():
                    time.sleep(0.1)
                log = relay.log_text()
                assert up.handshakes >= 1, "the relay never tried STARTTLS"
                assert "TLS handshake failed" in log, "the failed handshake is not logged"
                if fallback:
                    assert up.plain_mails, "tls_fallback on, yet no plaintext retry"
                    assert " delivered id=" in log, "not delivered after the fallback"
                else:
                    assert not up.plain_mails, "plaintext after a failed handshake"
                    # The message waits in the queue; the host is retried.
                    assert " delivered id=" not in log, "delivered without TLS"
                    assert up.handshakes >= 2, "the host was not retried"
        finally:
            up.close()


def test_an_unreadable_certificate_stops_the_start_naming_the_file():
    """A certificate or key that cannot be read is a configuration error that
    names the key, the file and the reason, not wolfSSL's bare failure."""
    with tempfile.TemporaryDirectory() as d:
        config = Path(d) / "ringrelay.json"
        listeners = [{"address": "127.0.0.1", "port": h.free_port(), "tls": "implicit"}]
        for tls, expected in (
                ({"cert": "/nonexistent/cert.pem", "key": TLS["key"]},
                 "tls.cert /nonexistent/cert.pem: No such file or directory"),
                ({"cert": TLS["cert"], "key": f"{d}/missing-key.pem"},
                 f"tls.key {d}/missing-key.pem: No such file or directory")):
            config.write_text(json.dumps({"listeners": listeners, "tls": tls,
                                          "spool": {"dir": d}}))
            r = subprocess.run([str(h.relay_binary()), "--config", str(config)],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 1, f"exit {r.returncode}; stderr {r.stderr!r}"
            assert expected in r.stderr, f"expected {expected!r} in {r.stderr!r}"
            assert "tools/run makes a self-signed pair" in r.stderr, r.stderr
