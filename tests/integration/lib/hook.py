#!/usr/bin/env python3
"""Sends webhook requests the way the git hosts do, for daemon tests.

hook.py PORT PATH PROVIDER SECRET [--event E] [--delivery ID] [--ref REF]
        [--before SHA] [--after SHA] [--bad-sig] [--no-sig] [--form] [--body TEXT] [--then ID]...
Prints the HTTP status. Each --then ID sends the request again with that
delivery id as soon as the previous answer is in, on the same connection,
and prints its status too; --source ADDR connects from that local address.
Headers follow the providers' documentation:
GitHub X-GitHub-Event / X-GitHub-Delivery / X-Hub-Signature-256 (sha256=hex),
GitLab X-Gitlab-Event / X-Gitlab-Token / Idempotency-Key, Gitea X-Gitea-Event
/ X-Gitea-Delivery / X-Gitea-Signature (bare hex, also sending the GitHub
headers as Gitea does), generic: X-Signature (sha256=hex) / X-Delivery.
"""
import argparse
import hashlib
import hmac
import http.client
import json
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("path")
ap.add_argument("provider")
ap.add_argument("secret")
ap.add_argument("--event")
ap.add_argument("--delivery")
ap.add_argument("--ref", default="refs/heads/main")
ap.add_argument("--before", default="0" * 40)
ap.add_argument("--after", default="1" * 40)
ap.add_argument("--bad-sig", action="store_true")
ap.add_argument("--no-sig", action="store_true")
ap.add_argument("--form", action="store_true")
ap.add_argument("--body")
ap.add_argument("--method", default="POST")
ap.add_argument("--then", action="append", default=[])
ap.add_argument("--source", help="the local address to connect from")
a = ap.parse_args()

payload = {"ref": a.ref, "before": a.before, "after": a.after,
           "repository": {"full_name": "team/images", "clone_url": "https://example.invalid/x.git"},
           "commits": [{"id": a.after, "added": [], "removed": [], "modified": ["a/f"]}]}
if a.provider == "gitlab":
    payload.update({"object_kind": "push", "checkout_sha": a.after, "total_commits_count": 1})
body = (a.body if a.body is not None else json.dumps(payload)).encode()
ctype = "application/json"
if a.form:
    body = ("payload=" + urllib.parse.quote_plus(body.decode())).encode()
    ctype = "application/x-www-form-urlencoded"
secret = a.secret + ("x" if a.bad_sig else "")
mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
h = {"Content-Type": ctype, "User-Agent": "kiln-test"}
if a.provider == "github":
    h["X-GitHub-Event"] = a.event or "push"
    if a.delivery:
        h["X-GitHub-Delivery"] = a.delivery
    if not a.no_sig:
        h["X-Hub-Signature-256"] = "sha256=" + mac
elif a.provider == "gitlab":
    h["X-Gitlab-Event"] = a.event or "Push Hook"
    if a.delivery:
        h["Idempotency-Key"] = a.delivery
    if not a.no_sig:
        h["X-Gitlab-Token"] = secret
elif a.provider == "gitea":
    h["X-Gitea-Event"] = a.event or "push"
    h["X-GitHub-Event"] = a.event or "push"
    if a.delivery:
        h["X-Gitea-Delivery"] = a.delivery
        h["X-GitHub-Delivery"] = a.delivery
    if not a.no_sig:
        h["X-Gitea-Signature"] = mac
        h["X-Hub-Signature-256"] = "sha256=" + mac
else:
    if a.delivery:
        h["X-Delivery"] = a.delivery
    if not a.no_sig:
        h["X-Signature"] = "sha256=" + mac
c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10,
                               source_address=(a.source, 0) if a.source else None)
for delivery in [a.delivery] + a.then:
    for k in ("X-GitHub-Delivery", "Idempotency-Key", "X-Gitea-Delivery", "X-Delivery"):
        if k in h:
            h[k] = delivery
    c.request(a.method, a.path, body=body, headers=h)
    r = c.getresponse()
    r.read()
    print(r.status)
