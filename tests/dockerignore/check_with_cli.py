#!/usr/bin/env python3
"""Confirms tests/data/dockerignore.cases against the real Docker CLI.

For each case it writes the files and the .dockerignore into a directory, runs
`docker build` (legacy builder) against tests/dockerignore/fake_engine.py, and
compares the files in the tar the CLI streams with the case's +/- marks.
Needs the docker CLI (no engine). Exit 0 when every case agrees.
Usage: check_with_cli.py [CASES_FILE]
"""
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "data", "dockerignore.cases")


def parse(path):
    cases, cur = [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("=== "):
                cur = {"title": line[4:], "patterns": [], "files": []}
                cases.append(cur)
            elif line.startswith("P "):
                cur["patterns"].append(line[2:])
            elif line.startswith("F "):
                name, mark = line[2:].rsplit(" ", 1)
                cur["files"].append((name, mark == "+"))
    return cases


def main():
    if shutil.which("docker") is None:
        print("SKIPPED: no docker CLI")
        return 77
    work = tempfile.mkdtemp(prefix="kiln-di-")
    sock, cap = os.path.join(work, "engine.sock"), os.path.join(work, "cap")
    os.mkdir(cap)
    engine = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_engine.py"), sock, cap])
    bad = 0
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        env = dict(os.environ, DOCKER_BUILDKIT="0", DOCKER_HOST="unix://" + sock)
        for n, case in enumerate(parse(CASES), 1):
            ctx = os.path.join(work, "ctx%d" % n)
            os.mkdir(ctx)
            for name, _ in case["files"]:
                p = os.path.join(ctx, name)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "w") as f:
                    f.write(name)
            with open(os.path.join(ctx, "Dockerfile"), "w") as f:
                f.write("FROM scratch\n")
            with open(os.path.join(ctx, ".dockerignore"), "w") as f:
                f.write("\n".join(case["patterns"]) + "\n")
            subprocess.run(["docker", "build", "-q", ctx], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with tarfile.open(os.path.join(cap, "context-%d.tar" % n)) as t:
                sent = {m.name for m in t.getmembers() if m.isfile()}
            for name, want in case["files"]:
                if (name in sent) != want:
                    bad += 1
                    print("MISMATCH %s: %s is %s by the CLI" % (case["title"], name,
                          "sent" if name in sent else "left out"))
        print("%d cases checked, %d mismatches" % (n, bad))
    finally:
        engine.terminate()
        engine.wait()
        shutil.rmtree(work)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
