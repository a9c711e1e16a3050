"""Accounts and AUTH on the real binary (SPEC.md §3, issue 3): AUTH PLAIN
(with and without an initial response) and LOGIN from swaks and smtplib,
wrong/unknown/disabled logins, the username-not-email hint, the RFC 4954
error replies, 530 before AUTH, auth.require_tls (538 before STARTTLS,
ESMTPSA inside it), the brute-force limiter (delay, 421, other addresses
unaffected), open-relay tricks, activation delay, sender domains, and
SIGHUP reloads of users.json with sessions open."""
import base64
import contextlib
import datetime
import hashlib
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import time
from pathlib import Path

import harness as h
from harness import assert_reply

CERT_DIR = Path(__file__).resolve().parents[1] / "unit" / "tls"
TLS = {"cert": str(CERT_DIR / "test_cert.pem"), "key": str(CERT_DIR / "test_key.pem")}

PASSWORD = "correct horse battery staple"
OK_535 = "5.7.8 Authentication credentials invalid"
HINT_535 = OK_535 + "; log in with your account's username, not an email address"
AUTH_OK = "2.7.0 Authentication successful"
RFC3339_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"


# --------------------------------------------------------------------------
# accounts

def hash_password(password: str, iterations: int = 1000, salt: bytes = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return (f"pbkdf2-sha256${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(dk).decode()}")


def account(username: str, password: str = PASSWORD, created_at: str = "2020-01-01T00:00:00Z",
            enabled: bool = True, sender_domains=None, daily_quota: int = 1000) -> dict:
    a = {"username": username, "password": hash_password(password), "created_at": created_at,
         "enabled": enabled, "daily_quota": daily_quota, "blocks": 0}
    if sender_domains is not None:
        a["sender_domains"] = list(sender_domains)
    return a


def write_users(path: Path, users: list) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"users": users}, indent=2))
    os.replace(tmp, path)


def DEFAULT_USERS() -> list:
    return [account("acme"),
            account("bob@corp.example", password="bob's password"),
            account("sleepy", enabled=False)]


@contextlib.contextmanager
def auth_relay(users=None, require_tls=False, tls=False, extra_listeners=(), shards=2,
               max_failures=5, failure_window="1m", activation_delay="15m", trusted=()):
    """A sink and a relay with an accounts file (in the relay's directory),
    no trusted networks unless given; yields (relay, sink, users_path)."""
    with h.RecordingSink() as sink:
        with h.Relay(relayhost=sink.address, start=False, shards=shards) as relay:
            users_path = relay.dir / "users.json"
            write_users(users_path, DEFAULT_USERS() if users is None else users)
            relay.config["trusted_networks"] = list(trusted)
            relay.config["accounts"] = {"file": str(users_path),
                                        "activation_delay": activation_delay}
            relay.config["auth"] = {"max_failures": max_failures,
                                    "failure_window": failure_window,
                                    "require_tls": require_tls}
            if tls:
                relay.config["listeners"] = [
                    {"address": relay.host, "port": relay.port, "tls": "starttls"}]
                relay.config["tls"] = TLS
            relay.config["listeners"] += list(extra_listeners)
            relay.start()
            yield relay, sink, users_path


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test certificate is self-signed
    return ctx


class SourceClient(h.SMTPClient):
    """The harness's raw client, connecting from a chosen local address."""

    def __init__(self, host: str, port: int, source: str = "127.0.0.1", timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0))
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.extensions = {}
        self.greeting = None


def connect(relay, source: str = "127.0.0.1", ehlo: str = "client.test",
            timeout: float = 10.0) -> SourceClient:
    c = SourceClient(relay.host, relay.port, source, timeout)
    g = c.read_reply()
    assert g.code == 220, f"greeting: {g}"
    c.greeting = g
    if ehlo:
        assert_ehlo(c.ehlo(ehlo))
    return c


def assert_ehlo(r: h.Reply) -> h.Reply:
    assert r.code == 250, f"EHLO: {r}"
    return r


def plain(user: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def exact(reply: h.Reply, code: int, text: str, what: str = "") -> None:
    """The reply is exactly `code text` (one line)."""
    assert reply.code == code and reply.lines == [text], \
        f"{what + ': ' if what else ''}expected '{code} {text}', got '{reply}'"


def auth_plain_ok(c: h.SMTPClient, user: str = "acme", password: str = PASSWORD) -> None:
    exact(c.cmd(f"AUTH PLAIN {plain(user, password)}", timeout=20), 235, AUTH_OK, "AUTH PLAIN")


def auth_lines(ehlo_reply: h.Reply) -> list:
    return [l for l in ehlo_reply.lines[1:] if l.upper().startswith("AUTH")]


def received_of(msg) -> bytes:
    header, _ = h.split_received(msg.data)
    return header


def with_clause(received: bytes) -> bytes:
    m = re.search(rb"\bwith\s+(\S*SMTP\S*)\s", received)
    assert m, f"no 'with' clause in the Received header: {received!r}"
    return m.group(1)


def wait_for_log(relay, needle: str, count: int = 1, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while relay.log_text().count(needle) < count:
        assert time.monotonic() < deadline, \
            f"log line {needle!r} (x{count}) not seen within {timeout}s:\n{relay.log_tail(20)}"
        time.sleep(0.05)


# --------------------------------------------------------------------------
# successful logins

def test_auth_swaks_plain_and_login_deliver_with_esmtpa():
    with auth_relay() as (relay, sink, _):
        for i, mech in enumerate(["PLAIN", "LOGIN"]):
            out = h.swaks(relay, "--auth", mech, "--auth-user", "acme", "--auth-password",
                          PASSWORD, "--from", h.SENDER, "--to", h.rcpt(i),
                          "--header", f"Subject: swaks {mech}")
            assert f"235 {AUTH_OK}" in out.stdout, f"swaks AUTH {mech}:\n{out.stdout[-3000:]}"
            assert len(h.swaks_queue_ids(out.stdout)) == 1, \
                f"swaks AUTH {mech}: not queued:\n{out.stdout[-3000:]}"
            assert out.returncode == 0, f"swaks AUTH {mech} exit {out.returncode}"
        msgs = sink.wait_for(2)
        assert sorted(m.rcpts[0] for m in msgs) == [h.rcpt(0), h.rcpt(1)]
        for m in msgs:
            assert m.mail_from == h.SENDER
            w = with_clause(received_of(m))
            assert w == b"ESMTPA", f"Received says 'with {w.decode()}', expected ESMTPA: " \
                                   f"{received_of(m)!r}"


def test_auth_smtplib_plain_with_and_without_initial_response_and_login():
    with auth_relay() as (relay, sink, _):
        cases = [("PLAIN", True), ("PLAIN", False), ("LOGIN", True), ("LOGIN", False)]
        for i, (mech, initial) in enumerate(cases):
            content = h.make_message(1500, tag=f"smtplib-{mech}-{initial}")
            with relay.smtplib() as s:
                s.ehlo("client.test")
                assert s.has_extn("auth"), "EHLO lacks AUTH"
                mechs = s.esmtp_features["auth"].upper().split()
                assert "PLAIN" in mechs and "LOGIN" in mechs, f"AUTH {mechs}"
                s.user, s.password = "acme", PASSWORD
                obj = s.auth_plain if mech == "PLAIN" else s.auth_login
                code, resp = s.auth(mech, obj, initial_response_ok=initial)
                assert (code, resp.decode()) == (235, AUTH_OK), \
                    f"AUTH {mech} initial={initial}: {code} {resp!r}"
                s.sendmail(h.SENDER, [h.rcpt(i)], content)
            m = sink.wait_for(i + 1)[i]
            h.assert_delivered(m, content, mail_from=h.SENDER, rcpts=[h.rcpt(i)])
            assert with_clause(received_of(m)) == b"ESMTPA", received_of(m)


def test_auth_raw_exchanges_challenges_and_empty_initial_response():
    """The wire forms: 'AUTH PLAIN' → '334 ' → response; 'AUTH LOGIN' →
    Username:/Password: challenges; 'AUTH LOGIN <user>' → Password:; the
    mechanism name is case-insensitive; 'AUTH PLAIN =' is an empty initial
    response (RFC 4954 §4), which is malformed for PLAIN."""
    with auth_relay() as (relay, sink, _):
        c = connect(relay)
        r = c.cmd("AUTH PLAIN")
        assert r.code == 334 and r.lines == [""], f"AUTH PLAIN without a response: {r}"
        exact(c.cmd(plain("acme", PASSWORD)), 235, AUTH_OK)
        c.close()

        c = connect(relay)
        exact(c.cmd("AUTH LOGIN"), 334, "VXNlcm5hbWU6", "AUTH LOGIN")
        exact(c.cmd(b64("acme")), 334, "UGFzc3dvcmQ6", "LOGIN username")
        exact(c.cmd(b64(PASSWORD)), 235, AUTH_OK, "LOGIN password")
        c.close()

        c = connect(relay)
        exact(c.cmd(f"auth login {b64('acme')}"), 334, "UGFzc3dvcmQ6", "AUTH LOGIN <user>")
        exact(c.cmd(b64(PASSWORD)), 235, AUTH_OK)
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250, what="MAIL after AUTH")
        c.close()

        c = connect(relay)
        r = c.cmd("AUTH PLAIN =")
        assert_reply(r, 501, "5.5.2", "AUTH PLAIN = (empty PLAIN response)")
        auth_plain_ok(c)  # the session goes on
        c.close()


# --------------------------------------------------------------------------
# failures

def test_auth_wrong_password_unknown_and_disabled_user_same_535():
    with auth_relay() as (relay, sink, _):
        cases = [("acme", "wrong password"), ("nosuchuser", PASSWORD), ("sleepy", PASSWORD)]
        for user, pw in cases:
            c = connect(relay, source="127.0.0.7")
            exact(c.cmd(f"AUTH PLAIN {plain(user, pw)}", timeout=20), 535, OK_535,
                  f"PLAIN {user}/{pw}")
            # Still not authenticated: MAIL needs AUTH, a right login works.
            exact(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 530, "5.7.0 Authentication required",
                  "MAIL after a failed AUTH")
            c.close()
        for user, pw in cases:
            c = connect(relay, source="127.0.0.8")
            exact(c.cmd("AUTH LOGIN"), 334, "VXNlcm5hbWU6")
            exact(c.cmd(b64(user)), 334, "UGFzc3dvcmQ6")
            exact(c.cmd(b64(pw), timeout=20), 535, OK_535, f"LOGIN {user}/{pw}")
            c.close()
        # The disabled account's password is right: it is the flag that refuses it.
        c = connect(relay, source="127.0.0.9")
        auth_plain_ok(c)
        c.close()
        sink.assert_no_messages(0.2)


def test_auth_email_login_gets_the_username_hint():
    with auth_relay() as (relay, sink, _):
        c = connect(relay, source="127.0.0.10")
        # An email address that is no account: the hint.
        exact(c.cmd(f"AUTH PLAIN {plain('acme@acme.example', PASSWORD)}", timeout=20),
              535, HINT_535, "PLAIN with an email address")
        exact(c.cmd("AUTH LOGIN"), 334, "VXNlcm5hbWU6")
        exact(c.cmd(b64("ops@acme.example")), 334, "UGFzc3dvcmQ6")
        exact(c.cmd(b64(PASSWORD), timeout=20), 535, HINT_535, "LOGIN with an email address")
        c.close()
        c = connect(relay, source="127.0.0.11")
        # An account whose username contains "@": a wrong password gets no hint
        # (the login is right), and the right one logs in.
        exact(c.cmd(f"AUTH PLAIN {plain('bob@corp.example', 'nope')}", timeout=20), 535, OK_535,
              "wrong password of the account 'bob@corp.example'")
        exact(c.cmd(f"AUTH PLAIN {plain('bob@corp.example', 'bob' + chr(39) + 's password')}",
                    timeout=20), 235, AUTH_OK, "account with '@' in its username")
        c.close()


def test_auth_cancel_with_star():
    with auth_relay() as (relay, sink, _):
        c = connect(relay)
        assert c.cmd("AUTH PLAIN").code == 334
        assert_reply(c.cmd("*"), 501, "5.7.0", "PLAIN cancelled")
        exact(c.cmd("AUTH LOGIN"), 334, "VXNlcm5hbWU6")
        exact(c.cmd(b64("acme")), 334, "UGFzc3dvcmQ6")
        assert_reply(c.cmd("*"), 501, "5.7.0", "LOGIN cancelled at the password")
        assert_reply(c.cmd("AUTH PLAIN *"), 501, "5.7.0", "'*' as the initial response")
        # Cancelling is not authenticating, and the session goes on.
        exact(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 530, "5.7.0 Authentication required")
        auth_plain_ok(c)
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250)
        c.close()


def test_auth_bad_base64_and_malformed_responses():
    with auth_relay() as (relay, sink, _):
        c = connect(relay)
        bad = [
            "AUTH PLAIN !!!notbase64!!!",
            "AUTH PLAIN " + plain("acme", PASSWORD).rstrip("="),   # padding removed
            "AUTH PLAIN " + plain("acme", PASSWORD)[:8] + " " + plain("acme", PASSWORD)[8:],
            "AUTH LOGIN ****",
        ]
        for line in bad:
            assert_reply(c.cmd(line), 501, "5.5.2", line[:60])
        assert c.cmd("AUTH PLAIN").code == 334
        assert_reply(c.cmd("%%%"), 501, "5.5.2", "bad base64 after 334")
        exact(c.cmd("AUTH LOGIN"), 334, "VXNlcm5hbWU6")
        assert_reply(c.cmd("dXNlcg=x"), 501, "5.5.2", "bad base64 LOGIN username")
        # Decodes, but is not "[authzid] NUL user NUL password".
        assert_reply(c.cmd("AUTH PLAIN " + b64("acme " + PASSWORD)), 501, "5.5.2",
                     "PLAIN without NULs")
        assert_reply(c.cmd("AUTH PLAIN " + plain("acme", "")), 501, "5.5.2",
                     "PLAIN with an empty password")
        # None of that authenticated; a good login still works.
        exact(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 530, "5.7.0 Authentication required")
        auth_plain_ok(c)
        c.close()


def test_auth_unknown_mechanism_504():
    with auth_relay() as (relay, sink, _):
        c = connect(relay)
        for line in ["AUTH CRAM-MD5", "AUTH XOAUTH2 dXNlcj1hY21l", "AUTH SCRAM-SHA-256",
                     "AUTH PLAINX " + plain("acme", PASSWORD)]:
            assert_reply(c.cmd(line), 504, "5.5.4", line)
        r = c.cmd("AUTH")
        assert r.code in (501, 504) and r.enhanced and r.enhanced.startswith("5.5."), \
            f"AUTH without a mechanism: {r}"
        auth_plain_ok(c)
        c.close()


def test_auth_twice_is_refused():
    with auth_relay() as (relay, sink, _):
        c = connect(relay)
        auth_plain_ok(c)
        assert_reply(c.cmd(f"AUTH PLAIN {plain('acme', PASSWORD)}"), 503, "5.5.1", "second AUTH")
        assert_reply(c.cmd("AUTH LOGIN"), 503, "5.5.1", "second AUTH (LOGIN)")
        # Still authenticated as acme, and the message goes through.
        content = h.make_message(800, tag="after-second-auth")
        h.assert_queued(c.send_message(h.SENDER, [h.rcpt()], content))
        h.assert_delivered(sink.wait_for(1)[0], content)
        c.close()


def test_auth_inside_a_transaction_is_refused():
    # A trusted client can open a transaction without AUTH.
    with auth_relay(trusted=["127.0.0.0/8"]) as (relay, sink, _):
        c = connect(relay)
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250, what="MAIL from a trusted client")
        assert_reply(c.cmd(f"AUTH PLAIN {plain('acme', PASSWORD)}"), 503, "5.5.1",
                     "AUTH after MAIL")
        assert_reply(c.cmd(f"RCPT TO:<{h.rcpt()}>"), 250, what="RCPT (transaction still open)")
        assert_reply(c.cmd("AUTH LOGIN"), 503, "5.5.1", "AUTH after RCPT")
        assert_reply(c.cmd("RSET"), 250)
        auth_plain_ok(c)  # outside a transaction it works
        c.close()
    # Authenticated, then MAIL, then AUTH: refused too (and the transaction
    # is not disturbed).
    with auth_relay() as (relay, sink, _):
        c = connect(relay)
        auth_plain_ok(c)
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250)
        assert_reply(c.cmd(f"AUTH PLAIN {plain('acme', PASSWORD)}"), 503, "5.5.1")
        assert_reply(c.cmd(f"RCPT TO:<{h.rcpt()}>"), 250)
        c.close()


def test_auth_before_ehlo_and_after_helo_is_503():
    with auth_relay() as (relay, sink, _):
        c = connect(relay, ehlo=None)
        assert_reply(c.cmd(f"AUTH PLAIN {plain('acme', PASSWORD)}"), 503, "5.5.1", "AUTH before EHLO")
        assert c.cmd("HELO client.test").code == 250
        assert_reply(c.cmd(f"AUTH PLAIN {plain('acme', PASSWORD)}"), 503, "5.5.1", "AUTH after HELO")
        assert_ehlo(c.ehlo())
        auth_plain_ok(c)
        c.close()


def test_auth_over_long_lines_500_5_5_6():
    with auth_relay() as (relay, sink, _):
        c = connect(relay)
        # Longer than a command line (512) but within RFC 4954's 12288: a
        # normal exchange (here a wrong, long password → 535).
        long_pw = "p" * 6000
        line = f"AUTH PLAIN {plain('acme', long_pw)}"
        assert 512 < len(line) + 2 <= 12288
        exact(c.cmd(line, timeout=20), 535, OK_535, "a 8 KB AUTH line")
        # A response line over 12288 octets after 334.
        assert c.cmd("AUTH PLAIN").code == 334
        assert_reply(c.cmd("A" * 12300), 500, "5.5.6", "response line over 12288 octets")
        # The session is still in sync.
        assert_reply(c.cmd("NOOP"), 250, what="NOOP after the over-long line")
        # The AUTH command line itself over 12288 octets.
        assert_reply(c.cmd("AUTH PLAIN " + "A" * 12300), 500, "5.5.6",
                     "AUTH command line over 12288 octets")
        assert_reply(c.cmd("NOOP"), 250, what="NOOP after the over-long AUTH")
        auth_plain_ok(c)
        c.close()


def test_auth_mail_before_auth_is_530():
    with auth_relay() as (relay, sink, _):
        c = connect(relay)
        assert "AUTH" in c.extensions and set(c.extensions["AUTH"].upper().split()) >= {
            "PLAIN", "LOGIN"}, f"EHLO does not advertise AUTH PLAIN LOGIN: {c.extensions}"
        exact(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 530, "5.7.0 Authentication required")
        exact(c.cmd("MAIL FROM:<>"), 530, "5.7.0 Authentication required", "null sender")
        r = c.cmd(f"RCPT TO:<{h.rcpt()}>")
        assert r.code == 503, f"RCPT without a transaction: {r}"
        c.close()
        with relay.smtplib() as s:
            s.ehlo("client.test")
            code, resp = s.mail(h.SENDER)
            assert (code, resp.decode()) == (530, "5.7.0 Authentication required"), (code, resp)
        sink.assert_no_messages(0.3)


# --------------------------------------------------------------------------
# auth.require_tls

def test_auth_require_tls_538_before_starttls_then_esmtpsa():
    with auth_relay(require_tls=True, tls=True) as (relay, sink, _):
        c = connect(relay)
        ehlo = c.cmd("EHLO client.test")
        assert "STARTTLS" in [l.upper() for l in ehlo.lines[1:]], f"no STARTTLS: {ehlo}"
        assert auth_lines(ehlo) == [], f"AUTH advertised before TLS with require_tls: {ehlo}"
        exact(c.cmd(f"AUTH PLAIN {plain('acme', PASSWORD)}"), 538,
              "5.7.11 Encryption required for requested authentication mechanism; "
              "use STARTTLS first", "AUTH before TLS")
        assert_reply(c.cmd("AUTH LOGIN"), 538, "5.7.11")
        exact(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 530, "5.7.0 Authentication required")
        c.close()

        content = h.make_message(2500, tag="require-tls")
        with relay.smtplib() as s:
            s.ehlo("client.test")
            code, _ = s.starttls(context=client_context())
            assert code == 220
            s.ehlo("client.test")
            assert s.has_extn("auth"), "AUTH not advertised inside TLS"
            assert set(s.esmtp_features["auth"].upper().split()) >= {"PLAIN", "LOGIN"}
            code, resp = s.login("acme", PASSWORD)
            assert (code, resp.decode()) == (235, AUTH_OK), (code, resp)
            s.sendmail(h.SENDER, [h.rcpt()], content)
        m = sink.wait_for(1)[0]
        h.assert_delivered(m, content)
        rec = received_of(m)
        assert with_clause(rec) == b"ESMTPSA", f"expected 'with ESMTPSA': {rec!r}"
        assert b"TLSv1." in rec, f"TLS version missing: {rec!r}"

        # swaks with STARTTLS and AUTH LOGIN.
        out = h.swaks(relay, "--tls", "--auth", "LOGIN", "--auth-user", "acme",
                      "--auth-password", PASSWORD, "--from", h.SENDER, "--to", h.rcpt(1))
        assert len(h.swaks_queue_ids(out.stdout)) == 1, out.stdout[-3000:]
        m = sink.wait_for(2)[1]
        assert with_clause(received_of(m)) == b"ESMTPSA", received_of(m)


def test_auth_require_tls_false_offers_auth_before_and_after_tls():
    with auth_relay(require_tls=False, tls=True) as (relay, sink, _):
        c = connect(relay)
        ehlo = c.cmd("EHLO client.test")
        assert auth_lines(ehlo) == ["AUTH PLAIN LOGIN"], f"EHLO before TLS: {ehlo}"
        auth_plain_ok(c)
        content = h.make_message(900, tag="plain-auth")
        h.assert_queued(c.send_message(h.SENDER, [h.rcpt()], content))
        c.close()
        assert with_clause(received_of(sink.wait_for(1)[0])) == b"ESMTPA"
        with relay.smtplib() as s:
            s.ehlo("client.test")
            s.starttls(context=client_context())
            s.ehlo("client.test")
            assert s.has_extn("auth")
            s.login("acme", PASSWORD)
            s.sendmail(h.SENDER, [h.rcpt(1)], content)
        assert with_clause(received_of(sink.wait_for(2)[1])) == b"ESMTPSA"


# --------------------------------------------------------------------------
# brute force

def _fail(c: h.SMTPClient, n: int) -> tuple:
    """One wrong-password AUTH; returns (reply, seconds it took)."""
    t0 = time.monotonic()
    r = c.cmd(f"AUTH PLAIN {plain('acme', f'guess-{n}')}", timeout=40)
    return r, time.monotonic() - t0


@h.timeout(120)
def test_auth_brute_force_delays_then_blocks_only_that_address():
    # One shard, so every connection meets the same limiter (see the
    # cross-shard test below for several shards).
    with auth_relay(shards=1, max_failures=6, failure_window="1m") as (relay, sink, _):
        c = connect(relay, source="127.0.0.5")
        times = []
        for n in range(1, 6):  # failures 1..5: 3 free, then 1 s, then 2 s
            r, dt = _fail(c, n)
            exact(r, 535, OK_535, f"failure {n}")
            times.append(dt)
        h.note(f"535 reply times {[round(t, 2) for t in times]}")
        assert times[3] >= 0.9, f"the 4th failure was not delayed (~1 s): {times}"
        assert times[4] >= 1.8, f"the 5th failure was not delayed (~2 s): {times}"
        assert max(times) < 10, f"a 535 took too long: {times}"
        # Meanwhile another address is not slowed or blocked.
        t0 = time.monotonic()
        other = connect(relay, source="127.0.0.6")
        auth_plain_ok(other)
        assert time.monotonic() - t0 < 10, "127.0.0.6 was slowed down"
        # The 6th failure (= max_failures): 421 4.7.0 and the connection closes.
        r, _ = _fail(c, 6)
        assert_reply(r, 421, "4.7.0", "6th failure")
        assert "Too many failed authentication attempts" in r.text, r
        assert c.closed_by_server(5), "the connection stayed open after 421"
        c.close()
        # While blocked, AUTH from that address gets 421 at once, even with
        # the right password, on a new connection.
        for mech_line in [f"AUTH PLAIN {plain('acme', PASSWORD)}", "AUTH PLAIN"]:
            c = connect(relay, source="127.0.0.5")
            t0 = time.monotonic()
            if mech_line == "AUTH PLAIN":
                assert c.cmd(mech_line).code == 334
                r = c.cmd(plain("acme", PASSWORD))
            else:
                r = c.cmd(mech_line)
            assert_reply(r, 421, "4.7.0", "AUTH from a blocked address")
            assert "Too many failed authentication attempts" in r.text, r
            assert time.monotonic() - t0 < 5, "the 421 for a blocked address was delayed"
            assert c.closed_by_server(5), "the connection stayed open after 421"
            c.close()
        # 127.0.0.6: its session still works and it can send; a fresh
        # connection from it authenticates at once and sends too.
        content = h.make_message(700, tag="not-blocked")
        h.assert_queued(other.send_message(h.SENDER, [h.rcpt()], content))
        other.close()
        t0 = time.monotonic()
        fresh = connect(relay, source="127.0.0.6")
        auth_plain_ok(fresh)
        h.assert_queued(fresh.send_message(h.SENDER, [h.rcpt(1)], content))
        assert time.monotonic() - t0 < 10
        fresh.close()
        assert len(sink.wait_for(2)) == 2


@h.timeout(120)
def test_auth_brute_force_block_holds_on_every_shard():
    """SPEC §3: repeated failures from one address are refused (421 4.7.0).
    The block must hold for the address, whichever shard the kernel hands
    its next connections to (SO_REUSEPORT spreads them by 4-tuple hash).
    Also counts how many wrong passwords an attacker gets in total: no more
    than auth.max_failures per window."""
    with auth_relay(shards=4, max_failures=4, failure_window="1m") as (relay, sink, _):
        guesses, refused_at_once = 0, 0
        blocked_seen = False
        # An attacker: one guess per connection, always reconnecting.
        for n in range(24):
            c = connect(relay, source="127.0.0.5")
            r, _ = _fail(c, n)
            c.close()
            if r.code == 535:
                guesses += 1
            else:
                assert_reply(r, 421, "4.7.0", f"guess {n}")
                blocked_seen = True
                refused_at_once += 1
        assert blocked_seen, "never blocked"
        assert guesses < 4, (
            f"127.0.0.5 got {guesses} wrong-password replies (535) over 24 connections with "
            f"auth.max_failures=4 and 4 shards: the failure count is per shard, so an address "
            f"gets up to shards x max_failures guesses, and is not blocked on the other shards")
        # And after the block, the right password from that address is refused
        # on every connection.
        logged_in = 0
        for _ in range(8):
            c = connect(relay, source="127.0.0.5")
            r = c.cmd(f"AUTH PLAIN {plain('acme', PASSWORD)}", timeout=30)
            c.close()
            if r.code == 235:
                logged_in += 1
        assert logged_in == 0, f"a blocked address logged in on {logged_in} of 8 connections"


@h.timeout(120)
def test_auth_brute_force_parallel_guesses_cannot_bypass_the_block():
    """Guesses sent on many connections at once are all verified before the
    first failure is counted; once the address is blocked, none of them
    (a right password included) may be answered 235."""
    slow = dict(account("acme"), password=hash_password(PASSWORD, 100000))
    with auth_relay(users=[slow], shards=1, max_failures=5) as (relay, sink, _):
        n = 30
        conns = [connect(relay, source="127.0.0.5") for _ in range(n)]
        for i, c in enumerate(conns):
            pw = PASSWORD if i == n - 1 else f"guess-{i}"
            c.send(f"AUTH PLAIN {plain('acme', pw)}\r\n")
        codes = []
        for c in conns:
            codes.append(c.read_reply(timeout=60).code)
            c.close()
        h.note(f"replies to {n} parallel guesses: {codes}")
        assert all(code in (535, 421, 235) for code in codes), codes
        assert codes.count(535) <= 4, f"more than max_failures-1 guesses answered 535: {codes}"
        assert codes[-1] != 235, (
            f"a right password sent by a blocked address was accepted (235) because the "
            f"block is checked only before verification; replies: {codes}")


def test_auth_pipelined_commands_behind_auth():
    """A client may pipeline commands behind AUTH (here in one write); they
    must wait for the (asynchronous) verification and then run, and the
    shard must go on serving others."""
    slow = dict(account("piper"), password=hash_password(PASSWORD, 20000))
    with auth_relay(users=[slow, account("acme")], shards=1) as (relay, sink, _):
        try:
            c = connect(relay)
            c.send(f"AUTH PLAIN {plain('piper', PASSWORD)}\r\nMAIL FROM:<{h.SENDER}>\r\n"
                   f"RCPT TO:<{h.rcpt()}>\r\nDATA\r\n")
            try:
                rs = c.read_replies(4, timeout=10)
            except h.ReplyTimeout as e:
                raise AssertionError(
                    "no reply within 10 s to 'AUTH PLAIN <right password>' + MAIL + RCPT + DATA "
                    f"sent in one write (the shard stops serving everyone): {e}") from None
            exact(rs[0], 235, AUTH_OK, "pipelined AUTH")
            assert [r.code for r in rs[1:]] == [250, 250, 354], [str(r) for r in rs]
            content = h.make_message(700, tag="pipelined-auth")
            c.send(h.data_wire(content))
            h.assert_queued(c.read_reply(timeout=10))
            c.close()
            c = connect(relay, source="127.0.0.16")
            c.send(f"AUTH PLAIN {plain('piper', 'wrong')}\r\nMAIL FROM:<{h.SENDER}>\r\nNOOP\r\n")
            rs = c.read_replies(3, timeout=10)
            exact(rs[0], 535, OK_535, "pipelined failing AUTH")
            exact(rs[1], 530, "5.7.0 Authentication required", "MAIL behind a failed AUTH")
            assert_reply(rs[2], 250, what="NOOP")
            c.close()
            c = connect(relay)
            auth_plain_ok(c, "acme")  # the shard still serves
            c.close()
            h.assert_delivered(sink.wait_for(1)[0], content)
        except BaseException:
            relay.kill()  # a wedged shard does not stop on SIGTERM
            raise


def test_auth_starttls_discards_a_plaintext_login():
    """RFC 3207 4.2: after STARTTLS the server discards what it learnt from
    the client before TLS. A login made in the clear must not carry over
    into the TLS session (else the Received header also claims ESMTPSA for
    credentials sent in the clear). Refusing STARTTLS after AUTH (503)
    would be acceptable too."""
    with auth_relay(require_tls=False, tls=True) as (relay, sink, _):
        c = connect(relay)
        auth_plain_ok(c)
        r = c.cmd("STARTTLS")
        if r.code == 503:
            c.close()
            return
        assert r.code == 220, f"STARTTLS after AUTH: {r}"
        c.sock = client_context().wrap_socket(c.sock, server_hostname="relay.test")
        assert_ehlo(c.ehlo())
        r = c.cmd(f"MAIL FROM:<{h.SENDER}>")
        exact(r, 530, "5.7.0 Authentication required",
              "MAIL inside TLS after a login made before STARTTLS")
        auth_plain_ok(c)
        c.close()


# --------------------------------------------------------------------------
# open relay

RELAY_TRICKS = [
    '"u@ext.example"@relay.test',
    "u%ext.example@relay.test",
    "@relay.test:u@ext.example",
    "ext.example!u@relay.test",
    "u@ext.example",
    "postmaster@ext.example",
    h.rcpt(),
]


def _try_open_relay(c: h.SMTPClient, rcpt: str, tag: str) -> list:
    """MAIL/RCPT/DATA one by one; returns the replies (asserting none is a
    success); then RSET."""
    out = []
    r = c.cmd(f"MAIL FROM:<{h.SENDER}>")
    exact(r, 530, "5.7.0 Authentication required", f"{tag} MAIL ({rcpt})")
    out.append(r)
    r = c.cmd(f"RCPT TO:<{rcpt}>")
    assert r.code >= 500, f"{tag} RCPT TO:<{rcpt}> without AUTH: {r}"
    out.append(r)
    r = c.cmd("DATA")
    assert r.code >= 500, f"{tag} DATA without AUTH: {r}"
    out.append(r)
    assert_reply(c.cmd("RSET"), 250)
    return out


def test_auth_open_relay_attempts_without_auth_get_530():
    implicit_port, starttls_port = h.free_port(), h.free_port()
    extra = [{"address": "127.0.0.1", "port": implicit_port, "tls": "implicit"},
             {"address": "127.0.0.1", "port": starttls_port, "tls": "starttls"}]
    with auth_relay(tls=True, extra_listeners=extra) as (relay, sink, _):
        # Plain port, EHLO and HELO, one by one.
        c = connect(relay, source="127.0.0.12")
        for rc in RELAY_TRICKS:
            _try_open_relay(c, rc, "EHLO")
        assert c.cmd("HELO client.test").code == 250
        for rc in RELAY_TRICKS:
            _try_open_relay(c, rc, "HELO")
        c.close()
        # Everything pipelined in one write, message included.
        c = connect(relay, source="127.0.0.12")
        for rc in RELAY_TRICKS:
            c.send(f"MAIL FROM:<{h.SENDER}>\r\nRCPT TO:<{rc}>\r\nDATA\r\n"
                   f"Subject: relay test\r\n\r\nbody\r\n.\r\nRSET\r\n")
        c.send("QUIT\r\n")
        seen = []
        with contextlib.suppress(h.ConnectionClosed):
            while True:
                seen.append(c.read_reply())
        c.close()
        text = [str(x) for x in seen]
        assert seen and seen[-1].code == 221, f"pipelined attempts: no 221 at the end: {text}"
        assert not any(r.code in (235, 354) or (r.code == 250 and "queued" in r.text)
                       for r in seen), f"a pipelined relay attempt was accepted: {text}"
        assert sum(r.code == 530 for r in seen) == len(RELAY_TRICKS), \
            f"expected {len(RELAY_TRICKS)} replies 530: {text}"
        # Inside TLS (STARTTLS on another port, and implicit TLS).
        for port in (starttls_port, implicit_port):
            if port == implicit_port:
                s = smtplib.SMTP_SSL("127.0.0.1", port, context=client_context(), timeout=20,
                                     source_address=("127.0.0.13", 0))
                s.ehlo("client.test")
            else:
                s = smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=("127.0.0.13", 0))
                s.ehlo("client.test")
                s.starttls(context=client_context())
                s.ehlo("client.test")
            with s:
                for rc in RELAY_TRICKS:
                    code, resp = s.mail(h.SENDER)
                    assert (code, resp.decode()) == (530, "5.7.0 Authentication required"), \
                        f"port {port} MAIL: {code} {resp!r}"
                    code, resp = s.rcpt(rc)
                    assert code >= 500, f"port {port} RCPT TO:<{rc}>: {code} {resp!r}"
                    code, resp = s.docmd("DATA")
                    assert code >= 500, f"port {port} DATA: {code} {resp!r}"
                    s.rset()
        # swaks (it stops at the 530).
        for rc in RELAY_TRICKS[:4]:
            out = h.swaks(relay, "--from", h.SENDER, "--to", rc)
            assert "530 5.7.0 Authentication required" in out.stdout, out.stdout[-2000:]
            assert not h.swaks_queue_ids(out.stdout), out.stdout[-2000:]
        sink.assert_no_messages(1.0)


def test_auth_without_accounts_file_offers_no_auth_and_relays_nothing():
    """No accounts file: AUTH is not offered (502), and an untrusted client
    still cannot send (530)."""
    with h.RecordingSink() as sink:
        with h.Relay(relayhost=sink.address, start=False) as relay:
            relay.config["trusted_networks"] = []
            relay.config["accounts"] = {"file": str(relay.dir / "missing-users.json")}
            relay.start()
            c = connect(relay, source="127.0.0.17")
            assert "AUTH" not in c.extensions, f"AUTH offered without accounts: {c.extensions}"
            assert_reply(c.cmd(f"AUTH PLAIN {plain('acme', PASSWORD)}"), 502, what="AUTH")
            for rc in RELAY_TRICKS:
                _try_open_relay(c, rc, "no accounts")
            c.close()
            sink.assert_no_messages(0.5)


# --------------------------------------------------------------------------
# activation delay and sender domains

def _rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(s: str) -> float:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def test_auth_activation_delay_451_then_old_account_sends():
    created = time.time() - 60
    users = [account("newbie", created_at=_rfc3339(created)),
             account("veteran", created_at=_rfc3339(time.time() - 16 * 60))]
    with auth_relay(users=users, activation_delay="15m") as (relay, sink, users_path):
        c = connect(relay)
        auth_plain_ok(c, "newbie")  # AUTH itself succeeds
        r = c.cmd(f"MAIL FROM:<{h.SENDER}>")
        assert_reply(r, 451, "4.7.0", "MAIL from a new account")
        m = re.search(r"account newbie becomes active at (" + RFC3339_RE + ")", r.text)
        assert m, f"451 does not say when the account becomes active: {r}"
        at = _parse_rfc3339(m.group(1))
        assert abs(at - (int(created) + 900)) <= 2, \
            f"active at {m.group(1)}, expected created_at + 15 min = {_rfc3339(created + 900)}"
        # Still refused on retry, and RCPT does not slip through.
        assert c.cmd(f"RCPT TO:<{h.rcpt()}>").code >= 500
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 451, "4.7.0", "second MAIL")
        c.close()
        # An account older than the delay sends.
        c = connect(relay)
        auth_plain_ok(c, "veteran")
        content = h.make_message(600, tag="veteran")
        h.assert_queued(c.send_message(h.SENDER, [h.rcpt()], content))
        c.close()
        h.assert_delivered(sink.wait_for(1)[0], content)
        # The same account, created_at moved back past the delay (reload): it sends.
        write_users(users_path, [account("newbie", created_at=_rfc3339(time.time() - 901)),
                                 users[1]])
        relay.proc.send_signal(signal.SIGHUP)
        wait_for_log(relay, "SIGHUP: reloaded")
        c = connect(relay)
        auth_plain_ok(c, "newbie")
        h.assert_queued(c.send_message(h.SENDER, [h.rcpt(1)], content))
        c.close()
        assert len(sink.wait_for(2)) == 2


def test_auth_activation_delay_is_configurable():
    created = time.time() - 120
    users = [account("newbie", created_at=_rfc3339(created))]
    with auth_relay(users=users, activation_delay="1m") as (relay, sink, _):
        c = connect(relay)
        auth_plain_ok(c, "newbie")
        assert_reply(c.cmd(f"MAIL FROM:<{h.SENDER}>"), 250, what="account older than a 1m delay")
        c.close()
    with auth_relay(users=users, activation_delay="1h") as (relay, sink, _):
        c = connect(relay)
        auth_plain_ok(c, "newbie")
        r = c.cmd(f"MAIL FROM:<{h.SENDER}>")
        assert_reply(r, 451, "4.7.0", "account younger than a 1h delay")
        m = re.search(r"becomes active at (" + RFC3339_RE + ")", r.text)
        assert m and abs(_parse_rfc3339(m.group(1)) - (int(created) + 3600)) <= 2, r
        c.close()


def test_auth_sender_domains_550():
    d = h.SENDER_DOMAIN
    users = [account("acme", sender_domains=[d, "mail.acme.example"]), account("free")]
    with auth_relay(users=users) as (relay, sink, _):
        c = connect(relay)
        auth_plain_ok(c, "acme")
        for sender in [f"alice@other-{d}", f"alice@sub.{d}", "alice@acme.example",
                       f"alice@{d}.evil.example"]:
            r = c.cmd(f"MAIL FROM:<{sender}>")
            assert_reply(r, 550, "5.7.1", f"MAIL FROM:<{sender}>")
            dom = sender.split("@")[1]
            assert dom in r.text, f"the 550 does not name the domain {dom}: {r}"
            assert c.cmd(f"RCPT TO:<{h.rcpt()}>").code >= 500, "RCPT after a refused MAIL"
        # Allowed domains (case does not matter).
        assert_reply(c.cmd(f"MAIL FROM:<bob@{d.upper()}>"), 250, what="upper-case domain")
        assert_reply(c.cmd("RSET"), 250)
        content = h.make_message(700, tag="sender-domain")
        h.assert_queued(c.send_message(h.SENDER, [h.rcpt()], content))
        c.close()
        h.assert_delivered(sink.wait_for(1)[0], content, mail_from=h.SENDER)
        # An account without sender_domains may use any.
        c = connect(relay)
        auth_plain_ok(c, "free")
        assert_reply(c.cmd("MAIL FROM:<alice@acme.example>"), 250)
        c.close()


# --------------------------------------------------------------------------
# reload

@h.timeout(90)
def test_auth_reload_users_json_with_sessions_open():
    with auth_relay(users=[account("acme")]) as (relay, sink, users_path):
        # An authenticated session (A) and an unauthenticated one (B), open
        # across every reload below.
        a = connect(relay)
        auth_plain_ok(a)
        b = connect(relay)
        c = connect(relay, source="127.0.0.14")
        exact(c.cmd(f"AUTH PLAIN {plain('newbie', 'new password')}", timeout=20), 535, OK_535,
              "newbie before the reload")
        c.close()

        # 1. Add a user, SIGHUP: the new user authenticates.
        write_users(users_path, [account("acme"), account("newbie", password="new password")])
        relay.proc.send_signal(signal.SIGHUP)
        wait_for_log(relay, "SIGHUP: reloaded", 1)
        assert "(2 accounts)" in relay.log_text(), relay.log_tail(10)
        c = connect(relay)
        auth_plain_ok(c, "newbie", "new password")
        content = h.make_message(900, tag="newbie")
        h.assert_queued(c.send_message(h.SENDER, [h.rcpt(1)], content))
        c.close()
        # Session A keeps working (no drop, still authenticated).
        content_a = h.make_message(800, tag="session-a-1")
        h.assert_queued(a.send_message(h.SENDER, [h.rcpt(0)], content_a))
        # Session B was not authenticated; it can log in as the new user now.
        auth_plain_ok(b, "newbie", "new password")
        assert_reply(b.cmd("RSET"), 250)

        # 2. A broken users.json + SIGHUP: the old table stays.
        users_path.write_text('{"users": [ {"username": "acme", ')
        relay.proc.send_signal(signal.SIGHUP)
        wait_for_log(relay, "keeping the accounts already loaded", 1)
        assert relay.running(), "the relay died on a bad users.json"
        c = connect(relay)
        auth_plain_ok(c, "newbie", "new password")
        c.close()
        c = connect(relay)
        auth_plain_ok(c, "acme")
        c.close()
        content_a2 = h.make_message(800, tag="session-a-2")
        h.assert_queued(a.send_message(h.SENDER, [h.rcpt(2)], content_a2))
        h.assert_queued(b.send_message(h.SENDER, [h.rcpt(3)], content))

        # 3. A valid file with a semantic error (duplicate user) is refused too.
        users_path.write_text(json.dumps({"users": [account("acme"), account("acme")]}))
        relay.proc.send_signal(signal.SIGHUP)
        wait_for_log(relay, "keeping the accounts already loaded", 2)
        c = connect(relay)
        auth_plain_ok(c, "newbie", "new password")
        c.close()

        # 4. Remove newbie and change acme's password: the new table applies
        # to new logins.
        write_users(users_path, [account("acme", password="rotated")])
        relay.proc.send_signal(signal.SIGHUP)
        wait_for_log(relay, "SIGHUP: reloaded", 2)
        c = connect(relay, source="127.0.0.15")
        exact(c.cmd(f"AUTH PLAIN {plain('newbie', 'new password')}", timeout=20), 535, OK_535,
              "removed account")
        exact(c.cmd(f"AUTH PLAIN {plain('acme', PASSWORD)}", timeout=20), 535, OK_535,
              "acme's old password after the change")
        auth_plain_ok(c, "acme", "rotated")
        c.close()
        # Session A (acme) is still open and still sends.
        content_a3 = h.make_message(800, tag="session-a-3")
        h.assert_queued(a.send_message(h.SENDER, [h.rcpt(4)], content_a3))
        a.close()
        b.close()
        msgs = sink.wait_for(5)
        by_rcpt = {m.rcpts[0]: m for m in msgs}
        h.assert_delivered(by_rcpt[h.rcpt(0)], content_a)
        h.assert_delivered(by_rcpt[h.rcpt(2)], content_a2)
        h.assert_delivered(by_rcpt[h.rcpt(4)], content_a3)
        for m in msgs:
            assert with_clause(received_of(m)) == b"ESMTPA", received_of(m)
