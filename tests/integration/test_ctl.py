"""ringrelayctl on the real binaries (issue 3, docs/ringrelayctl.md): user
add/passwd/disable/enable/list/show editing users.json atomically and
validly, the password only ever on stdin or a terminal with echo off,
clear refusals with exit codes 1 and 2, concurrent edits that lose nothing,
and — against a running relay with no trusted networks — a user added or
disabled through ringrelayctl takes effect at once, because ringrelayctl
asks the relay to reload through its control socket.

Binaries: RINGRELAYCTL_BIN, else tools/ringrelayctl/ringrelayctl in the
build directory of RINGRELAY_BIN (build/src/app/ringrelay ->
build/tools/ringrelayctl/ringrelayctl)."""
import base64
import contextlib
import hashlib
import json
import os
import pty
import select
import smtplib
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import harness as h

PASSWORD = "tr0ub4dor & 3 horses"


def ctl_binary() -> Path:
    env = os.environ.get("RINGRELAYCTL_BIN")
    if env:
        return Path(env)
    return h.relay_binary().resolve().parents[2] / "tools/ringrelayctl/ringrelayctl"


def ctl(*args, password=None, cwd, stdin=None, timeout=60.0) -> subprocess.CompletedProcess:
    """Runs ringrelayctl in `cwd`; `password` becomes one line on stdin."""
    binary = ctl_binary()
    assert binary.is_file() and os.access(binary, os.X_OK), \
        f"ringrelayctl not found or not executable: {binary} (build it, or set RINGRELAYCTL_BIN)"
    data = None if password is None else password + "\n"
    return subprocess.run([str(binary), *args], input=data, cwd=cwd, text=True,
                          stdin=stdin if data is None else None, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def ok(result: subprocess.CompletedProcess, what: str) -> str:
    assert result.returncode == 0, \
        f"{what}: exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def refused(result: subprocess.CompletedProcess, code: int, *parts: str) -> str:
    assert result.returncode == code, \
        f"expected exit {code}, got {result.returncode}\nstdout: {result.stdout}\n" \
        f"stderr: {result.stderr}"
    for p in parts:
        assert p in result.stderr, f"stderr lacks {p!r}: {result.stderr!r}"
    assert result.stderr.startswith("ringrelayctl: "), result.stderr
    return result.stderr


def verifies(encoded: str, password: str) -> bool:
    scheme, iterations, salt, digest = encoded.split("$")
    assert scheme == "pbkdf2-sha256", encoded
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    return dk == base64.b64decode(digest)


def users_of(path: Path) -> dict:
    return {u["username"]: u for u in json.loads(path.read_text())["users"]}


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ctl-"))


@contextlib.contextmanager
def inside(d: Path):
    """cwd = d, so that sockets can be bound by a short relative name (the
    runner's temporary paths can be longer than a Unix socket path)."""
    old = os.getcwd()
    os.chdir(d)
    try:
        yield
    finally:
        os.chdir(old)


# Options for tests without a server: a socket nobody listens on.
OFFLINE = ("--users", "users.json", "--socket", "control.sock")


# --------------------------------------------------------------------------
# the file

def test_ctl_user_add_from_stdin_writes_a_valid_private_file():
    d = workdir()
    out = ok(ctl(*OFFLINE, "user", "add", "acme", "--daily-quota", "250", "--blocks", "7",
                 "--sender-domain", "ACME.example.", "--sender-domain", "mail.acme.example",
                 "--created-at", "2026-11-28T13:00:00+01:00", password=PASSWORD, cwd=d),
             "user add")
    assert 'user "acme" added to users.json' in out, out
    assert "saved; no running server to reload" in out, out
    path = d / "users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    u = users_of(path)["acme"]
    assert list(u) == ["username", "password", "created_at", "enabled", "daily_quota", "blocks",
                       "sender_domains"], list(u)
    assert u["created_at"] == "2026-11-28T12:00:00Z"
    assert (u["enabled"], u["daily_quota"], u["blocks"]) == (True, 250, 7)
    assert u["sender_domains"] == ["acme.example", "mail.acme.example"]
    assert u["password"].startswith("pbkdf2-sha256$100000$"), u["password"]
    assert verifies(u["password"], PASSWORD), "the stored hash does not verify the password"
    assert PASSWORD not in path.read_text()
    assert not [p for p in d.iterdir() if p.name.startswith(".users.json.")], "temp file left"
    # Defaults, and a password without a final newline.
    p = subprocess.run([str(ctl_binary()), *OFFLINE, "user", "add", "bob", "--disabled"], cwd=d,
                       input="no newline", text=True, capture_output=True, timeout=60)
    ok(p, "user add bob")
    bob = users_of(path)["bob"]
    assert (bob["enabled"], bob["daily_quota"], bob["blocks"]) == (False, 1000, 0), bob
    assert "sender_domains" not in bob
    assert verifies(bob["password"], "no newline")


def test_ctl_list_show_disable_enable_passwd():
    d = workdir()
    ok(ctl(*OFFLINE, "user", "add", "acme", "--created-at", "2026-01-02T03:04:05Z",
           "--sender-domain", "acme.example", password=PASSWORD, cwd=d), "add acme")
    ok(ctl(*OFFLINE, "user", "add", "bob@corp.example", "--created-at", "2026-01-01T00:00:00Z",
           "--daily-quota", "0", "--blocks", "12", password="bob pw", cwd=d), "add bob")
    lines = ok(ctl(*OFFLINE, "user", "list", cwd=d), "list").splitlines()
    assert lines[0].split() == ["USER", "ENABLED", "CREATED_AT", "DAILY_QUOTA", "BLOCKS",
                                "SENDER_DOMAINS"], lines
    assert [l.split() for l in lines[1:]] == [
        ["acme", "yes", "2026-01-02T03:04:05Z", "1000", "0", "acme.example"],
        ["bob@corp.example", "yes", "2026-01-01T00:00:00Z", "0", "12", "*"]], lines

    show = ok(ctl(*OFFLINE, "user", "show", "acme", cwd=d), "show")
    fields = dict(l.split(": ", 1) for l in show.splitlines())
    assert fields == {"username": "acme", "enabled": "yes", "created_at": "2026-01-02T03:04:05Z",
                      "active_from": "2026-01-02T03:19:05Z", "daily_quota": "1000",
                      "blocks": "0", "sender_domains": "acme.example",
                      "password": "pbkdf2-sha256, 100000 iterations"}, show
    assert users_of(d / "users.json")["acme"]["password"] not in show, "show printed the hash"

    path = d / "users.json"
    bob_before = json.dumps(users_of(path)["bob@corp.example"])
    out = ok(ctl(*OFFLINE, "user", "disable", "acme", cwd=d), "disable")
    assert 'user "acme" disabled' in out and "no running server to reload" in out, out
    assert users_of(path)["acme"]["enabled"] is False
    out = ok(ctl(*OFFLINE, "user", "disable", "acme", cwd=d), "disable again")
    assert "already disabled" in out, out
    assert "enabled: no" in ok(ctl(*OFFLINE, "user", "show", "acme", cwd=d), "show")
    ok(ctl(*OFFLINE, "user", "enable", "acme", cwd=d), "enable")
    assert users_of(path)["acme"]["enabled"] is True

    old_hash = users_of(path)["acme"]["password"]
    out = ok(ctl(*OFFLINE, "user", "passwd", "acme", password="a new one", cwd=d), "passwd")
    assert 'password of "acme" changed' in out, out
    new_hash = users_of(path)["acme"]["password"]
    assert new_hash != old_hash and verifies(new_hash, "a new one")
    assert not verifies(new_hash, PASSWORD)
    assert json.dumps(users_of(path)["bob@corp.example"]) == bob_before, "bob's entry changed"

    for sub in ("show", "passwd", "disable", "enable"):
        refused(ctl(*OFFLINE, "user", sub, "nobody", password="x", cwd=d), 1,
                'no user "nobody" in users.json')


def test_ctl_keeps_other_entries_mode_and_key_order():
    d = workdir()
    path = d / "users.json"
    hand = {"users": [{"daily_quota": 5, "username": "hand", "sender_domains": ["A.Example."],
                       "created_at": "2026-11-28T13:00:00+01:00",
                       "password": "pbkdf2-sha256$1000$c2FsdHNhbHQ=$" +
                                   base64.b64encode(b"h" * 32).decode()}]}
    path.write_text(json.dumps(hand))
    os.chmod(path, 0o640)
    ok(ctl(*OFFLINE, "user", "add", "new", password=PASSWORD, cwd=d), "add")
    ok(ctl(*OFFLINE, "user", "disable", "hand", cwd=d), "disable")
    users = json.loads(path.read_text())["users"]
    first = users[0]
    assert list(first) == ["daily_quota", "username", "sender_domains", "created_at", "enabled",
                           "password"], f"key order: {list(first)}"
    expected = dict(hand["users"][0], enabled=False)
    assert first == expected, first
    assert stat.S_IMODE(path.stat().st_mode) == 0o640, "the file's mode was not kept"


def test_ctl_refuses_bad_created_at_duplicates_and_bad_usage():
    d = workdir()
    ok(ctl(*OFFLINE, "user", "add", "acme", password=PASSWORD, cwd=d), "add")
    before = (d / "users.json").read_bytes()
    refused(ctl(*OFFLINE, "user", "add", "bob", "--created-at", "yesterday", password="pw",
                cwd=d), 2, '--created-at "yesterday": expected an RFC 3339 date-time')
    refused(ctl(*OFFLINE, "user", "add", "bob", "--created-at", "2026-13-01T00:00:00Z",
                password="pw", cwd=d), 2, "RFC 3339")
    refused(ctl(*OFFLINE, "user", "add", "acme", password="pw", cwd=d), 1,
            'user "acme" already exists in users.json')
    refused(ctl(*OFFLINE, "user", "add", "a b", password="pw", cwd=d), 2,
            "username: expected a username of 1 to 255 octets without spaces")
    refused(ctl(*OFFLINE, "user", "add", "x", "--sender-domain", "bad_domain", password="pw",
                cwd=d), 2, 'sender_domains.0: expected a domain name', '"bad_domain"')
    refused(ctl(*OFFLINE, "user", "add", "x", "--daily-quota", "10k", password="pw", cwd=d), 2,
            '--daily-quota "10k": expected an integer from 0 to 1099511627775')
    refused(ctl(*OFFLINE, "user", "add", "x", "--password", "pw", cwd=d), 2,
            "passwords are not taken from the command line")
    refused(ctl(*OFFLINE, "user", "add", "x", password="", cwd=d), 1, "the password is empty")
    refused(ctl(*OFFLINE, "user", "add", "x", cwd=d, stdin=subprocess.DEVNULL), 1,
            "no password on standard input")
    refused(ctl(*OFFLINE, "user", "list", "--daily-quota", "3", cwd=d), 2,
            'go with "user add" only')
    refused(ctl(*OFFLINE, "user", "frobnicate", "x", cwd=d), 2,
            'unknown user subcommand "frobnicate"', "see ringrelayctl --help")
    refused(ctl(*OFFLINE, cwd=d), 2, "no command given")
    refused(ctl(*OFFLINE, "--bogus", "ping", cwd=d), 2, 'unknown option "--bogus"')
    assert (d / "users.json").read_bytes() == before, "a refused command changed the file"
    assert "SYNOPSIS" in ok(ctl("--help", cwd=d), "--help")


def test_ctl_refuses_to_edit_a_broken_file():
    d = workdir()
    (d / "users.json").write_text('{"users": [{"username": "x"}]}')
    r = refused(ctl(*OFFLINE, "user", "add", "acme", password=PASSWORD, cwd=d), 1,
                'users.json: users.0: "password" is required', "fix the file first")
    assert "nothing was changed" in r
    assert (d / "users.json").read_text() == '{"users": [{"username": "x"}]}'


def test_ctl_concurrent_adds_lose_nothing():
    d = workdir()
    names = [f"user{i}" for i in range(6)]
    procs = [subprocess.Popen([str(ctl_binary()), *OFFLINE, "user", "add", n], cwd=d,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in names]
    for p in procs:
        p.stdin.write(PASSWORD + "\n")
        p.stdin.close()
    for n, p in zip(names, procs):
        assert p.wait(60) == 0, f"{n}: {p.stderr.read()}"
    assert sorted(users_of(d / "users.json")) == names


# --------------------------------------------------------------------------
# the password stays out of sight

def test_ctl_password_never_in_argv_output_or_environment():
    d = workdir()
    p = subprocess.Popen([str(ctl_binary()), *OFFLINE, "user", "add", "acme"], cwd=d,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.3)  # it now waits for the password on stdin
    cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{p.pid}/environ").read_bytes()
    out, err = p.communicate((PASSWORD + "\n").encode(), timeout=60)
    assert p.returncode == 0, err
    assert cmdline.split(b"\0")[1:5] == [b"--users", b"users.json", b"--socket", b"control.sock"]
    for where, data in [("argv", cmdline), ("environment", environ), ("stdout", out),
                        ("stderr", err), ("users.json", (d / "users.json").read_bytes())]:
        assert PASSWORD.encode() not in data, f"the password appears in {where}"


def run_on_terminal(args, cwd, typed, timeout=30.0):
    """Runs ringrelayctl with a pseudo-terminal as stdin and stderr; types
    each string of `typed` after the next prompt. Returns (exit code, what
    the terminal showed)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([str(ctl_binary()), *args], cwd=cwd, stdin=slave, stdout=subprocess.PIPE,
                         stderr=slave, close_fds=True)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    pending = list(typed)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
            if pending and shown.endswith(b": "):  # a prompt, not the echoed newline after it
                os.write(master, pending.pop(0).encode() + b"\n")
        elif p.poll() is not None:
            break
    p.wait(timeout)
    os.close(master)
    return p.returncode, shown.decode("utf-8", "replace")


def test_ctl_prompts_on_a_terminal_with_echo_off():
    d = workdir()
    rc, shown = run_on_terminal([*OFFLINE, "user", "add", "acme"], d, [PASSWORD, PASSWORD])
    assert rc == 0, shown
    assert "New password for acme:" in shown and "Retype the password:" in shown, shown
    assert PASSWORD not in shown, f"the password was echoed: {shown!r}"
    assert verifies(users_of(d / "users.json")["acme"]["password"], PASSWORD)
    rc, shown = run_on_terminal([*OFFLINE, "user", "passwd", "acme"], d, ["one", "two"])
    assert rc == 1 and "the two passwords differ; nothing was changed" in shown, shown
    assert verifies(users_of(d / "users.json")["acme"]["password"], PASSWORD)


# --------------------------------------------------------------------------
# with a running relay

def auth_plain(relay, user: str, password: str) -> tuple:
    with relay.smtplib() as s:
        s.ehlo("client.test")
        assert s.has_extn("auth"), "EHLO lacks AUTH"
        s.user, s.password = user, password
        try:
            return s.auth("PLAIN", s.auth_plain)
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code, e.smtp_error


def ctl_relay(*args, password=None, relay):
    """ringrelayctl as an operator runs it: in the relay's directory, with
    the relay's config (accounts.file and control.socket relative to it)."""
    return ctl("--config", "ringrelay.json", *args, password=password, cwd=relay.dir)


@h.timeout(120)
def test_ctl_changes_reach_a_running_relay_through_the_control_socket():
    with h.RecordingSink() as sink:
        with h.Relay(relayhost=sink.address, start=False) as relay:
            relay.config["trusted_networks"] = []
            relay.config["accounts"] = {"file": "users.json", "activation_delay": "15m"}
            relay.config["control"] = {"socket": "control.sock"}
            out = ok(ctl("--users", "users.json", "--socket", "control.sock", "user", "add",
                         "first", "--created-at", "2020-01-01T00:00:00Z", password="first pw",
                         cwd=relay.dir), "add before start")
            assert "saved; no running server to reload" in out
            relay.start()
            sock = relay.dir / "control.sock"
            assert stat.S_ISSOCK(sock.lstat().st_mode)
            assert stat.S_IMODE(sock.lstat().st_mode) == 0o600, oct(sock.lstat().st_mode)
            assert "ping: ok version=0.1.0" in ok(ctl_relay("ping", relay=relay), "ping")

            code, _ = auth_plain(relay, "acme", PASSWORD)
            assert code == 535, f"acme does not exist yet, AUTH gave {code}"
            out = ok(ctl_relay("user", "add", "acme", "--created-at", "2020-01-01T00:00:00Z",
                               password=PASSWORD, relay=relay), "user add")
            assert "saved; the server reloaded it (accounts=2)" in out, out
            code, resp = auth_plain(relay, "acme", PASSWORD)
            assert code == 235, f"AUTH PLAIN after user add: {code} {resp!r}"

            swaks = h.swaks(relay, "--auth", "PLAIN", "--auth-user", "acme", "--auth-password",
                            PASSWORD, "--from", h.SENDER, "--to", h.rcpt())
            assert "235 2.7.0" in swaks.stdout and len(h.swaks_queue_ids(swaks.stdout)) == 1, \
                swaks.stdout[-2000:]
            assert sink.wait_for(1)[0].mail_from == h.SENDER

            out = ok(ctl_relay("user", "disable", "acme", relay=relay), "user disable")
            assert "the server reloaded it" in out, out
            code, _ = auth_plain(relay, "acme", PASSWORD)
            assert code == 535, f"AUTH after user disable gave {code}"

            ok(ctl_relay("user", "enable", "acme", relay=relay), "user enable")
            ok(ctl_relay("user", "passwd", "acme", password="changed", relay=relay), "passwd")
            assert auth_plain(relay, "acme", "changed")[0] == 235
            assert auth_plain(relay, "acme", PASSWORD)[0] == 535

            assert "reload: ok accounts=2" in ok(ctl_relay("reload", relay=relay), "reload")
            log = relay.log_text()
            assert "control: uid=" in log and 'command="reload" ok' in log, log[-2000:]
            for secret in (PASSWORD, "changed", "first pw"):
                assert secret not in log, f"the relay logged a password ({secret!r})"

            # A users.json broken by hand: the reload is refused and the
            # relay keeps the accounts it has.
            users = relay.dir / "users.json"
            good = users.read_text()
            users.write_text(good.replace('"daily_quota": 1000', '"daily_quota": "lots"', 1))
            r = refused(ctl_relay("reload", relay=relay), 1, "the server refused reload",
                        "daily_quota")
            assert "stay in force" in r, r
            assert auth_plain(relay, "acme", "changed")[0] == 235
            users.write_text(good)

            rc = relay.stop()
            assert rc == 0, f"relay exit {rc}"
            assert not sock.exists(), "the relay left its control socket behind"
            out = ok(ctl_relay("user", "disable", "first", relay=relay), "disable, relay stopped")
            assert "saved; no running server to reload" in out, out
            refused(ctl_relay("ping", relay=relay), 1, "no server answers on control.sock")


def test_ctl_stale_socket_means_no_server():
    d = workdir()
    with inside(d), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind("control.sock")  # bound, never listening: a dead server's file
    out = ok(ctl(*OFFLINE, "user", "add", "acme", password=PASSWORD, cwd=d), "add")
    assert "saved; no running server to reload" in out, out
    refused(ctl(*OFFLINE, "reload", cwd=d), 1, "no server answers on control.sock")


def test_ctl_reports_a_server_that_refuses():
    """A control socket whose server answers ok:false (here a stand-in):
    the change is saved, the error is shown, the exit status is 1."""
    d = workdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with inside(d):
        server.bind("control.sock")
    server.listen(4)

    def answer():
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b'{"ok":false,"error":"users.json: line 1: try again"}\n')

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    refused(ctl(*OFFLINE, "user", "add", "acme", password=PASSWORD, cwd=d), 1,
            "saved users.json, but the server did not reload it: users.json: line 1: try again")
    assert "acme" in users_of(d / "users.json")
    refused(ctl(*OFFLINE, "reload", cwd=d), 1, "the server refused reload: users.json: line 1")
    t.join(5)
    server.close()
