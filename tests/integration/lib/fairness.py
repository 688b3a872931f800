#!/usr/bin/env python3
"""Attacks and probes kilnd's HTTP listener, for tests/integration/fairness.sh.

fairness.py attack PORT SECONDS READY_FILE STOP_FILE
    From 127.0.0.1: 2,000 idle connections (they send nothing) and 1,100
    slow-loris connections (a request line, then one header line a second);
    each one reconnects as soon as kilnd closes it. Writes READY_FILE once
    every connection was opened at least once; stops when STOP_FILE appears
    or after SECONDS, and prints how many connections it made.
fairness.py probe PORT SECONDS BUDGET_MS
    From 127.0.0.2: GET /healthz on a new connection every 100 ms for
    SECONDS; each must answer 200 within BUDGET_MS (connect to last byte).
    Prints the figures; exits 1 when a probe failed or was late.
fairness.py hold PORT N PER_ADDRESS
    N keep-alive connections, PER_ADDRESS from each of 127.0.0.10, .11, ...,
    opened in order, each answered once and then left idle; then /healthz
    from 127.0.0.2. Passes when that answers 200 and kilnd closed the first
    100 connections (the oldest idle) and none of the last 100.
fairness.py silent PORT
    A connection that sends nothing must be closed after 2.5 to 5 s.
fairness.py linger PORT BODY_MAX
    A body over BODY_MAX posted with http.client must read its 413; a client
    that never stops sending is cut off within 5 s.
"""
import asyncio
import os
import socket
import statistics
import sys
import time

HOST = "127.0.0.1"


class Attack:
    def __init__(self, port, seconds):
        self.port = port
        self.stop = time.monotonic() + seconds
        self.idle, self.loris = set(), set()  # which ones opened at least once
        self.connects = self.refused = 0

    def going(self):
        return time.monotonic() < self.stop

    async def connect(self, opened, key):
        """A new connection from 127.0.0.1, or None (after a pause)."""
        try:
            r, w = await asyncio.open_connection(HOST, self.port, local_addr=("127.0.0.1", 0))
        except OSError:
            self.refused += 1
            await asyncio.sleep(0.05)
            return None, None
        self.connects += 1
        opened.add(key)
        return r, w

    async def idle_one(self, key):
        while self.going():
            r, w = await self.connect(self.idle, key)
            if w is None:
                continue
            try:
                while self.going():  # until kilnd closes it
                    try:
                        if await asyncio.wait_for(r.read(1), 1.0) == b"":
                            break
                    except asyncio.TimeoutError:
                        pass
            except OSError:
                pass
            w.close()

    async def loris_one(self, key):
        while self.going():
            r, w = await self.connect(self.loris, key)
            if w is None:
                continue
            try:
                w.write(b"POST /hooks/x HTTP/1.1\r\nHost: x\r\n")
                while self.going():  # a header line a second, until kilnd closes it
                    await w.drain()
                    try:
                        if await asyncio.wait_for(r.read(1), 1.0) == b"":
                            break
                    except asyncio.TimeoutError:
                        w.write(b"X-Slow: a\r\n")
            except OSError:
                pass
            w.close()


async def attack(port, seconds, ready_file, stop_file):
    a = Attack(port, seconds)
    t0 = time.monotonic()
    tasks = [asyncio.create_task(a.idle_one(i)) for i in range(2000)]
    tasks += [asyncio.create_task(a.loris_one(i)) for i in range(1100)]
    while len(a.idle) < 2000 or len(a.loris) < 1100:
        await asyncio.sleep(0.1)
        if not a.going():
            sys.exit("attack: could not open every connection once")
    ramp = time.monotonic() - t0
    open(ready_file, "w").close()
    while a.going() and not os.path.exists(stop_file):
        await asyncio.sleep(0.1)
    a.stop = 0
    await asyncio.gather(*tasks)
    took = time.monotonic() - t0
    print("attack: %.1f s (every connection open once after %.1f s), %d connections made "
          "(%.0f a second), %d connects failed"
          % (took, ramp, a.connects, a.connects / took, a.refused))


def probe(port, seconds, budget_ms):
    lat, bad = [], []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        t0 = time.monotonic()
        try:
            data = healthz(port, "127.0.0.2")
            ok = data.startswith(b"HTTP/1.1 200")
        except OSError as e:
            data, ok = str(e).encode(), False
        ms = (time.monotonic() - t0) * 1000
        lat.append(ms)
        if not ok or ms > budget_ms:
            bad.append("%.1f ms: %r" % (ms, data[:40]))
        time.sleep(max(0, 0.1 - (time.monotonic() - t0)))
    print("probes: %d, failed or over %d ms: %d, latency max %.1f ms, median %.1f ms"
          % (len(lat), budget_ms, len(bad), max(lat), statistics.median(lat)))
    for b in bad[:5]:
        print("  " + b)
    return 1 if bad or not lat else 0


def healthz(port, source):
    s = socket.create_connection((HOST, port), timeout=5, source_address=(source, 0))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def hold(port, n, per_address):
    socks = []
    for i in range(n):
        src = "127.0.0.%d" % (10 + i // per_address)
        s = socket.create_connection((HOST, port), timeout=5, source_address=(src, 0))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            if not s.recv(65536).startswith(b"HTTP/1.1 200"):
                raise OSError("no answer")
        except OSError:
            s.close()
            s = None  # refused: kilnd had no room for it
        socks.append(s)
    try:
        answer = healthz(port, "127.0.0.2")
    except OSError as e:
        answer = str(e).encode()
    time.sleep(0.5)

    def closed(s):
        if s is None:
            return True
        s.setblocking(False)
        try:
            return s.recv(1) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    first, last = sum(map(closed, socks[:100])), sum(map(closed, socks[-100:]))
    print("%d idle connections: /healthz from another address %r; closed: %d of the first 100, "
          "%d of the last 100" % (n, answer[:15], first, last))
    return 0 if answer.startswith(b"HTTP/1.1 200") and first == 100 and last == 0 else 1


def linger(port, body_max):
    """kilnd refuses a body from its Content-Length: a client that sends the
    whole body before reading (http.client does) still reads the 413, and a
    client that goes on sending forever is cut off after the lingering bound."""
    import http.client
    c = http.client.HTTPConnection(HOST, port, timeout=10)
    t0 = time.monotonic()
    try:
        c.request("POST", "/hooks/x", body=b"{" * (body_max + 65536),
                  headers={"Content-Type": "application/json", "X-GitHub-Event": "push"})
        status = c.getresponse().status
    except OSError as e:
        status = repr(e)
    print("http.client, %d bytes over the body cap: %s in %.2f s"
          % (65536, status, time.monotonic() - t0))
    if status != 413:
        return 1
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"POST /hooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
    answer = s.recv(65536)
    t0 = time.monotonic()
    cut = None
    while time.monotonic() - t0 < 10:
        try:
            s.sendall(b"x" * 1024)
        except OSError:
            cut = time.monotonic() - t0
            break
        time.sleep(0.02)
    print("a client that never stops sending: %r, cut off after %s s"
          % (answer[:24], "%.2f" % cut if cut is not None else "over 10"))
    return 0 if answer.startswith(b"HTTP/1.1 413") and cut is not None and cut < 5 else 1


def silent(port):
    """A connection that sends nothing is closed at first_byte_timeout (3 s)."""
    s = socket.create_connection((HOST, port), timeout=20, source_address=("127.0.0.4", 0))
    t0 = time.monotonic()
    try:
        data = s.recv(1)
    except OSError as e:
        data = repr(e).encode()
    took = time.monotonic() - t0
    print("a connection that sends nothing: %r after %.2f s" % (data, took))
    return 0 if data == b"" and 2.5 < took < 5 else 1


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "attack":
        asyncio.run(attack(port, float(sys.argv[3]), sys.argv[4], sys.argv[5]))
    elif mode == "probe":
        sys.exit(probe(port, float(sys.argv[3]), float(sys.argv[4])))
    elif mode == "linger":
        sys.exit(linger(port, int(sys.argv[3])))
    elif mode == "silent":
        sys.exit(silent(port))
    elif mode == "hold":
        sys.exit(hold(port, int(sys.argv[3]), int(sys.argv[4])))


main()
