#!/usr/bin/env bash
# buildkit.sh: builds with BuildKit (POST /build?version=2) on the private
# dockerd, through kilnd and `kiln build`: what only BuildKit runs (cache
# mounts), its trace as log lines, its failures and cancel, and the checks
# every builder passes (lib/kiln.sh). The engine has no bridge: builds run
# with network none, and one case checks what kiln says without it.
. "$(dirname "$0")/../integration/lib/common.sh"
. "$(dirname "$0")/lib/engine.sh"
: "${KILND:?}"
KILN_BUILDER=buildkit
. "$(dirname "$0")/lib/kiln.sh"

# bk_image DIR NAME VERSION DOCKERFILE-LINES [manifest lines...]: busybox
# FROM scratch, then the lines (each RUN in exec form, run by busybox sh)
bk_image() {
	local dir=c/$1 name=$2 version=$3 body=$4
	shift 4
	mkdir -p "$dir"
	cp "$BUSYBOX" "$dir/busybox"
	printf 'FROM scratch\nCOPY busybox /bin/busybox\n%s\n' "$body" >"$dir/Dockerfile"
	{
		echo "name: $name"
		echo "version: \"$version\""
		echo "registry: $REG"
		for l in "$@"; do echo "$l"; done
	} >"$dir/manifest.yaml"
}
sh_run() { printf 'RUN %s["/bin/busybox", "sh", "-c", "%s"]' "${2:-}" "$1"; }

t_publish_with_buildkit() { publish_scenario; }

t_version_is_immutable_with_buildkit() { immutability_scenario; }

# app FROM base of the same commit: app's smoke test finds what only the
# just-built base has (nothing was in the engine or the registry before)
t_dependency_chain_uses_the_new_base() {
	origin_init
	token=base-$RANDOM$RANDOM
	bk_image base chain/base 1 "$(sh_run "echo $token > /from-base")" 'tags: [latest]'
	on_image app chain/app 1 "$REG/chain/base:latest" "$(sh_run "/bin/busybox cp /from-base /in-app")" \
		"test: {command: [\"/bin/busybox\", \"grep\", \"-q\", \"$token\", \"/in-app\"]}"
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_settled 120 2
	[ "$(build_of base | cut -d'|' -f1)" = succeeded ] || fail "base: $(build_of base)"
	[ "$(build_of app | cut -d'|' -f1)" = succeeded ] || fail "app: $(build_of app)"
	[ "$(tags chain/app)" = 1 ] || fail "app not pushed"
	stop_kilnd
}

# cache_image DIR NAME VERSION ID: a step that copies what the cache mount
# held into the image, then leaves its own mark in the cache
cache_image() {
	bk_image "$1" "$2" "$3" "COPY version /version
$(sh_run "/bin/busybox cat /cache/marks > /found 2>/dev/null; /bin/busybox cat /version >> /cache/marks" "--mount=type=cache,id=kiln-e2e-$4,target=/cache ")" \
		"${@:5}"
	echo "$3" >"c/$1/version"
}

# the second build of a changed folder finds what the first left in the cache
t_cache_mount_persists_between_builds() {
	origin_init
	cache_image cached cache/d 1 daemon
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_settled 120 1
	cache_image cached cache/d 2 daemon 'test: {command: ["/bin/busybox", "grep", "-qx", "1", "/found"]}'
	push two
	wait_settled 120 2
	IFS='|' read -r st attempts err <<<"$(build_of cached)"
	[ "$st" = succeeded ] || fail "the second build did not find the first one's mark: $st $err"
	stop_kilnd
	# the same through `kiln build`
	cache_image cli cache/cli 1 cli
	push three
	expect_rc 0 "$KILN" build --repo c --network none HEAD~1 HEAD
	cache_image cli cache/cli 2 cli 'test: {command: ["/bin/busybox", "grep", "-qx", "1", "/found"]}'
	push four
	expect_rc 0 "$KILN" build --repo c --network none HEAD~1 HEAD
	contains "$OUT" "cache/cli:2 | kiln: smoke test passed"
	contains "$OUT" "with buildkit"
}

# --pull: the base comes from the registry even when the engine has a tag of
# that name (here a different image, built locally and never pushed);
# --no-build-cache: a rebuild runs every step again instead of CACHED
t_pull_and_no_build_cache() {
	origin_init
	bk_image base pull/base 1 "$(sh_run "echo registry > /marker")"
	push base
	expect_rc 0 "$KILN" build --repo c --network none --push "$EMPTY_TREE" HEAD
	bk_image base pull/base 1 "$(sh_run "echo local > /marker")"
	push local-base
	expect_rc 0 "$KILN" build --repo c --network none HEAD~1 HEAD
	on_image app pull/app 1 "$REG/pull/base:1" 'LABEL kiln.e2e=pull' \
		'test: {command: ["/bin/busybox", "grep", "-qx", "registry", "/marker"]}'
	push app
	# without --pull the engine's own pull/base:1 (marker local) is the base
	expect_rc 1 "$KILN" build --repo c --network none --retries 0 HEAD~1 HEAD
	contains "$OUT" "pull/app:1 | kiln: failed: smoke test"
	expect_rc 0 "$KILN" build --repo c --network none --pull HEAD~1 HEAD
	contains "$OUT" "pulling base images"
	contains "$OUT" "pull/app:1 | kiln: smoke test passed"
	# the same build again takes its steps from the cache; not so without it
	bk_image base pull/base 2 "$(sh_run "echo registry > /marker")"
	push base-2
	expect_rc 0 "$KILN" build --repo c --network none HEAD~1 HEAD
	contains "$OUT" "pull/base:2 | #"
	contains "$OUT" " CACHED"
	bk_image base pull/base 3 "$(sh_run "echo registry > /marker")"
	push base-3
	expect_rc 0 "$KILN" build --repo c --network none --no-build-cache HEAD~1 HEAD
	contains "$OUT" "no build cache"
	case "$OUT" in *CACHED*) fail "--no-build-cache built a step from the cache: $OUT" ;; esac
}

# the failing step and its last output lines, in the log and in the error
t_failing_run_names_step_and_output() {
	origin_init
	bk_image broken broken 1 "$(sh_run "echo first-words; echo last-words; exit 3")"
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_settled 120 1
	IFS='|' read -r st attempts err <<<"$(build_of broken)"
	[ "$st" = failed ] || fail "broken: $st"
	[ "$attempts" = 1 ] || fail "a failing RUN was retried ($attempts attempts)"
	contains "$err" "build failed: step '"
	contains "$err" "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo first-words"
	contains "$err" "exit code: 3; last output: first-words | last-words"
	grep -q '^#[0-9]* last-words$' state/logs/1.log || fail "the step's output is not in the log"
	grep -q '^#[0-9]* ERROR: .*exit code: 3$' state/logs/1.log || fail "no ERROR line in the log"
	[ -z "$(tags broken)" ] || fail "a failed build was pushed"
	stop_kilnd
	# the same through `kiln build`, and without network none: said plainly
	expect_rc 1 "$KILN" build --repo c --network none "$EMPTY_TREE" HEAD
	contains "$OUT" "broken:1 | kiln: failed: build failed: step '"
	contains "$OUT" "last output: first-words | last-words"
	bk_image broken broken 1 "$(sh_run "true")"
	push two
	expect_rc 1 "$KILN" build --repo c --retries 0 "$EMPTY_TREE" HEAD
	contains "$OUT" "the engine has no bridge network: set \`network: none\` in the manifest"
}

# a cancelled build stops the engine's: its step's process goes away
t_cancel_stops_the_engine_build() {
	origin_init
	bk_image sleepy sleepy 1 "$(sh_run "/bin/busybox sleep 47 && echo woke")"
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	# (the pattern does not match the shell that runs pgrep)
	wait_for 60 pgrep -f 'busybox slee[p] 47' >/dev/null || fail "the build did not reach its slow step"
	"$KILN" cancel 1 --socket kiln.sock | grep -q cancel || fail "cancel refused"
	wait_settled 20 1
	[ "$(build_of sleepy | cut -d'|' -f1)" = cancelled ] || fail "sleepy: $(build_of sleepy)"
	wait_for 15 sh -c '! pgrep -f "busybox slee[p] 47" >/dev/null' ||
		fail "the engine's build still runs after the cancel"
	grep -q '^#[0-9]* woke$' state/logs/1.log && fail "the cancelled step ran to its end"
	stop_kilnd
}

run_all
