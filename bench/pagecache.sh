#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Page-cache fill benchmark: the two rows of bench/run.sh's mount part that
# --page-cache-fill is about, for slimfs with each fill mode and kernel
# squashfs, in one run, interleaved:
#   random 4 KiB reads, fio, 1 job (IOPS), fresh mount, caches dropped;
#   full-tree read cold, `tar -cf - | wc -c` (s), fresh mount, caches dropped.
# Same tree as bench/run.sh (the rootfs plus a 256 MiB half-compressible file).
#
#   bench/pagecache.sh [--runs N] [--modes 'off chunk file'] [--fio-time S]
#                      [--work DIR] SLIMFS_BINARY
#
# Prints one line per sample ("row fs run value") and the medians. Needs root.
set -euo pipefail

runs=3 modes="off chunk" fio_time=10 work=/var/tmp/slimfs-bench-pagecache
while [ $# -gt 1 ]; do
	case "$1" in
	--runs) runs=$2; shift 2 ;;
	--modes) modes=$2; shift 2 ;;
	--fio-time) fio_time=$2; shift 2 ;;
	--work) work=$2; shift 2 ;;
	*) break ;;
	esac
done
[ $# = 1 ] || { sed -n '3,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
slimfs=$(readlink -f "$1")
here=$(cd "$(dirname "$0")" && pwd)
rootfs=$("$here/../tests/rootfs.sh" --dir)
bigrel=opt/bench/fio.bin mnt=$work/mnt
mkdir -p "$work" "$mnt"

if [ ! -f "$work/img.sqfs" ]; then
	rm -rf "$work/tree"
	cp -a "$rootfs" "$work/tree"
	mkdir -p "$work/tree/${bigrel%/*}"
	python3 - "$work/tree/$bigrel" 256 <<-'EOF'
		import random, sys
		rnd = random.Random(20240601)
		with open(sys.argv[1], "wb") as f:
		    for _ in range(int(sys.argv[2]) * 256 // 64):
		        f.write(b"".join(rnd.randbytes(2048) + bytes(2048) for _ in range(64)))
	EOF
	mksquashfs "$work/tree" "$work/img.sqfs" -comp zstd -Xcompression-level 3 -noappend \
		-quiet -no-progress >/dev/null
fi
"$slimfs" build -q --no-progress -o "$work/img.slimfs" "$work/tree"

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
cold_mount() { # fs
	sync
	echo 3 >/proc/sys/vm/drop_caches
	case "$1" in
	squashfs) mount -t squashfs -o loop,ro "$work/img.sqfs" "$mnt" ;;
	*) "$slimfs" mount -q --page-cache-fill "${1#slimfs-}" "$work/img.slimfs" "$mnt" ;;
	esac
}
do_umount() { # fs
	case "$1" in
	squashfs) umount "$mnt" ;;
	*) fusermount3 -u "$mnt" ;;
	esac
	while mountpoint -q "$mnt"; do sleep 0.1; done
	# The daemon exits a moment later; the next mount wants its stats socket.
	while pgrep -f -- "--page-cache-fill .* $mnt\$" >/dev/null; do sleep 0.1; done
}
trap 'mountpoint -q "$mnt" && { fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt"; }' EXIT

samples=$work/samples.txt
: >"$samples"
fs_list=(squashfs)
for m in $modes; do fs_list+=("slimfs-$m"); done
for ((run = 1; run <= runs; run++)); do
	for fs in "${fs_list[@]}"; do
		cold_mount "$fs"
		t0=$(now_us)
		tar -cf - -C "$mnt" --exclude="./$bigrel" . | wc -c >/dev/null
		t1=$(now_us)
		do_umount "$fs"
		echo "tar_cold_s $fs $run $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')" |
			tee -a "$samples"
		cold_mount "$fs"
		iops=$(fio --name=randread --filename="$mnt/$bigrel" --readonly --rw=randread --bs=4k \
			--ioengine=psync --numjobs=1 --time_based --runtime="$fio_time" --invalidate=1 \
			--group_reporting --output-format=json 2>/dev/null |
			python3 -c 'import json, sys; print("%.0f" % json.load(sys.stdin)["jobs"][0]["read"]["iops"])')
		if [ "$fs" != squashfs ]; then
			st=$("$slimfs" stats --json "$mnt")
			echo "stored_pages $fs $run $(python3 -c 'import json, sys; print(json.load(sys.stdin)["pagecache"]["stored_pages"])' <<<"$st")" |
				tee -a "$samples"
		fi
		do_umount "$fs"
		echo "fio_j1_iops $fs $run $iops" | tee -a "$samples"
	done
done
echo "medians:"
python3 - "$samples" <<'EOF'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    row, fs, _, v = line.split()
    d[(row, fs)].append(float(v))
for (row, fs), v in sorted(d.items()):
    print("%-12s %-14s median %10.3f  (min %.3f, max %.3f, n %d)" % (
        row, fs, statistics.median(v), min(v), max(v), len(v)))
EOF
