#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job, end to end, on a fresh Debian 12 machine (as root):
#   1. installs what is missing and builds slimfs
#   2. makes a real image: Debian bookworm (debootstrap minbase + python3 + perl,
#      cached after the first run) with a minimal view for python3
#   3. serves it with nginx on 127.0.0.1 and mounts it lazily over HTTP
#   4. runs python3 from the minimal rootfs (chroot) and shows that /bin/sh,
#      apt and dpkg are not there
#   5. prints what was fetched: requests and bytes, against the image size
# Usage: sudo bench/demo.sh [--keep]   (--keep leaves the mount up for a look)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
keep=0
[ "${1:-}" = --keep ] && keep=1
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (FUSE mount, chroot, debootstrap)" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing dependencies and building slimfs"
bash "$top/.ci/deps.sh"
[ -f "$top/build/build.ninja" ] || meson setup "$top/build" "$top" >/dev/null
ninja -C "$top/build" >/dev/null
slimfs=$top/build/slimfs

say "getting a Debian bookworm rootfs (debootstrap, cached after the first run)"
rootfs=$("$top/tests/rootfs.sh")
work=$(mktemp -d /var/tmp/slimfs-demo.XXXXXX)
mkdir -p "$work/www" "$work/mnt" "$work/nginx"
cleanup() {
	set +e
	if [ $keep = 0 ]; then
		grep -qF " $work/mnt " /proc/self/mounts && fusermount3 -u "$work/mnt"
		[ -n "${ngx:-}" ] && kill "$ngx" 2>/dev/null
		rm -rf "$work"
	fi
}
trap cleanup EXIT

say "building the image: full view + a minimal view for python3"
"$slimfs" build -o "$work/www/debian.slimfs" \
	--entrypoint /usr/bin/python3 --view minimal="$top/bench/python.allow" "$rootfs"

say "serving it with nginx on 127.0.0.1"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/nginx/nginx.conf" <<NGX
daemon off;
user root;
pid $work/nginx/pid;
error_log $work/nginx/error.log;
events { worker_connections 64; }
http {
	access_log $work/nginx/access.log;
	client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
	fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
	server { listen 127.0.0.1:$port; root $work/www; }
}
NGX
nginx -c "$work/nginx/nginx.conf" </dev/null &
ngx=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
url=http://127.0.0.1:$port/debian.slimfs

say "mounting $url lazily (default view: minimal)"
"$slimfs" mount --cache none "$url" "$work/mnt"
echo "mounted on $work/mnt (statfs magic 0x$(stat -f -c %t "$work/mnt"): FUSE)"

say "running python3 from the minimal rootfs"
chroot "$work/mnt" /usr/bin/python3 -c \
	'import json, sqlite3, urllib.request; print("python3 runs from a minimal, lazily fetched rootfs")'

say "what the minimal view leaves out"
for p in /bin/sh /bin/bash /usr/bin/apt /usr/bin/dpkg /usr/bin/perl; do
	if [ -e "$work/mnt$p" ] || [ -L "$work/mnt$p" ]; then echo "  $p: PRESENT"; else echo "  $p: absent"; fi
done

say "what was fetched"
size=$(stat -c %s "$work/www/debian.slimfs")
awk -v size="$size" '$9 == 206 { n++; b += $10 } END {
	printf "  %d range requests, %.1f MiB of a %.1f MiB image (%.1f%%)\n",
		n, b / 1048576, size / 1048576, 100 * b / size }' "$work/nginx/access.log"
if "$slimfs" stats --help >/dev/null 2>&1; then
	"$slimfs" stats "$work/mnt" || true
fi
if [ $keep = 1 ]; then
	echo
	echo "left mounted: $work/mnt (full view: slimfs mount --view full $url DIR)"
	echo "unmount with: fusermount3 -u $work/mnt; kill $ngx"
	trap - EXIT
fi
