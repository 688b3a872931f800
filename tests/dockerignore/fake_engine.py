#!/usr/bin/env python3
"""A stand-in Docker Engine on a unix socket that records the build context.

It answers /_ping and POST /vX/build, saving the request body (the tar the
Docker CLI streams) to OUT_DIR/context-N.tar. Used by check_with_cli.sh to
confirm kiln's .dockerignore cases against the real Docker CLI.
"""
import http.server
import os
import socketserver
import sys

SOCK, OUT_DIR = sys.argv[1], sys.argv[2]
count = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _ping(self, body):
        self.send_response(200)
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return body

    def do_HEAD(self):
        self._ping(b"OK")

    def do_GET(self):
        self.wfile.write(self._ping(b"OK"))

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_POST(self):
        global count
        data = self._body()
        if "/build" in self.path:
            count += 1
            with open(os.path.join(OUT_DIR, "context-%d.tar" % count), "wb") as f:
                f.write(data)
        body = b'{"stream":"captured\\n"}\n{"aux":{"ID":"sha256:0"}}\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("local", 0)


if os.path.exists(SOCK):
    os.unlink(SOCK)
Server(SOCK, Handler).serve_forever()
