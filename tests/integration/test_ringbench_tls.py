"""ringbench with TLS and --rate (issue 6): `ringbench send --starttls` and
`--tls` with AUTH against the real ringrelay (STARTTLS and implicit
listeners, a certificate made here with openssl), delivering into
`ringbench sink` with exact counts and no integrity errors; the sink's own
STARTTLS (ringrelay's delivery upgrades to it) and implicit TLS;
--tls-verify; --rate pacing; and command lines that are refused with a
message saying what to fix.

The ringbench binary is the one next to RINGRELAY_BIN
(BUILD/tools/ringbench/ringbench), or RINGBENCH_BIN."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import harness as h
from test_auth import PASSWORD, account, write_users

USER = "bench"


def ringbench_binary() -> Path:
    path = Path(os.environ.get("RINGBENCH_BIN",
                               h.relay_binary().resolve().parents[2] / "tools/ringbench/ringbench"))
    assert path.is_file() and os.access(path, os.X_OK), \
        f"ringbench not found at {path}: build it (ninja -C BUILD tools/ringbench/ringbench) " \
        f"or set RINGBENCH_BIN"
    return path


def make_cert(name: str = "relay.test") -> tuple:
    """A self-signed P-256 certificate and its key, as tools/run makes them."""
    d = Path(tempfile.mkdtemp(prefix=f"cert-{name}-"))
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-keyout", str(key),
                    "-out", str(cert), "-subj", f"/CN={name}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return str(cert), str(key)


def wait_listening(host: str, port: int, proc: subprocess.Popen, what: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"{what} exited with {proc.returncode} during startup"
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=0.5).close()
            return
        assert time.monotonic() < deadline, f"{what} not listening on {host}:{port}"
        time.sleep(0.05)


class Sink:
    """`ringbench sink` on a fresh loopback address; `result()` stops it
    (unless --expect already did) and returns its JSON summary."""

    def __init__(self, *args):
        self.host = h.sink_ip()
        self.port = h.free_port(self.host)
        self.address = f"{self.host}:{self.port}"
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(ringbench_binary()), "sink", "--listen", self.address, "--threads", "1",
             "--json", "--quiet", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.err)
        wait_listening(self.host, self.port, self.proc, "ringbench sink")

    def result(self, timeout: float = 30) -> dict:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            out, _ = self.proc.communicate(timeout=10)
        self.err.seek(0)
        err = self.err.read().decode(errors="replace")
        assert out.strip(), f"ringbench sink printed no summary (exit {self.proc.returncode}): {err}"
        summary = json.loads(out)
        summary["exit"], summary["stderr"] = self.proc.returncode, err
        return summary

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def send(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(ringbench_binary()), "send", *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


def send_json(*args, timeout: float = 60) -> dict:
    r = send(*args, "--json", "--quiet", timeout=timeout)
    assert r.returncode == 0, f"ringbench send exited {r.returncode}: {r.stderr}{r.stdout}"
    return json.loads(r.stdout)


@contextlib.contextmanager
def tls_auth_relay(sink: Sink, listener_tls: str):
    """ringrelay delivering into `sink`: one listener with `listener_tls`,
    a certificate made here, no trusted networks and AUTH only inside TLS,
    so a message gets in only after TLS and AUTH."""
    cert, key = make_cert()
    with h.Relay(relayhost=sink.address, start=False) as relay:
        users_path = relay.dir / "users.json"
        write_users(users_path, [account(USER, daily_quota=1000000)])
        relay.config["listeners"] = [
            {"address": relay.host, "port": relay.port, "tls": listener_tls}]
        relay.config["tls"] = {"cert": cert, "key": key}
        relay.config["trusted_networks"] = []
        relay.config["accounts"] = {"file": str(users_path)}
        relay.config["auth"] = {"require_tls": True}
        relay.start()
        yield relay


def assert_all_delivered(sent: dict, sink: dict, n: int):
    assert sent["messages_ok"] == n and sent["errors"] == 0, f"ringbench send: {sent}"
    assert sink["exit"] == 0, f"ringbench sink exited {sink['exit']}: {sink['stderr']}"
    assert sink["messages"] == n, f"the sink got {sink['messages']} messages, not {n}: {sink}"
    assert sink["verified"] == n and sink["mismatches"] == 0 and sink["unverified"] == 0, \
        f"integrity: {sink}"


@h.timeout(120)
def test_starttls_auth_plain_through_relay_into_starttls_sink():
    """ringbench --starttls + AUTH PLAIN into ringrelay; ringrelay's delivery
    upgrades to the sink's STARTTLS on the way out."""
    n = 400
    cert, key = make_cert("sink.test")
    with Sink("--expect", str(n), "--tls-cert", cert, "--tls-key", key) as sink:
        with tls_auth_relay(sink, "starttls") as relay:
            sent = send_json("--server", f"{relay.host}:{relay.port}", "--starttls",
                             "--auth", "plain", "--user", USER, "--password", PASSWORD,
                             "--messages", str(n), "--connections", "4", "--threads", "1")
            got = sink.result()
    assert_all_delivered(sent, got, n)
    assert sent["tls"] == "starttls" and sent["tls_handshakes"] == 4, sent
    assert sent["tls_version"].startswith("TLSv1."), sent
    assert got["tls"] == "starttls" and got["tls_handshakes"] >= 1 and got["tls_failures"] == 0, \
        f"ringrelay did not deliver over the sink's STARTTLS: {got}"


@h.timeout(120)
def test_implicit_tls_auth_login_with_reconnects_through_relay():
    """--tls + AUTH LOGIN into an implicit-TLS listener; --reuse makes every
    20 messages a new connection, handshake and login."""
    n = 300
    with Sink("--expect", str(n)) as sink:
        with tls_auth_relay(sink, "implicit") as relay:
            sent = send_json("--server", f"{relay.host}:{relay.port}", "--tls",
                             "--auth", "login", "--user", USER, "--password", PASSWORD,
                             "--messages", str(n), "--connections", "3", "--reuse", "20",
                             "--threads", "1")
            got = sink.result()
    assert_all_delivered(sent, got, n)
    assert sent["tls"] == "implicit" and sent["connections_opened"] >= n // 20, sent
    assert sent["tls_handshakes"] == sent["connections_opened"], sent


@h.timeout(60)
def test_send_into_implicit_tls_sink_with_and_without_verification():
    cert, key = make_cert("sink.test")
    other_cert, _ = make_cert("other.test")
    with Sink("--tls-cert", cert, "--tls-key", key, "--implicit-tls", "--auth-accept") as sink:
        sent = send_json("--server", sink.address, "--tls", "--tls-verify", cert,
                         "--auth", "plain", "--user", "u", "--password", "p",
                         "--messages", "200", "--connections", "2", "--size", "1k:80,100k:20")
        assert sent["tls_verified"] is True and sent["messages_ok"] == 200, sent
        refused = send("--server", sink.address, "--tls", "--tls-verify", other_cert,
                       "--messages", "10", "--timeout", "5", "--quiet")
        assert refused.returncode == 1, refused
        assert "cannot start TLS" in refused.stderr and "--tls-verify" in refused.stderr, \
            refused.stderr
        sink.proc.send_signal(signal.SIGTERM)
        got = sink.result()
    assert got["exit"] == 0 and got["messages"] == 200 and got["verified"] == 200, got
    assert got["tls"] == "implicit" and got["authentications"] == 2, got


@h.timeout(60)
def test_rate_paces_the_messages():
    with Sink() as sink:
        t0 = time.monotonic()
        paced = send_json("--server", sink.address, "--rate", "200", "--duration", "1",
                          "--connections", "4")
        took = time.monotonic() - t0
        # 200 msg/s for 1 s: about 200 (a factor 2 either way for a busy machine).
        assert 100 <= paced["messages_ok"] <= 400, paced
        assert paced["errors"] == 0 and paced["rate"] == 200, paced
        assert paced["latency_from"] == "schedule", paced
        assert took < 30, f"a 1 s run took {took:.1f} s"
        # A budget at a low rate takes its time: 30 messages at 30/s is ~1 s.
        t0 = time.monotonic()
        slow = send_json("--server", sink.address, "--rate", "30", "--messages", "30",
                         "--connections", "2")
        took = time.monotonic() - t0
        assert slow["messages_ok"] == 30, slow
        assert took >= 0.5, f"30 messages at --rate 30 took only {took:.2f} s: not paced"
        unpaced = send_json("--server", sink.address, "--messages", "50")
        assert unpaced["latency_from"] == "mail" and unpaced["rate"] == 0, unpaced
        sink.proc.send_signal(signal.SIGTERM)
        got = sink.result()
    total = paced["messages_ok"] + 30 + 50
    assert got["messages"] == total and got["verified"] == total, got


def test_bad_command_lines_say_what_to_fix():
    cert, key = make_cert()
    _, other_key = make_cert("other.test")
    rb = str(ringbench_binary())
    cases = [
        (["send", "--server", "127.0.0.1:9", "--messages", "1", "--tls", "--starttls"],
         "--starttls and --tls exclude each other"),
        (["send", "--server", "127.0.0.1:9", "--messages", "1", "--tls-verify", cert],
         "add --starttls or --tls"),
        (["send", "--server", "127.0.0.1:9", "--messages", "1", "--tls", "--tls-verify",
          "/nonexistent.pem"], "cannot load CA certificates"),
        (["send", "--server", "127.0.0.1:9", "--messages", "1", "--rate", "0"],
         "write messages per second"),
        (["send", "--server", "127.0.0.1:9", "--messages", "1", "--rate", "fast"],
         "write messages per second"),
        (["sink", "--listen", "127.0.0.2:9", "--tls-cert", cert], "go together"),
        (["sink", "--listen", "127.0.0.2:9", "--implicit-tls"], "needs --tls-cert"),
        (["sink", "--listen", "127.0.0.2:9", "--tls-cert", "/nonexistent.pem", "--tls-key", key],
         "--tls-cert/--tls-key"),
        (["sink", "--listen", "127.0.0.2:9", "--tls-cert", cert, "--tls-key", other_key],
         "is the key the certificate's?"),
    ]
    for args, want in cases:
        r = subprocess.run([rb, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=20)
        assert r.returncode == 2, f"{args}: exit {r.returncode}, expected 2: {r.stderr}"
        assert want in r.stderr, f"{args}: {r.stderr!r} does not say {want!r}"


def test_tls_mismatches_with_the_server_are_explained():
    with Sink() as plain:
        r = send("--server", plain.address, "--starttls", "--messages", "5", "--timeout", "5")
        assert r.returncode == 1 and "does not offer STARTTLS" in r.stderr, r.stderr
        r = send("--server", plain.address, "--tls", "--messages", "5", "--timeout", "5")
        assert r.returncode == 1 and "does this port speak TLS" in r.stderr, r.stderr
