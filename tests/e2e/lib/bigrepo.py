#!/usr/bin/env python3
"""bigrepo.py: a `git fast-import` stream for one commit on `main` holding an
image folder with a large context: FILES files of incompressible data,
TOTAL bytes in all, under FOLDER/data/NN/, plus its Dockerfile and manifest.

    bigrepo.py FOLDER FILES TOTAL REGISTRY [--tree DIR] | git fast-import

With --tree the same files are also written under DIR (for `docker build`).
fast-import writes one pack straight away, far faster than `git add` of a
working tree of this size."""
import os
import sys


def main():
    args = sys.argv[1:]
    tree = None
    if "--tree" in args:
        i = args.index("--tree")
        tree = args[i + 1]
        del args[i:i + 2]
    folder, files, total, registry = args[0], int(args[1]), int(args[2]), args[3]
    size = total // files
    out = sys.stdout.buffer
    small = {
        "Dockerfile": b"FROM scratch\nCOPY Dockerfile /\n",
        "manifest.yaml": ("name: %s\nversion: \"1\"\nregistry: %s\n"
                          % (folder, registry)).encode(),
    }
    paths = []
    mark = 0

    def blob(path, data):
        nonlocal mark
        mark += 1
        out.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)))
        out.write(data)
        out.write(b"\n")
        paths.append((path, mark))
        if tree is not None:
            full = os.path.join(tree, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)

    for name, data in small.items():
        blob("%s/%s" % (folder, name), data)
    for i in range(files):
        blob("%s/data/%02d/f%05d" % (folder, i % 100, i), os.urandom(size))
    msg = b"a large context"
    out.write(b"commit refs/heads/main\n")
    out.write(b"committer kiln <kiln@example.invalid> 1700000000 +0000\n")
    out.write(b"data %d\n%s\n" % (len(msg), msg))
    for path, m in paths:
        out.write(b"M 100644 :%d %s\n" % (m, path.encode()))
    out.write(b"\n")


if __name__ == "__main__":
    main()
