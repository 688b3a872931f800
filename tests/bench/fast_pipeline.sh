#!/usr/bin/env bash
# fast_pipeline.sh FROM TO, with GIT_DIR set (bench): the fast way a CI author
# gets the changed image folders' manifests, the peer of `kiln changes`.
set -eu
from=$1 to=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git diff --name-only --no-renames "$from" "$to" >"$tmp/paths"
# every ancestor folder of every path is a candidate ("" = the root)
awk '{ d = $0; while ((i = match(d, /\/[^\/]*$/)) > 0) { d = substr(d, 1, i - 1); print d "/" }
       print "" }' "$tmp/paths" | sort -u >"$tmp/cands"
sed "s|^|$to:|; s|\$|manifest.yaml|" "$tmp/cands" |
	git cat-file --batch-check='%(objecttype)' >"$tmp/types"
# the nearest candidate holding a manifest, per path
paste "$tmp/cands" "$tmp/types" |
	awk -F'\t' 'FNR == NR { if ($2 == "blob") has[$1] = 1; next }
	     { d = $0; while ((i = match(d, /\/[^\/]*$/)) > 0) { d = substr(d, 1, i); if (d in has) { print d; next }
	       d = substr(d, 1, length(d) - 1) } if ("" in has) print "" }' - "$tmp/paths" |
	sort -u | sed "s|^|$to:|; s|\$|manifest.yaml|" | git cat-file --batch
