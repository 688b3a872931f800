#!/usr/bin/env python3
"""Looks for secrets in files: every output a test collected.

leaks.py SECRETS FILE...
SECRETS has one secret a line: LABEL<TAB>VALUE, or LABEL<TAB>VALUE<TAB>USER
for a password that basic authentication would send as USER:VALUE. A file
leaks a secret when it holds the value itself, USER:VALUE in base64 (plain
or URL-safe, as an Authorization header or a Docker auth config has it), or
any run of base64 characters that decodes to text holding the value (say an
X-Registry-Auth JSON). Prints one line per leak, FILE: LABEL (HOW), and
exits 1 when there is any, 0 when there is none.
"""
import base64
import binascii
import re
import sys

secrets = []
with open(sys.argv[1]) as f:
    for line in f:
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 2 and parts[1]:
            secrets.append((parts[0], parts[1].encode(), parts[2].encode() if len(parts) > 2 else None))

B64 = re.compile(rb"[A-Za-z0-9+/_-]{12,}={0,2}")


def decodings(data):
    """Every base64 run of data, decoded both ways."""
    for m in B64.finditer(data):
        tok = m.group(0).rstrip(b"=")
        tok += b"=" * (-len(tok) % 4)
        for dec in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                yield dec(tok)
            except (binascii.Error, ValueError):
                pass


leaks = 0
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        data = f.read()
    decoded = b"\n".join(decodings(data))
    for label, value, user in secrets:
        how = None
        if value in data:
            how = "as is"
        elif user is not None and any(
                enc(user + b":" + value).rstrip(b"=") in data
                for enc in (base64.b64encode, base64.urlsafe_b64encode)):
            how = "user:password in base64"
        elif value in decoded:
            how = "inside base64"
        if how:
            print("%s: %s (%s)" % (path, label, how))
            leaks += 1
sys.exit(1 if leaks else 0)
