# podman.sh: a private `podman system service` (Podman's Docker-compatible
# API) for the end-to-end tests, sourced after engine.sh, whose registries
# and teardown it shares: ENGINE_DIR and ENGINE_PID name the service, so
# engine_teardown stops it by pid and its conmon/runc children by the
# directory in their command lines.
#
# Everything podman would keep in /var/lib/containers, /run/containers,
# /run/libpod or /etc/containers is under the directory instead: storage
# (vfs: no overlay mounts to clean up), run root, tmp dir, network configs,
# and its own containers.conf, storage.conf and registries.conf (the test
# registries as insecure, no short-name search), TMPDIR (buildah keeps its
# cache mounts there, else in /var/tmp). runc, because crun fails
# on hosts with hybrid cgroups.

# podman_skip_reason: why no podman service can run here ("" when one can)
podman_skip_reason() {
	[ "$(id -u)" = 0 ] || { echo "not root (the private podman service runs as root)"; return; }
	needs_commands "podman, runc, conmon, docker-registry, openssl, apache2-utils" \
		podman runc conmon docker-registry openssl htpasswd
}

# podman_start DIR [REGISTRY...]: starts the service on DIR/podman.sock;
# sets ENGINE_DIR, ENGINE_PID, PODMAN_SOCK
podman_start() {
	local d=$1 r nproc
	shift
	ENGINE_DIR=$d
	mkdir -p "$d/root" "$d/run" "$d/tmp" "$d/net" "$d/vol"
	{
		echo 'unqualified-search-registries = []'
		for r in "$@"; do printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$r"; done
	} >"$d/registries.conf"
	printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' "$d" "$d" >"$d/storage.conf"
	# podman raises a container's nofile/nproc limits to 1048576 unless
	# told: without CAP_SYS_RESOURCE (root in a container) that fails every
	# RUN and smoke test with "error setting rlimit"
	nproc=$(ulimit -Hu)
	[ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
	cat >"$d/containers.conf" <<EOC
[containers]
netns = "none"
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=$nproc:$nproc"]
[network]
network_config_dir = "$d/net"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "runc"
tmp_dir = "$d/tmp"
volume_path = "$d/vol"
EOC
	CONTAINERS_CONF=$d/containers.conf CONTAINERS_STORAGE_CONF=$d/storage.conf \
		CONTAINERS_REGISTRIES_CONF=$d/registries.conf TMPDIR=$d/tmp \
		podman --root "$d/root" --runroot "$d/run" --storage-driver vfs --runtime runc \
		--cgroup-manager cgroupfs system service --time=0 "unix://$d/podman.sock" \
		>>"$d/podman.log" 2>&1 &
	ENGINE_PID=$!
	track_engine_pid "$ENGINE_PID"
	PODMAN_SOCK=$d/podman.sock
	wait_for 30 curl -sf --unix-socket "$PODMAN_SOCK" http://localhost/_ping -o /dev/null || {
		echo "podman did not start: $(tail -5 "$d/podman.log")" >&2
		return 1
	}
}
