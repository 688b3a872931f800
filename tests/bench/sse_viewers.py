#!/usr/bin/env python3
"""sse_viewers.py PORT BUILD N OUT OFFSET: N dashboard viewers of one build's
live log, as N open event streams (/builds/BUILD/events?offset=OFFSET: the
build page shows the log up to OFFSET and its script streams from there)
read in one process (so
the viewers' own cost stays small and out of kilnd's). Each stream's text
(its data lines, as a browser joins them) is kept; when every stream has
ended, OUT gets one line per viewer: the last line of its text. Exits 1 if
a stream did not answer 200."""
import selectors
import socket
import sys

port, build, n, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
offset = int(sys.argv[5])
sel = selectors.DefaultSelector()
bufs = {}
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("GET /builds/%d/events?offset=%d HTTP/1.1\r\nHost: x\r\n"
               "Accept: text/event-stream\r\n\r\n" % (build, offset)).encode())
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    bufs[s] = bytearray()
open_ = n
while open_:
    for key, _ in sel.select():
        s = key.fileobj
        data = s.recv(1 << 16)
        if data:
            bufs[s] += data
        else:
            sel.unregister(s)
            s.close()
            open_ -= 1
bad = 0
with open(out, "w") as f:
    for raw in bufs.values():
        head, _, body = bytes(raw).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            bad += 1
            continue
        text = ""
        for ev in body.decode("utf-8", "replace").split("\n\n"):
            ls = ev.split("\n")
            if any(l.startswith("event: ") for l in ls):
                continue  # state and end events: not the log's text
            text += "\n".join(l[6:] for l in ls if l.startswith("data: "))
        lines = [l for l in text.split("\n") if l]
        f.write((lines[-1] if lines else "") + "\n")
sys.exit(1 if bad else 0)
