#!/usr/bin/env bash
# systemd.sh: the unit, sysusers.d and tmpfiles.d snippets are valid for
# Debian 12's systemd, and the unit's hardening stays where it is.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}" "${KILN_SRC:?}"

t_unit_verifies() {
	command -v systemd-analyze >/dev/null || { skip "no systemd-analyze (package systemd)"; return; }
	# verify also checks that ExecStart's binary exists: point it at this build
	sed "s|/usr/local/bin/kilnd|$KILND|" "$KILN_SRC/systemd/kilnd.service" >kilnd.service
	expect_rc 0 systemd-analyze verify --man=no ./kilnd.service
	[ -z "$ERR" ] || fail "verify complained: $ERR"
	cp "$KILN_SRC/systemd/kilnd.socket" .
	expect_rc 0 systemd-analyze verify --man=no ./kilnd.socket ./kilnd.service
	[ -z "$ERR" ] || fail "verify complained about the socket unit: $ERR"
	# exposure 1.3 ("OK") today; the threshold is in tenths
	expect_rc 0 systemd-analyze security --offline=true --threshold=13 ./kilnd.service
	grep -q '^Type=notify$' kilnd.service || fail "not Type=notify"
	grep -q '^WatchdogSec=' kilnd.service || fail "no WatchdogSec"
	# the HTTP cap (1024) and kilnd's own reserve do not fit systemd's default
	# soft limit of 1024 open files
	grep -q '^LimitNOFILE=[0-9]*$' kilnd.service || fail "no LimitNOFILE"
	[ "$(sed -n 's/^LimitNOFILE=//p' kilnd.service)" -ge 2048 ] || fail "LimitNOFILE below 2048"
	# what this check catches: a bad value is reported (exit 0 but a message),
	# a missing binary fails
	sed 's/^Type=notify$/Type=bogus/' kilnd.service >broken.service
	expect_rc 0 systemd-analyze verify --man=no ./broken.service
	contains "$ERR" "Failed to parse service type"
	sed "s|$KILND|/nonexistent/kilnd|" kilnd.service >missing.service
	expect_rc 1 systemd-analyze verify --man=no ./missing.service
}

t_sysusers_and_tmpfiles() {
	for c in systemd-sysusers systemd-tmpfiles; do
		command -v "$c" >/dev/null || { skip "no $c (package systemd)"; return; }
	done
	mkdir -p root/etc
	expect_rc 0 systemd-sysusers --root="$PWD/root" "$KILN_SRC/systemd/kiln.sysusers"
	grep -q '^kiln:' root/etc/passwd || fail "sysusers did not create the kiln user"
	grep -q ':/var/lib/kiln:' root/etc/passwd || fail "kiln's home is not /var/lib/kiln"
	expect_rc 0 systemd-tmpfiles --root="$PWD/root" --create "$KILN_SRC/systemd/kiln.tmpfiles"
	[ -d root/etc/kiln/secrets ] || fail "tmpfiles did not create /etc/kiln/secrets"
	[ "$(stat -c %a root/etc/kiln)" = 750 ] || fail "/etc/kiln is not 0750"
}

run_all
