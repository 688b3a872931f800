# kiln.sh: what the end-to-end scripts share (sourced after common.sh and
# engine.sh): one private engine and two registries for the whole script, a
# repository to push image folders to, kilnd started on it, the state read
# back (scenario.sh), and the scenarios every builder must pass (publish_scenario,
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
registries_start || exit 1

api() { curl -sf --unix-socket "$E/docker.sock" "http://localhost$1"; }

. "$(dirname "${BASH_SOURCE[0]}")/scenario.sh"

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
	grep -q "with $KILN_BUILDER on Docker .* (context" state/logs/1.log || fail "the log does not name the builder"
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
