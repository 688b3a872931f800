#!/usr/bin/env python3
"""Concurrent GitHub deliveries, each with a new id, until kilnd goes away.

hook_load.py PORT SECRET CONNS OUT PREFIX
CONNS threads, each on its own keep-alive connection, send signed pushes with
ids "PREFIX-<thread>-<n>" until a request fails (kilnd was killed) or 60 s pass.
Each id answered 2xx is appended to OUT (a line each) as soon as the answer
is in, so OUT lists what kilnd acknowledged before it died.
"""
import hashlib
import hmac
import http.client
import json
import sys
import threading
import time

port, secret, conns, out, prefix = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40,
                   "repository": {"full_name": "team/images"}}).encode()
sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
f = open(out, "a", buffering=1)
lock = threading.Lock()
end = time.time() + 60


def load(t):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 0
    while time.time() < end:
        n += 1
        d = "%s-%d-%d" % (prefix, t, n)
        try:
            c.request("POST", "/hooks/images", body=body, headers={
                "Content-Type": "application/json", "X-GitHub-Event": "push",
                "X-GitHub-Delivery": d, "X-Hub-Signature-256": sig})
            r = c.getresponse()
            r.read()
        except (OSError, http.client.HTTPException):
            return
        if 200 <= r.status < 300:
            with lock:
                f.write(d + "\n")


threads = [threading.Thread(target=load, args=(t,)) for t in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
