#!/usr/bin/env bash
# container.sh: packaging/Dockerfile and packaging/compose.yaml on a private
# Docker engine. Nothing can be pulled, so the base is made here: debootstrap
# of Debian 12 (minbase) from the mirror apt uses on this machine, imported
# with `docker import`. The image is built from this tree (its build stage
# reaches Debian's archive through the host's network: the engine runs with
# --bridge=none), inspected, and run against a git daemon and a registry on
# the host; then the compose demo runs on the same base. It builds from
# scratch either way: ctest runs it alone (RUN_SERIAL), in the plain build only.
# KILN_DEBIAN_TAR=FILE imports that tar of a bookworm root instead of running
# debootstrap (a rerun by hand saves minutes).
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/../e2e/lib/engine.sh"
: "${KILN_SRC:?}"
PEEK="$(cd "$(dirname "$0")/../e2e/lib" && pwd)/peek.py"

reason=$(engine_skip_reason)
[ -z "$reason" ] || skip_all "the container test needs a Docker engine: $reason"
for c in debootstrap docker docker-compose; do
	command -v "$c" >/dev/null || skip_all "no $c (packages debootstrap, docker.io, docker-compose)"
done

# debian_mirror: the first URI apt fetches bookworm (not -security or
# -updates) from, in one-line or deb822 sources
debian_mirror() {
	{
		cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '$1 == "deb" { sub(/\[[^]]*\] */, ""); if ($3 == "bookworm") print $2 }'
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -f "$f" ] || continue
			awk 'BEGIN { RS = ""; FS = "\n" } {
				uri = ""; deb = 0; suite = 0
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Types:.*[ \t]deb([ \t]|$)/) deb = 1
					if ($i ~ /^Suites:.*[ \t]bookworm([ \t]|$)/) suite = 1
					if ($i ~ /^URIs:/) { split($i, w, /[ \t]+/); uri = w[2] }
				}
				if (deb && suite && uri != "") print uri
			}' "$f"
		done
	} | head -1
}
MIRROR=$(debian_mirror)
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian

export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
E=$(mktemp -d /tmp/kiln-c.XXXXXX)
ENGINE_DIR=$E
ROOTFS=$TEST_TMP/rootfs
# debootstrap mounts /proc and /sys in the root it makes: an interrupted run
# must not leave them (nor rm -rf walk into them)
umount_rootfs() {
	local m
	for m in $(awk -v d="$ROOTFS/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
}
at_exit umount_rootfs
at_exit engine_teardown
engine_start "$E" || exit 1
REG_PORT=$(free_port)
registry_start "$TEST_TMP/reg" "$REG_PORT" || exit 1
REG=127.0.0.1:$REG_PORT
BASE=kiln-test/debian:12
IMAGE=kiln-test/kilnd:test
T0=$(date +%s)

if [ -n "${KILN_DEBIAN_TAR:-}" ]; then
	docker import "$KILN_DEBIAN_TAR" "$BASE" >/dev/null || exit 1
else
	echo "debootstrap --variant=minbase bookworm from $MIRROR"
	debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$TEST_TMP/debootstrap.log" 2>&1 || {
		tail -20 "$TEST_TMP/debootstrap.log" >&2
		echo "FAIL: debootstrap" >&2
		exit 1
	}
	umount_rootfs
	rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
	tar -C "$ROOTFS" --numeric-owner -c . | docker import - "$BASE" >/dev/null || exit 1
	rm -rf --one-file-system "$ROOTFS"
fi
T1=$(date +%s)
echo "base image $BASE in $((T1 - T0)) s; building $IMAGE"
docker build --network host --build-arg BASE="$BASE" -f "$KILN_SRC/packaging/Dockerfile" \
	-t "$IMAGE" "$KILN_SRC" >"$TEST_TMP/build.log" 2>&1 || {
	tail -30 "$TEST_TMP/build.log" >&2
	echo "FAIL: docker build" >&2
	exit 1
}
T2=$(date +%s)
echo "image built in $((T2 - T1)) s"

peek() { python3 "$PEEK" "$@"; }
inspect() { docker inspect -f "$1" "${2:-$IMAGE}"; }
in_image() { docker run --rm --entrypoint /bin/sh "$IMAGE" -c "$1"; }
CONTAINER=

# ---- scenarios (in this order: they share the image) ----

t_1_image_is_runtime_only_non_root() {
	local pkgs bad
	[ "$(inspect '{{.Config.User}}')" = kiln ] || fail "USER: $(inspect '{{.Config.User}}')"
	[ "$(in_image 'id -u; id -g')" = "$(printf '10001\n10001')" ] || fail "uid/gid: $(in_image 'id')"
	contains "$(inspect '{{json .Config.Healthcheck.Test}}')" '"kiln","health","--socket","/run/kiln/kiln.sock"'
	[ "$(inspect '{{.Config.StopSignal}}')" = SIGTERM ] || fail "STOPSIGNAL: $(inspect '{{.Config.StopSignal}}')"
	contains "$(inspect '{{json .Config.Volumes}}')" '"/var/lib/kiln"'
	contains "$(inspect '{{json .Config.ExposedPorts}}')" '"8080/tcp"'
	contains "$(inspect '{{json .Config.Entrypoint}}')" '["kilnd"]'
	# every library resolves, and nothing of the build stage came along
	[ -z "$(in_image 'ldd /usr/bin/kiln /usr/bin/kilnd | grep "not found"')" ] || fail "missing libraries"
	pkgs=$(in_image 'dpkg-query -W -f="\${Package}\n"')
	[ -n "$pkgs" ] || fail "no package list"
	bad=$(grep -E -e '-dev$' -e '^(gcc|gcc-12|cpp|cmake|make|build-essential|pkg-config|libc6-dev|binutils)$' <<<"$pkgs")
	[ -z "$bad" ] || fail "build packages in the runtime image: $(tr "\n" " " <<<"$bad")"
	[ -z "$(in_image 'ls /var/lib/apt/lists | grep -v -e ^lock -e ^partial')" ] || fail "apt lists left in the image"
	contains "$(in_image 'kilnd --check-config')" "valid, 0 repositories"
}

# git_repo: origin.git served by `git daemon`, with a first commit
git_repo() {
	mkdir srv
	git init -q --bare -b main srv/images.git
	git clone -q srv/images.git c 2>/dev/null
	echo "kiln images" >c/README
	(cd c && git add -A && git commit -qm init && git push -q origin HEAD:main) || return 1
	serve_git "$PWD/srv"
}

# bb_image NAME VERSION: folder NAME of the clone, busybox FROM scratch
bb_image() {
	mkdir -p "c/$1"
	cp "$BUSYBOX" "c/$1/busybox"
	printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"c/$1/Dockerfile"
	printf 'name: %s\nversion: "%s"\nregistry: %s\ntest: {command: ["/bin/sh", "-c", "true"]}\n' \
		"$1" "$2" "$REG" >"c/$1/manifest.yaml"
}

health() { inspect '{{.State.Health.Status}}' "$CONTAINER"; }

t_2_runs_builds_pushes_stops() {
	local gid pid kids t0 took
	git_repo || { fail "git repository"; return; }
	cat >kilnd.yaml <<-EOF
		state_dir: /var/lib/kiln
		docker: {host: "unix:///var/run/docker.sock"}
		builds: {concurrency: 1, retries: 1, retry_delay: 1s, network: none}
		listen: {http: ["127.0.0.1:$(free_port)"], status_socket: /run/kiln/kiln.sock}
		shutdown_grace: 5s
		repositories:
		  - {name: images, url: "git://127.0.0.1:$GIT_PORT/images.git", poll_interval: 1h}
	EOF
	chmod 0644 kilnd.yaml
	gid=$(stat -c %g "$E/docker.sock")
	CONTAINER=kiln-test-kilnd-$$
	docker run -d --name "$CONTAINER" --network host --group-add "$gid" \
		-v "$E/docker.sock:/var/run/docker.sock" -v "$PWD/kilnd.yaml:/etc/kiln/kilnd.yaml:ro" \
		--health-interval 1s --health-start-period 30s "$IMAGE" >/dev/null ||
		{ fail "docker run"; return; }
	if ! wait_for 60 sh -c "[ \"\$(docker inspect -f '{{.State.Health.Status}}' $CONTAINER)\" = healthy ]"; then
		fail "not healthy: $(health); $(docker logs "$CONTAINER" 2>&1 | tail -5)"
		return
	fi
	# a commit, then `kiln trigger` inside the container, as its user
	bb_image hello 1.0
	(cd c && git add -A && git commit -qm hello && git push -q origin HEAD:main)
	docker exec "$CONTAINER" kiln trigger images >/dev/null || fail "kiln trigger"
	wait_for 120 sh -c "python3 '$PEEK' tags 'http://$REG' hello | grep -qx 1.0" ||
		fail "hello:1.0 not in the registry: $(docker exec "$CONTAINER" kiln builds 2>&1 | tail -3)"
	docker exec "$CONTAINER" kiln builds | grep -q 'succeeded.*hello' || fail "kiln builds: $(docker exec "$CONTAINER" kiln builds)"
	# the offline commands' modules are in the image: each loads and gets as
	# far as the (missing) repository
	for c in changes build; do
		out=$(docker exec "$CONTAINER" kiln $c --repo /nonexistent HEAD HEAD 2>&1)
		case $out in
		*"cannot load"* | "") fail "kiln $c in the image: $out" ;;
		esac
		contains "$out" "/nonexistent"
	done
	# PID 1 forks nothing: no children (no zombies to reap)
	pid=$(inspect '{{.State.Pid}}' "$CONTAINER")
	[ "$(tr -d '\n' </proc/"$pid"/comm)" = kilnd ] || fail "PID 1 is $(cat /proc/"$pid"/comm)"
	kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null | tr -d ' \n')
	[ -z "$kids" ] || fail "kilnd has children: $kids"
	[ "$(docker exec "$CONTAINER" stat -c %u /var/lib/kiln/kilnd.db)" = 10001 ] || fail "state not owned by kiln"
	# docker stop: SIGTERM, and kilnd exits 0 by itself well before the timeout
	t0=$(date +%s)
	docker stop --time 30 "$CONTAINER" >/dev/null
	took=$(($(date +%s) - t0))
	[ "$(inspect '{{.State.ExitCode}}' "$CONTAINER")" = 0 ] ||
		fail "exit code $(inspect '{{.State.ExitCode}}' "$CONTAINER")"
	[ "$took" -lt 20 ] || fail "docker stop took $took s"
	docker logs "$CONTAINER" 2>&1 | grep -q SIGTERM || fail "no SIGTERM in kilnd's log"
	docker rm -v "$CONTAINER" >/dev/null
}

t_3_compose_demo() {
	local gp rp project compose
	rp=$(free_port)
	gp=$(free_port)
	project=kilntest$$
	# the demo's configuration with this run's ports
	sed -e "s/127.0.0.1:9418/127.0.0.1:$gp/" -e "s/127.0.0.1:8080/127.0.0.1:$(free_port)/" \
		-e 's/poll_interval: 10s/poll_interval: 1s/' "$KILN_SRC/packaging/compose/kilnd.yaml" >kilnd.yaml
	chmod 0644 kilnd.yaml
	printf 'version: "3.8"\nservices:\n  kilnd:\n    volumes:\n      - %s:/etc/kiln/kilnd.yaml:ro\n' \
		"$PWD/kilnd.yaml" >compose.test.yaml
	compose=(docker-compose -p "$project" -f "$KILN_SRC/packaging/compose.yaml" -f compose.test.yaml)
	export BASE KILN_DEMO_REGISTRY=127.0.0.1:$rp KILN_DEMO_GIT_PORT=$gp
	export DOCKER_SOCKET=$E/docker.sock DOCKER_GID
	DOCKER_GID=$(stat -c %g "$E/docker.sock")
	"${compose[@]}" up -d --build >compose.log 2>&1 || {
		fail "docker-compose up: $(tail -20 compose.log)"
		"${compose[@]}" down -v >/dev/null 2>&1
		return
	}
	CONTAINER=$("${compose[@]}" ps -q kilnd)
	wait_for 90 sh -c "[ \"\$(docker inspect -f '{{.State.Health.Status}}' $CONTAINER)\" = healthy ]" ||
		fail "kilnd not healthy: $(health); $("${compose[@]}" logs --tail 5 2>&1)"
	wait_for 120 sh -c "python3 '$PEEK' tags 'http://127.0.0.1:$rp' demo/hello | grep -qx 1.0.0" ||
		fail "demo/hello:1.0.0 not in the compose registry: $("${compose[@]}" logs --tail 8 2>&1)"
	# a push to the git service is built too
	git clone -q "git://127.0.0.1:$gp/images.git" d || fail "clone from the git service"
	sed -i 's/version: "1.0.0"/version: "1.0.1"/' d/hello/manifest.yaml
	(cd d && git commit -qam "hello 1.0.1" && git push -q origin HEAD:main) || fail "push to the git service"
	wait_for 120 sh -c "python3 '$PEEK' tags 'http://127.0.0.1:$rp' demo/hello | grep -qx 1.0.1" ||
		fail "demo/hello:1.0.1 not pushed: $("${compose[@]}" logs --tail 8 kilnd 2>&1)"
	"${compose[@]}" down -v >>compose.log 2>&1 || fail "docker-compose down: $(tail -5 compose.log)"
	[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ] || fail "containers left"
	[ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$project")" ] || fail "volumes left"
}

run_all
echo "wall time: $(($(date +%s) - T0)) s (base $((T1 - T0)) s, image $((T2 - T1)) s)"
