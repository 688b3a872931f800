#!/usr/bin/env python3
"""sse_burst.py PORT PATH N [SOURCE-ADDRESS...]: N requests for PATH sent at
once, spread over the source addresses (loopback ones: 127.0.0.2, ...;
default 127.0.0.1), each on its own connection; prints how many were
answered with each status, as "STATUS COUNT" lines, once every answer's
status line has come (or 10 s have passed: "none COUNT")."""
import collections
import socket
import sys

port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sources = sys.argv[4:] or ["127.0.0.1"]
socks = []
for i in range(n):
    s = socket.socket()
    s.bind((sources[i % len(sources)], 0))
    s.connect(("127.0.0.1", port))
    socks.append(s)
req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n" % path).encode()
for s in socks:
    s.sendall(req)
counts = collections.Counter()
for s in socks:
    s.settimeout(10)
    try:
        line = s.makefile("rb").readline().decode()
        counts[line.split(" ")[1] if line else "none"] += 1
    except OSError:
        counts["none"] += 1
for k in sorted(counts):
    print(k, counts[k])
