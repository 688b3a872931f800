#!/usr/bin/env python3
"""Stands in for a forge's commit status API, or a notification receiver.

forge.py KIND PORT_FILE LOG_FILE CONTROL_DIR SECRET
KIND is github, gitlab, gitea or notify. SECRET is the API token the forge
expects (notify: the HMAC key of X-Kiln-Signature-256). Each request is
checked as the forge's documentation describes it (method, path, auth scheme,
Accept, User-Agent, JSON fields, description length, states); a request that
breaks a rule is logged as {"check": "what"} and answered 400. Otherwise the
answer is the first line of CONTROL_DIR/answers (consumed; "500", "429 1"
for Retry-After: 1, "401"), else CONTROL_DIR/always (not consumed), else 201
(notify: 200); each answered request is logged as one JSON line with the
answer and the fields that matter.
"""
import hashlib
import hmac
import http.server
import json
import os
import re
import sys

kind, port_file, log_file, ctl, secret = sys.argv[1:6]
SHA = "[0-9a-f]{40}"
RULES = {
    "github": (r"^/repos/([^/]+)/([^/]+)/statuses/(" + SHA + ")$", "context", 140,
               {"pending", "success", "failure", "error"}),
    "gitlab": (r"^/api/v4/projects/([^/]+)/statuses/(" + SHA + ")$", "name", 255,
               {"pending", "running", "success", "failed", "canceled"}),
    "gitea": (r"^/api/v1/repos/([^/]+)/([^/]+)/statuses/(" + SHA + ")$", "context", 255,
              {"pending", "success", "error", "failure", "warning"}),
}


def log(obj):
    with open(log_file, "a") as f:
        f.write(json.dumps(obj) + "\n")


def next_answer():
    path = os.path.join(ctl, "answers")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    if lines:
        with open(path + ".tmp", "w") as f:
            f.write("".join(l + "\n" for l in lines[1:]))
        os.replace(path + ".tmp", path)
        return lines[0]
    try:
        with open(os.path.join(ctl, "always")) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def check(self):
        """The problem with the request, or None; fills self.rec."""
        h = self.headers
        if not (h.get("User-Agent") or "").startswith("kiln/"):
            return "User-Agent %r" % h.get("User-Agent")
        if h.get("Content-Type") != "application/json":
            return "Content-Type %r" % h.get("Content-Type")
        try:
            body = json.loads(self.body)
        except ValueError:
            return "body is not JSON"
        if kind == "notify":
            want = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(h.get("X-Kiln-Signature-256") or "", want):
                return "signature"
            if not h.get("X-Kiln-Delivery") or h.get("X-Kiln-Delivery") != str(body.get("delivery")):
                return "X-Kiln-Delivery %r" % h.get("X-Kiln-Delivery")
            for k in ("repository", "branch", "commit", "image", "path", "state", "error",
                      "duration_seconds", "digest", "log_url", "text", "build"):
                if k not in body:
                    return "no %s" % k
            self.rec = {"delivery": h.get("X-Kiln-Delivery"), "state": body["state"],
                        "build": body["build"], "image": body["image"],
                        "log_url": body["log_url"], "text": body["text"]}
            return None
        pattern, ctx_field, limit, states = RULES[kind]
        m = re.match(pattern, self.path)
        if not m:
            return "path %s" % self.path
        if kind == "github":
            if h.get("Authorization") != "Bearer " + secret:
                return "Authorization"
            if h.get("Accept") != "application/vnd.github+json":
                return "Accept %r" % h.get("Accept")
            if h.get("X-GitHub-Api-Version") != "2022-11-28":
                return "X-GitHub-Api-Version"
        elif kind == "gitlab":
            if h.get("PRIVATE-TOKEN") != secret:
                return "PRIVATE-TOKEN"
        elif h.get("Authorization") != "token " + secret:
            return "Authorization"
        extra = set(body) - {"state", ctx_field, "description", "target_url"}
        if extra:
            return "unknown fields %s" % sorted(extra)
        if body.get("state") not in states:
            return "state %r" % body.get("state")
        if not str(body.get(ctx_field, "")).startswith("kiln/"):
            return "%s %r" % (ctx_field, body.get(ctx_field))
        if len(body.get("description", "")) > limit:
            return "description longer than %d" % limit
        self.rec = {"project": m.group(1) if kind == "gitlab" else m.group(1) + "/" + m.group(2),
                    "sha": m.groups()[-1], "state": body["state"], "context": body[ctx_field],
                    "description": body.get("description"), "target_url": body.get("target_url")}
        return None

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(n)
        self.rec = {}
        problem = self.check()
        if problem:
            log({"check": problem})
            self.send_response(400)
            self.end_headers()
            return
        answer = (next_answer() or ("200" if kind == "notify" else "201")).split()
        code = int(answer[0])
        self.rec["answer"] = code
        log(self.rec)
        self.send_response(code)
        if len(answer) > 1:
            self.send_header("Retry-After", answer[1])
        if 300 <= code < 400:  # a renamed repository: the same call, elsewhere
            self.send_header("Location", re.sub(r"^/repos/[^/]+/[^/]+/", "/repos/team/renamed/", self.path))
        body = b"{}" if code < 300 else json.dumps({"message": "stand-in says %d" % code}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send_response(405)
        self.end_headers()


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.replace(port_file + ".tmp", port_file)
srv.serve_forever()
