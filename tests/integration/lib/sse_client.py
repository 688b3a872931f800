#!/usr/bin/env python3
"""sse_client.py PORT PATH OUT [LAST-EVENT-ID [USER:PASSWORD]]: reads a Server-Sent Events
stream as a browser's EventSource does (the field rules of the HTML
standard: data lines joined with newlines, one leading space dropped,
comments skipped) and writes one JSON line per event to OUT, flushed as it
comes: {"event", "id", "data"}; then {"eof": true} when the server closes.
The status line and headers go first, as {"status", "headers"}."""
import base64
import json
import socket
import sys

port, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
last = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
user = sys.argv[5] if len(sys.argv) > 5 else None
s = socket.create_connection(("127.0.0.1", port))
req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" % path
if last is not None:
    req += "Last-Event-ID: %s\r\n" % last
if user is not None:
    req += "Authorization: Basic %s\r\n" % base64.b64encode(user.encode()).decode()
s.sendall((req + "\r\n").encode())
f = s.makefile("rb")
o = open(out, "w")


def emit(obj):
    o.write(json.dumps(obj) + "\n")
    o.flush()


status = f.readline().decode().rstrip("\r\n")
headers = {}
while True:
    line = f.readline().decode().rstrip("\r\n")
    if not line:
        break
    k, _, v = line.partition(":")
    headers[k.strip().lower()] = v.strip()
emit({"status": status, "headers": headers})
event, data, eid = None, [], None
for raw in f:
    line = raw.decode("utf-8", "replace").rstrip("\n")
    if line == "":
        if data or event:
            emit({"event": event or "message", "id": eid, "data": "\n".join(data)})
        event, data = None, []
        continue
    if line.startswith(":"):
        emit({"comment": line[1:]})
        continue
    k, _, v = line.partition(":")
    if v.startswith(" "):
        v = v[1:]
    if k == "data":
        data.append(v)
    elif k == "event":
        event = v
    elif k == "id":
        eid = v
emit({"eof": True})
