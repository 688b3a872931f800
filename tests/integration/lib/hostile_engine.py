#!/usr/bin/env python3
"""A stand-in Docker Engine on a unix socket that answers badly on purpose.

    hostile_engine.py SOCKET MODE_FILE

Before each request it reads MODE_FILE (one word), so a test switches the
misbehaviour between runs without restarting it. Modes name the call that
goes wrong; every other call gets a plausible good answer:

  ok              everything well formed (the control case)
  ping_noversion  /_ping without an API-Version header
  ping_garbage    /_ping with API-Version: banana
  build_garbage   the build stream: non-JSON lines, JSON of the wrong types,
                  no aux.ID
  build_error     HTTP 200, then an error line
  build_500       HTTP 500 with a JSON message
  build_html      HTTP 500 with an HTML body
  build_cut       the connection closes in the middle of the stream
  build_hugeline  one 3 MiB line without a newline, then a good end
  build_nul       NUL bytes and invalid UTF-8 inside stream lines
  build_slow      one line, then nothing for 60 s (a build to interrupt)
  build_drip      a line every $DRIP_MS ms (default 250) for $DRIP_LINES lines
                  (default 40), with colour codes and markup in them, then a
                  good end (a running build whose log grows)
  create_garbage  /containers/create answers 201 with a non-JSON body
  wait_garbage    /containers/{id}/wait answers {} (no StatusCode)
  logs_garbage    /containers/{id}/logs answers frames with lying lengths
  check_500       /distribution/{name}/json: the registry answered 503
  check_denied    /distribution/{name}/json: the registry wants credentials
  push_error      the push stream carries an error line
  push_garbage    the push stream is not JSON, and has no digest
  session_refused POST /session answers 400 (a BuildKit build's session)
  session_drop    POST /session answers 101, then the connection closes
                  half a second later; in both, the build streams slowly

With $AUTH_LOG set, the X-Registry-Auth and X-Registry-Config headers it
gets are appended to that file (a test shows the credentials were sent).
"""
import http.server
import os
import socketserver
import sys
import time

SOCK, MODE_FILE = sys.argv[1], sys.argv[2]
IMAGE_ID = "sha256:" + "ab" * 32


def mode():
    try:
        with open(MODE_FILE) as f:
            return f.read().strip()
    except OSError:
        return "ok"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def stream(self, chunks, cut=False):
        """A chunked 200 reply; with cut, the connection drops mid-chunk."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for c in chunks:
            if isinstance(c, str):
                c = c.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
        if cut:
            self.wfile.write(b"40\r\n{\"stream\":\"half")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(b"0\r\n\r\n")

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return
                self.rfile.read(size)
                self.rfile.readline()
        self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def ping(self):
        m = mode()
        headers = [("Api-Version", "1.41")]
        if m == "ping_noversion":
            headers = []
        elif m == "ping_garbage":
            headers = [("Api-Version", "banana")]
        self.reply(200, "OK", "text/plain", headers)

    def do_HEAD(self):
        self.ping()

    def note_auth(self):
        log = os.environ.get("AUTH_LOG")
        for h in ("X-Registry-Auth", "X-Registry-Config"):
            if log and self.headers.get(h):
                with open(log, "a") as f:
                    f.write("%s: %s\n" % (h, self.headers[h]))

    def do_GET(self):
        self.note_auth()
        m, p = mode(), self.path
        if p.endswith("/_ping"):
            return self.ping()
        if "/distribution/" in p:
            if m == "check_500":
                return self.reply(500, '{"message":"received unexpected HTTP status: '
                                       '503 Service Unavailable"}')
            if m == "check_denied":
                return self.reply(500, '{"message":"no basic auth credentials"}')
            return self.reply(404, '{"message":"manifest unknown"}')
        if "/logs" in p:
            if m == "logs_garbage":
                # a header claiming 1 GiB, then a few bytes
                return self.reply(200, b"\x01\x00\x00\x00\x40\x00\x00\x00short",
                                  "application/vnd.docker.raw-stream")
            return self.reply(200, b"\x01\x00\x00\x00\x00\x00\x00\x03ok\n",
                              "application/vnd.docker.raw-stream")
        return self.reply(404, '{"message":"no such thing"}')

    def do_DELETE(self):
        self.reply(204, "")

    def session(self, m):
        if m == "session_refused":
            return self.reply(400, '{"message":"session already exists"}')
        self.send_response(101)
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", "h2c")
        self.end_headers()
        self.wfile.flush()
        time.sleep(0.5 if m == "session_drop" else 10)
        self.close_connection = True

    def do_POST(self):
        self.note_auth()
        m, p = mode(), self.path
        self.body()
        if p.endswith("/session"):
            return self.session(m)
        if "/build" in p:
            return self.build(m)
        if p.endswith("/containers/create") or "/containers/create?" in p:
            if m == "create_garbage":
                return self.reply(201, "this is not json")
            return self.reply(201, '{"Id":"c0ffee","Warnings":[]}')
        if p.endswith("/start"):
            return self.reply(204, "")
        if "/wait" in p:
            if m == "wait_garbage":
                return self.reply(200, "{}")
            return self.reply(200, '{"StatusCode":0}')
        if "/push" in p:
            if m == "push_error":
                return self.stream(['{"status":"Preparing"}\n',
                                    '{"errorDetail":{"message":"denied: no"},"error":"denied: no"}\n'])
            if m == "push_garbage":
                return self.stream(["<<<>>>\n", "[]\n", '{"aux":[1]}\n'])
            return self.stream(['{"status":"Pushed"}\n',
                                '{"aux":{"Tag":"1","Digest":"sha256:%s","Size":1}}\n' % ("cd" * 32)])
        return self.reply(404, '{"message":"no such thing"}')

    def build(self, m):
        good_end = ['{"stream":"Successfully built abab\\n"}\n',
                    '{"aux":{"ID":"%s"}}\n' % IMAGE_ID]
        if m == "build_garbage":
            return self.stream(["not json at all\n", "[1,2,3]\n", '{"stream":5}\n',
                                '{"aux":"x"}\n', '{"error":null}\n', "\n\n"])
        if m == "build_error":
            return self.stream(['{"stream":"Step 1/1 : RUN false\\n"}\n',
                                '{"errorDetail":{"code":1,"message":"step failed"},"error":"step failed"}\n'])
        if m == "build_500":
            return self.reply(500, '{"message":"engine on fire"}')
        if m == "build_html":
            return self.reply(500, "<html><body>Bad Gateway</body></html>", "text/html")
        if m == "build_cut":
            return self.stream(['{"stream":"Step 1/2\\n"}\n'], cut=True)
        if m == "build_hugeline":
            return self.stream(['{"stream":"' + "x" * (3 << 20) + '"}', "\n"] + good_end)
        if m == "build_nul":
            return self.stream([b'{"stream":"a\\u0000b\\n"}\n', b'{"stream":"\xff\xfe\n"}\n',
                                b"\x00\x00\n"] + good_end)
        if m.startswith("session_"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            line = b'{"stream":"Step 1/1 : FROM scratch\\n"}\n'
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            time.sleep(3)
            for c in good_end:
                c = c.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
            return
        if m == "build_drip":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            n, ms = int(os.environ.get("DRIP_LINES", "40")), int(os.environ.get("DRIP_MS", "250"))
            for i in range(n):
                line = ('{"stream":"\\u001b[32mdrip %d\\u001b[0m <b id=\\"drip%d\\">x</b>\\n"}\n'
                        % (i, i)).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(ms / 1000)
            for c in good_end:
                c = c.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
            return
        if m == "build_slow":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            line = b'{"stream":"Step 1/2 : RUN sleep 60\\n"}\n'
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            time.sleep(60)
            return
        return self.stream(['{"stream":"Step 1/1 : FROM scratch\\n"}\n'] + good_end)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("local", 0)


if os.path.exists(SOCK):
    os.unlink(SOCK)
Server(SOCK, Handler).serve_forever()
