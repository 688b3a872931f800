#!/usr/bin/env bash
# session.sh: the BuildKit session on a real engine, through kilnd and
# `kiln build`: a secret mounted with RUN --mount=type=secret reaches the
# build and nothing else (no layer, no log, no `kiln builds --json` field), a
# secret not granted fails the build with words that say what to change, and
# a private base image is pulled with kiln's registry credentials. The
# registry is htpasswd on plain HTTP: BuildKit in 20.10 speaks HTTP to a
# loopback registry.
. "$(dirname "$0")/../integration/lib/common.sh"
. "$(dirname "$0")/lib/engine.sh"
: "${KILND:?}"
KILN_BUILDER=buildkit
. "$(dirname "$0")/lib/kiln.sh" # the engine, kilnd and repository helpers

APORT=$(free_port)
registry_start "$TEST_TMP/areg" "$APORT" auth || exit 1
AREG=127.0.0.1:$APORT
IMAGE_REGISTRY=$AREG
SECRET="kiln-e2e-secret-$$-$RANDOM"
docker_() { DOCKER_HOST="unix://$E/docker.sock" docker "$@"; }

# image DIR NAME DOCKERFILE-BODY [manifest lines...]: FROM scratch with
# busybox, built by BuildKit
image() {
	local dir=$1 name=$2 body=$3
	shift 3
	on_image "$dir" "$name" 1 scratch "COPY busybox /bin/busybox
$body" "builder: buildkit" "network: none" "$@"
	cp "$BUSYBOX" "c/$dir/busybox"
}

# the sha256 a RUN wrote into the image, read back from a container
sha_in() { docker_ run --rm --network none "$1" /bin/busybox cat /token.sha | cut -c1-64; }

# no layer of the image holds the secret's value
layers_clean() {
	rm -rf saved && mkdir saved && docker_ save "$1" | tar -x -C saved || { fail "docker save $1"; return; }
	for l in saved/*/layer.tar; do
		! tar -xOf "$l" | grep -aqF "$SECRET" || fail "a layer of $1 holds the secret: $l"
	done
	! grep -raqF "$SECRET" saved || fail "the saved image $1 holds the secret"
}

# run_secret TAG: a RUN that hashes the secret; TAG keeps BuildKit's cache
# (whose keys leave secrets out) from serving one image's step to another
run_secret() {
	printf 'RUN --mount=type=secret,id=token,required=true ["/bin/busybox", "sh", "-c", "/bin/busybox sha256sum /run/secrets/token > /token.sha # %s"]' "$1"
}

t_kilnd_secret_granted_not_granted_undefined() {
	origin_init
	mkdir creds && printf '%s\n' "$SECRET" >creds/token && printf 's3cret-pw' >creds/regpw
	image granted granted "$(run_secret granted)" "secrets: [token]"
	image denied denied "$(run_secret denied)"
	image undefined undefined "$(run_secret undefined)" "secrets: [token, other]"
	push
	{
		kilnd_config "registries: [{host: \"$AREG\", username: kiln, password_file: regpw}]"
		echo "    secrets: [{id: token, file: token}]"
	} | sed 's/retries: 3/retries: 0/' >kilnd.yaml
	CREDENTIALS_DIRECTORY=$PWD/creds start_kilnd
	wait_settled 180 3 || return
	"$KILN" builds --json --socket kiln.sock >builds.json
	python3 - builds.json "$PWD/c" <<-'EOF' || fail "builds: $(cat builds.json)"
		import json, sys
		builds = {b["path"]: b for b in json.load(open(sys.argv[1]))}
		assert builds["granted"]["state"] == "succeeded", builds["granted"]
		d = builds["denied"]
		assert d["state"] == "failed", d
		for w in ("secret 'token'", "grant it in denied/manifest.yaml", "secrets: [token]"):
		    assert w in d["error"], d["error"]
		u = builds["undefined"]
		assert u["state"] == "failed", u
		assert "undefined/manifest.yaml grants secret 'other', which is not defined in the repository's secrets in kilnd.yaml" in u["error"], u["error"]
	EOF
	[ "$(sha_in "$AREG/granted:1")" = "$(printf '%s\n' "$SECRET" | sha256sum | cut -c1-64)" ] ||
		fail "the image's hash of the secret is not the secret's"
	layers_clean "$AREG/granted:1"
	! grep -rqF "$SECRET" state/logs kilnd.log builds.json || fail "the secret's value is in a log or in kiln builds --json"
	! grep -aqF "$SECRET" state/kilnd.db* || fail "the secret's value is in the state database"
}

t_private_base_pulled_with_credentials() {
	mkdir base dc dcbad
	cp "$BUSYBOX" base/busybox
	printf 'FROM scratch\nCOPY busybox /bin/busybox\n' >base/Dockerfile
	printf '{"auths": {"%s": {"auth": "%s"}}}' "$AREG" "$(printf kiln:s3cret-pw | base64)" >dc/config.json
	printf '{"auths": {"%s": {"auth": "%s"}}}' "$AREG" "$(printf kiln:wrong | base64)" >dcbad/config.json
	DOCKER_BUILDKIT=0 docker_ build -q -t "$AREG/private-base:1" base >/dev/null 2>&1 &&
		DOCKER_CONFIG=$PWD/dc docker_ push -q "$AREG/private-base:1" >/dev/null &&
		docker_ rmi -f "$AREG/private-base:1" >/dev/null || { fail "pushing the private base"; return; }
	origin_init
	on_image app app 1 "$AREG/private-base:1" 'RUN ["/bin/busybox", "touch", "/app"]' \
		"builder: buildkit" "network: none"
	push
	# wrong credentials first (nothing is cached then): the error names the registry
	DOCKER_CONFIG=$PWD/dcbad HOME=$PWD expect_rc 1 "$KILN" build --repo c --retries 0 "$EMPTY_TREE" HEAD
	contains "$OUT" "401 Unauthorized"
	contains "$OUT" "the registry refused the credentials kiln has for $AREG"
	docker_ image inspect "$AREG/private-base:1" >/dev/null 2>&1 && fail "the base was pulled with wrong credentials"
	DOCKER_CONFIG=$PWD/dc HOME=$PWD expect_rc 0 "$KILN" build --repo c --retries 0 "$EMPTY_TREE" HEAD
	contains "$OUT" "the BuildKit session gave credentials for: $AREG"
	docker_ image inspect "$AREG/app:1" >/dev/null 2>&1 || fail "app was not built"
}

t_kiln_build_secret_option() {
	origin_init
	printf '%s\n' "$SECRET" >token
	image cli cli "$(run_secret cli)" "secrets: [token]"
	push
	HOME=$PWD expect_rc 1 "$KILN" build --repo c --retries 0 "$EMPTY_TREE" HEAD
	contains "$OUT" "cli/manifest.yaml grants secret 'token', which is not defined in kiln build's --secret options"
	HOME=$PWD expect_rc 0 "$KILN" build --repo c --retries 0 --secret "id=token,src=$PWD/token" "$EMPTY_TREE" HEAD
	[ "$(sha_in "$AREG/cli:1")" = "$(sha256sum <token | cut -c1-64)" ] || fail "the image's hash of the secret is not the secret's"
	! grep -qF "$SECRET" "$TEST_TMP/out" "$TEST_TMP/err" || fail "kiln build printed the secret"
	layers_clean "$AREG/cli:1"
	HOME=$PWD expect_rc 2 "$KILN" build --repo c --secret "id=token" "$EMPTY_TREE" HEAD
	contains "$ERR" "--secret needs id=ID"
}

run_all
