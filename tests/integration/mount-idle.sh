#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Idle release (--idle-release): a mount of the bookworm rootfs that read its
# whole tree holds its memory cache (RssAnon well above 48 MiB: 64M of decoded
# chunks, a quarter of them kept chunk ends, a decode buffer per thread); after
# 2 s without requests it gives that back (below 16 MiB: what stays is the
# index, the chunk table, libfuse's and the threads' own memory, ~13 MiB
# measured), reads everything back right (the mount's page cache dropped by
# fadvise, so every chunk is loaded again), fills up again and releases again. A mount with
# -o idle_release=0 keeps its memory.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_fuse
need_slimfs
need_root
make_tmp
# meson test sets it: glibc then fills every block malloc returns, so the
# heap the daemon grows (ahead, untouched, cmd_mount.c daemon_heap_grow) would
# be touched whole, after the release too.
unset MALLOC_PERTURB_

tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
rootdir=$("$SRCDIR/rootfs.sh" --dir) || die "tests/rootfs.sh --dir failed"
img=$TMP/rootfs.img
mnt=$TMP/mnt
run "$SLIMFS" build -q -o "$img" "$tarball"

HIGH_KIB=$((48 << 10))
LOW_KIB=$((16 << 10))
# ASan has its own allocator, shadow memory and a quarantine of freed blocks:
# the memory bounds say nothing there; the releases and the bytes still count.
asan=0
grep -q __asan_init "$SLIMFS" 2>/dev/null && asan=1
[ $asan = 0 ] || log "memory bounds not checked: ASan build"

rss_anon() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }

# wait_releases MNT N: until memory.idle_releases reaches N (15 s at most).
wait_releases() {
	local i
	for i in $(seq 150); do
		[ "$(stat_of "$1" memory idle_releases)" -ge "$2" ] && return 0
		sleep 0.1
	done
	die "no idle release $2 within 15 s (idle_releases $(stat_of "$1" memory idle_releases))"
}

# drop_page_cache MNT: the mount's pages only (drop_caches would hit the machine).
drop_page_cache() {
	"$PYTHON" - "$1" <<-'PY'
		import os, stat, sys
		for root, dirs, files in os.walk(sys.argv[1]):
		    for name in files:
		        p = os.path.join(root, name)
		        if not stat.S_ISREG(os.lstat(p).st_mode):
		            continue
		        fd = os.open(p, os.O_RDONLY)
		        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
		        os.close(fd)
	PY
}

# --- releases
slimfs_mount --idle-release 2s --view full --cache none "$img" "$mnt"
pid=$MOUNT_PID
compare_trees "$rootdir" "$mnt"
rel=$(stat_of "$mnt" memory idle_releases)
high=$(rss_anon "$pid")
log "after the full read: RssAnon $high KiB, $rel releases"
# A machine that stalled for 2 s may have released already: then the bound
# says nothing, but the rest still holds.
if [ "$rel" = 0 ] && [ $asan = 0 ]; then
	[ "$high" -gt "$HIGH_KIB" ] || die "RssAnon $high KiB after the full read, expected > $HIGH_KIB"
fi
# (A stall of 2 s in the middle of the read released then: the one after it comes next.)
wait_releases "$mnt" $((rel + 1))
sleep 0.2
low=$(rss_anon "$pid")
log "released: RssAnon $low KiB, $(stat_of "$mnt" memory idle_released_bytes) bytes given back"
if [ $asan = 0 ]; then
	[ "$low" -lt "$LOW_KIB" ] || die "RssAnon $low KiB after the idle release, expected < $LOW_KIB"
	[ "$(stat_of "$mnt" memory idle_released_bytes)" -gt $((32 << 20)) ] ||
		die "memory.idle_released_bytes: $(stat_of "$mnt" memory idle_released_bytes)"
fi
[ "$(stat_of "$mnt" memory idle_released_chunk_bytes)" -gt $((32 << 20)) ] ||
	die "memory.idle_released_chunk_bytes: $(stat_of "$mnt" memory idle_released_chunk_bytes)"
[ "$(stat_of "$mnt" cache mem_entries)" -lt 8 ] ||
	die "cache.mem_entries $(stat_of "$mnt" cache mem_entries) after the release"

# Everything again, loaded again: same bytes; the memory fills up again.
misses=$(stat_of "$mnt" cache mem_misses)
drop_page_cache "$mnt"
compare_trees "$rootdir" "$mnt"
rel=$(stat_of "$mnt" memory idle_releases)
again=$(rss_anon "$pid")
log "read again: RssAnon $again KiB, $(($(stat_of "$mnt" cache mem_misses) - misses)) chunks loaded"
[ "$(stat_of "$mnt" cache mem_misses)" -gt $((misses + 100)) ] ||
	die "the second read loaded no chunks: nothing was released"
wait_releases "$mnt" $((rel + 1))
sleep 0.2
low=$(rss_anon "$pid")
[ $asan = 1 ] || [ "$low" -lt "$LOW_KIB" ] ||
	die "RssAnon $low KiB after the second release, expected < $LOW_KIB"
log "released again: RssAnon $low KiB"
slimfs_umount "$mnt"

# --- never (the -o form, as fstab writes it)
slimfs_mount -o idle_release=0 --view full --cache none "$img" "$mnt"
pid=$MOUNT_PID
tar -cf - -C "$mnt" . | wc -c >/dev/null
sleep 3
kept=$(rss_anon "$pid")
log "idle_release=0: RssAnon $kept KiB 3 s after the full read"
[ $asan = 1 ] || [ "$kept" -gt "$HIGH_KIB" ] ||
	die "RssAnon $kept KiB with idle_release=0, expected > $HIGH_KIB"
[ "$(stat_of "$mnt" memory idle_releases)" = 0 ] || die "a release with idle_release=0"
slimfs_umount "$mnt"

# Bad values are refused.
run_fails "$SLIMFS" mount --idle-release 5x "$img" "$mnt"
log "pass"
