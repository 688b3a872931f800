#!/usr/bin/env bash
# manpages.sh: the man pages in packaging/man name every option of kiln and
# kilnd (from their option tables and --help), every kilnd.yaml key (from the
# parser's table, test_config --markdown) and every manifest key (from the
# parser's key list), and render without a warning.
. "$(dirname "$0")/lib/common.sh"
: "${KILND:?}" "${KILN_SRC:?}" "${TEST_CONFIG:?set TEST_CONFIG to build/tests/test_config}"
abs_path TEST_CONFIG
MAN=$KILN_SRC/packaging/man

# page_text PAGE: the roff source with \- and font escapes undone, so that
# "\-\-push" and "\fB\-\-push\fR" both read "--push"
page_text() {
	sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$1"
}

# long_options SRC HELP...: the long options of SRC's `struct option` tables,
# and every --word the help texts print
long_options() {
	local src=$1
	shift
	{
		grep -o '{"[a-z][a-z-]*", *\(no\|required\|optional\)_argument' "$src" | sed 's/{"\([^"]*\)".*/--\1/'
		printf '%s\n' "$@" | grep -o -- '--[a-z][a-z-]*[a-z]'
	} | sort -u
}

# missing_options PAGE OPTION...: the options PAGE does not name (as a
# whole word: --repo is not found in --repository)
missing_options() {
	local page=$1 o text
	shift
	text=$(page_text "$page")
	for o in "$@"; do
		grep -qE -- "(^|[^a-z-])$o([^a-z-]|$)" <<<"$text" || echo "$o"
	done
}

# missing_keys PAGE KEY...: the keys PAGE has no entry for (a ".B key" tag)
missing_keys() {
	local page=$1 k text
	shift
	text=$(page_text "$page")
	for k in "$@"; do
		grep -qxF ".B $k" <<<"$text" || echo "$k"
	done
}

kiln_options() {
	local help=() c
	help+=("$("$KILN" --help 2>&1)")
	for c in $(kiln_commands); do
		help+=("$("$KILN" "$c" --help 2>&1)")
	done
	# the front's option tables and those of the commands in modules
	long_options <(cat "$KILN_SRC"/daemon/kiln.c "$KILN_SRC"/daemon/kiln_changes.c \
		"$KILN_SRC"/daemon/kiln_build.c) "${help[@]}"
}

# the command table, as kiln --help lists it
kiln_commands() {
	"$KILN" --help 2>&1 | sed -n '/^Commands:/,/^$/s/^  \([a-z]*\) .*/\1/p'
}

config_keys() {
	"$TEST_CONFIG" --markdown | sed -n 's/^| `\([^`]*\)` |.*/\1/p'
}

# the manifest parser's key list (mkeys[] in daemon/manifest.c) and test's
# only key, test.command (the README's spelling)
manifest_keys() {
	sed -n '/mkeys\[[A-Z_]*\] *=/,/};/p' "$KILN_SRC/daemon/manifest.c" | grep -o '"[a-z_]*"' | tr -d '"'
	echo test.command
}

# expect_named PAGE MISSING_FN MIN WHAT WORD...: PAGE names every WORD (found
# by MISSING_FN), and the extraction found at least MIN of them
expect_named() {
	local page=$1 fn=$2 min=$3 what=$4 m
	shift 4
	[ "$#" -ge "$min" ] || fail "found only $# $what: $*"
	m=$("$fn" "$MAN/$page" "$@")
	[ -z "$m" ] || fail "$page lacks: $m"
}

# shellcheck disable=SC2046 # one word per option or key
t_kiln_options() {
	local c
	expect_named kiln.1 missing_options 15 "options of kiln" $(kiln_options)
	for c in $(kiln_commands); do
		grep -qE "^\.BI? $c( |$)|^\.BR $c " "$MAN/kiln.1" || fail "kiln.1 has no entry for the command $c"
	done
	[ "$(kiln_commands | wc -l)" -ge 10 ] || fail "found only these commands of kiln: $(kiln_commands)"
}

# shellcheck disable=SC2046
t_kilnd_options() {
	expect_named kilnd.8 missing_options 6 "options of kilnd" \
		$(long_options "$KILN_SRC/daemon/kilnd.c" "$("$KILND" --help 2>&1)")
}

# shellcheck disable=SC2046
t_config_keys() {
	expect_named kilnd.yaml.5 missing_keys 40 "keys in test_config --markdown" $(config_keys)
}

# shellcheck disable=SC2046
t_manifest_keys() {
	expect_named kiln-manifest.5 missing_keys 12 "keys in manifest.c's list" $(manifest_keys)
}

# the checks above find what is missing: a page without --push, without a
# config key and without a manifest key each fail them
t_checks_can_fail() {
	local m
	grep -v -- '--push' <(page_text "$MAN/kiln.1") >kiln.1
	m=$(missing_options kiln.1 --push --repo)
	[ "$m" = --push ] || fail "a kiln.1 without --push was not caught: '$m'"
	grep -vxF '.B listen.bodies_max' "$MAN/kilnd.yaml.5" >kilnd.yaml.5
	# shellcheck disable=SC2046 # one word per key
	m=$(missing_keys kilnd.yaml.5 $(config_keys))
	[ "$m" = listen.bodies_max ] || fail "a kilnd.yaml.5 without listen.bodies_max was not caught: '$m'"
	m=$(missing_keys "$MAN/kiln-manifest.5" platform no_such_key)
	[ "$m" = no_such_key ] || fail "an absent manifest key was not caught: '$m'"
}

# groff (package groff-base, in every Debian install) with all warnings;
# man -l and mandoc -Tlint too where installed
t_pages_render_cleanly() {
	local p
	command -v groff >/dev/null || { skip "no groff (package groff-base)"; return; }
	for p in kiln.1 kilnd.8 kilnd.yaml.5 kiln-manifest.5; do
		expect_rc 0 groff -man -Tutf8 -ww -z "$MAN/$p"
		[ -z "$ERR" ] || fail "groff warns about $p: $ERR"
		if command -v man >/dev/null; then
			MANWIDTH=80 expect_rc 0 man -l --warnings=all "$MAN/$p"
			[ -z "$ERR" ] || fail "man -l warns about $p: $ERR"
			contains "$OUT" "NAME"
		fi
		if command -v mandoc >/dev/null; then
			expect_rc 0 mandoc -man -Tlint -Wwarning "$MAN/$p"
		fi
	done
	# and the check sees a warning when there is one
	printf '.TH X 1\n.SH NAME\n.BOGUS x\n' >bad.1
	expect_rc 0 groff -man -Tutf8 -ww -z bad.1
	[ -n "$ERR" ] || fail "groff -ww did not warn about an unknown macro"
}

run_all
