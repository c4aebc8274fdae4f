#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Minimal views against what workloads need (issue "Minimal views", benchmark).
#
#   sudo bench/views.sh [--out DIR]      (default DIR: bench/results)
#
# For each workload (python3, perl) on the Debian bookworm rootfs
# (tests/rootfs.sh): trace one run on the full image, make a profile, build an
# image whose minimal view is "profile + entrypoint closure" (plus the
# no-shell, no-package-manager, no-docs presets), run the workload again from
# that view, and report files and bytes of the full image, of the minimal view
# and of what the traced run touched (the regular files it opened or looked
# up, whole). Also what the view still exposes: shells, package managers,
# setuid/setgid files (slimfs report). Writes DIR/views.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/bench/results
[ "${1:-}" = --out ] && out=$2
mkdir -p "$out"
[ "$(id -u)" = 0 ] || { echo "views.sh: run as root" >&2; exit 1; }
slimfs=${SLIMFS:-$top/build/slimfs}
[ -x "$slimfs" ] || { echo "views.sh: build slimfs first (ninja -C build)" >&2; exit 1; }

rootfs_tar=$("$top/tests/rootfs.sh")
rootfs_dir=$("$top/tests/rootfs.sh" --dir)
work=$(mktemp -d /var/tmp/slimfs-views.XXXXXX)
cleanup() {
	local m
	for m in $(awk -v p="$work/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# run_in ROOT CMD...: the workload in a chroot of ROOT, with /dev and /proc.
run_in() {
	local root=$1
	shift
	unshare -m --propagation private sh -c '
		root=$1; shift
		[ -d "$root/dev" ] && mount --bind /dev "$root/dev"
		[ -d "$root/proc" ] && mount -t proc proc "$root/proc"
		exec chroot "$root" "$@"' sh "$root" "$@"
}

mount_wait() { # mount_wait ARGS... ; the last is the mountpoint
	"$slimfs" mount "$@"
	[ "$(stat -f -c %t "${@: -1}")" = 65735546 ] || { echo "not a FUSE mount: ${@: -1}" >&2; exit 1; }
}

"$slimfs" build -q -o "$work/full.slimfs" "$rootfs_tar"
full_size=$(stat -c %s "$work/full.slimfs")

{
	echo "# Minimal views against what the workload needs"
	echo
	echo "Debian bookworm minbase + python3 + perl (debootstrap), $(date -u +%Y-%m-%d)."
	echo "Command: \`sudo bench/views.sh\`. \"Touched\" = regular files the traced run looked"
	echo "up, opened or read (whole files; from \`slimfs mount --trace\`). The minimal view is"
	echo "the run's profile plus the entrypoint's ELF closure, minus shells, package managers"
	echo "and docs (presets). Bytes are apparent file sizes; hardlinks count once."
	echo
	echo "| workload | full image: files / bytes | minimal view: files / bytes | touched: files / bytes | view / touched (bytes) | runs from the view | shells, package managers, setuid/setgid in the view |"
	echo "|---|---|---|---|---|---|---|"
} >"$work/views.md"

workload() {
	local name=$1 entry=$2
	shift 2
	local d=$work/$name
	mkdir -p "$d/mnt"
	# 1. trace a run on the full image
	mount_wait --trace "$d/trace" "$work/full.slimfs" "$d/mnt"
	run_in "$d/mnt" "$@" >/dev/null
	fusermount3 -u "$d/mnt"
	for _ in $(seq 50); do [ -s "$d/trace" ] && ! pgrep -f "trace $d/trace" >/dev/null && break; sleep 0.1; done
	"$slimfs" profile -o "$d/profile" "$d/trace" 2>/dev/null
	# 2. the files it touched, from the trace (found paths), measured on the rootfs
	python3 - "$d/trace" "$rootfs_dir" >"$d/touched" <<'PY'
import os, re, sys
def unescape(s):
    return re.sub(rb'\\(x[0-9a-fA-F]{2}|t|n|\\)', lambda m: {b't': b'\t', b'n': b'\n', b'\\': b'\\'}.get(m.group(1), bytes([int(m.group(1)[1:], 16)])), s)
seen, files, size = set(), 0, 0
for line in open(sys.argv[1], 'rb'):
    f = line.rstrip(b'\n').split(b'\t')
    if f[0] != b'P' or (len(f) > 3 and f[3] in (b'hidden', b'missing')):
        continue
    p = os.path.join(sys.argv[2].encode(), unescape(f[2]).lstrip(b'/'))
    try:
        st = os.stat(p)  # follows symlinks, as the workload's opens do
    except OSError:
        continue
    if not os.path.isfile(p) or (st.st_dev, st.st_ino) in seen:
        continue
    seen.add((st.st_dev, st.st_ino))
    files += 1
    size += st.st_size
print(files, size)
PY
	# 3. an image whose minimal view is the profile + closure, minus the presets
	{
		echo "@include no-shell"
		echo "@include no-package-manager"
		echo "@include no-docs"
	} >"$d/excludes.allow"
	cat "$d/profile" "$d/excludes.allow" >"$d/minimal.allow"
	"$slimfs" build -q -o "$d/img.slimfs" --entrypoint "$entry" \
		--view minimal="$d/minimal.allow" --profile "$d/profile" "$rootfs_tar"
	# 4. it runs from the minimal view
	local runs=no
	mount_wait "$d/img.slimfs" "$d/mnt"
	if run_in "$d/mnt" "$@" >/dev/null 2>&1; then runs=yes; fi
	fusermount3 -u "$d/mnt"
	# 5. figures
	"$slimfs" report --json --view minimal "$d/img.slimfs" >"$d/report.json"
	read -r tfiles tbytes <"$d/touched"
	python3 - "$d/report.json" "$name" "$tfiles" "$tbytes" "$runs" >>"$work/views.md" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
name, tf, tb, runs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = r["summary"]
mib = lambda b: "%.1f MiB" % (b / 1048576)
exposed = [len(r.get(k) or []) for k in ("shells", "package_managers", "setuid", "setgid")]
print("| %s | %d / %s | %d / %s | %d / %s | %.2fx | %s | %d, %d, %d/%d |" % (
    name, s["regular_files"]["full"], mib(s["bytes"]["full"]),
    s["regular_files"]["view"], mib(s["bytes"]["view"]), tf, mib(tb),
    s["bytes"]["view"] / max(tb, 1), runs, *exposed))
PY
}

workload python3 /usr/bin/python3 /usr/bin/python3 -c 'import json, sqlite3, urllib.request; print(1)'
workload perl /usr/bin/perl /usr/bin/perl -MPOSIX -MFile::Spec -e 'print 1'

{
	echo
	echo "Goals (issue): the minimal view at most 1.2x the bytes the workload needs; no shell,"
	echo "package manager or setuid file in it. Full image file: $((full_size / 1048576)) MiB."
} >>"$work/views.md"
cp "$work/views.md" "$out/views.md"
cat "$out/views.md"
