#!/usr/bin/env python3
"""Stands in for systemd's notification socket.

notify_listen.py SOCKET_PATH LOG_FILE
Binds a datagram socket at SOCKET_PATH and appends every message it receives
to LOG_FILE, one line per field, each prefixed with a monotonic timestamp in
milliseconds. File descriptors passed along (systemd-notify's BARRIER=1)
are closed. Runs until killed.
"""
import array
import os
import socket
import sys
import time

path, log = sys.argv[1], sys.argv[2]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(log, "a", buffering=1) as out:
    while True:
        msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
                for fd in fds:
                    os.close(fd)
        now = int(time.monotonic() * 1000)
        for field in msg.decode(errors="replace").split("\n"):
            if field:
                out.write("%d %s\n" % (now, field))
