#!/usr/bin/env bash
# build.sh: kilnd and `kiln build` against a real Docker engine and real
# registries. Every image is built FROM scratch with the static busybox, and
# every check reads the registry or the engine itself, never kiln's word.
. "$(dirname "$0")/../integration/lib/common.sh"
. "$(dirname "$0")/lib/engine.sh"
: "${KILND:?}"
PEEK="$(cd "$(dirname "$0")/lib" && pwd)/peek.py"

reason=$(engine_skip_reason)
[ -z "$reason" ] || skip_all "the end-to-end tests need a Docker engine: $reason"

# one engine and two registries for every scenario; unix socket paths are
# short, so the engine lives in a directory of its own. The teardown is
# registered before anything starts: an interrupted run leaves nothing behind.
E=$(mktemp -d /tmp/kiln-e.XXXXXX)
ENGINE_DIR=$E
at_exit engine_teardown
engine_start "$E" || exit 1
registries_start || exit 1

. "$(dirname "$0")/lib/scenario.sh"
api() { curl -sf --unix-socket "$E/docker.sock" "http://localhost$1"; }

# ---- scenarios ----

t_commit_ends_in_registry_with_tags_and_label() {
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
	stop_kilnd
}

t_failing_dockerfile_fails_that_build_only() {
	origin_init
	bb_image good good 1
	mkdir -p c/bad
	printf 'FROM scratch\nCOPY Dockerfile /\nRUN ["/nonexistent"]\n' >c/bad/Dockerfile
	printf 'name: bad\nversion: "1"\nregistry: %s\n' "$REG" >c/bad/manifest.yaml
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_settled 120 2
	[ "$(build_of good | cut -d'|' -f1)" = succeeded ] || fail "good: $(build_of good)"
	IFS='|' read -r st attempts err <<<"$(build_of bad)"
	[ "$st" = failed ] || fail "bad: $st"
	[ "$attempts" = 1 ] || fail "a Dockerfile error was retried ($attempts attempts)"
	contains "$err" "build failed"
	[ -z "$(tags bad)" ] || fail "bad was pushed"
	[ "$(tags good)" = 1 ] || fail "good not pushed"
	stop_kilnd
}

t_failing_smoke_test_pushes_nothing() {
	origin_init
	bb_image smoky smoky 1 'test: {command: ["/bin/sh", "-c", "echo checking; exit 3"]}'
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_settled 120 1
	IFS='|' read -r st attempts err <<<"$(build_of smoky)"
	[ "$st" = failed ] || fail "smoky: $st"
	contains "$err" "smoke test failed: exit code 3"
	grep -q "^checking$" state/logs/1.log || fail "the test's output is not in the log"
	[ -z "$(tags smoky)" ] || fail "pushed after a failed smoke test: $(tags smoky)"
	[ -z "$(api /containers/json?all=1 | python3 -c 'import json,sys; print("".join(c["Id"] for c in json.load(sys.stdin) if c.get("Labels", {}).get("org.kiln.image")))')" ] ||
		fail "the test container was left behind"
	stop_kilnd
}

t_base_change_rebuilds_dependents_after_it() {
	origin_init
	bb_image base dep/base 1 'tags: [latest]'
	on_image app dep/app 1 "$REG/dep/base:latest" 'RUN echo app > /app'
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_settled 120 2
	first=$(peek digest "http://$REG" dep/app 1)
	# a new base version moves `latest`: app, unchanged itself, is rebuilt after it
	sed -i 's/version: "1"/version: "2"/' c/base/manifest.yaml
	echo 'LABEL rev=2' >>c/base/Dockerfile
	push two
	sha=$(head_sha)
	wait_settled 120 4
	rows=$(db "SELECT path, change, state, started_at, finished_at FROM builds WHERE commit_sha = '$sha' ORDER BY id")
	base_row=$(grep '^base|' <<<"$rows")
	app_row=$(grep '^app|' <<<"$rows")
	[ "$(cut -d'|' -f2,3 <<<"$base_row")" = "modified|succeeded" ] || fail "base: $base_row"
	[ "$(cut -d'|' -f2,3 <<<"$app_row")" = "dependency|succeeded" ] || fail "app: $app_row"
	[ "$(cut -d'|' -f4 <<<"$app_row")" -ge "$(cut -d'|' -f5 <<<"$base_row")" ] ||
		fail "app started before its base finished: $rows"
	grep -q "already exists in the registry" state/logs/*.log && fail "the dependency rebuild hit the tag check"
	[ "$(peek digest "http://$REG" dep/app 1)" != "$first" ] || fail "app:1 was not re-pushed"
	[ "$(tags dep/base)" = "1 2 latest" ] || fail "base tags: $(tags dep/base)"
	stop_kilnd
}

t_existing_version_is_refused() {
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

# engine_restart_mid_build SIGNAL NAME: a build (of image NAME) reaches its slow step, the engine
# is stopped with SIGNAL and started again; the build must end pushed
engine_restart_mid_build() {
	origin_init
	bb_image slow "$2" 1
	echo 'RUN sleep 4' >>c/slow/Dockerfile
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_for 60 grep -q "RUN sleep 4" state/logs/1.log || fail "build did not reach its slow step"
	engine_stop "$1"
	sleep 1
	engine_start "$E" || fail "dockerd did not come back"
	wait_settled 180 1
	IFS='|' read -r st attempts err <<<"$(build_of slow)"
	[ "$st" = succeeded ] || fail "slow: $st ($err)"
	[ "$(tags "$2")" = 1 ] || fail "not pushed"
}

# a crash cuts the build's connection: the build goes back to the queue
t_engine_crash_mid_build_retries() {
	engine_restart_mid_build KILL crashed
	[ "$attempts" -ge 2 ] || fail "no retry recorded (attempts $attempts)"
	grep -q "docker engine .* unusable\|back in the queue" kilnd.log || fail "the outage was not reported"
	stop_kilnd
}

# a graceful stop may let the build finish (busybox sleep as PID 1 ignores
# SIGTERM, so dockerd waits for it) or fail it with an error that reads like
# the Dockerfile's; either way it must not end as a failed build
t_engine_restart_mid_build_ends_pushed() {
	engine_restart_mid_build TERM restarted
	stop_kilnd
}

t_cancel_running_build() {
	origin_init
	bb_image sleepy sleepy 1
	echo 'RUN sleep 60' >>c/sleepy/Dockerfile
	push one
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_for 60 grep -q "RUN sleep 60" state/logs/1.log || fail "build did not reach its slow step"
	t0=$(date +%s)
	"$KILN" cancel 1 --socket kiln.sock | grep -q cancel || fail "cancel refused"
	wait_settled 20 1
	[ "$(build_of sleepy | cut -d'|' -f1)" = cancelled ] || fail "sleepy: $(build_of sleepy)"
	[ $(($(date +%s) - t0)) -lt 20 ] || fail "cancel took too long"
	wait_for 20 sh -c "[ -z \"\$(curl -sf --unix-socket $E/docker.sock http://localhost/containers/json?all=1 | tr -d '[]\n')\" ]" ||
		fail "the cancelled build left containers behind"
	stop_kilnd
}

t_tls_registry_with_credentials() {
	origin_init
	IMAGE_REGISTRY=$TREG bb_image secure team/secure 1
	printf 's3cret-pw\n' >reg.pass
	push one
	kilnd_config "registries:" "  - {host: \"$TREG\", username: kiln, password_file: $PWD/reg.pass}" >kilnd.yaml
	start_kilnd
	wait_settled 120 1
	[ "$(build_of secure | cut -d'|' -f1)" = succeeded ] || fail "secure: $(build_of secure)"
	[ "$(peek tags "https://$TREG" team/secure "${TLS_AUTH[@]}")" = 1 ] || fail "not in the TLS registry"
	grep -q "s3cret-pw" kilnd.log state/logs/*.log && fail "the password was logged"
	stop_kilnd
	# without credentials the registry refuses, and that is not retried
	rm -rf state
	IMAGE_REGISTRY=$TREG bb_image secure team/secure 2
	push two
	kilnd_config >kilnd.yaml
	start_kilnd
	wait_settled 120 1
	IFS='|' read -r st attempts err <<<"$(build_of secure)"
	[ "$st" = failed ] || fail "pushed without credentials: $st"
	[ "$attempts" = 1 ] || fail "an authentication failure was retried"
	stop_kilnd
}

t_kiln_build_one_shot() {
	origin_init
	bb_image base cli/base 1 'tags: [latest]'
	on_image ok cli/ok 1 "$REG/cli/base:latest" 'RUN echo ok > /ok'
	push one
	from=$(head_sha)
	on_image broken cli/broken 1 "$REG/cli/base:latest" 'RUN exit 7'
	on_image after cli/after 1 "$REG/cli/broken:1" 'RUN true'
	push two
	expect_rc 0 "$KILN" build --repo c --push "$from~0" "$from" # nothing changed
	contains "$OUT" "0 images"
	expect_rc 0 "$KILN" build --repo c --dry-run "$EMPTY_TREE" HEAD
	contains "$OUT" "cli/after:1"
	[ -z "$(tags cli/base)" ] || fail "a dry run pushed"
	expect_rc 1 "$KILN" build --repo c --push "$EMPTY_TREE" HEAD
	contains "$OUT" "cli/ok:1 | Step"
	contains "$OUT" "cli/broken:1 | kiln: failed: build failed"
	grep -q "^$REG/cli/after:1 *SKIPPED" <<<"$OUT" || fail "dependent of a failed image not skipped: $OUT"
	grep -q "^$REG/cli/ok:1 *ok" <<<"$OUT" || fail "ok not in the summary"
	[ "$(tags cli/ok)" = 1 ] || fail "cli/ok not pushed"
	[ -z "$(tags cli/after)" ] || fail "cli/after pushed"
	# without --push nothing reaches the registry
	sed -i 's/version: "1"/version: "5"/' c/ok/manifest.yaml
	push three
	expect_rc 0 "$KILN" build --repo c HEAD~1 HEAD
	[ "$(tags cli/ok)" = 1 ] || fail "pushed without --push"
	expect_rc 2 "$KILN" build --repo c --docker-host ftp://x HEAD~1 HEAD
	contains "$ERR" "expected unix:///path or tcp://host:port"
}

# The context kiln sends is the one the docker CLI sends: compare the files
# of the two images built from the same folder.
t_context_matches_docker_build() {
	command -v docker >/dev/null || { fail "no docker CLI to compare with"; return; }
	origin_init
	mkdir -p c/ctx/docs/sub c/ctx/tmp c/ctx/bin
	printf 'FROM scratch\nCOPY . /ctx/\n' >c/ctx/Dockerfile
	printf 'name: ctx\nversion: "1"\nregistry: %s\n' "$REG" >c/ctx/manifest.yaml
	printf '*.log\n!keep.log\ntmp\ndocs/**/*.md\n!docs/sub/ok.md\n' >c/ctx/.dockerignore
	echo a >c/ctx/a.txt; echo l >c/ctx/drop.log; echo k >c/ctx/keep.log; echo t >c/ctx/tmp/x
	echo d >c/ctx/docs/readme.md; echo o >c/ctx/docs/sub/ok.md; echo n >c/ctx/docs/sub/no.md
	printf '#!/bin/sh\n' >c/ctx/bin/run && chmod 755 c/ctx/bin/run
	ln -s a.txt c/ctx/link
	push one
	expect_rc 0 "$KILN" build --repo c "$EMPTY_TREE" HEAD
	kiln_id=$(grep -o 'kiln: built [^ ]* (sha256:[0-9a-f]*' <<<"$OUT" | grep -o 'sha256:.*')
	docker_id=$(cd c/ctx && DOCKER_BUILDKIT=0 docker build -q . 2>/dev/null)
	[ -n "$kiln_id" ] && [ -n "$docker_id" ] || { fail "ids: kiln '$kiln_id' docker '$docker_id'"; return; }
	list() { # IMAGE: the files under /ctx with type, mode, size and link target
		local c
		c=$(docker create "$1" /x)
		docker export "$c" | tar -tvf - | awk '$6 ~ /^ctx\// {print $1, $3, $6, $7, $8}' | sort
		docker rm "$c" >/dev/null
	}
	want=$(list "$docker_id")
	got=$(list "$kiln_id")
	[ "$got" = "$want" ] || { fail "contexts differ"; diff <(echo "$want") <(echo "$got") | sed 's/^/    /' >&2; }
	contains "$got" "ctx/keep.log"
	contains "$got" "ctx/docs/sub/ok.md"
	contains "$got" "ctx/link -> a.txt"
	case "$got" in *drop.log* | *tmp/x* | *no.md* | *readme.md*) fail "excluded files were sent: $got" ;; esac
}

t_one_gib_context_with_small_rss() {
	if [ "${KILN_SANITIZED:-0}" = 1 ]; then
		not_here "a peak RSS bound, under the sanitizers, whose shadow memory makes RSS meaningless"
		return
	fi
	# fast-import writes the 1 GiB commit as one pack in a fraction of the
	# time `git add` takes; `git daemon` serves it, because libgit2's own
	# local transport re-deltifies every object of a path URL (minutes here)
	mkdir served
	git init -q --bare -b main served/origin.git
	python3 "$(dirname "$PEEK")/bigrepo.py" big 20000 $((1 << 30)) "$REG" |
		git -C served/origin.git fast-import --quiet || { fail "fast-import"; return; }
	serve_git "$PWD/served" || return
	kilnd_config | sed "s|url: .*|url: git://127.0.0.1:$GIT_PORT/origin.git|" >kilnd.yaml
	start_kilnd
	wait_settled 300 1
	[ "$(build_of big | cut -d'|' -f1)" = succeeded ] || fail "big: $(build_of big)"
	grep -q "context 10[0-9]\{8\} bytes in 20[0-9]\{3\} entries" state/logs/1.log ||
		fail "context size: $(grep -o 'context .* entries' state/logs/1.log)"
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$KPID/status")
	echo "  kilnd peak RSS with a 1 GiB context: $((hwm / 1024)) MiB"
	[ "$hwm" -lt $((64 * 1024)) ] || fail "kilnd peak RSS ${hwm} KiB is over 64 MiB"
	stop_kilnd
}

run_all
