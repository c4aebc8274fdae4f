#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# --page-cache-fill: after a read, the rest of the decoded chunk lands in the
# kernel's page cache (fincore sees more pages resident than with 'off');
# what lands there is right (cmp of whole files after partial reads,
# including a file whose size is not page aligned and a sparse file, in
# chunk and file mode); `slimfs stats` counts it; an unmount right after many
# reads (the filler still busy) completes and the daemon exits 0, and so does
# a SIGTERM of the daemon in the middle of reads. A walk reading whole files
# in directory order gets the files ahead of it pushed whole (push-ahead).
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_fuse
need_slimfs
need_cmd fincore
need_cmd timeout
make_tmp

src=$TMP/src img=$TMP/img mnt=$TMP/mnt
mkdir -p "$src/many"
head -c $((8 << 20)) /dev/urandom >"$src/big"
head -c $(((3 << 20) + 1234)) /dev/urandom >"$src/odd"
truncate -s $((6 << 20)) "$src/sparse"
head -c 5000 /dev/urandom | dd of="$src/sparse" bs=4096 seek=256 conv=notrunc status=none
head -c 70000 /dev/urandom | dd of="$src/sparse" bs=1 seek=$(((4 << 20) + 100)) \
	conv=notrunc status=none
head -c 3000 /dev/urandom | dd of="$src/sparse" bs=1 seek=$(((6 << 20) - 3000)) \
	conv=notrunc status=none
for i in $(seq 150); do head -c $((i * 4999)) "$src/big" | tail -c $((i * 1999)) >"$src/many/f$i"; done
# 40 directories of 6 small files, for a walk that lists each before reading it.
for d in $(seq 10 49); do
	mkdir -p "$src/walk/d$d"
	for i in $(seq 6); do
		head -c $((d * 9000 + i * 1777)) "$src/odd" | tail -c $((1000 + i * 313)) >"$src/walk/d$d/f$i"
	done
done
run "$SLIMFS" build -q -o "$img" "$src"

# stat_in SECTION KEY: SECTION.KEY from `slimfs stats --json`; stat_of KEY: pagecache.KEY.
stat_in() {
	local js
	js=$("$SLIMFS" stats --json "$mnt") || die "slimfs stats failed"
	"$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]][sys.argv[2]])' \
		"$1" "$2" <<<"$js"
}
stat_of() { stat_in pagecache "$1"; }

# settle: waits until the filler's counters stop moving (at most 120 s).
settle() {
	local last=-1 now i
	for i in $(seq 240); do
		now=$(stat_of stored_pages):$(stat_of coalesced_jobs):$(stat_of failed_stores)
		[ "$now" = "$last" ] && return 0
		last=$now
		sleep 0.5
	done
	die "the page cache filler never settled"
}

resident() {
	local out
	out=$(fincore --noheadings --raw -o PAGES "$1") || die "fincore $1 failed"
	echo "${out//[[:space:]]/}"
}

# One 4 KiB read in the middle of big, nothing else: resident pages.
probe() {
	slimfs_mount --page-cache-fill "$1" "$img" "$mnt"
	dd if="$mnt/big" of=/dev/null bs=4096 count=1 skip=517 status=none
	settle
	PAGES=$(resident "$mnt/big")
	STORED=$(stat_of stored_pages)
	slimfs_umount "$mnt"
}
# Another process may drop the page cache meanwhile (drop_caches, memory
# pressure): a few attempts, and one where chunk beats off is enough.
for attempt in 1 2 3; do
	probe off
	off_pages=$PAGES
	[ "$STORED" = 0 ] || die "--page-cache-fill off stored $STORED pages"
	probe chunk
	chunk_pages=$PAGES
	log "resident after one 4 KiB read: off $off_pages pages, chunk $chunk_pages pages ($STORED stored)"
	[ "$STORED" -gt 0 ] || die "--page-cache-fill chunk stored no pages"
	[ "$chunk_pages" -le "$off_pages" ] || break
	[ $attempt -lt 3 ] || die "chunk mode: $chunk_pages pages resident, not more than off ($off_pages)"
done

# Partial reads at odd places, then every file whole: equal to the source.
partial_reads() {
	local f off
	for f in big odd sparse many/f7 many/f150; do
		for off in 0 1 517 700 1024 1535; do
			dd if="$mnt/$f" of=/dev/null bs=4096 count=1 skip=$off status=none 2>/dev/null ||
				die "read of $f at page $off failed"
		done
	done
	# odd: the page before its partial last one (the filler may store that one);
	# then the tail of the odd-sized files, alone.
	dd if="$mnt/odd" of=/dev/null bs=4096 count=1 skip=767 status=none
	dd if="$mnt/odd" of=/dev/null bs=1 count=100 skip=$(((3 << 20) + 1134)) status=none
	dd if="$mnt/sparse" of=/dev/null bs=1 count=10 skip=$(((6 << 20) - 10)) status=none
}
check_all() {
	local f
	for f in big odd sparse $(cd "$src" && echo many/*); do
		cmp "$src/$f" "$mnt/$f" || die "$1 mode: $f differs from its source"
	done
	# The last page through mmap: the file's bytes, then zeros past EOF.
	"$PYTHON" - "$src/odd" "$mnt/odd" <<'EOF' || die "$1 mode: the last page of odd is wrong"
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
want = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_RDONLY)
size, ps = os.fstat(fd).st_size, mmap.PAGESIZE
start = size // ps * ps
p = libc.mmap(None, ps, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
if p is None or p == ctypes.c_void_p(-1).value:
    sys.exit("mmap failed: errno %d" % ctypes.get_errno())
page = ctypes.string_at(p, ps)
sys.exit(0 if page == want[start:] + bytes(ps - (size - start)) else 1)
EOF
}
for mode in chunk file; do
	slimfs_mount --page-cache-fill "$mode" "$img" "$mnt"
	partial_reads
	settle
	stored=$(stat_of stored_pages)
	[ "$stored" -gt 0 ] || die "$mode mode stored no pages"
	check_all "$mode"
	log "$mode mode: files equal after partial reads ($stored pages stored)"
	slimfs_umount "$mnt"
done

# Push-ahead: a walk that reads whole files in directory order (tar) finds
# most of them in the page cache, pushed whole by the filler before it got
# there (fewer read requests than files); what it reads is right; nothing
# is pushed with the filler off, nor for reads out of inode order.
fs_stat() {
	local js
	js=$("$SLIMFS" stats --json "$mnt") || die "slimfs stats failed"
	"$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["fs"][sys.argv[1]])' "$1" <<<"$js"
}
# walk_many LABEL [DIR]: tar of DIR (default many) equals the source.
walk_many() {
	local dir=${2:-many}
	rm -rf "$TMP/out"
	mkdir -p "$TMP/out"
	tar -cf - -C "$mnt" "$dir" | tar -xf - -C "$TMP/out" || die "tar of $dir/ failed"
	diff -r "$src/$dir" "$TMP/out/$dir" >/dev/null || die "$1: tar of $dir/ differs from the source"
}
# In directory order, a little slower than tar so that a loaded machine's
# filler keeps ahead.
walk_slowly() {
	local f
	for f in $(ls -f "$mnt/many" | grep '^f'); do
		cat "$mnt/many/$f" >/dev/null
		sleep 0.01
	done
}
# walk_counted WALK DIR: on a fresh mount, WALK, then PUSHED and READS from
# the counters and a tar of DIR checked against the source.
walk_counted() {
	slimfs_mount --page-cache-fill chunk "$img" "$mnt"
	"$1"
	settle
	pushed=$(stat_of pushed_files) reads=$(fs_stat reads)
	walk_many "$1" "$2"
}
# pushes_walk WALK DIR MIN_PUSHED MAX_READS WHAT: WALK gets more than
# MIN_PUSHED files pushed ahead and costs fewer than MAX_READS read requests,
# and every file reads right. Another process may drop the page cache
# meanwhile: a few attempts.
pushes_walk() {
	local attempt
	for attempt in 1 2 3; do
		walk_counted "$1" "$2"
		check_all push-ahead
		slimfs_umount "$mnt"
		log "$5: $pushed pushed ahead, $reads read requests"
		[ "$pushed" -gt "$3" ] || die "$5: only $pushed files pushed ahead"
		[ "$reads" -lt "$4" ] && return 0
	done
	die "$5: $reads read requests"
}
pushes_walk walk_slowly many 0 150 "walk of 150 files"
slimfs_mount --page-cache-fill off "$img" "$mnt"
walk_many off
pushed=$(stat_of pushed_files)
slimfs_umount "$mnt"
[ "$pushed" = 0 ] || die "--page-cache-fill off pushed $pushed files"
# Backwards (reverse inode order): no walk, nothing pushed.
slimfs_mount --page-cache-fill chunk "$img" "$mnt"
ls "$mnt/many" >/dev/null
for f in $(ls -f "$mnt/many" | grep '^f' | tac); do
	cat "$mnt/many/$f" >/dev/null
done
settle
pushed=$(stat_of pushed_files)
slimfs_umount "$mnt"
[ "$pushed" = 0 ] || die "reads in reverse inode order pushed $pushed files"
log "push-ahead: off and backwards push nothing"

# Push at a listing: a walk that lists each directory before it reads the
# files in it (tar, cp -r) finds them pushed when it lists the directory,
# the first ones stored before the listing returns: far fewer read requests
# than directories (without, the first file of each one costs a read).
walk_dirs() {
	local d f
	for d in $(ls "$mnt/walk"); do
		ls -f "$mnt/walk/$d" >/dev/null
		sleep 0.02
		for f in $(ls "$mnt/walk/$d"); do cat "$mnt/walk/$d/$f" >/dev/null; done
	done
}
pushes_walk walk_dirs walk 200 20 "walk of 40 directories, each listed before read"

# Seams: the page an extent shares with the next chunk's (chunk boundaries
# fall anywhere in a page) or with a hole is stored too, assembled from both
# sides, once the neighbour is in memory; with a memory cache too small for
# the file, from the ends kept of evicted chunks. A 4M cache holds ~3M of
# chunks: read big whole, drop its page cache (as fio --invalidate does),
# then one page in its first half: the filler stores that chunk and its
# seams from its evicted neighbours' ends.
for attempt in 1 2 3; do
	slimfs_mount --page-cache-fill chunk --mem-cache 4M "$img" "$mnt"
	cat "$mnt/big" >/dev/null
	settle
	"$PYTHON" -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$mnt/big"
	seams=$(stat_of seam_pages) edges=$(stat_in cache edge_hits)
	dd if="$mnt/big" of=/dev/null bs=4096 count=1 skip=301 status=none
	settle
	seams=$(($(stat_of seam_pages) - seams)) edges=$(($(stat_in cache edge_hits) - edges))
	cmp "$src/big" "$mnt/big" || die "big differs from its source after seams were stored"
	slimfs_umount "$mnt"
	log "seams after one read of an evicted chunk: $seams stored, $edges from kept ends"
	[ "$seams" -gt 0 ] && [ "$edges" -gt 0 ] && break
	[ $attempt -lt 3 ] || die "no seam stored from the ends of evicted chunks"
done

# Passes of 4 KiB reads in random order over a file larger than the memory
# cache, its page cache dropped before each (fio --invalidate=1): a chunk
# read once and then stored in the page cache whole is evicted first
# (mem_demoted), so that chunks read again stay in memory. Every byte read
# is right. A 64 MiB file and a 16M cache: each shard holds a few chunks and
# every chunk keeps its ends (seams are stored, so chunks are stored whole).
head -c $((64 << 20)) /dev/urandom >"$TMP/rand"
mkdir -p "$TMP/rsrc"
mv "$TMP/rand" "$TMP/rsrc/rand"
run "$SLIMFS" build -q -o "$TMP/rimg" "$TMP/rsrc"
passes() {
	"$PYTHON" - "$TMP/rsrc/rand" "$mnt/rand" "$1" <<'EOF'
import os, random, sys
want = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_RDONLY)
rnd = random.Random(7)
pages = list(range(len(want) // 4096))
for _ in range(int(sys.argv[3])):
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    rnd.shuffle(pages)
    for p in pages:
        if os.pread(fd, 4096, p * 4096) != want[p * 4096:(p + 1) * 4096]:
            sys.exit("page %d differs" % p)
EOF
}
for attempt in 1 2 3; do
	slimfs_mount --page-cache-fill chunk --mem-cache 16M "$TMP/rimg" "$mnt"
	passes 3 || die "random passes: wrong bytes"
	settle
	hits=$(stat_in cache mem_hits) demoted=$(stat_in cache mem_demoted)
	loads=$(stat_in cache mem_misses)
	slimfs_umount "$mnt"
	log "3 random passes over 64 MiB (16M cache): $hits chunks found in memory, $loads loaded, $demoted demoted"
	[ "$demoted" -gt 0 ] && [ "$hits" -gt 0 ] && break
	[ $attempt -lt 3 ] || die "random passes: $demoted chunks demoted, $hits found in memory"
done

# Unmount with the filler busy: many files read, then at once unmounted.
slimfs_mount --page-cache-fill file "$img" "$mnt"
for i in $(seq 150); do
	dd if="$mnt/many/f$i" of=/dev/null bs=4096 count=1 skip=$((i % 3)) status=none
done
dd if="$mnt/big" of=/dev/null bs=4096 count=1 skip=1000 status=none
slimfs_umount "$mnt"
log "unmounted with the filler busy"

# SIGTERM while readers are busy: the daemon exits, nothing hangs.
slimfs_mount "$img" "$mnt"
pid=$MOUNT_PID
"$PYTHON" - "$mnt/big" "$mnt/odd" <<'EOF' &
import os, random, sys, time
fds = [os.open(p, os.O_RDONLY) for p in sys.argv[1:]]
end = time.monotonic() + 30
try:
    while time.monotonic() < end:
        for fd in fds:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.pread(fd, 4096, random.randrange(0, os.fstat(fd).st_size))
except OSError:
    pass
EOF
reader=$!
sleep 2
kill -TERM "$pid"
t0=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
	[ $((SECONDS - t0)) -lt 60 ] || die "daemon still running 60 s after SIGTERM"
	sleep 0.2
done
wait "$pid" || true
unset "_mount_pids[$mnt]"
timeout 60 tail --pid="$reader" -f /dev/null || die "a reader hangs after SIGTERM of the daemon"
wait "$reader" || true
log "SIGTERM during reads: the daemon exited after $((SECONDS - t0)) s"
log "OK"
