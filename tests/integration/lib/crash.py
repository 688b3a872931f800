#!/usr/bin/env python3
"""The kill -9 loop: kilnd killed at random moments under webhook load.

crash.py --kilnd K --kiln K --config YAML --state DIR --origin GIT --clone DIR
         --port P --secret S --images PATH,... [--rounds N] [--kill-ms MS]
         [--connections N] [--triggers 0|1] [--keep-going] [--seed N]

kilnd is started with a notification socket of this script's own (its
restart time is the time to READY=1), the branch is seen once, then each
round pushes one or two commits to the origin through the clone and either
sends signed GitHub push deliveries with new ids from several connections at
once (recording each one answered 2xx as acknowledged) or, in about one
round of four, runs `kiln trigger` (recording it when it exits 0); after a
random 0 to --kill-ms milliseconds kilnd gets SIGKILL and is started again.
After each restart:
  - PRAGMA integrity_check says ok;
  - no (path, commit) has two builds;
  - every acknowledged delivery id is in the deliveries table;
  - the branch's last-seen commit reaches every acknowledged delivery's
    `after` within a bounded time, and with --triggers 1 every acknowledged
    trigger's commit too (pushed without a webhook: only the trigger, or a
    poll it left recorded, can bring kilnd there; polls are an hour apart).
At the end, kilnd is triggered to catch up to the head, the queue drains,
no delivery is left unhandled, kilnd stops on SIGTERM with status 0, and the
images with a succeeded build are exactly those `kiln changes` lists from
the first-seen commit to the head. Prints a table of what happened; exits 1
when an invariant failed (at the first failure, unless --keep-going).
"""
import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

ap = argparse.ArgumentParser()
for opt in ("kilnd", "kiln", "config", "state", "origin", "clone", "secret", "images"):
    ap.add_argument("--" + opt, required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--rounds", type=int, default=50)
ap.add_argument("--kill-ms", type=int, default=400)
ap.add_argument("--connections", type=int, default=4)
ap.add_argument("--gap-ms", type=float, default=10, help="pause between one connection's requests")
ap.add_argument("--triggers", type=int, default=1)
ap.add_argument("--keep-going", action="store_true")
ap.add_argument("--seed", type=int, default=None)
ap.add_argument("--verbose", action="store_true", help="a line per round")
ap.add_argument("--settle", type=float, default=30, help="seconds an invariant may take after a restart")
a = ap.parse_args()

seed = a.seed if a.seed is not None else random.randrange(1 << 30)
rng = random.Random(seed)
DB = os.path.join(a.state, "kilnd.db")
SOCK = a.state + ".sock"
LOG = os.path.join(os.path.dirname(a.state), "kilnd.log")
IMAGES = a.images.split(",")


class Failed(Exception):
    pass


stats = {"rounds": 0, "sent": 0, "acked": 0, "triggers": 0, "lost_deliveries": 0, "lost_triggers": 0,
         "unrecorded": 0, "duplicates": 0, "integrity": 0, "restarts": []}
failures = []


def violation(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    if not a.keep_going:
        raise Failed(msg)


def log_tail(n=8):
    try:
        with open(LOG, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ---- kilnd, with a notification socket of our own ----

notify_path = os.path.join(os.path.dirname(a.state), "crash-notify.sock")
if os.path.exists(notify_path):
    os.unlink(notify_path)
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
kilnd = None


ready = threading.Event()


def listen_notify():
    """Reads every message, as systemd does: a full socket would block
    kilnd's sd_notify and with it the loop."""
    while True:
        try:
            msg = notify.recv(65536).decode(errors="replace")
        except OSError:
            return
        if "READY=1" in msg.split("\n"):
            ready.set()


threading.Thread(target=listen_notify, daemon=True).start()


def start():
    """kilnd started; the seconds until it said READY=1."""
    global kilnd
    ready.clear()  # what the killed one said
    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    t0 = time.monotonic()
    with open(LOG, "ab") as out:
        kilnd = subprocess.Popen([a.kilnd, "--config", a.config, "--log-level", "debug"],
                                 stdout=out, stderr=subprocess.STDOUT, env=env)
    while not ready.wait(0.05):
        if kilnd.poll() is not None:
            raise Failed("kilnd exited %d at start:\n%s" % (kilnd.returncode, log_tail()))
        if time.monotonic() > t0 + 30:
            raise Failed("kilnd not ready in 30 s:\n" + log_tail())
    return time.monotonic() - t0


def kill9():
    kilnd.send_signal(signal.SIGKILL)
    kilnd.wait()


def stop():
    kilnd.send_signal(signal.SIGTERM)
    try:
        rc = kilnd.wait(timeout=30)
    except subprocess.TimeoutExpired:
        kill9()
        raise Failed("kilnd did not stop in 30 s after SIGTERM")
    if rc != 0:
        violation("kilnd exited %d after SIGTERM:\n%s" % (rc, log_tail()))


# ---- the state database, read only ----

def query(sql, args=()):
    con = sqlite3.connect("file:%s?mode=ro" % DB, uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def last_seen():
    rows = query("SELECT last_seen FROM branches WHERE repository = 'images' AND branch = 'main'")
    return rows[0][0] if rows else None


def wait_until(cond, limit):
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---- the origin: a linear history, so "reached" is an index comparison ----

def git(*args):
    return subprocess.run(["git", "-C", a.clone] + list(args), check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True).stdout.strip()


order = {}  # commit -> its place in the history since the start
head = git("rev-parse", "HEAD")
order[head] = 0
START = head


def push_commits():
    """One or two commits, each changing one to three images (base, which
    every other image builds on, now and then); the new head."""
    global head
    for _ in range(rng.choice((1, 1, 2))):
        n = rng.choice((1, 1, 2, 3))
        dirs = rng.sample(IMAGES, n) if rng.random() > 0.1 else ["base"]
        for d in dirs:
            with open(os.path.join(a.clone, d, "data.txt"), "a") as f:
                f.write("%d\n" % rng.randrange(1 << 62))
        git("commit", "-qam", "change " + " ".join(dirs))  # data.txt is tracked already
    for c in git("rev-list", "--reverse", head + "..HEAD").split():
        order[c] = len(order)
        head = c
    git("push", "-q", "origin", "HEAD:main")
    return head


# ---- webhook load ----

acked_ids = []  # every delivery id answered 2xx
odd = []  # answers no delivery should get
watermark = {"delivery": 0, "trigger": 0}  # the newest acknowledged commit's index
lock = threading.Lock()


def sender(conn_no, rnd, before, after, stop_ev):
    body = json.dumps({"ref": "refs/heads/main", "before": before, "after": after,
                       "repository": {"full_name": "team/images"},
                       "commits": [{"id": after, "modified": ["x"]}]}).encode()
    sig = "sha256=" + hmac.new(a.secret.encode(), body, hashlib.sha256).hexdigest()
    c = None
    n = 0
    while not stop_ev.is_set():
        did = "crash-%d-%d-%d-%d" % (seed, rnd, conn_no, n)
        n += 1
        try:
            if c is None:
                c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=5)
            with lock:
                stats["sent"] += 1
            c.request("POST", "/hooks/images", body=body, headers={
                "Content-Type": "application/json", "X-GitHub-Event": "push",
                "X-GitHub-Delivery": did, "X-Hub-Signature-256": sig})
            r = c.getresponse()
            r.read()
            if 200 <= r.status < 300:
                with lock:
                    acked_ids.append(did)
                    stats["acked"] += 1
                    watermark["delivery"] = max(watermark["delivery"], order[after])
            elif r.status != 503:  # 503: the state could not be written, not acknowledged
                with lock:
                    odd.append("delivery %s answered %d" % (did, r.status))
        except (OSError, http.client.HTTPException):
            if c is not None:
                c.close()
            c = None
            stop_ev.wait(0.005)  # kilnd is down or restarting
            continue
        stop_ev.wait(a.gap_ms / 1000)
    if c is not None:
        c.close()


def trigger():
    r = subprocess.run([a.kiln, "trigger", "images", "--socket", SOCK],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode == 0


# ---- the invariants after a restart ----

def check_after_restart(rnd):
    rows = query("PRAGMA integrity_check")
    if rows != [("ok",)]:
        stats["integrity"] += 1
        violation("round %d: integrity_check: %s" % (rnd, rows[:5]))
    dups = query("SELECT path, commit_sha, count(*) FROM builds"
                 " GROUP BY path, commit_sha HAVING count(*) > 1")
    if dups:
        stats["duplicates"] += len(dups)
        violation("round %d: planned twice: %s" % (rnd, dups[:5]))
    recorded = {r[0] for r in query("SELECT id FROM deliveries WHERE repository = 'images'")}
    missing = [d for d in acked_ids if d not in recorded]
    if missing:
        stats["unrecorded"] += len(missing)
        violation("round %d: %d acknowledged deliveries not recorded, e.g. %s"
                  % (rnd, len(missing), missing[:3]))
        acked_ids[:] = [d for d in acked_ids if d in recorded]

    def reached(kind):
        s = last_seen()
        return s is not None and order.get(s, -1) >= watermark[kind]

    if not wait_until(lambda: reached("delivery"), a.settle):
        stats["lost_deliveries"] += 1
        violation("round %d: acknowledged delivery for commit #%d lost: last-seen is #%d after %gs"
                  % (rnd, watermark["delivery"], order.get(last_seen(), -1), a.settle))
    if watermark["trigger"] > order.get(last_seen(), -1):
        # the deliveries are served, so only the trigger is left to bring kilnd there
        if not wait_until(lambda: reached("trigger"), a.settle if a.triggers else 1):
            stats["lost_triggers"] += 1
            msg = ("round %d: acknowledged trigger for commit #%d lost: last-seen is #%d"
                   % (rnd, watermark["trigger"], order.get(last_seen(), -1)))
            if a.triggers:
                violation(msg)
            else:
                print("not checked (CRASH_TRIGGERS=0): " + msg, flush=True)
            trigger()  # the next rounds start from a caught-up kilnd
            wait_until(lambda: reached("trigger"), a.settle)


def final_checks():
    if not trigger():
        violation("the final kiln trigger was refused")
    if not wait_until(lambda: last_seen() == head, a.settle):
        violation("never caught up to the head")
    if not wait_until(lambda: not query("SELECT id FROM builds WHERE state IN ('queued', 'running')"),
                      a.settle):
        violation("builds left in the queue")
    if not wait_until(lambda: query("SELECT count(*) FROM deliveries WHERE handled = 0") == [(0,)],
                      a.settle):
        violation("deliveries left unhandled: %s" % query("SELECT count(*) FROM deliveries WHERE handled = 0"))
    stop()
    check_after_restart(a.rounds + 1)
    r = subprocess.run([a.kiln, "changes", "--repo", a.origin, "--no-cache", START, head],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        violation("kiln changes exited %d: %s" % (r.returncode, r.stderr))
    want = sorted({l.split("\t")[1] for l in r.stdout.splitlines() if l})
    got = sorted(p for (p,) in query("SELECT DISTINCT path FROM builds WHERE state = 'succeeded'"))
    if want != got:
        violation("built %d images, expected %d: missing %s, extra %s" % (
            len(got), len(want), sorted(set(want) - set(got))[:5], sorted(set(got) - set(want))[:5]))


def table():
    rs = sorted(stats["restarts"])
    med = statistics.median(rs) * 1000 if rs else 0
    p99 = rs[min(len(rs) - 1, int(len(rs) * 0.99))] * 1000 if rs else 0
    planned = query("SELECT count(*) FROM builds")[0][0]
    rows = [("rounds (kill -9)", stats["rounds"]), ("deliveries sent", stats["sent"]),
            ("deliveries acknowledged", stats["acked"]),
            ("triggers acknowledged", stats["triggers"]), ("builds planned", planned),
            ("duplicates", stats["duplicates"]),
            ("acknowledged deliveries not recorded", stats["unrecorded"]),
            ("lost deliveries (rounds)", stats["lost_deliveries"]),
            ("lost triggers (rounds)%s" % ("" if a.triggers else ", not checked"),
             stats["lost_triggers"]),
            ("integrity_check failures", stats["integrity"]),
            ("restart to READY=1, median ms", "%.0f" % med),
            ("restart to READY=1, p99 ms", "%.0f" % p99)]
    print("| what | count |\n| --- | ---: |")
    for k, v in rows:
        print("| %s | %s |" % (k, v))


def main():
    print("seed %d (--seed to repeat)" % seed, flush=True)
    start()
    # the branch's first sighting, before anything is pushed
    if not trigger() or not wait_until(lambda: last_seen() == START, a.settle):
        raise Failed("the first poll did not see %s:\n%s" % (START, log_tail()))
    t0 = time.monotonic()
    for rnd in range(1, a.rounds + 1):
        t_round = time.monotonic()
        before = head
        after = push_commits()
        kill_at = time.monotonic() + rng.uniform(0, a.kill_ms / 1000)
        threads = []
        stop_ev = threading.Event()
        if rng.random() < 0.25:
            # pushed without a webhook: only the trigger tells kilnd
            if trigger():
                stats["triggers"] += 1
                watermark["trigger"] = order[after]
        else:
            for i in range(a.connections):
                t = threading.Thread(target=sender, args=(i, rnd, before, after, stop_ev))
                t.start()
                threads.append(t)
        time.sleep(max(0, kill_at - time.monotonic()))
        kill9()
        stats["rounds"] += 1
        stop_ev.set()
        for t in threads:
            t.join()
        for msg in odd:
            violation("round %d: %s" % (rnd, msg))
        del odd[:]
        t_kill = time.monotonic()
        stats["restarts"].append(start())
        check_after_restart(rnd)
        if a.verbose:
            print("round %d: push+load %.0f ms, restart %.0f ms, checks %.0f ms, acked %d"
                  % (rnd, (t_kill - t_round) * 1000, stats["restarts"][-1] * 1000,
                     (time.monotonic() - t_kill - stats["restarts"][-1]) * 1000, stats["acked"]),
                  flush=True)
        if rnd % 10 == 0:
            print("round %d, %.0fs" % (rnd, time.monotonic() - t0), flush=True)
    final_checks()


try:
    try:
        main()
    finally:
        if kilnd is not None and kilnd.poll() is None:
            kill9()
    table()
except Failed as e:
    if str(e) not in failures:
        print("FAIL: %s" % e, file=sys.stderr)
    failures.append(str(e))
    try:
        table()
    except sqlite3.Error:
        pass
except KeyboardInterrupt:
    sys.exit(130)
finally:
    notify.close()
    os.unlink(notify_path)
sys.exit(1 if failures else 0)
