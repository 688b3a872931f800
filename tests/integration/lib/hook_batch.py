#!/usr/bin/env python3
"""Makes kilnd record several deliveries in one batch, for tests: GitHub's
headers, and the generic provider's (X-Delivery, X-Signature) too.

hook_batch.py PORT DB PATH SECRET FIRST ID... [--fill FILE]
Holds the state database's write lock (BEGIN IMMEDIATE on DB), sends the
delivery FIRST (kilnd's commit of it then waits for the lock), then every ID,
each on its own connection (they gather behind FIRST's commit); once all are
sent it waits a little, optionally fills the disk with FILE (so the commits
fail), releases the lock and prints the statuses: FIRST's, then each ID's.
"""
import hashlib
import hmac
import http.client
import json
import sqlite3
import sys
import threading
import time

args = sys.argv[1:]
fill = None
if "--fill" in args:
    i = args.index("--fill")
    fill = args[i + 1]
    del args[i:i + 2]
port, db, path, secret, first, *ids = args
body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40,
                   "repository": {"full_name": "team/images"}}).encode()
sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(delivery):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    c.request("POST", path, body=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sig,
        "X-Delivery": delivery, "X-Signature": sig})
    return c


statuses = {}


def answer(i, c):
    r = c.getresponse()
    r.read()
    statuses[i] = str(r.status)


lock = sqlite3.connect(db, timeout=10, isolation_level=None)
lock.execute("BEGIN IMMEDIATE")
conns = [send(first)]
time.sleep(0.5)  # FIRST is on a worker, waiting for the lock
conns += [send(d) for d in ids]
threads = [threading.Thread(target=answer, args=(i, c)) for i, c in enumerate(conns)]
for t in threads:
    t.start()
time.sleep(0.5)  # all sent; kilnd reads them at once (it waits up to 5 s for a lock)
if fill:
    with open(fill, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
lock.execute("ROLLBACK")
lock.close()
for t in threads:
    t.join()
print(" ".join(statuses.get(i, "none") for i in range(len(conns))))
