#!/usr/bin/env python3
"""peek.py: read-only questions to a registry or a Docker engine, for the
end-to-end tests.

  peek.py tags URL REPO [--ca FILE] [--auth USER:PASS]
      the repository's tags, one per line (none: no output)
  peek.py digest URL REPO TAG [...]     the manifest digest of REPO:TAG
  peek.py label URL REPO TAG NAME [...] the image config's label NAME
  peek.py containers SOCKET             ids of every container, one per line
"""
import base64
import http.client
import json
import socket
import ssl
import sys
import urllib.error
import urllib.request

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
])


def opener(args):
    ca = auth = None
    rest = []
    i = 0
    while i < len(args):
        if args[i] == "--ca":
            ca = args[i + 1]
            i += 2
        elif args[i] == "--auth":
            auth = args[i + 1]
            i += 2
        else:
            rest.append(args[i])
            i += 1
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return ctx, headers, rest


def get(url, ctx, headers, accept=None):
    h = dict(headers)
    if accept:
        h["Accept"] = accept
    req = urllib.request.Request(url, headers=h)
    with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
        return r.read(), r.headers


def registry(cmd, args):
    ctx, headers, rest = opener(args)
    base, repo = rest[0].rstrip("/"), rest[1]
    if cmd == "tags":
        try:
            body, _ = get(f"{base}/v2/{repo}/tags/list", ctx, headers)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return
            raise
        for t in json.loads(body).get("tags") or []:
            print(t)
        return
    tag = rest[2]
    body, h = get(f"{base}/v2/{repo}/manifests/{tag}", ctx, headers, MANIFEST_TYPES)
    if cmd == "digest":
        print(h["Docker-Content-Digest"])
        return
    cfg = json.loads(body)["config"]["digest"]
    blob, _ = get(f"{base}/v2/{repo}/blobs/{cfg}", ctx, headers)
    labels = json.loads(blob).get("config", {}).get("Labels") or {}
    print(labels.get(rest[3], ""))


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=20)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def containers(sock):
    c = UnixConnection(sock)
    c.request("GET", "/containers/json?all=1")
    for x in json.loads(c.getresponse().read()):
        print(x["Id"])


def main():
    cmd = sys.argv[1]
    if cmd == "containers":
        containers(sys.argv[2])
    else:
        registry(cmd, sys.argv[2:])


if __name__ == "__main__":
    main()
