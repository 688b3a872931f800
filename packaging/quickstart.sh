#!/bin/sh
# quickstart.sh: installs what is missing, builds kiln, makes an example images
# repository from conf/example-images (two commits) and asks kiln which images
# the second commit changed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

packaging/deps.sh
cmake -S . -B build -DKILN_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

repo="$top/build/example-images"
rm -rf "$repo"
mkdir -p "$repo"
cp -R conf/example-images/. "$repo/"
git -C "$repo" init -q -b main
export GIT_AUTHOR_NAME=kiln GIT_AUTHOR_EMAIL=kiln@example.invalid
export GIT_COMMITTER_NAME=kiln GIT_COMMITTER_EMAIL=kiln@example.invalid
git -C "$repo" add -A
git -C "$repo" commit -q -m "Example images"

# The second commit: the base image changes, a note it ignores changes, a
# new image appears.
echo "Now with a new welcome line." >>"$repo/base/rootfs/etc/motd"
echo "More notes." >>"$repo/base/docs/notes.txt"
mkdir -p "$repo/tools/yq"
printf 'name: tools/yq\nversion: "4.40.5"\nregistry: registry.example.com:5000/team\n' \
	>"$repo/tools/yq/manifest.yaml"
printf 'FROM registry.example.com:5000/team/examples/base:latest\n' >"$repo/tools/yq/Dockerfile"
git -C "$repo" add -A
git -C "$repo" commit -q -m "Change the base image, add yq"

echo "\$ kiln changes --repo build/example-images HEAD~1 HEAD"
build/kiln changes --repo "$repo" HEAD~1 HEAD
