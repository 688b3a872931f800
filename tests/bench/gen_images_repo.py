#!/usr/bin/env python3
"""Writes a `git fast-import` stream for a deterministic images repository.

gen_images_repo.py IMAGES COMMITS > stream

Layout: images/gNN/imgNNNNN/{manifest.yaml,Dockerfile,.dockerignore,src/app.txt,
docs/notes.md}. The first commits add the images a hundred at a time; every
later commit changes one image: its source (counts), its docs (ignored by its
.dockerignore), its Dockerfile, its manifest version, or adds a source file.
Every odd-numbered image builds FROM the image before it, so half of the
images depend on another image of the repository.
"""
import sys

IMAGES = int(sys.argv[1])
COMMITS = int(sys.argv[2])
REG = "registry.example.com:5000/bench"
out = sys.stdout.buffer
state = 12345


def rand(n):
    """A fixed linear congruential generator: the same repository every run."""
    global state
    state = (state * 1103515245 + 12345) % (1 << 31)
    return state % n


def folder(i):
    return "images/g%02d/img%05d" % (i // 100, i)


def ref(i):
    return "%s/img%05d:1.%d" % (REG, i, versions[i])


def dockerfile(i):
    base = ref(i - 1).replace(":1.%d" % versions[i - 1], ":latest") if i % 2 else "scratch"
    return "FROM %s\nCOPY src/ /src/\nLABEL rev=\"%d\"\n" % (base, dfrev[i])


def manifest(i):
    return ("name: img%05d\nversion: \"1.%d\"\nregistry: %s\ntags: [latest]\n"
            "labels: {team: bench}\n" % (i, versions[i], REG))


def blob(path, text):
    data = text.encode()
    out.write(b"M 100644 inline %s\ndata %d\n" % (path.encode(), len(data)))
    out.write(data + b"\n")


versions = [0] * IMAGES
dfrev = [0] * IMAGES
extra = [0] * IMAGES
clock = 1700000000
mark = 0


def commit(msg, body):
    global clock, mark
    clock += 60
    mark += 1
    out.write(b"commit refs/heads/main\nmark :%d\n" % mark)
    out.write(b"committer bench <bench@example.invalid> %d +0000\n" % clock)
    m = msg.encode()
    out.write(b"data %d\n%s\n" % (len(m), m))
    body()
    out.write(b"\n")


def add_group(start):
    def body():
        for i in range(start, min(start + 100, IMAGES)):
            d = folder(i)
            blob(d + "/manifest.yaml", manifest(i))
            blob(d + "/Dockerfile", dockerfile(i))
            blob(d + "/.dockerignore", "docs\n*.tmp\n")
            blob(d + "/src/app.txt", "app %d\n" % i)
            blob(d + "/docs/notes.md", "notes %d\n" % i)
    return body


def change(n):
    i = rand(IMAGES)
    kind = rand(10)
    d = folder(i)

    def body():
        if kind < 4:
            blob(d + "/src/app.txt", "app %d change %d\n" % (i, n))
        elif kind < 6:
            blob(d + "/docs/notes.md", "notes %d change %d\n" % (i, n))
        elif kind < 8:
            dfrev[i] += 1
            blob(d + "/Dockerfile", dockerfile(i))
        elif kind < 9:
            versions[i] += 1
            blob(d + "/manifest.yaml", manifest(i))
        else:
            extra[i] += 1
            blob(d + "/src/extra%d.txt" % extra[i], "extra %d\n" % n)
    return body


groups = (IMAGES + 99) // 100
for g in range(groups):
    commit("add images %d-%d" % (g * 100, g * 100 + 99), add_group(g * 100))
for n in range(groups, COMMITS):
    commit("change %d" % n, change(n))
out.write(b"done\n")
