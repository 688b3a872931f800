#!/usr/bin/env bash
# package.sh: the .deb built from this tree (CPack, in a scratch build
# configured for /usr) installs with dpkg, ships what it should, leaves an
# unconfigured install without a daemon, and purges clean. It installs into
# this machine's dpkg database: ctest runs it alone (RUN_SERIAL), and only in
# the plain build (the package is built here, from scratch, either way).
. "$(dirname "$0")/lib/common.sh"
: "${KILN_SRC:?}"

[ "$(id -u)" = 0 ] || skip_all "dpkg -i needs root"
for c in cmake cpack dpkg dpkg-deb dpkg-shlibdeps git; do
	command -v "$c" >/dev/null || skip_all "no $c (packages cmake, dpkg-dev, git)"
done
# never touch a kiln someone installed
if dpkg-query -W -f='${Status}' kiln 2>/dev/null | grep -q 'installed\|config-files\|unpacked'; then
	skip_all "a kiln package is already installed here: $(dpkg-query -W -f='${Status}' kiln)"
fi

BUILD=$TEST_TMP/build
echo "building the package (cmake, cpack -G DEB) in $BUILD"
cmake -S "$KILN_SRC" -B "$BUILD" -DCMAKE_INSTALL_PREFIX=/usr -DKILN_TESTS=OFF >"$TEST_TMP/build.log" 2>&1 &&
	cmake --build "$BUILD" -j2 >>"$TEST_TMP/build.log" 2>&1 &&
	(cd "$BUILD" && cpack -G DEB) >>"$TEST_TMP/build.log" 2>&1 ||
	{
		cat "$TEST_TMP/build.log" >&2
		echo "FAIL: the package did not build" >&2
		exit 1
	}
DEB=$(ls "$BUILD"/kiln_*.deb)

# never overwrite a file the package did not put there
clash=$(dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {sub(/^\./, "", $6); print $6}' | while read -r f; do
	[ -e "$f" ] && echo "$f"
done)
if [ -n "$clash" ] || [ -e /var/lib/kiln ]; then
	skip_all "files of the package exist already: $clash $(ls -d /var/lib/kiln 2>/dev/null)"
fi

had_user=no had_group=no
getent passwd kiln >/dev/null && had_user=yes
getent group kiln >/dev/null && had_group=yes
# whatever happens, leave the machine as found: no kiln package, and no kiln
# user or group unless there was one before
restore() {
	dpkg-query -W kiln >/dev/null 2>&1 && dpkg --purge kiln >/dev/null 2>&1
	[ "$had_user" = yes ] || userdel kiln 2>/dev/null
	[ "$had_group" = yes ] || groupdel kiln 2>/dev/null
}
at_exit restore

# The scenarios share one install, in this order (run_all's is alphabetical).
t_1_control() {
	local f
	f=$(dpkg-deb -f "$DEB" Package Version Architecture Depends)
	contains "$f" "Package: kiln"
	# Depends from dpkg-shlibdeps: every library kiln and kilnd link
	for lib in libc6 libgit2 libyaml libjansson libuv1 libsqlite3 libsystemd0 libcurl libarchive libssl libhttp-parser; do
		contains "$f" "$lib"
	done
	dpkg-deb -e "$DEB" ctl
	[ "$(cat ctl/conffiles)" = /etc/kiln/kilnd.yaml ] || fail "conffiles: $(cat ctl/conffiles)"
	for s in postinst prerm postrm; do
		[ -x "ctl/$s" ] || fail "no executable $s"
		sh -n "ctl/$s" || fail "$s: syntax error"
	done
}

# lintian at its default levels (errors and warnings) says nothing; the
# informational tags left are explained in README ("Installing")
t_1_lintian() {
	command -v lintian >/dev/null || { skip "no lintian (package lintian)"; return; }
	local out rc=0
	out=$(lintian --fail-on error,warning "$DEB" 2>&1) || rc=$?
	[ "$rc" = 0 ] || fail "lintian exit $rc: $out"
	! printf '%s\n' "$out" | grep -q '^[EW]:' || fail "lintian: $out"
	# the licence is where Debian policy puts it
	dpkg-deb -c "$DEB" | grep -q ' ./usr/share/doc/kiln/copyright$' || fail "no /usr/share/doc/kiln/copyright"
}

t_2_install() {
	local files
	expect_rc 0 dpkg -i "$DEB"
	# the shipped example lists no repository: postinst says so, enables nothing
	contains "$ERR" "kilnd not started"
	[ "$(dpkg-query -W -f='${Status}' kiln)" = "install ok installed" ] || fail "status: $(dpkg-query -W -f='${Status}' kiln)"
	files=$(dpkg -L kiln)
	for f in /usr/bin/kiln /usr/bin/kilnd /usr/lib/kiln/kiln-changes.so /usr/lib/kiln/kiln-build.so \
		/lib/systemd/system/kilnd.service /lib/systemd/system/kilnd.socket \
		/usr/lib/sysusers.d/kiln.conf /usr/lib/tmpfiles.d/kiln.conf /etc/kiln/kilnd.yaml \
		/usr/share/doc/kiln/README.md /usr/share/man/man1/kiln.1.gz /usr/share/man/man8/kilnd.8.gz \
		/usr/share/man/man5/kilnd.yaml.5.gz /usr/share/man/man5/kiln-manifest.5.gz; do
		grep -qxF "$f" <<<"$files" || fail "dpkg -L lacks $f"
		[ -e "$f" ] || fail "$f is not installed"
	done
	contains "$(dpkg-query -W -f='${Conffiles}' kiln)" "/etc/kiln/kilnd.yaml"
	getent passwd kiln >/dev/null || fail "postinst made no kiln user"
	[ "$(stat -c '%a %U %G' /etc/kiln)" = "750 root kiln" ] || fail "/etc/kiln: $(stat -c '%a %U %G' /etc/kiln)"
	[ -d /etc/kiln/secrets ] || fail "no /etc/kiln/secrets"
	[ ! -e /etc/systemd/system/multi-user.target.wants/kilnd.service ] || fail "an unconfigured kilnd was enabled"
	expect_rc 0 /usr/bin/kiln --version
	# the installed kiln finds its command modules (its RUNPATH is /usr/lib/kiln)
	git init -q "$TEST_TMP/repo" && mkdir "$TEST_TMP/repo/app" &&
		printf 'name: app\nversion: "1"\nregistry: r.example\n' >"$TEST_TMP/repo/app/manifest.yaml" &&
		echo 'FROM scratch' >"$TEST_TMP/repo/app/Dockerfile" &&
		git -C "$TEST_TMP/repo" add -A && git -C "$TEST_TMP/repo" -c user.name=t -c user.email=t@t commit -qm 1 ||
		fail "cannot make a repository"
	expect_rc 0 /usr/bin/kiln changes --repo "$TEST_TMP/repo" 4b825dc642cb6eb9a060e54bf8d69288fbee4904 HEAD
	contains "$OUT" "added	app	r.example/app:1"
	expect_rc 0 /usr/bin/kiln build --dry-run --repo "$TEST_TMP/repo" 4b825dc642cb6eb9a060e54bf8d69288fbee4904 HEAD
	contains "$OUT" "1 image would be built"
}

t_3_config_and_units() {
	expect_rc 0 /usr/bin/kilnd --check-config --config /etc/kiln/kilnd.yaml
	contains "$ERR$OUT" "valid, 0 repositories"
	grep -qx 'ExecStart=/usr/bin/kilnd --config /etc/kiln/kilnd.yaml' /lib/systemd/system/kilnd.service ||
		fail "ExecStart: $(grep ExecStart= /lib/systemd/system/kilnd.service)"
	command -v systemd-analyze >/dev/null || { skip "no systemd-analyze (package systemd)"; return; }
	expect_rc 0 systemd-analyze verify --man=no /lib/systemd/system/kilnd.service /lib/systemd/system/kilnd.socket
	[ -z "$ERR" ] || fail "systemd-analyze verify: $ERR"
}

t_4_man() {
	local p
	command -v man >/dev/null || { skip "no man (package man-db)"; return; }
	for p in "1 kiln" "8 kilnd" "5 kilnd.yaml" "5 kiln-manifest"; do
		# shellcheck disable=SC2086
		expect_rc 0 man -w $p
		contains "$OUT" "/usr/share/man/man${p%% *}/${p#* }.${p%% *}.gz"
	done
}

# a config that lists a repository: postinst enables kilnd (deb-systemd-helper
# works without a running systemd; it starts it only under systemd)
t_5_configured_postinst_enables() {
	command -v deb-systemd-helper >/dev/null || { skip "no deb-systemd-helper (package init-system-helpers)"; return; }
	cp /etc/kiln/kilnd.yaml kilnd.yaml.orig
	sed -i 's/^repositories: \[\]$/repositories: [{name: demo, url: \/nonexistent\/demo.git}]/' /etc/kiln/kilnd.yaml
	expect_rc 0 /usr/bin/kilnd --check-config --config /etc/kiln/kilnd.yaml
	contains "$ERR$OUT" "valid, 1 repository"
	# run as dpkg runs it (deb-systemd-helper insists)
	DPKG_MAINTSCRIPT_PACKAGE=kiln DPKG_MAINTSCRIPT_NAME=postinst \
		expect_rc 0 /var/lib/dpkg/info/kiln.postinst configure 0.1.0
	[ -L /etc/systemd/system/multi-user.target.wants/kilnd.service ] || fail "a configured kilnd was not enabled"
	# state as kilnd would leave it, for purge to remove
	mkdir -p /var/lib/kiln/logs && echo x >/var/lib/kiln/logs/1.log
}

t_6_purge() {
	local f left=
	dpkg -L kiln >installed
	# removed: the programs go, the configuration and the state stay
	expect_rc 0 dpkg --remove kiln
	[ "$(dpkg-query -W -f='${Status}' kiln)" = "deinstall ok config-files" ] || fail "after remove: $(dpkg-query -W -f='${Status}' kiln)"
	[ ! -e /usr/bin/kilnd ] || fail "remove left /usr/bin/kilnd"
	[ -f /etc/kiln/kilnd.yaml ] && [ -f /var/lib/kiln/logs/1.log ] || fail "remove took the configuration or the state"
	expect_rc 0 dpkg --purge kiln
	dpkg-query -W -f='${Status}' kiln 2>/dev/null | grep -q 'installed\|config-files' && fail "still known to dpkg: $(dpkg-query -W -f='${Status}' kiln)"
	# every file is gone; directories stay only where others use them (/usr/bin)
	while read -r f; do
		[ -d "$f" ] && [ "$f" != /etc/kiln ] && [ "$f" != /usr/share/doc/kiln ] && continue
		[ -e "$f" ] || [ -L "$f" ] && left="$left $f"
	done <installed
	[ -z "$left" ] || fail "left after purge:$left"
	for f in /etc/kiln /var/lib/kiln /var/cache/kiln /var/log/kiln /etc/systemd/system/multi-user.target.wants/kilnd.service \
		/etc/systemd/system/kilnd.service /var/lib/systemd/deb-systemd-helper-enabled/kilnd.service.dsh-also; do
		[ -e "$f" ] || [ -L "$f" ] && fail "left after purge: $f"
	done
	# what policy keeps: the system user (its files may remain elsewhere)
	getent passwd kiln >/dev/null || fail "purge removed the kiln user (it should stay)"
}

run_all
