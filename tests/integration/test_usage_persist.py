"""Relay usage survives restarts (issue 4, "Persistence"): each shard saves a
usage snapshot every 2 s and, after a restart, replays the charges of the
spool's commit records newer than it. Usage is never undercounted for a
message that got 250, and after a kill -9 it equals exactly the relays of
the messages the relay stored (each is delivered once the relay is back,
so the sink tells which ones those are).

The usage is read from the 452 4.7.1 reply: the relay is restarted with the
account's daily_quota lowered to 1, so the first RCPT is refused and the
reply names the day's usage ("N of 1 relays used today")."""
import collections
import random
import re
import smtplib
import threading
import time

import harness as h
from test_auth import write_users
from test_quota import quota_relay, session, user


def usage_by_refusal(relay, users_path, users, name="acme") -> int:
    """Lowers `name`'s quota to 1 (with no blocks) and restarts the relay,
    then reads the day's usage from the 452 of one RCPT."""
    relay.stop()
    lowered = [dict(u, daily_quota=1, blocks=0) if u["username"] == name else u for u in users]
    write_users(users_path, lowered)
    relay.start()
    c = session(relay, name)
    try:
        assert c.cmd(f"MAIL FROM:<{h.SENDER}>").code == 250
        r = c.cmd(f"RCPT TO:<{h.rcpt(0)}>")
        assert r.code == 452 and "4.7.1" in r.text, f"expected a quota refusal, got {r}"
        m = re.search(r"(\d+) of 1 relays used today", r.text)
        assert m, f"452 text does not give the usage as 'N of 1 relays used today': {r}"
        return int(m.group(1))
    finally:
        c.close()


@h.timeout(150)
def test_usage_survives_kill9_under_load():
    """4 authenticated clients send 1-3 recipient messages for ~5 s (past two
    snapshots) and the relay is killed with -9 mid-stream. After the restart
    the day's usage is at least the relays of every message that got 250,
    and exactly the relays of the distinct messages the sink received."""
    users = [user("acme", quota=1_000_000)]
    with quota_relay(users) as (relay, sink):
        users_path = relay.dir / "users.json"
        acked = {}            # tag -> relays, for messages that got 250
        lock = threading.Lock()
        stop = threading.Event()
        errors = collections.Counter()

        def client(t):
            rng = random.Random(t)
            s = None
            try:
                s = smtplib.SMTP(relay.host, relay.port, timeout=20)
                s.ehlo("client.test")
                s.login("acme", "correct horse battery staple")
                i = 0
                while not stop.is_set():
                    tag = f"usage-{t}-{i}"
                    i += 1
                    rcpts = [h.rcpt(t * 10 + k) for k in range(rng.randint(1, 3))]
                    msg = h.make_message(rng.randint(200, 3000), tag=tag)
                    try:
                        s.sendmail(h.SENDER, rcpts, msg)
                    except smtplib.SMTPResponseException as e:
                        errors[f"{e.smtp_code}"] += 1
                        continue
                    with lock:
                        acked[tag] = len(rcpts)
            except Exception as e:  # expected once the relay is killed
                errors[type(e).__name__] += 1
            finally:
                if s is not None:
                    try:
                        s.close()
                    except Exception:
                        pass

        threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(4)]
        for th in threads:
            th.start()
        time.sleep(5.0)
        relay.kill()
        stop.set()
        for th in threads:
            th.join(30)
        with lock:
            acked_at_kill = dict(acked)
        assert len(acked_at_kill) >= 20, (
            f"only {len(acked_at_kill)} messages accepted before the kill; errors {dict(errors)}")
        snapshots = list(relay.spool_dir.glob("shard*/usage.json"))
        assert snapshots, "no usage snapshot was written in 5 s of load"

        relay.start()
        acked_relays = sum(acked_at_kill.values())

        def tags(ms):
            return {h.message_tag(h.split_received(m.data)[1]): m for m in ms}
        sink.wait_for(0, timeout=60, pred=lambda ms: set(acked_at_kill) <= set(tags(ms)))
        time.sleep(1.0)  # late deliveries of messages stored without a 250
        delivered = tags(sink.messages)
        stored_relays = sum(len(m.rcpts) for m in delivered.values())

        usage = usage_by_refusal(relay, users_path, users)
        h.note(f"usage after kill -9: {usage}; {len(acked_at_kill)} messages got 250 "
               f"({acked_relays} relays); {len(delivered)} distinct delivered "
               f"({stored_relays} relays); client errors {dict(errors)}")
        assert usage >= acked_relays, (
            f"usage {usage} after kill -9 is below the {acked_relays} relays of the "
            f"{len(acked_at_kill)} messages that got 250: charges were lost")
        assert usage == stored_relays, (
            f"usage {usage} after kill -9 differs from the {stored_relays} relays of the "
            f"{len(delivered)} distinct messages the relay stored and delivered")


def test_usage_survives_a_clean_restart_and_a_second_crash():
    """Usage charged before a SIGTERM restart, and more charged before a
    kill -9 that follows at once (before any snapshot), add up."""
    users = [user("acme", quota=1000)]
    with quota_relay(users) as (relay, sink):
        users_path = relay.dir / "users.json"
        c = session(relay)
        for i in range(3):
            content = h.make_message(500, tag=f"clean-{i}")
            h.assert_queued(c.send_message(h.SENDER, [h.rcpt(0), h.rcpt(1)], content), f"msg {i}")
        c.close()
        relay.stop()
        relay.start()
        c = session(relay)
        content = h.make_message(500, tag="after-restart")
        h.assert_queued(c.send_message(h.SENDER, [h.rcpt(k) for k in range(4)], content), "4 rcpts")
        c.close()
        relay.kill()
        relay.start()
        sink.wait_for(4, timeout=30)
        assert usage_by_refusal(relay, users_path, users) == 3 * 2 + 4
