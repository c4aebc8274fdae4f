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
# heap_flag PID FLAG: some part of the daemon's heap has VmFlags FLAG (hg:
# advised for huge pages, nh: not to be).
heap_flag() { awk -v f=" $2" '/^[0-9a-f]+-/ { heap = / \[heap\]$/ } heap && /^VmFlags:/ && index($0 " ", f " ") { x = 1 } END { exit !x }' "/proc/$1/smaps"; }
# The heap's advice is checked where the daemon gives it (THP mode madvise, glibc's malloc).
thp=0
[ $asan = 0 ] && grep -q '\[madvise\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null && thp=1

# wait_released MNT PID N: until memory.idle_releases is at least N and (not
# under ASan) the daemon's RssAnon below LOW_KIB, 15 s at most. Not just the
# count: on a machine that stalls for 2 s, a release may come in the middle of
# a read (or just after it, before the count is read); the next one, once the
# read is over, is the one that matters.
wait_released() {
	local i n low
	for i in $(seq 150); do
		n=$(stat_of "$1" memory idle_releases)
		low=$(rss_anon "$2")
		if [ "$n" -ge "$3" ] && { [ $asan = 1 ] || [ "$low" -lt "$LOW_KIB" ]; }; then
			log "released ($n so far): RssAnon $low KiB"
			return 0
		fi
		sleep 0.1
	done
	die "no release to below $LOW_KIB KiB within 15 s (idle_releases $n, RssAnon $low KiB)"
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
wait_released "$mnt" "$pid" 1
if [ $asan = 0 ]; then
	[ "$(stat_of "$mnt" memory idle_released_bytes)" -gt $((32 << 20)) ] ||
		die "memory.idle_released_bytes: $(stat_of "$mnt" memory idle_released_bytes)"
fi
[ "$(stat_of "$mnt" memory idle_released_chunk_bytes)" -gt $((32 << 20)) ] ||
	die "memory.idle_released_chunk_bytes: $(stat_of "$mnt" memory idle_released_chunk_bytes)"
[ "$(stat_of "$mnt" cache mem_entries)" -lt 8 ] ||
	die "cache.mem_entries $(stat_of "$mnt" cache mem_entries) after the release"
# Idle, the heap is not for huge pages: khugepaged would collapse the few pages
# left in use in each 2 MiB range back into huge pages (13 -> 66 MiB in 45 s).
if [ $thp = 1 ]; then
	heap_flag "$pid" nh || die "the released heap is not advised NOHUGEPAGE"
	heap_flag "$pid" hg && die "part of the released heap is still advised for huge pages"
fi

# Everything again, loaded again: same bytes; the memory fills up again.
misses=$(stat_of "$mnt" cache mem_misses)
drop_page_cache "$mnt"
compare_trees "$rootdir" "$mnt"
# Working again: on huge pages again (the check after the first work advised
# it), looked at first, before 2 s pass and the next release comes.
hg=0
heap_flag "$pid" hg && hg=1
rel=$(stat_of "$mnt" memory idle_releases)
again=$(rss_anon "$pid")
[ $thp = 0 ] || [ $hg = 1 ] || [ "$rel" -gt 1 ] ||
	die "the heap is not advised for huge pages after the release"
log "read again: RssAnon $again KiB, $(($(stat_of "$mnt" cache mem_misses) - misses)) chunks loaded"
[ "$(stat_of "$mnt" cache mem_misses)" -gt $((misses + 100)) ] ||
	die "the second read loaded no chunks: nothing was released"
wait_released "$mnt" "$pid" 2
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
