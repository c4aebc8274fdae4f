#!/usr/bin/env bash
# Install everything slimfs needs to build, test and benchmark on Debian 12.
# One script for CI and for humans: idempotent, no questions asked.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
	build-essential binutils meson ninja-build pkg-config clang clang-format
	libfuse3-dev fuse3 libarchive-dev libzstd-dev zstd libxxhash-dev
	libjansson-dev libcurl4-openssl-dev libelf-dev openssl
	scdoc python3 debootstrap squashfs-tools squashfuse erofs-utils
	runc bubblewrap nginx docker-registry fio hyperfine valgrind gnuplot-nox time
	attr acl xz-utils curl iproute2 psmisc file apache2-utils
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
