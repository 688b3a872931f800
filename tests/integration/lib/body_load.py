#!/usr/bin/env python3
"""Large unauthenticated webhook bodies at once, against kilnd, for body.sh.

body_load.py PORT PID CLIENTS MIB SECONDS
CLIENTS connections at once each POST a MIB MiB body with a bad GitHub
signature to /hooks/github. A client that gets 503 checks its Retry-After
and sends again after 0.2 s (sooner than asked: the load must go on) until
it gets its final answer or SECONDS pass. Meanwhile /healthz is probed every
50 ms on a fresh connection (from a process of its own), and kilnd's (PID)
VmRSS before, VmHWM at the end and VmRSS a second after are read from /proc.
Prints one line of figures and one of answers, as KEY=VALUE:
  vmhwm_kib= rss_before_kib= rss_after_kib= healthz_max_ms= healthz_p95_ms= healthz_median_ms= probes=
  probes_over_100ms= failed_probes=
  final=<status:count,...> s503=<count> s503_without_retry_after=<count> resets=<count> unfinished=<count>
"""
import multiprocessing
import select
import socket
import statistics
import sys
import threading
import time

port, pid, clients, mib, seconds = (int(a) for a in sys.argv[1:6])
body = memoryview(b"x" * (mib << 20))
head = (
    "POST /hooks/github HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\n"
    "X-GitHub-Event: push\r\nX-GitHub-Delivery: load\r\n"
    "X-Hub-Signature-256: sha256=" + "00" * 32 + "\r\n"
    "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
).encode()
lock = threading.Lock()
final, results = {}, {"s503": 0, "no_retry_after": 0, "resets": 0, "unfinished": 0}
deadline = time.monotonic() + seconds


def count(key, status=None):
    with lock:
        if status is None:
            results[key] += 1
        else:
            final[status] = final.get(status, 0) + 1


def read_answer(s):
    """The whole answer (the server closes after it), b"" on a reset."""
    data = b""
    s.settimeout(30)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def one_try():
    """The status of one POST: the answer may come before the body is sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(head)
        # a refusal for want of room comes at the headers: wait for it a moment
        early = select.select([s], [], [], 0.02)[0]
        off = 0
        while not early and off < len(body):
            try:
                off += s.send(body[off:off + (256 << 10)])
            except OSError:
                break
            early = select.select([s], [], [], 0)[0]
        data = read_answer(s)
    finally:
        s.close()
    if not data.startswith(b"HTTP/1.1 "):
        return None, data
    return int(data[9:12]), data


def client():
    while time.monotonic() < deadline:
        status, data = one_try()
        if status is None:
            count("resets")
        elif status == 503:
            count("s503")
            if b"\r\nRetry-After: " not in data.split(b"\r\n\r\n")[0] + b"\r\n":
                count("no_retry_after")
        else:
            count(None, status)
            return
        time.sleep(0.2)
    count("unfinished")


def vm(field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def prober(stop, out):
    """In a process of its own: the clients' threads must not delay it."""
    probes, failed = [], 0
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: kiln\r\nConnection: close\r\n\r\n")
            ok = read_answer(s).startswith(b"HTTP/1.1 200")
            s.close()
        except OSError:
            ok = False
        if ok:
            probes.append((time.monotonic() - t0) * 1000)
        else:
            failed += 1
        time.sleep(0.05)
    out.send((probes, failed))


rss_before = vm("VmRSS")
stop = multiprocessing.Event()
here, there = multiprocessing.Pipe()
p = multiprocessing.Process(target=prober, args=(stop, there))
p.start()
threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
stop.set()
probes, failed = here.recv()
p.join()
hwm = vm("VmHWM")
time.sleep(1)  # what kilnd keeps once the load is over
rss = vm("VmRSS")
slow = sorted(probes or [0])
print("vmhwm_kib=%d rss_before_kib=%d rss_after_kib=%d healthz_max_ms=%.1f healthz_p95_ms=%.1f healthz_median_ms=%.1f "
      "probes=%d probes_over_100ms=%d failed_probes=%d"
      % (hwm, rss_before, rss, slow[-1], slow[int(0.95 * (len(slow) - 1))], statistics.median(slow), len(probes),
         sum(1 for x in probes if x >= 100), failed))
print("final=%s s503=%d s503_without_retry_after=%d resets=%d unfinished=%d"
      % (",".join("%d:%d" % kv for kv in sorted(final.items())) or "none", results["s503"],
         results["no_retry_after"], results["resets"], results["unfinished"]))
