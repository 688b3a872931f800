#!/usr/bin/env bash
# podman.sh: kilnd and `kiln build` with Podman as the engine: a private
# `podman system service` behind docker.host, the private registries of
# engine.sh, tiny busybox images (podman's vfs storage copies every layer).
# Every check reads the registry or the engine itself, never kiln's word.
. "$(dirname "$0")/../integration/lib/common.sh"
. "$(dirname "$0")/lib/engine.sh"
. "$(dirname "$0")/lib/podman.sh"
: "${KILND:?}"
PEEK="$(cd "$(dirname "$0")/lib" && pwd)/peek.py"

reason=$(podman_skip_reason)
[ -z "$reason" ] || skip_all "the Podman tests need a private podman service: $reason"

E=$(mktemp -d /tmp/kiln-p.XXXXXX)
ENGINE_DIR=$E
at_exit engine_teardown
registries_start || exit 1
# the TLS registry is trusted through the CA engine.sh put in certs.d
podman_start "$E" "$REG" || exit 1
ENGINE_SOCK=$PODMAN_SOCK
. "$(dirname "$0")/lib/scenario.sh"
libpod() { curl -sf --unix-socket "$PODMAN_SOCK" "http://localhost/v4.0.0/libpod$1"; }
# buildah's containers (a build's working containers) and podman's own
containers() {
	libpod '/containers/json?all=true&external=true' |
		python3 -c 'import json, sys; print(" ".join(c["Names"][0] for c in json.load(sys.stdin) or []))'
}

# a RUN with a cache mount: each build appends to the cache and copies it
cache_image() { # VERSION ROUND
	on_image app pm/app "$1" "$REG/pm/base:latest" "LABEL round=$2
RUN --mount=type=cache,target=/cache sh -c 'echo run >> /cache/runs; cp /cache/runs /runs'" \
		"test: {command: [\"/bin/sh\", \"-c\", \"test \$(wc -l < /runs) -ge $2\"]}"
}

t_kilnd_builds_tests_and_pushes_on_podman() {
	origin_init
	bb_image base pm/base 1 'tags: [latest]' 'labels: {team: kiln}' \
		'test: {command: ["/bin/sh", "-c", "busybox true"]}'
	cache_image 1 1
	bb_image once pm/once 1
	mkdir -p c/bad
	printf 'FROM scratch\nCOPY Dockerfile /\nRUN ["/nonexistent"]\n' >c/bad/Dockerfile
	printf 'name: pm/bad\nversion: "1"\nregistry: %s\n' "$REG" >c/bad/manifest.yaml
	IMAGE_REGISTRY=$TREG bb_image secure team/secure 1
	printf 's3cret-pw\n' >reg.pass
	push one
	kilnd_config "registries:" "  - {host: \"$TREG\", username: kiln, password_file: $PWD/reg.pass}" >kilnd.yaml
	start_kilnd
	wait_settled 240 5
	grep -q "engine: Podman [0-9.]* (Docker API 1\.[0-9]*) at unix://$PODMAN_SOCK is up" kilnd.log ||
		fail "kilnd did not name the engine: $(grep engine kilnd.log | head -3)"
	"$KILN" status --socket kiln.sock | grep -q "^engine: Podman .* at unix://$PODMAN_SOCK, ok$" ||
		fail "kiln status does not show the engine: $("$KILN" status --socket kiln.sock | head -3)"
	for p in base app once secure; do
		[ "$(build_of $p | cut -d'|' -f1)" = succeeded ] || fail "$p: $(build_of $p)"
	done
	[ "$(tags pm/base)" = "1 latest" ] || fail "base tags: $(tags pm/base)"
	[ "$(peek label "http://$REG" pm/base 1 team)" = kiln ] || fail "manifest label"
	[ "$(peek label "http://$REG" pm/base 1 org.opencontainers.image.revision)" = "$(head_sha)" ] ||
		fail "revision label"
	digest=$(peek digest "http://$REG" pm/base 1)
	[ "$(db "SELECT digest FROM builds WHERE path = 'base'")" = "$digest" ] ||
		fail "recorded digest $(db "SELECT digest FROM builds WHERE path = 'base'") is not the registry's $digest"
	grep -q "smoke test passed" "state/logs/$(db "SELECT id FROM builds WHERE path = 'base'").log" ||
		fail "no smoke test in the log"
	[ "$(peek tags "https://$TREG" team/secure "${TLS_AUTH[@]}")" = 1 ] || fail "not in the TLS registry"
	grep -q "s3cret-pw" kilnd.log state/logs/*.log && fail "the password was logged"
	IFS='|' read -r st attempts err <<<"$(build_of bad)"
	[ "$st" = failed ] || fail "bad: $st"
	[ "$attempts" = 1 ] || fail "a Dockerfile error was retried ($attempts attempts)"
	contains "$err" 'build failed: building at STEP "RUN /nonexistent"'
	[ -z "$(tags pm/bad)" ] || fail "bad was pushed"
	# round two: app (a new version) finds its first build's cache; once
	# changed without a new version is refused by the tag check
	cache_image 2 2
	echo 'LABEL changed=yes' >>c/once/Dockerfile
	push two
	wait_settled 240 7
	[ "$(build_of app | cut -d'|' -f1)" = succeeded ] || fail "the cache mount lost its file: $(build_of app)"
	[ "$(tags pm/app)" = "1 2" ] || fail "app tags: $(tags pm/app)"
	IFS='|' read -r st attempts err <<<"$(build_of once)"
	[ "$st" = failed ] || fail "an existing version was overwritten on Podman: $st"
	contains "$err" "already exists in the registry"
	[ -z "$(containers)" ] || fail "containers left behind: $(containers)"
	stop_kilnd
}

t_kiln_build_on_podman() {
	origin_init
	bb_image base cli/base 1 'tags: [latest]'
	on_image ok cli/ok 1 "$REG/cli/base:latest" 'RUN echo ok > /ok' \
		'test: {command: ["/bin/busybox", "grep", "-q", "ok", "/ok"]}'
	on_image broken cli/broken 1 "$REG/cli/base:latest" 'RUN exit 7'
	on_image bk cli/bk 1 "$REG/cli/base:latest" 'RUN true' 'builder: buildkit'
	push one
	DOCKER_HOST=unix://$PODMAN_SOCK expect_rc 1 "$KILN" build --repo c --push "$EMPTY_TREE" HEAD
	contains "$OUT" "with classic on Podman"
	contains "$OUT" "cli/bk:1 | kiln: failed: builder: buildkit asked for, but the engine is Podman"
	contains "$OUT" "cli/broken:1 | kiln: failed: build failed"
	contains "$OUT" "exit status 7"
	grep -q "^$REG/cli/ok:1 *ok" <<<"$OUT" || fail "ok not in the summary: $OUT"
	[ "$(tags cli/ok)" = 1 ] || fail "cli/ok not pushed"
	contains "$OUT" "$(peek digest "http://$REG" cli/ok 1)"
	[ -z "$(tags cli/broken)" ] || fail "cli/broken pushed"
	[ -z "$(tags cli/bk)" ] || fail "cli/bk pushed"
}

# secret_image DIR NAME [manifest lines...]: hashes the secret `token` into
# /hash; the whole context is copied to /ctx, where the secret must not be
secret_image() {
	local dir=c/$1 name=$2
	shift 2
	mkdir -p "$dir"
	cp "$BUSYBOX" "$dir/busybox"
	printf '%s\n' 'FROM scratch' 'COPY busybox /bin/busybox' 'RUN ["/bin/busybox", "--install", "-s", "/bin"]' 'COPY . /ctx/' \
		'RUN --mount=type=secret,id=token,required=true sha256sum /run/secrets/token | cut -c1-64 > /hash' >"$dir/Dockerfile"
	{
		echo "name: $name"
		echo 'version: "1"'
		echo "registry: $REG"
		echo "test: {command: [\"/bin/sh\", \"-c\", \"test \$(cat /hash) = $TOKEN_SHA && ! ls -a /ctx | grep -q secret\"]}"
		for l in "$@"; do echo "$l"; done
	} >"$dir/manifest.yaml"
}

TOKEN=tok-$RANDOM-$RANDOM-value
TOKEN_SHA=$(printf '%s' "$TOKEN" | sha256sum | cut -c1-64)

# the secret's value in a pushed layer of REPO:1 (gzip'd tars in the store)?
in_layers() {
	local f
	for f in $(find "$TEST_TMP/reg/store" -path '*/blobs/*' -name data); do
		gzip -dc "$f" 2>/dev/null | grep -aq "$TOKEN" && return 0
		grep -aq "$TOKEN" "$f" && return 0
	done
	return 1
}

t_secrets_on_podman() {
	origin_init
	printf '%s' "$TOKEN" >token
	secret_image granted pm/granted 'secrets: [token]'
	secret_image denied pm/denied
	push one
	kilnd_config >kilnd.yaml
	echo "    secrets: [{id: token, file: $PWD/token}]" >>kilnd.yaml
	start_kilnd
	wait_settled 240 2
	[ "$(build_of granted | cut -d'|' -f1)" = succeeded ] ||
		fail "granted: $(build_of granted) $(tail -5 state/logs/1.log state/logs/2.log)"
	[ "$(tags pm/granted)" = 1 ] || fail "granted not pushed"
	IFS='|' read -r st attempts err <<<"$(build_of denied)"
	[ "$st" = failed ] || fail "denied: $st"
	contains "$err" "build failed: the Dockerfile mounts secret 'token', which this build may not see: grant it in denied/manifest.yaml"
	in_layers && fail "the secret's value is in a pushed layer"
	grep -rqa "$TOKEN" kilnd.log state/ && fail "the secret's value is in kilnd's log or state"
	"$KILN" builds --json --socket kiln.sock | grep -q "$TOKEN" && fail "the secret's value is in kiln builds"
	# podman deleted the build's directory with the secret in it
	grep -rqa "$TOKEN" "$E/tmp" 2>/dev/null && fail "the secret was left in podman's temporary directory"
	stop_kilnd
	# kiln build --secret
	sed -i 's/version: "1"/version: "2"/' c/granted/manifest.yaml
	push two
	DOCKER_HOST=unix://$PODMAN_SOCK expect_rc 0 "$KILN" build --repo c --push --secret "id=token,src=$PWD/token" HEAD~1 HEAD
	contains "$OUT" "smoke test passed"
	[ "$(tags pm/granted)" = "1 2" ] || fail "kiln build --secret: not pushed"
	grep -qa "$TOKEN" <<<"$OUT$ERR" && fail "kiln build printed the secret's value"
	in_layers && fail "the secret's value is in a pushed layer"
	return 0
}

# Podman 4.3.1 does not stop a RUN when the build's connection closes: kiln's
# cancel ends the build at once, the engine's step runs on, and the build
# then stops without committing an image
t_cancel_on_podman() {
	origin_init
	bb_image sleepy pm/sleepy 1
	echo 'RUN sleep 6' >>c/sleepy/Dockerfile
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_for 60 grep -q "RUN sleep 6" state/logs/1.log || fail "build did not reach its slow step"
	"$KILN" cancel 1 --socket kiln.sock | grep -q cancel || fail "cancel refused"
	wait_settled 5 1
	[ "$(build_of sleepy | cut -d'|' -f1)" = cancelled ] || fail "sleepy: $(build_of sleepy)"
	sleep 8
	libpod "/images/json" | grep -q "pm/sleepy" && fail "the cancelled build committed its image"
	wait_for 20 sh -c "[ -z \"\$(pgrep -f 'sleep 6$')\" ]" || fail "the step is still running"
	stop_kilnd
}

run_all
