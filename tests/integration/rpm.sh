#!/usr/bin/env bash
# rpm.sh: the RPM built from this tree (packaging/rpm/build.sh, rpmbuild in
# a scratch directory) ships the same paths as the .deb (CPack, built here
# too), with the same text files, the maintainer scripts, library Requires
# and the right header fields. It is only queried (rpm -qp): Debian's rpm has
# no database to install into. Plain build only (see tests/CMakeLists.txt).
. "$(dirname "$0")/lib/common.sh"
: "${KILN_SRC:?}"

for c in rpm rpmbuild cmake; do
	command -v "$c" >/dev/null || skip_all "no $c (packages rpm, cmake: packaging/deps.sh --tests)"
done

echo "building the RPM (packaging/rpm/build.sh) in $TEST_TMP/rpm"
"$KILN_SRC/packaging/rpm/build.sh" "$TEST_TMP/rpm" >"$TEST_TMP/rpm.log" 2>&1 || {
	cat "$TEST_TMP/rpm.log" >&2
	echo "FAIL: the RPM did not build" >&2
	exit 1
}
RPM=$(ls "$TEST_TMP"/rpm/kiln-*.rpm)
VERSION=$(sed -n 's/^project(kiln VERSION \([0-9.]*\).*/\1/p' "$KILN_SRC/CMakeLists.txt")

# the .deb to compare with, built as README says (needs dpkg-dev)
DEB=
if command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null && command -v cpack >/dev/null; then
	echo "building the .deb (cmake, cpack -G DEB) in $TEST_TMP/deb"
	cmake -S "$KILN_SRC" -B "$TEST_TMP/deb" -DCMAKE_INSTALL_PREFIX=/usr -DKILN_TESTS=OFF >"$TEST_TMP/deb.log" 2>&1 &&
		cmake --build "$TEST_TMP/deb" -j2 >>"$TEST_TMP/deb.log" 2>&1 &&
		(cd "$TEST_TMP/deb" && cpack -G DEB) >>"$TEST_TMP/deb.log" 2>&1 || {
		cat "$TEST_TMP/deb.log" >&2
		echo "FAIL: the .deb did not build" >&2
		exit 1
	}
	DEB=$(ls "$TEST_TMP"/deb/kiln_*.deb)
fi

t_fields() {
	local f
	f=$(rpm -qp --queryformat '%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{SUMMARY}\n' "$RPM")
	[ "$f" = "kiln|$VERSION|1|$(rpm --eval '%{_arch}')|Keeps a Docker registry in step with a git repository of images" ] ||
		fail "header: $f"
	contains "$(rpm -qpi "$RPM")" "kilnd, the daemon"
}

# every file of the .deb, none more, and the directories the RPM owns are
# kiln's own (owning /usr/bin would clash with the system's packages)
t_layout() {
	local rfiles dfiles rdirs
	[ -n "$DEB" ] || {
		skip "no .deb to compare with (packages dpkg-dev, cmake)"
		return
	}
	rfiles=$(rpm -qp --queryformat '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" | awk '$1 !~ /^d/ {print $2}' | sort)
	dfiles=$(dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {sub(/^\./, "", $6); print $6}' | sort)
	[ -n "$rfiles" ] || fail "rpm -qlp lists no file"
	[ "$rfiles" = "$dfiles" ] || fail "the RPM's files differ from the .deb's: $(diff <(echo "$dfiles") <(echo "$rfiles"))"
	rdirs=$(rpm -qp --queryformat '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$RPM" | awk '$1 ~ /^d/' | sort -k3)
	[ "$rdirs" = "drwxr-x--- root:kiln /etc/kiln
drwxr-x--- root:kiln /etc/kiln/secrets
drwxr-xr-x root:root /usr/lib/kiln
drwxr-xr-x root:root /usr/share/doc/kiln" ] || fail "directories: $rdirs"
	# same text as the .deb's: the unit names /usr/bin/kilnd (package.sh
	# checks that), the same conffile and snippets
	dpkg-deb -x "$DEB" debroot
	rpm -qp --queryformat '[%{FILEDIGESTS} %{FILENAMES}\n]' "$RPM" >digests
	for f in /lib/systemd/system/kilnd.service /lib/systemd/system/kilnd.socket /usr/lib/sysusers.d/kiln.conf \
		/usr/lib/tmpfiles.d/kiln.conf /etc/kiln/kilnd.yaml /usr/share/doc/kiln/README.md; do
		grep -qx "$(sha256sum <"debroot$f" | cut -d' ' -f1) $f" digests || fail "$f differs from the .deb's"
	done
}

t_config_and_docs() {
	local f
	f=$(rpm -qp --queryformat '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM")
	# c: %config, n: noreplace (an edited kilnd.yaml survives upgrades)
	grep -qx 'cn /etc/kiln/kilnd.yaml' <<<"$f" || fail "kilnd.yaml is not %config(noreplace): $(grep kilnd.yaml <<<"$f")"
	[ "$(rpm -qpc "$RPM")" = /etc/kiln/kilnd.yaml ] || fail "config files: $(rpm -qpc "$RPM")"
	contains "$(rpm -qpd "$RPM")" /usr/share/doc/kiln/README.md
	contains "$(rpm -qpd "$RPM")" /usr/share/man/man8/kilnd.8.gz
}

t_scripts() {
	local s body
	contains "$(rpm -qp --scripts "$RPM")" "postinstall scriptlet"
	for s in PREIN POSTIN PREUN POSTUN; do
		body=$(rpm -qp --queryformat "%{$s}" "$RPM")
		[ -n "$body" ] && [ "$body" != "(none)" ] || fail "no $s scriptlet"
		sh -n <<<"$body" || fail "$s: syntax error"
	done
	body=$(rpm -qp --queryformat '%{PREIN}' "$RPM")
	contains "$body" "systemd-sysusers"
	contains "$body" "useradd -r"
	# the user of the shipped sysusers snippet, made before it is installed
	contains "$body" "echo '$(grep -v '^#' "$KILN_SRC/systemd/kiln.sysusers")' | systemd-sysusers -"
	# started only when the configuration is valid and lists a repository
	body=$(rpm -qp --queryformat '%{POSTIN}' "$RPM")
	contains "$body" "/usr/bin/kilnd --check-config --config \"\$config\""
	contains "$body" "systemd-tmpfiles --create kiln.conf"
	contains "$body" "kilnd not started"
	# erasing, not upgrading, stops and disables kilnd
	body=$(rpm -qp --queryformat '%{PREUN}' "$RPM")
	contains "$body" '[ "$1" -eq 0 ]'
	contains "$body" "disable --now kilnd.service kilnd.socket"
}

# the libraries from rpm's ELF dependency generator: each that kiln or
# kilnd links (the same list as the .deb's Depends:)
t_requires() {
	local r lib
	r=$(rpm -qp --requires "$RPM")
	for lib in libc.so.6 libgit2.so libyaml-0.so libjansson.so libuv.so.1 libsqlite3.so libsystemd.so.0 libcurl.so.4 \
		libarchive.so libcrypto.so libhttp_parser.so; do
		grep -q "^${lib}[^ ]*()" <<<"$r" || fail "no Requires: on $lib: $r"
	done
	grep -qx 'shadow-utils' <<<"$r" || fail "no Requires(pre): shadow-utils"
}

run_all
