#!/bin/sh
# deps.sh [--tests]: installs kiln's build dependencies from Debian 12's
# archive, and with --tests also what the test suite needs (clang for the
# fuzzers, a Docker engine, a registry, static busybox, htpasswd); only those
# that are missing, so a prepared machine needs no network. The package test
# needs dpkg-dev (dpkg-shlibdeps for CPack's Depends:) and lintian, the man page test
# groff-base and man-db, the RPM test rpm (rpmbuild), the container test
# debootstrap (its Debian base) and docker-compose (the compose demo), the
# Podman test podman with runc (crun fails on hybrid-cgroup hosts), the
# dashboard's browser test chromium, its driver and python3-selenium.
set -eu

pkgs="build-essential cmake pkg-config git ca-certificates python3
libgit2-dev libyaml-dev libjansson-dev libcmocka-dev libuv1-dev libsqlite3-dev libsystemd-dev
libssl-dev libhttp-parser-dev libcurl4-openssl-dev libarchive-dev libnghttp2-dev libcrypt-dev zlib1g-dev
curl systemd"
if [ "${1:-}" = --tests ]; then
	pkgs="$pkgs clang docker-registry busybox-static apache2-utils openssl
dpkg-dev lintian groff-base man-db rpm debootstrap docker-compose podman
chromium chromium-driver python3-selenium"
	# a host with Docker's own packages (docker-ce) keeps its engine: Debian's
	# docker.io would conflict with them
	command -v dockerd >/dev/null || pkgs="$pkgs docker.io"
	# (containerd.io of docker-ce brings its own runc and conflicts with Debian's)
	command -v runc >/dev/null || pkgs="$pkgs runc"
fi

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "deps.sh: installing$missing" >&2
$sudo apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends $missing
