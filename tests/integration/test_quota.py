"""Relay accounting on the real binary (SPEC.md §5, issue 4): authenticated
sessions are charged accepted recipients × multiplier(size) relays against
the account's daily quota, then its relay blocks.

What these tests rely on:
- users.json accounts carry `daily_quota` and `blocks` (test_auth.account).
- RCPT reserves 1 relay per recipient, or the multiplier that MAIL's SIZE=
  implies; when the account cannot cover it: `452 4.7.1 ...` whose text
  contains "daily relay quota", the usage, the quota, the blocks left and
  "resets at <RFC 3339 time>" (the next 00:00 in `quota.time_zone`, UTC by
  default). Refused RCPTs change nothing.
- End of data settles the exact charge, multiplier = floor(size / 10 MiB) + 1
  (RFC 1870 size), exactly 50 MiB → 6, over → 552 5.3.4 and nothing charged;
  a charge the account cannot cover → 452 4.7.1 (same text) and the message
  is discarded.
- RSET, a refused message and a dropped connection release the reservation.
- Mail from trusted networks without AUTH is charged to
  `accounts.trusted_account` when set, else not charged.

Every test checks the SMTP replies and what reached the upstream sink. The
reply-text check is deliberately tolerant about wording and order: it wants
the three numbers somewhere in the text (the usage may be reported with or
without the open transaction's reservation, or with the blocks spent today;
each test lists the values it accepts)."""
import collections
import contextlib
import datetime
import re
import smtplib
import socket
import time
import zoneinfo

import harness as h
from harness import assert_queued, assert_reply
from test_auth import PASSWORD, RFC3339_RE, account, auth_plain_ok, connect, write_users

MIB = 1048576
MAIL = f"MAIL FROM:<{h.SENDER}>"


# --------------------------------------------------------------------------
# helpers

def user(name: str, quota: int, blocks: int = 0) -> dict:
    a = account(name, daily_quota=quota)
    a["blocks"] = blocks
    return a


@contextlib.contextmanager
def quota_relay(users, trusted=(), trusted_account=None, time_zone=None):
    """A sink and a relay with these accounts; no trusted networks unless
    given. Yields (relay, sink)."""
    with h.RecordingSink() as sink:
        with h.Relay(relayhost=sink.address, start=False) as relay:
            users_path = relay.dir / "users.json"
            write_users(users_path, users)
            relay.config["trusted_networks"] = list(trusted)
            relay.config["accounts"] = {"file": str(users_path)}
            if trusted_account is not None:
                relay.config["accounts"]["trusted_account"] = trusted_account
            if time_zone is not None:
                relay.config["quota"] = {"time_zone": time_zone}
            relay.start()
            yield relay, sink


def session(relay, name: str = "acme", timeout: float = 10.0) -> h.SMTPClient:
    """A raw client, EHLO'd and authenticated as `name`."""
    c = connect(relay, timeout=timeout)
    auth_plain_ok(c, name)
    return c


def send_1k(c, tag: str, rcpts: list, what: str = "") -> tuple:
    """A 1 KB message (no SIZE parameter) that must be queued; returns
    (content, rcpts) for assert_sink."""
    content = h.make_message(1024, tag=tag)
    assert_queued(c.send_message(h.SENDER, rcpts, content), what or f"message {tag}")
    return content, list(rcpts)


def _next_midnight(tz, now: float) -> float:
    local = datetime.datetime.fromtimestamp(now, tz)
    nxt = (local + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return nxt.timestamp()


def assert_quota_refusal(r: h.Reply, usage, quota: int, blocks: int, what: str,
                         tz=datetime.timezone.utc) -> None:
    """452 4.7.1 with "daily relay quota", the usage (an int, or the tuple of
    values accepted), the quota and the blocks left among the numbers of the
    text, and "resets at" the next 00:00 in `tz` as RFC 3339."""
    assert_reply(r, 452, "4.7.1", what)
    text = r.text
    low = text.lower()
    assert "daily relay quota" in low, f"{what}: 452 text lacks 'daily relay quota': {r}"
    assert "block" in low, f"{what}: 452 text does not name the blocks left: {r}"
    m = re.search(r"resets at\s+(" + RFC3339_RE + r")", text, re.I)
    assert m, f"{what}: 452 text lacks 'resets at <RFC 3339 time>': {r}"
    at = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00").replace("z", "+00:00"))
    now = time.time()
    # The test may cross midnight between the refusal and this check.
    expected = {_next_midnight(tz, now), _next_midnight(tz, now - 30)}
    assert at.timestamp() in expected, (
        f"{what}: resets at {m.group(1)} ({at.timestamp():.0f}); expected the next 00:00 in "
        f"{tz}: {sorted(datetime.datetime.fromtimestamp(t, tz).isoformat() for t in expected)}")
    # The numbers of the text, minus the enhanced code and the reset time.
    rest = text[len(r.enhanced or ""):].replace(m.group(1), " ")
    found = collections.Counter(int(n) for n in re.findall(r"\d+", rest))
    usages = usage if isinstance(usage, (tuple, list)) else (usage,)
    for u in usages:
        need = collections.Counter([u, quota, blocks])
        if all(found[k] >= v for k, v in need.items()):
            return
    raise AssertionError(
        f"{what}: 452 text should name usage {' or '.join(map(str, usages))}, quota {quota} and "
        f"{blocks} blocks left; numbers found {sorted(found.elements())}: {r}")


def refused_rcpt(c, rcpt: str, usage, quota: int, blocks: int, what: str, tz=None) -> None:
    r = c.cmd(f"RCPT TO:<{rcpt}>")
    assert_quota_refusal(r, usage, quota, blocks, what, tz or datetime.timezone.utc)


def assert_sink(sink, expected: list, grace: float = 0.5) -> None:
    """The sink holds exactly the messages `expected` [(content, rcpts)],
    byte-exact, to exactly those recipients, and nothing else (also no
    attempt it refused)."""
    want = sorted(r for _, rs in expected for r in rs)

    def got(ms):
        return sorted(r for m in ms for r in m.rcpts)

    if expected:
        sink.wait_for(1, timeout=60, pred=lambda ms: len(got(ms)) >= len(want))
    time.sleep(grace)
    msgs = sink.messages
    assert got(msgs) == want, f"sink recipients {got(msgs)}, expected {want}; messages {msgs}"
    by_tag = {h.message_tag(content): (content, rcpts) for content, rcpts in expected}
    for m in msgs:
        _, rest = h.split_received(m.data)
        tag = h.message_tag(rest)
        assert tag in by_tag, f"unexpected message at the sink (tag {tag!r}): {m} {rest[:300]!r}"
        content, rcpts = by_tag[tag]
        h.assert_delivered(m, content, mail_from=h.SENDER)
        assert set(m.rcpts) <= set(rcpts), f"message {tag} went to {m.rcpts}, sent to {rcpts}"
    assert len(sink.attempts) == len(msgs), f"sink saw refused attempts: {sink.attempts}"


def rcpt_when_released(c, rcpt: str, what: str, within: float = 5.0) -> None:
    """MAIL + RCPT until the RCPT gets 250 (a reservation released by another
    connection's drop may take a moment); 452 meanwhile, never anything else."""
    deadline = time.monotonic() + within
    while True:
        assert_reply(c.cmd(MAIL), 250, what=f"{what}: MAIL")
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        if r.code == 250:
            return
        assert_reply(r, 452, "4.7.1", f"{what}: RCPT while waiting for the release")
        assert time.monotonic() < deadline, f"{what}: reservation not released within {within}s: {r}"
        assert_reply(c.cmd("RSET"), 250)
        time.sleep(0.1)


def data(c, content: bytes, what: str, timeout: float = None) -> h.Reply:
    r = c.cmd("DATA")
    assert r.code == 354, f"{what}: DATA: {r}"
    c.send(h.data_wire(content))
    return c.read_reply(timeout)


# --------------------------------------------------------------------------
# 1. the quota runs out at RCPT

def test_quota_sixth_message_refused_at_rcpt():
    """daily_quota 5, no blocks: five 1 KB messages to one recipient each
    (smtplib, with its SIZE= parameter) are queued; the sixth's RCPT gets
    452 4.7.1 naming usage 5, quota 5, 0 blocks and the next UTC midnight,
    from smtplib and the raw client, on the same and a new connection; the
    refused message never reaches the sink."""
    with quota_relay([user("acme", 5, 0)]) as (relay, sink):
        sent = []
        with relay.smtplib() as s:
            s.ehlo("client.test")
            s.login("acme", PASSWORD)
            for i in range(5):
                content = h.make_message(1024, tag=f"five-{i}")
                refused = s.sendmail(h.SENDER, [h.rcpt(i)], content)
                assert refused == {}, f"message {i + 1}: {refused}"
                sent.append((content, [h.rcpt(i)]))
            try:
                s.sendmail(h.SENDER, [h.rcpt(5)], h.make_message(1024, tag="sixth"))
                raise AssertionError("the 6th message was accepted with a daily quota of 5")
            except smtplib.SMTPRecipientsRefused as e:
                code, resp = e.recipients[h.rcpt(5)]
                assert_quota_refusal(h.Reply(code, resp.decode("utf-8", "replace").split("\n")),
                                     5, 5, 0, "smtplib: 6th message's RCPT")
        # The raw client on a new connection: the same refusal, and refusing
        # changes nothing (twice the same numbers).
        c = session(relay)
        assert_reply(c.cmd(MAIL), 250, what="MAIL of the 6th message")
        refused_rcpt(c, h.rcpt(5), 5, 5, 0, "6th message's RCPT")
        refused_rcpt(c, h.rcpt(6), 5, 5, 0, "6th message's RCPT, again")
        r = c.cmd("DATA")
        assert r.code in (503, 554) and r.enhanced and r.enhanced.startswith("5."), \
            f"DATA with every RCPT refused: {r}"
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert_sink(sink, sent)
        for m in sink.messages:
            assert h.rcpt(5) not in m.rcpts and h.rcpt(6) not in m.rcpts


# --------------------------------------------------------------------------
# 2. ten recipients from quota and blocks

def test_quota_ten_recipients_from_quota_and_blocks():
    """daily_quota 5 + 5 blocks: a message to 10 recipients is accepted (5
    relays from the quota, 5 from blocks); an 11th RCPT in the same
    transaction and a RCPT of the next one get 452 with 0 blocks left."""
    with quota_relay([user("acme", 5, 5)]) as (relay, sink):
        c = session(relay)
        content = h.make_message(1024, tag="ten-rcpts")
        rcpts = [h.rcpt(i) for i in range(10)]
        assert_reply(c.cmd(MAIL), 250)
        for i, r in enumerate(rcpts):
            assert_reply(c.cmd(f"RCPT TO:<{r}>"), 250, what=f"RCPT {i + 1} of 10")
        # usage: 5 (the quota's) or 10 (all relays today); blocks 0 either way.
        refused_rcpt(c, h.rcpt(10), (5, 10), 5, 0, "11th RCPT")
        assert_queued(data(c, content, "10 recipients"), "10 recipients")
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(11), (5, 10), 5, 0, "RCPT after 10 relays")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert_sink(sink, [(content, rcpts)])


# --------------------------------------------------------------------------
# 3. blocks only after the quota

def test_quota_blocks_used_only_after_the_daily_quota():
    """daily_quota 2 + 2 blocks: messages 1-2 come from the quota (a probe
    after them still shows 2 blocks left), 3-4 from blocks, the 5th is
    refused. The probes are RCPTs after MAIL SIZE= (a multiplier bigger than
    what is left), which are refused and change nothing."""
    with quota_relay([user("acme", 2, 2)]) as (relay, sink):
        c = session(relay)
        sent = []

        def probe(usage, blocks, what):
            # SIZE=40 MiB → 5 relays per recipient: more than quota 2 + 2 blocks.
            assert_reply(c.cmd(f"{MAIL} SIZE={40 * MIB}"), 250, what=f"{what}: MAIL SIZE")
            refused_rcpt(c, h.rcpt(90), usage, 2, blocks, what)
            assert_reply(c.cmd("RSET"), 250)

        probe(0, 2, "before any message")
        sent.append(send_1k(c, "blocks-1", [h.rcpt(1)], "message 1 (quota)"))
        sent.append(send_1k(c, "blocks-2", [h.rcpt(2)], "message 2 (quota)"))
        probe(2, 2, "after 2 messages: the quota is spent, no block yet")
        sent.append(send_1k(c, "blocks-3", [h.rcpt(3)], "message 3 (1st block)"))
        probe((2, 3), 1, "after 3 messages: one block spent")
        sent.append(send_1k(c, "blocks-4", [h.rcpt(4)], "message 4 (2nd block)"))
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(5), (2, 4), 2, 0, "message 5")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert_sink(sink, sent)


# --------------------------------------------------------------------------
# 4. the size multiplier

@h.timeout(120)
def test_quota_ten_mib_costs_two_relays():
    """daily_quota 3: 10 MiB to 1 recipient (2 relays), then 1 KB (1 relay),
    then a 1 KB's RCPT → 452 with usage 3."""
    big = h.big_message(10 * MIB, "ten-mib")
    assert len(big) == 10 * MIB
    with quota_relay([user("acme", 3, 0)]) as (relay, sink):
        c = session(relay, timeout=60)
        assert_queued(c.send_message(h.SENDER, [h.rcpt(0)], big, timeout=60), "10 MiB message")
        small = send_1k(c, "after-ten-mib", [h.rcpt(1)], "1 KB after 10 MiB")
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(2), 3, 3, 0, "1 KB after 2 + 1 relays")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert_sink(sink, [(big, [h.rcpt(0)]), small])


@h.timeout(120)
def test_quota_end_of_data_refusal_discards_and_charges_nothing():
    """daily_quota 2: 10 MiB to 2 recipients reserves 2 at RCPT, needs 4 at
    end of data → 452 4.7.1 there, nothing delivered; then 1 KB to the same
    2 recipients is queued (the refused message charged nothing), after
    which the quota is spent."""
    big = h.big_message(10 * MIB, "ten-mib-two-rcpts")
    with quota_relay([user("acme", 2, 0)]) as (relay, sink):
        c = session(relay, timeout=60)
        rcpts = [h.rcpt(0), h.rcpt(1)]
        r = c.send_message(h.SENDER, rcpts, big, timeout=60)
        # usage: 0 (settled) or 2 (with this transaction's reservation).
        assert_quota_refusal(r, (0, 2), 2, 0, "end of data of 10 MiB × 2 recipients")
        small = send_1k(c, "after-eod-refusal", rcpts, "1 KB to 2 recipients after the refusal")
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(2), 2, 2, 0, "RCPT after the 1 KB to 2 recipients")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert_sink(sink, [small], grace=1.0)


@h.timeout(180)
def test_quota_multiplier_boundaries_ten_mib_minus_one_and_twenty_mib():
    """daily_quota 4: 10 MiB − 1 costs 1 and 20 MiB costs 3 (both
    accepted, usage 4 exactly), then a RCPT → 452 with usage 4. Charging 2
    for the first would refuse the second at end of data; charging 2 for
    the second would let the last RCPT through."""
    under = h.big_message(10 * MIB - 1, "ten-mib-minus-one")
    twenty = h.big_message(20 * MIB, "twenty-mib")
    assert (len(under), len(twenty)) == (10 * MIB - 1, 20 * MIB)
    with quota_relay([user("acme", 4, 0)]) as (relay, sink):
        c = session(relay, timeout=90)
        assert_queued(c.send_message(h.SENDER, [h.rcpt(0)], under, timeout=90),
                      "10 MiB − 1 (1 relay)")
        assert_queued(c.send_message(h.SENDER, [h.rcpt(1)], twenty, timeout=90),
                      "20 MiB (3 relays) after 1 used of 4")
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(2), 4, 4, 0, "RCPT after 1 + 3 relays")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert_sink(sink, [(under, [h.rcpt(0)]), (twenty, [h.rcpt(1)])])


@h.timeout(300)
def test_quota_fifty_mib_costs_six_and_over_fifty_charges_nothing():
    """daily_quota 6: 50 MiB + 1 → 552 5.3.4 (nothing charged, nothing
    delivered); exactly 50 MiB → queued for 6 relays (it would need 7 if the
    552 had kept its reservation); then a RCPT → 452 with usage 6."""
    over = h.big_message(h.MAX_SIZE + 1, "fifty-mib-plus-one")
    fifty = h.big_message(h.MAX_SIZE, "fifty-mib")
    with quota_relay([user("acme", 6, 0)]) as (relay, sink):
        c = session(relay, timeout=120)
        r = c.send_message(h.SENDER, [h.rcpt(0)], over, timeout=120)
        assert_reply(r, 552, "5.3.4", what="50 MiB + 1")
        assert_queued(c.send_message(h.SENDER, [h.rcpt(1)], fifty, timeout=120),
                      "exactly 50 MiB (6 relays)")
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(2), 6, 6, 0, "RCPT after 50 MiB")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert_sink(sink, [(fifty, [h.rcpt(1)])])


# --------------------------------------------------------------------------
# 5./6. releasing reservations

def test_quota_rset_releases_the_reservation():
    """daily_quota 1: MAIL, RCPT (250: reserved), a 2nd RCPT → 452 (the
    first holds the only relay), RSET; then a full message is queued, and
    after it the quota is spent."""
    with quota_relay([user("acme", 1, 0)]) as (relay, sink):
        c = session(relay)
        assert_reply(c.cmd(MAIL), 250)
        assert_reply(c.cmd(f"RCPT TO:<{h.rcpt(0)}>"), 250, what="RCPT (reserves the only relay)")
        refused_rcpt(c, h.rcpt(1), (0, 1), 1, 0, "2nd RCPT while the 1st holds the quota")
        assert_reply(c.cmd("RSET"), 250)
        sent = send_1k(c, "after-rset", [h.rcpt(2)], "message after RSET")
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(3), 1, 1, 0, "RCPT after the message")
        c.close()
        # Another session sees the settled charge.
        c = session(relay)
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(4), 1, 1, 0, "new session after the message")
        c.close()
        assert_sink(sink, [sent])


def test_quota_dropped_connection_releases_the_reservation():
    """daily_quota 1: MAIL + RCPT, then the socket is closed: a message on a
    new connection is queued. The same after a drop in the middle of DATA
    (half a message sent): nothing of it is delivered, and the next message
    fits. Then the quota is spent."""
    with quota_relay([user("acme", 1, 0)]) as (relay, sink):
        # Drop after RCPT.
        c = session(relay)
        assert_reply(c.cmd(MAIL), 250)
        assert_reply(c.cmd(f"RCPT TO:<{h.rcpt(0)}>"), 250, what="RCPT before the drop")
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        c = session(relay)
        rcpt_when_released(c, h.rcpt(1), "after a drop at RCPT")
        first = h.make_message(1024, tag="after-drop-at-rcpt")
        assert_queued(data(c, first, "after a drop at RCPT"), "message after a drop at RCPT")
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(2), 1, 1, 0, "RCPT after the message")
        c.close()
        assert_sink(sink, [(first, [h.rcpt(1)])])
    with quota_relay([user("acme", 1, 0)]) as (relay2, sink2):
        # Drop in the middle of DATA.
        c = session(relay2)
        half = h.make_message(4096, tag="dropped-in-data")
        assert_reply(c.cmd(MAIL), 250)
        assert_reply(c.cmd(f"RCPT TO:<{h.rcpt(0)}>"), 250, what="RCPT before the drop in DATA")
        r = c.cmd("DATA")
        assert r.code == 354, f"DATA: {r}"
        c.send(h.dot_stuff(half)[:2000])
        time.sleep(0.2)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        c = session(relay2)
        rcpt_when_released(c, h.rcpt(1), "after a drop in DATA")
        second = h.make_message(1024, tag="after-drop-in-data")
        assert_queued(data(c, second, "after a drop in DATA"), "message after a drop in DATA")
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(2), 1, 1, 0, "RCPT after the message")
        c.close()
        assert_sink(sink2, [(second, [h.rcpt(1)])])


# --------------------------------------------------------------------------
# 7. MAIL SIZE= reserves the multiplier

def test_quota_mail_size_reserves_the_multiplier_at_rcpt():
    """daily_quota 1: MAIL SIZE=10485760 implies 2 relays per recipient, so
    the RCPT is refused (usage 0); SIZE=10485759 implies 1, so the same
    recipient is accepted and a 1 KB message is queued."""
    with quota_relay([user("acme", 1, 0)]) as (relay, sink):
        c = session(relay)
        assert_reply(c.cmd(f"{MAIL} SIZE={10 * MIB}"), 250, what="MAIL SIZE=10485760")
        refused_rcpt(c, h.rcpt(0), 0, 1, 0, "RCPT after MAIL SIZE=10485760")
        assert_reply(c.cmd("RSET"), 250)
        content = h.make_message(1024, tag="size-param")
        r = c.send_message(h.SENDER, [h.rcpt(1)], content, params=f"SIZE={10 * MIB - 1}")
        assert_queued(r, "1 KB after MAIL SIZE=10485759")
        assert_reply(c.cmd(f"{MAIL} SIZE=1024"), 250)
        refused_rcpt(c, h.rcpt(2), 1, 1, 0, "RCPT after the message")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert_sink(sink, [(content, [h.rcpt(1)])])


# --------------------------------------------------------------------------
# trusted networks and the quota's time zone

def test_quota_trusted_networks_charge_the_trusted_account():
    """Without AUTH from a trusted network: with accounts.trusted_account
    "acme" (quota 2) the 3rd message's RCPT gets 452, and acme's own AUTH
    session sees the same spent quota; without trusted_account nothing is
    charged (3 messages, then acme still has its 1 relay)."""
    with quota_relay([user("acme", 2, 0)], trusted=["127.0.0.0/8"],
                     trusted_account="acme") as (relay, sink):
        c = connect(relay)
        sent = [send_1k(c, f"trusted-{i}", [h.rcpt(i)], f"trusted message {i + 1}") for i in range(2)]
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(2), 2, 2, 0, "3rd trusted message")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        c = session(relay)
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(3), 2, 2, 0, "acme after its quota went to trusted mail")
        c.close()
        assert_sink(sink, sent)
    with quota_relay([user("acme", 1, 0)], trusted=["127.0.0.0/8"]) as (relay, sink):
        c = connect(relay)
        sent = [send_1k(c, f"uncharged-{i}", [h.rcpt(i)], f"uncharged message {i + 1}")
                for i in range(3)]
        c.close()
        c = session(relay)
        sent.append(send_1k(c, "acme-after-trusted", [h.rcpt(3)], "acme's one relay"))
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(4), 1, 1, 0, "acme after its one relay")
        c.close()
        assert_sink(sink, sent)


def test_trusted_networks_are_held_to_their_accounts_rules():
    """Mail from a trusted network without AUTH sends as
    accounts.trusted_account, so that account's rules apply at MAIL as to a
    login: its sender domains (550 5.7.1), its activation time (451 4.7.0),
    its being disabled (550 5.7.1). A trusted client that logs in is held
    to its own account instead. A trusted_account that users.json lacks is
    logged at start, and that mail is then accepted uncharged, as without
    one."""
    acme = account("acme", sender_domains=[h.SENDER_DOMAIN])
    users = [acme, account("bob")]
    with quota_relay(users, trusted=["127.0.0.0/8"], trusted_account="acme") as (relay, sink):
        c = connect(relay)
        r = c.cmd("MAIL FROM:<carol@elsewhere.example>")
        assert_reply(r, 550, "5.7.1")
        assert "acme" in r.text and "elsewhere.example" in r.text, r.text
        sent = [send_1k(c, "trusted-own-domain", [h.rcpt(0)], "acme's own sender domain")]
        c.close()
        c = session(relay, "bob")
        assert_reply(c.cmd("MAIL FROM:<carol@elsewhere.example>"), 250,
                     what="bob, logged in from a trusted network")
        assert_reply(c.cmd("RSET"), 250)
        c.close()
        assert_sink(sink, sent)
    fresh = account("fresh", created_at=datetime.datetime.now(datetime.timezone.utc)
                    .strftime("%Y-%m-%dT%H:%M:%SZ"))
    with quota_relay([fresh], trusted=["127.0.0.0/8"], trusted_account="fresh") as (relay, sink):
        c = connect(relay)
        r = c.cmd(MAIL)
        assert_reply(r, 451, "4.7.0")
        assert "becomes active" in r.text, r.text
        c.close()
    with quota_relay([account("acme", enabled=False)], trusted=["127.0.0.0/8"],
                     trusted_account="acme") as (relay, sink):
        c = connect(relay)
        r = c.cmd(MAIL)
        assert_reply(r, 550, "5.7.1")
        assert "disabled" in r.text, r.text
        c.close()
        sink.assert_no_messages(0.5)
    with quota_relay([user("acme", 1, 0)], trusted=["127.0.0.0/8"],
                     trusted_account="nobody") as (relay, sink):
        assert "accounts.trusted_account nobody is not in" in relay.log_text(), \
            "a trusted_account missing from users.json is not logged at start"
        c = connect(relay)
        sent = [send_1k(c, f"unknown-trusted-{i}", [h.rcpt(i)], f"message {i + 1}")
                for i in range(2)]
        c.close()
        assert_sink(sink, sent)
        accepted = [l for l in relay.log_text().splitlines() if " accepted id=" in l]
        assert len(accepted) == 2 and all("quota_relays=0 block_relays=0" in l for l in accepted), \
            f"mail for a missing trusted_account was charged: {accepted}"


def test_quota_reset_time_in_the_configured_zone():
    """quota.time_zone "Asia/Kolkata" (UTC+05:30, no DST): the 452 names the
    next 00:00 in Kolkata (and with a quota of 1, one message still fits)."""
    tz = zoneinfo.ZoneInfo("Asia/Kolkata")
    with quota_relay([user("acme", 1, 0)], time_zone="Asia/Kolkata") as (relay, sink):
        c = session(relay)
        sent = send_1k(c, "kolkata", [h.rcpt(0)])
        assert_reply(c.cmd(MAIL), 250)
        refused_rcpt(c, h.rcpt(1), 1, 1, 0, "RCPT with the Kolkata quota spent", tz=tz)
        c.close()
        assert_sink(sink, [sent])
