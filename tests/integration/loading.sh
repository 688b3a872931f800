#!/usr/bin/env bash
# loading.sh: what each kiln command loads (issue #10). The front links libc,
# jansson and zlib, and answers `kiln changes` of an unchanged range itself;
# any other `kiln changes` loads libgit2 and libyaml with kiln-changes.so,
# and only `kiln build` loads the engine client (libcurl, libarchive, libuv,
# SQLite) with kiln-build.so. The dynamic loader's own trace (LD_DEBUG=files)
# says which objects a run opened, so a link change that pulls a library
# back into the front fails here. A sanitizer build loads its runtime too:
# the checks name the libraries that must not be there, not a full list.
. "$(dirname "$0")/lib/common.sh"

EMPTY=4b825dc642cb6eb9a060e54bf8d69288fbee4904
ENGINE_LIBS="libcurl libarchive libuv libsqlite3"

# loaded CMD...: runs CMD with the loader's trace, sets LOADED to the sonames
# it opened (one a line), OUT and RC as usual
loaded() {
	LD_DEBUG=files LD_DEBUG_OUTPUT="$TEST_TMP/ld" "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
	RC=$?
	OUT=$(cat "$TEST_TMP/out")
	ERR=$(cat "$TEST_TMP/err")
	LOADED=$(cat "$TEST_TMP"/ld.* 2>/dev/null | sed -n 's/.*file=\([^ ]*\) .*needed by.*/\1/p; s/.*file=\([^ ]*\) .*dynamically loaded by.*/\1/p' | sed 's|.*/||' | sort -u)
	rm -f "$TEST_TMP"/ld.*
	[ -n "$LOADED" ] || fail "no loader trace from '$*'"
}

# lacks LIB...: none of LIB in LOADED
lacks() {
	local l
	for l in "$@"; do
		! grep -q "^$l\." <<<"$LOADED" || fail "loaded $l ($(wc -l <<<"$LOADED") objects in all)"
	done
}

has() {
	local l
	for l in "$@"; do
		grep -q "^$l\." <<<"$LOADED" || fail "did not load $l: $(echo "$LOADED" | tr '\n' ' ')"
	done
}

repo() {
	new_repo
	image app app 1
	commit one
}

t_help_and_version_load_no_library_of_kiln() {
	local a
	for a in --help --version "help changes"; do
		# shellcheck disable=SC2086
		loaded "$KILN" $a
		[ "$RC" = 0 ] || fail "kiln $a exited $RC: $ERR"
		lacks libgit2 libyaml-0 kiln-changes kiln-build $ENGINE_LIBS
	done
}

t_socket_commands_load_no_git() {
	loaded "$KILN" status --socket "$TEST_TMP/no.sock"
	[ "$RC" = 2 ] || fail "kiln status without kilnd exited $RC"
	contains "$ERR" "cannot reach kilnd"
	has libjansson
	lacks libgit2 kiln-changes kiln-build $ENGINE_LIBS
}

# a range whose commits have one tree is answered by the front itself
# (gitref.c): no module, no libgit2; its --json is the module's, byte for
# byte (^{commit} is a form the front leaves to the module)
t_unchanged_range_loads_no_git() {
	local a
	repo
	commit "same tree"
	for a in "HEAD HEAD" "HEAD~1 HEAD" "--no-cache $(git symbolic-ref --short HEAD) HEAD^"; do
		# shellcheck disable=SC2086
		loaded "$KILN" changes $a
		[ "$RC" = 0 ] && [ -z "$OUT$ERR" ] || fail "kiln changes $a: rc $RC, '$OUT' $ERR"
		lacks libgit2 libyaml-0 kiln-changes kiln-build $ENGINE_LIBS
	done
	loaded "$KILN" changes --json HEAD~1 HEAD
	lacks libgit2 kiln-changes
	local fast=$OUT
	loaded "$KILN" changes 'HEAD~1^{commit}' --json 'HEAD^{commit}'
	has kiln-changes libgit2
	[ "$RC" = 0 ] && [ "$OUT" = "$fast" ] || fail "the front's JSON is not the module's: '$fast' vs '$OUT'"
	contains "$OUT" "\"from\": \"$(git rev-parse HEAD~1)\""
	# the same options and their errors, from the one parser
	loaded "$KILN" changes --manifest a/b HEAD HEAD
	[ "$RC" = 2 ] || fail "a bad --manifest exited $RC"
	contains "$ERR" "--manifest 'a/b' must be a file name"
	lacks libgit2 kiln-changes
	loaded "$KILN" changes HEAD
	[ "$RC" = 2 ] || fail "one argument exited $RC"
	contains "$ERR" "expected FROM and TO, got 1 argument"
}

t_changes_loads_git_not_the_engine_client() {
	repo
	printf 'RUN true\n' >>app/Dockerfile
	commit two
	loaded "$KILN" changes HEAD~1 HEAD
	[ "$RC" = 0 ] && [ "$OUT" = "modified	app	reg.example.com:5000/team/app:1" ] ||
		fail "kiln changes HEAD~1 HEAD: rc $RC, '$OUT' $ERR"
	has kiln-changes libgit2 libyaml-0
	lacks kiln-build $ENGINE_LIBS
	loaded "$KILN" changes "$EMPTY" HEAD
	contains "$OUT" "added	app	"
	lacks kiln-build $ENGINE_LIBS
	# a form the front does not read goes to the module, errors too
	loaded "$KILN" changes HEAD nosuch
	[ "$RC" = 2 ] || fail "an unknown revision exited $RC"
	contains "$ERR" "unknown revision 'nosuch'"
	has kiln-changes libgit2
}

# the positive control: the trace does show the engine client when it is
# loaded, so the checks above can fail
t_build_loads_the_engine_client() {
	repo
	loaded "$KILN" build --dry-run "$EMPTY" HEAD
	[ "$RC" = 0 ] || fail "kiln build --dry-run exited $RC: $ERR"
	contains "$OUT" "1 image would be built"
	has kiln-build $ENGINE_LIBS
}

# a library kiln-build.so needs that cannot be loaded (an empty file found
# first on LD_LIBRARY_PATH): kiln build names it and exits 2; kiln changes,
# which does not need it, still works
t_broken_engine_library_is_named() {
	repo
	mkdir lib && : >lib/libarchive.so.13
	expect_rc 2 env LD_LIBRARY_PATH="$PWD/lib" "$KILN" build --dry-run "$EMPTY" HEAD
	contains "$ERR" "kiln build: cannot load kiln-build.so: "
	contains "$ERR" "libarchive.so.13"
	expect_rc 0 env LD_LIBRARY_PATH="$PWD/lib" "$KILN" changes "$EMPTY" HEAD
	contains "$OUT" "added	app	"
}

run_all
