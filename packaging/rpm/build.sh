#!/bin/sh
# build.sh [OUTDIR [RPMBUILD-ARGS...]]: the binary RPM of this source tree,
# with packaging/rpm/kiln.spec, into OUTDIR (default ./rpm-out). The source
# tarball holds the tree as it is (tracked and untracked files git does not
# ignore, uncommitted edits included), so nothing is fetched. rpmbuild works
# in OUTDIR/topdir. On a host whose packages rpm does not manage (Debian),
# BuildRequires cannot be checked against rpm's database: --nodeps, and
# deps.sh's packages stand in for them.
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mkdir -p "${1:-rpm-out}" && cd "${1:-rpm-out}" && pwd)
[ $# -gt 0 ] && shift

version=$(sed -n 's/^project(kiln VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$version" ] || {
	echo "build.sh: no version in $src/CMakeLists.txt" >&2
	exit 1
}

top=$out/topdir
rm -rf "$top"
mkdir -p "$top/SOURCES" "$top/SPECS"
cp "$src/packaging/rpm/kiln.spec" "$top/SPECS/"

stage=$top/stage/kiln-$version
mkdir -p "$stage"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# files deleted but not yet committed are skipped
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
		xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\n" "$f"; done' sh |
		tar -cf - -T -) | tar -xf - -C "$stage"
else
	(cd "$src" && tar -cf - --exclude=./.git --exclude='./build*' .) | tar -xf - -C "$stage"
fi
tar -czf "$top/SOURCES/kiln-$version.tar.gz" -C "$top/stage" "kiln-$version"
rm -rf "$top/stage"

nodeps=
rpm -q rpm >/dev/null 2>&1 || nodeps=--nodeps
# shellcheck disable=SC2086
rpmbuild -bb $nodeps --define "_topdir $top" --define "kiln_version $version" \
	--define "_smp_mflags -j${KILN_JOBS:-2}" "$@" "$top/SPECS/kiln.spec"
find "$top/RPMS" -name '*.rpm' -exec mv {} "$out/" \;
ls "$out"/*.rpm
