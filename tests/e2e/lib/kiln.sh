# kiln.sh: what the end-to-end scripts share (sourced after common.sh and
# engine.sh): one private engine and two registries for the whole script, a
# repository to push image folders to, kilnd started on it, the state read
# back, and the scenarios every builder must pass (publish_scenario,
# immutability_scenario). KILN_BUILDER picks the builder kilnd and `kiln
# build` use; RUN steps have network none, since the private engine has no
# bridge (BuildKit's RUN needs one otherwise).
: "${KILN_BUILDER:?set KILN_BUILDER to classic or buildkit}"
PEEK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/peek.py"

reason=$(engine_skip_reason)
[ -z "$reason" ] || skip_all "the end-to-end tests need a Docker engine: $reason"

# one engine and two registries for every scenario; unix socket paths are
# short, so the engine lives in a directory of its own. The teardown is
# registered before anything starts: an interrupted run leaves nothing behind.
E=$(mktemp -d /tmp/kiln-e.XXXXXX)
ENGINE_DIR=$E
at_exit engine_teardown
engine_start "$E" || exit 1
REG_PORT=$(free_port)
registry_start "$TEST_TMP/reg" "$REG_PORT" || exit 1
TLS_PORT=$(free_port)
registry_start "$TEST_TMP/treg" "$TLS_PORT" tls || exit 1
REG=127.0.0.1:$REG_PORT
TREG=127.0.0.1:$TLS_PORT
TLS_AUTH=(--ca "$TEST_TMP/treg/ca.crt" --auth kiln:s3cret-pw)

peek() { python3 "$PEEK" "$@"; }
tags() { peek tags "http://$REG" "$1" | sort | tr '\n' ' ' | sed 's/ $//'; }
EMPTY_TREE=4b825dc642cb6eb9a060e54bf8d69288fbee4904 # FROM: every image of TO
api() { curl -sf --unix-socket "$E/docker.sock" "http://localhost$1"; }

# ---- repositories ----

origin_init() {
	git init -q --bare -b main origin.git
	git clone -q origin.git c 2>/dev/null
}

push() {
	(cd c && git add -A && git commit -qm "${1:-change}" && git push -q origin HEAD:main)
}

head_sha() { git -C c rev-parse HEAD; }

# bb_image DIR NAME VERSION [manifest lines...]: busybox FROM scratch
bb_image() {
	local dir=c/$1 name=$2 version=$3
	shift 3
	mkdir -p "$dir"
	cp "$BUSYBOX" "$dir/busybox"
	printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n' >"$dir/Dockerfile"
	{
		echo "name: $name"
		echo "version: \"$version\""
		echo "registry: ${IMAGE_REGISTRY:-$REG}"
		for l in "$@"; do echo "$l"; done
	} >"$dir/manifest.yaml"
}

# on_image DIR NAME VERSION BASE DOCKERFILE-BODY [manifest lines...]
on_image() {
	local dir=c/$1 name=$2 version=$3 base=$4 body=$5
	shift 5
	mkdir -p "$dir"
	printf 'FROM %s\n%s\n' "$base" "$body" >"$dir/Dockerfile"
	{
		echo "name: $name"
		echo "version: \"$version\""
		echo "registry: ${IMAGE_REGISTRY:-$REG}"
		for l in "$@"; do echo "$l"; done
	} >"$dir/manifest.yaml"
}

# ---- kilnd ----

kilnd_config() { # [extra top-level yaml...]
	echo "state_dir: $PWD/state"
	echo "docker: {host: \"unix://$E/docker.sock\"}"
	echo "builds: {concurrency: 2, retries: 3, retry_delay: 1s, log_max_size: 1M, builder: $KILN_BUILDER, network: none}"
	echo "listen: {status_socket: $PWD/kiln.sock}"
	echo "shutdown_grace: 10s"
	for l in "$@"; do echo "$l"; done
	echo "repositories:"
	echo "  - name: images"
	echo "    url: $PWD/origin.git"
	echo "    poll_interval: 500ms"
	echo "    build_on_start: all"
}

start_kilnd() {
	"$KILND" --config kilnd.yaml >>kilnd.log 2>&1 &
	KPID=$!
	track_pid "$KPID"
	wait_for 10 grep -q "kilnd .* ready:" kilnd.log || fail "kilnd did not start: $(tail -3 kilnd.log)"
}

stop_kilnd() {
	kill -0 "$KPID" 2>/dev/null || fail "kilnd died: $(tail -5 kilnd.log)"
	kill -TERM "$KPID"
	wait "$KPID" || fail "kilnd did not exit 0"
}

db() { python3 -c 'import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall():
    print("|".join("" if v is None else str(v) for v in row))' state/kilnd.db "$1"; }

# the newest build of an image folder: state|attempts|error
build_of() { db "SELECT state, attempts, coalesce(error, '') FROM builds WHERE path = '$1' ORDER BY id DESC LIMIT 1"; }
# (one query: two would race with a build inserted between them)
settled() { [ "$(db "SELECT count(*) >= $1 AND coalesce(sum(state IN ('queued', 'running')), 0) = 0 FROM builds")" = 1 ]; }
# wait_settled SECONDS N: N builds or more, none queued or running; on a
# timeout, what kilnd and the newest build log said
wait_settled() {
	wait_for "$1" settled "$2" && return 0
	fail "builds not settled after $1 s: $(db "SELECT id, path, state FROM builds" | tr '\n' ' ')"
	tail -5 kilnd.log | sed 's/^/    kilnd: /' >&2
	tail -5 "$(ls -t state/logs/*.log 2>/dev/null | head -1)" 2>/dev/null | sed 's/^/    log: /' >&2
	return 1
}

# ---- scenarios every builder passes ----

# publish_scenario: a commit ends in the registry: tags, manifest and OCI
# labels, the digest kiln recorded is the registry's, the smoke test ran
# (also of a multi-stage image), `kiln logs` and `kiln show` agree
publish_scenario() {
	origin_init
	bb_image tools tools/bb 1.0 'tags: [latest, "1"]' 'labels: {team: kiln}' \
		'test: {command: ["/bin/sh", "-c", "busybox true"]}'
	# multi-stage: a RUN in the first stage, its output copied into the second;
	# the smoke test passes only if it arrived
	mkdir -p c/multi
	cp "$BUSYBOX" c/multi/busybox
	printf '%s\n' 'FROM scratch AS build' 'COPY busybox /bin/busybox' \
		'RUN ["/bin/busybox", "sh", "-c", "echo made-in-stage-one > /out"]' \
		'FROM scratch' 'COPY busybox /bin/busybox' 'COPY --from=build /out /out' >c/multi/Dockerfile
	printf 'name: multi\nversion: "1"\nregistry: %s\ntest: {command: ["/bin/busybox", "grep", "-q", "made-in-stage-one", "/out"]}\n' \
		"$REG" >c/multi/manifest.yaml
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_settled 120 2
	[ "$(build_of tools | cut -d'|' -f1)" = succeeded ] || fail "build: $(build_of tools)"
	[ "$(build_of multi | cut -d'|' -f1)" = succeeded ] || fail "multi-stage: $(build_of multi)"
	[ "$(tags multi)" = 1 ] || fail "multi-stage image not pushed"
	[ "$(tags tools/bb)" = "1 1.0 latest" ] || fail "tags in the registry: $(tags tools/bb)"
	sha=$(head_sha)
	[ "$(peek label "http://$REG" tools/bb 1.0 org.opencontainers.image.revision)" = "$sha" ] ||
		fail "revision label"
	[ "$(peek label "http://$REG" tools/bb 1.0 team)" = kiln ] || fail "manifest label"
	[ "$(peek label "http://$REG" tools/bb 1.0 org.opencontainers.image.source)" = "$PWD/origin.git" ] ||
		fail "source label"
	digest=$(peek digest "http://$REG" tools/bb 1.0)
	[ "$(db "SELECT digest FROM builds WHERE path = 'tools'")" = "$digest" ] ||
		fail "recorded digest $(db "SELECT digest FROM builds") is not the registry's $digest"
	grep -q "smoke test passed" "state/logs/$(db "SELECT id FROM builds WHERE path = 'tools'").log" ||
		fail "no smoke test in the log"
	# the log is also what `kiln logs` shows
	"$KILN" logs "$(db "SELECT id FROM builds WHERE path = 'tools'")" --socket kiln.sock |
		grep -q "kiln: pushed $REG/tools/bb:latest" ||
		fail "kiln logs does not show the push"
	# kiln show reports the digest the job recorded (issue #8: it was always null)
	shown=$("$KILN" show "$(db "SELECT id FROM builds WHERE path = 'tools'")" --json --socket kiln.sock |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["digest"])')
	[ "$shown" = "$digest" ] || fail "kiln show's digest $shown is not the recorded $digest"
	# the builder used, as `kiln builds --json` and the build log say it
	used=$("$KILN" builds --json --socket kiln.sock |
		python3 -c 'import json, sys; print(" ".join(sorted({b["builder"] for b in json.load(sys.stdin)})))')
	[ "$used" = "$KILN_BUILDER" ] || fail "kiln builds --json says the builders were '$used'"
	grep -q "with $KILN_BUILDER (context" state/logs/1.log || fail "the log does not name the builder"
	stop_kilnd
}

# immutability_scenario: a version already in the registry is not replaced
immutability_scenario() {
	origin_init
	bb_image once once 1
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_settled 120 1
	# same version, different content: refused before building
	echo 'LABEL changed=yes' >>c/once/Dockerfile
	push two
	wait_settled 60 2
	IFS='|' read -r st attempts err <<<"$(build_of once)"
	[ "$st" = failed ] || fail "an existing version was overwritten: $st"
	contains "$err" "already exists in the registry"
	contains "$err" "bump \`version\` in once/manifest.yaml"
	stop_kilnd
}
