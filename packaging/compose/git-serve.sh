#!/bin/sh
# git-serve: the compose demo's git server. On first start it makes
# /srv/git/images.git, an images repository with one image, `hello` (Debian's
# static busybox FROM scratch, so building it pulls nothing), whose manifest
# names the demo's registry. Then it serves /srv/git with `git daemon` on
# 127.0.0.1:$KILN_DEMO_GIT_PORT, pushes allowed (anyone who can reach that
# port can push: it is a demo).
set -eu
port=${KILN_DEMO_GIT_PORT:-9418}
registry=${KILN_DEMO_REGISTRY:-127.0.0.1:5000}

if [ ! -d /srv/git/images.git ]; then
	work=$(mktemp -d)
	mkdir "$work/hello"
	cp /bin/busybox "$work/hello/busybox"
	cat >"$work/hello/Dockerfile" <<-DOCKERFILE
		FROM scratch
		COPY busybox /bin/busybox
		RUN ["/bin/busybox", "--install", "-s", "/bin"]
		CMD ["/bin/sh", "-c", "echo hello from kiln"]
	DOCKERFILE
	cat >"$work/hello/manifest.yaml" <<-MANIFEST
		name: demo/hello
		version: "1.0.0"
		registry: $registry
		tags: [latest]
		test: {command: ["/bin/sh", "-c", "echo hello from kiln"]}
		# its RUN needs no network: it builds on engines without a bridge too
		network: none
	MANIFEST
	git init -q -b main "$work"
	git -C "$work" add -A
	git -C "$work" -c user.name=kiln-demo -c user.email=demo@kiln.invalid commit -qm "hello: first version"
	git clone -q --bare "$work" /srv/git/images.git.new
	mv /srv/git/images.git.new /srv/git/images.git
	rm -rf "$work"
	echo "git-serve: made images.git (image demo/hello for $registry)"
fi

# git daemon does not stop on SIGTERM as PID 1 (no handler): this shell
# forwards it
git daemon --reuseaddr --listen=127.0.0.1 --port="$port" --base-path=/srv/git \
	--export-all --enable=receive-pack /srv/git &
pid=$!
trap 'kill -TERM $pid; wait $pid; exit 0' TERM INT
echo "git-serve: serving git://127.0.0.1:$port/images.git"
wait $pid
