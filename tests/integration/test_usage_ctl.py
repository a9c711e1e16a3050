"""`ringrelayctl usage` and `ringrelayctl blocks add` against the real
server (SPEC.md §5 and §7, issue 4; docs/control.md, docs/ringrelayctl.md).

What these tests rely on:
- Control commands `usage` {"user"} → user, day (the quota day's local
  date), used (relays charged to today's quota), daily_quota, blocks (the
  live balance), blocks_added, resets_at (RFC 3339 in the quota's zone, as
  the 452 reply names it) and time_zone; `blocks_add` {"user", "n": 1 to
  2^40 − 1} → user, added, blocks (the new balance), blocks_added.
- `ringrelayctl usage USER` prints those fields as "key: value" lines;
  `ringrelayctl blocks add USER N` prints "added N relay blocks to "USER";
  its balance is now B (T added by operators in all)". Bad N → exit 2, an
  unknown user → exit 1, with messages that say what to do.
- Blocks added are kept in <spool.dir>/blocks-added.json
  ({"version": 1, "added": {USER: TOTAL}}) before they are applied, and
  added again at startup.
- The balance is the users.json grant + the blocks added − the blocks
  used: a reload with a changed `blocks` moves the live balance by the
  change."""
import contextlib
import datetime
import json
import signal
import socket
import subprocess
import time
import zoneinfo

import harness as h
from harness import assert_queued, assert_reply
from test_auth import PASSWORD, write_users
from test_ctl import ctl_relay, inside, ok, refused
from test_quota import MAIL, assert_quota_refusal, assert_sink, quota_relay, send_1k, session, user

MAX_BLOCKS = 2**40 - 1


# --------------------------------------------------------------------------
# helpers

def usage_of(relay, name: str = "acme") -> dict:
    """`ringrelayctl usage NAME` as a dict of its "key: value" lines."""
    out = ok(ctl_relay("usage", name, relay=relay), f"usage {name}")
    fields = dict(line.split(": ", 1) for line in out.splitlines())
    assert list(fields) == ["user", "day", "used", "daily_quota", "blocks", "blocks_added",
                            "resets_at", "time_zone"], out
    return fields


def numbers(fields: dict) -> tuple:
    """(used, daily_quota, blocks, blocks_added)."""
    return tuple(int(fields[k]) for k in ("used", "daily_quota", "blocks", "blocks_added"))


def blocks_add(relay, name: str, n: int) -> str:
    return ok(ctl_relay("blocks", "add", name, str(n), relay=relay), f"blocks add {name} {n}")


def control(relay, request: dict) -> dict:
    """One raw request on the control socket; its reply."""
    with inside(relay.dir), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect("control.sock")
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def control_ready(relay, within: float = 10.0) -> None:
    """Waits until the control socket answers: the harness's relay is ready
    when its SMTP listener accepts, a moment before the control thread
    starts."""
    deadline = time.monotonic() + within
    while True:
        try:
            if control(relay, {"command": "ping"}).get("ok"):
                return
        except (OSError, ValueError):
            pass
        assert time.monotonic() < deadline, f"no answer on the control socket within {within}s"
        time.sleep(0.05)


@contextlib.contextmanager
def usage_relay(users, **kwargs):
    """test_quota.quota_relay, once its control socket answers."""
    with quota_relay(users, **kwargs) as (relay, sink):
        control_ready(relay)
        yield relay, sink


def ledger(relay) -> dict:
    return json.loads((relay.spool_dir / "blocks-added.json").read_text())


def next_midnight(tz, now: float) -> datetime.datetime:
    local = datetime.datetime.fromtimestamp(now, tz)
    return (local + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


# --------------------------------------------------------------------------
# usage

def test_usage_ctl_counts_recipients_in_the_quota_zone():
    """quota.time_zone Asia/Kolkata, daily_quota 10: before any mail usage
    shows 0; after a message to 3 recipients (smtplib with AUTH) it shows 3,
    the quota 10, blocks 0, today's date in Kolkata and the next Kolkata
    midnight as "+05:30". The raw control reply has the same values, as
    JSON integers and strings."""
    tz = zoneinfo.ZoneInfo("Asia/Kolkata")
    with usage_relay([user("acme", 10, 0)], time_zone="Asia/Kolkata") as (relay, sink):
        assert numbers(usage_of(relay)) == (0, 10, 0, 0)
        content = h.make_message(1024, tag="three-rcpts")
        rcpts = [h.rcpt(i) for i in range(3)]
        with relay.smtplib() as s:
            s.ehlo("client.test")
            s.login("acme", PASSWORD)
            assert s.sendmail(h.SENDER, rcpts, content) == {}
        before = time.time()
        fields = usage_of(relay)
        assert numbers(fields) == (3, 10, 0, 0), fields
        assert fields["user"] == "acme" and fields["time_zone"] == "Asia/Kolkata", fields
        days = {datetime.datetime.fromtimestamp(t, tz).date().isoformat() for t in (before, time.time())}
        assert fields["day"] in days, (fields, days)
        resets = {next_midnight(tz, t).isoformat() for t in (before, time.time())}
        assert fields["resets_at"] in resets, (fields, resets)
        assert fields["resets_at"].endswith("T00:00:00+05:30"), fields

        reply = control(relay, {"command": "usage", "user": "acme"})
        assert reply["ok"] is True, reply
        assert {k: reply[k] for k in ("user", "used", "daily_quota", "blocks", "blocks_added",
                                      "time_zone")} == {
            "user": "acme", "used": 3, "daily_quota": 10, "blocks": 0, "blocks_added": 0,
            "time_zone": "Asia/Kolkata"}, reply
        assert reply["resets_at"] in resets and reply["day"] in days, reply
        assert_sink(sink, [(content, rcpts)])


# --------------------------------------------------------------------------
# blocks add, live

def test_usage_ctl_blocks_add_lets_a_capped_account_send_again():
    """daily_quota 2, no blocks: after 2 messages the 3rd RCPT gets 452
    4.7.1 (whose reset time is the one usage shows). `blocks add acme 3`
    prints the new balance 3, and the very same session's next RCPT is
    accepted, no restart, no reconnect. Each message then takes one block
    (usage: blocks 2, 1, 0; used stays 2: the quota's part) and the 4th
    message after the quota is refused again."""
    with usage_relay([user("acme", 2, 0)]) as (relay, sink):
        c = session(relay)
        sent = [send_1k(c, f"quota-{i}", [h.rcpt(i)]) for i in range(2)]
        assert_reply(c.cmd(MAIL), 250)
        r = c.cmd(f"RCPT TO:<{h.rcpt(2)}>")
        assert_quota_refusal(r, 2, 2, 0, "RCPT with the quota spent")
        fields = usage_of(relay)
        assert numbers(fields) == (2, 2, 0, 0), fields
        assert f"resets at {fields['resets_at']} ({fields['time_zone']})" in r.text, (r, fields)

        out = blocks_add(relay, "acme", 3)
        assert out == 'added 3 relay blocks to "acme"; its balance is now 3 ' \
                      '(3 added by operators in all)\n', out
        assert_reply(c.cmd(f"RCPT TO:<{h.rcpt(2)}>"), 250, what="the same RCPT after blocks add")
        content = h.make_message(1024, tag="block-1")
        r = c.cmd("DATA")
        assert r.code == 354, r
        c.send(h.data_wire(content))
        assert_queued(c.read_reply(), "the message after blocks add")
        sent.append((content, [h.rcpt(2)]))
        assert numbers(usage_of(relay)) == (2, 2, 2, 3)
        sent.append(send_1k(c, "block-2", [h.rcpt(3)]))
        assert numbers(usage_of(relay)) == (2, 2, 1, 3)
        sent.append(send_1k(c, "block-3", [h.rcpt(4)]))
        assert numbers(usage_of(relay)) == (2, 2, 0, 3)
        assert_reply(c.cmd(MAIL), 250)
        assert_quota_refusal(c.cmd(f"RCPT TO:<{h.rcpt(5)}>"), 2, 2, 0, "RCPT with the blocks spent")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert ledger(relay) == {"version": 1, "added": {"acme": 3}}
        assert_sink(sink, sent)


@h.timeout(90)
def test_usage_ctl_blocks_added_survive_a_restart():
    """spool.dir does not exist yet at the first start (the server creates
    it). A grant of 5 plus `blocks add acme 500` is 505; the ledger file
    holds 500. After a stop and a start on the same spool, usage shows 505
    again (500 added), and a second `blocks add acme 100` makes 605 and the
    ledger 600. With daily_quota 0 a message to 2 recipients is paid with 2
    blocks (603); after another restart the balance is still 603: the
    grant, the blocks added (this ledger) and the blocks used (the usage
    snapshot) all come back. The blocks are spendable after it (601)."""
    with usage_relay([user("acme", 0, 5)]) as (relay, sink):
        relay.stop()
        relay.spool_dir = relay.dir / "spool" / "not-yet"
        relay.config["spool"]["dir"] = str(relay.spool_dir)
        relay.start()
        control_ready(relay)
        assert relay.spool_dir.is_dir()
        assert not (relay.spool_dir / "blocks-added.json").exists()
        assert numbers(usage_of(relay)) == (0, 0, 5, 0)
        assert "its balance is now 505 (500 added" in blocks_add(relay, "acme", 500)
        assert ledger(relay) == {"version": 1, "added": {"acme": 500}}

        assert relay.stop() == 0
        relay.start()
        control_ready(relay)
        assert numbers(usage_of(relay)) == (0, 0, 505, 500)
        assert "its balance is now 605 (600 added" in blocks_add(relay, "acme", 100)
        assert ledger(relay) == {"version": 1, "added": {"acme": 600}}
        c = session(relay)
        sent = [send_1k(c, "before-restart", [h.rcpt(0), h.rcpt(1)])]
        c.close()
        assert numbers(usage_of(relay)) == (0, 0, 603, 600)

        relay.restart()
        control_ready(relay)
        assert numbers(usage_of(relay)) == (0, 0, 603, 600)
        c = session(relay)
        sent.append(send_1k(c, "after-restart", [h.rcpt(2), h.rcpt(3)]))
        c.close()
        assert numbers(usage_of(relay)) == (0, 0, 601, 600)
        assert_sink(sink, sent)


def test_usage_ctl_reload_applies_a_changed_grant_live():
    """daily_quota 0, users.json grant 10: a message to 2 recipients leaves
    8. Raising the grant to 15 and reloading (ringrelayctl reload) makes 13;
    `blocks add 4` makes 17; reloading the unchanged file (SIGHUP) leaves
    17; lowering the grant to 5 makes 7; lowering it to 0 after 7 more are
    used makes -5, which covers nothing (452) until the grant is 6 again
    (1 block: one recipient fits)."""
    acme = user("acme", 0, 10)
    with usage_relay([acme]) as (relay, sink):
        users_path = relay.dir / "users.json"

        def reload_with_grant(grant, how="ctl"):
            acme["blocks"] = grant
            write_users(users_path, [acme])
            if how == "ctl":
                assert "reload: ok accounts=1" in ok(ctl_relay("reload", relay=relay), "reload")
            else:
                marks = relay.log_text().count("SIGHUP: reloaded")
                relay.proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 10
                while relay.log_text().count("SIGHUP: reloaded") == marks:
                    assert time.monotonic() < deadline, "no SIGHUP reload in the log"
                    time.sleep(0.05)

        c = session(relay)
        sent = [send_1k(c, "grant-1", [h.rcpt(0), h.rcpt(1)])]
        assert numbers(usage_of(relay)) == (0, 0, 8, 0)
        reload_with_grant(15)
        assert numbers(usage_of(relay)) == (0, 0, 13, 0)
        blocks_add(relay, "acme", 4)
        assert numbers(usage_of(relay)) == (0, 0, 17, 4)
        reload_with_grant(15, how="SIGHUP")
        assert numbers(usage_of(relay)) == (0, 0, 17, 4), "an unchanged grant changes nothing"
        reload_with_grant(5)
        assert numbers(usage_of(relay)) == (0, 0, 7, 4)
        sent.append(send_1k(c, "grant-2", [h.rcpt(i) for i in range(2, 9)]))
        assert numbers(usage_of(relay)) == (0, 0, 0, 4)
        reload_with_grant(0)
        assert numbers(usage_of(relay)) == (0, 0, -5, 4)
        assert_reply(c.cmd(MAIL), 250)
        assert_quota_refusal(c.cmd(f"RCPT TO:<{h.rcpt(9)}>"), 0, 0, 0, "a negative balance")
        assert_reply(c.cmd("RSET"), 250)
        reload_with_grant(6)
        assert numbers(usage_of(relay)) == (0, 0, 1, 4)
        sent.append(send_1k(c, "grant-3", [h.rcpt(9)]))
        assert numbers(usage_of(relay)) == (0, 0, 0, 4)
        c.close()
        assert_sink(sink, sent)


# --------------------------------------------------------------------------
# refusals

def test_usage_ctl_refuses_bad_input_with_the_documented_errors():
    """Unknown user (usage and blocks add: exit 1, names the user and what
    to do); N of 0, negative, not a number, a fraction, over 2^40 − 1, or
    missing (exit 2); the same on the raw socket; none of them changes the
    balance or writes the ledger. A server without an accounts file says
    so, and no server at all means no blocks were added."""
    with usage_relay([user("acme", 5, 7)]) as (relay, sink):
        refused(ctl_relay("usage", "nobody", relay=relay), 1,
                'the server refused usage: no user "nobody" in ',
                '("ringrelayctl user list" shows them)')
        refused(ctl_relay("blocks", "add", "nobody", "5", relay=relay), 1,
                'the server refused blocks add: no user "nobody" in ',
                '"ringrelayctl user add" first', "no blocks were added")
        for n in ("0", "-5", "abc", "1.5", "+3", str(MAX_BLOCKS + 1), "99999999999999999999"):
            refused(ctl_relay("blocks", "add", "acme", n, relay=relay), 2,
                    f'N "{n}": expected an integer from 1 to {MAX_BLOCKS}',
                    "(see ringrelayctl --help)")
        refused(ctl_relay("blocks", "add", "acme", relay=relay), 2,
                "usage: ringrelayctl blocks add USER N")
        refused(ctl_relay("blocks", "remove", "acme", "3", relay=relay), 2,
                'unknown blocks subcommand "remove"')
        refused(ctl_relay("usage", relay=relay), 2, "usage: ringrelayctl usage USER")

        range_error = f'"n": expected an integer from 1 to {MAX_BLOCKS}, got '
        for request, error in [
                ({"command": "blocks_add", "user": "acme", "n": 0}, range_error + "0"),
                ({"command": "blocks_add", "user": "acme", "n": -5}, range_error + "-5"),
                ({"command": "blocks_add", "user": "acme", "n": "5"}, range_error + "a string"),
                ({"command": "blocks_add", "user": "acme", "n": 1.5}, range_error + "a number"),
                ({"command": "blocks_add", "user": "acme", "n": MAX_BLOCKS + 1},
                 range_error + str(MAX_BLOCKS + 1)),
                ({"command": "blocks_add", "user": "acme"},
                 f'"n" is required (an integer from 1 to {MAX_BLOCKS})'),
                ({"command": "blocks_add", "n": 1}, '"user" is required (a string)'),
                ({"command": "usage", "user": 5}, '"user": expected a string, got an integer'),
                ({"command": "usage", "user": "nobody"}, 'no user "nobody" in ')]:
            reply = control(relay, request)
            assert reply["ok"] is False and reply["error"].startswith(error), (request, reply)
        assert numbers(usage_of(relay)) == (0, 5, 7, 0), "a refusal changed the balance"
        assert not (relay.spool_dir / "blocks-added.json").exists(), "a refusal wrote the ledger"
        reply = control(relay, {"command": "blocks_add", "user": "acme", "n": MAX_BLOCKS})
        assert reply == {"ok": True, "user": "acme", "added": MAX_BLOCKS,
                         "blocks": MAX_BLOCKS + 7, "blocks_added": MAX_BLOCKS}, reply

        relay.stop()
        refused(ctl_relay("blocks", "add", "acme", "5", relay=relay), 1,
                "no server answers on control.sock", "no blocks were added",
                '"blocks" in ')
        refused(ctl_relay("usage", "acme", relay=relay), 1, "no server answers on control.sock")

    with h.Relay() as relay:  # no accounts file: AUTH is off
        control_ready(relay)
        refused(ctl_relay("usage", "acme", relay=relay), 1,
                "the server has no accounts: it started without ",
                'create accounts with "ringrelayctl user add", then restart ringrelay')
        refused(ctl_relay("blocks", "add", "acme", "5", relay=relay), 1,
                "the server has no accounts")
        assert not (relay.spool_dir / "blocks-added.json").exists()


def test_usage_ctl_a_damaged_ledger_stops_the_start_with_its_name():
    """A blocks-added.json that is not the ledger's format: the server does
    not start (exit 1), and says which file and what is wrong."""
    with h.Relay(start=False) as relay:
        path = relay.spool_dir / "blocks-added.json"
        path.write_text('{"version": 1, "added": {"acme": -3}}')
        relay.config_path.write_text(json.dumps(relay.config))
        p = subprocess.run([str(h.relay_binary()), "--config", str(relay.config_path)],
                           cwd=relay.dir, capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, f"exit {p.returncode}: {p.stderr[-2000:]}"
        assert f'cannot start: spool.dir {relay.spool_dir}: {path}: added: user "acme": ' \
               f"expected an integer from 0 to " in p.stderr, p.stderr[-2000:]
