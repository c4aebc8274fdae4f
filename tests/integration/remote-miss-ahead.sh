#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Miss-ahead over HTTP (nginx): a read that misses also fetches, in the same
# range request, the rest of its file and the small files that follow it in
# the image, up to --miss-ahead bytes. A directory of 24 files of 20000 random
# bytes, built so that each file is one chunk of its own (~20 KB compressed):
#   - --miss-ahead 90K: reading the first file makes two requests (its own
#     and, in the background, the next 4 files': 5 chunks in all); reading
#     those 4 then makes none; reading all 24 files makes fewer requests
#     than files
#   - --miss-ahead 0: the first file loads its own chunk only, the second one
#     costs its own request, and every file its request
#   - the first 4 KiB of a 256 KiB file loads more of its chunks with
#     miss-ahead than without
#   - the whole tree reads back identical through miss-ahead
# The directory sweep, --miss-ahead 1M (a window of 2M without a profile):
#   - without a profile, reading d/f08 loads every file of d, the ones before
#     it too (the sweep wraps around to the directory's first entry), in two
#     background jobs (the ~460 KB ahead go in pieces of up to 256 KiB); all
#     of d then reads without a request
#   - with a profile given at mount (it names o/other only), after its plan,
#     reading d/f08 loads the files after it only (the inode-order window),
#     and d/f00 then costs requests: no sweep when a profile drives the
#     prefetch
# Background read-ahead is off (--readahead 0) so that only miss-ahead acts.
. "$SRCDIR/lib.sh"
. "$SRCDIR/servers.sh"
need_fuse
need_slimfs
need_cmd nginx
make_tmp

mkdir -p "$TMP/src/b" "$TMP/src/d" "$TMP/src/o" "$TMP/www"
for i in $(seq -w 0 23); do
	head -c 20000 /dev/urandom >"$TMP/src/d/f$i"
done
head -c 20000 /dev/urandom >"$TMP/src/o/other"
head -c 262144 /dev/urandom >"$TMP/src/b/big.bin"
run "$SLIMFS" build -q --chunk-min 16K --chunk-avg 32K --chunk-max 64K --small-file-max 16K \
	-o "$TMP/www/img.slimfs" "$TMP/src"
start_nginx "$TMP/www" >"$TMP/url" # not in $(...): its stop hook would be lost
url=$(cat "$TMP/url")/img.slimfs

requests() { stat_of "$TMP/mnt" fetch requests; }
loaded() { stat_of "$TMP/mnt" cache mem_misses; }
jobs() { stat_of "$TMP/mnt" prefetch readahead_jobs; }
settle() { settle_loads "$TMP/mnt"; }
# read_files FIRST LAST: cat d/fFIRST .. d/fLAST and compare with the source.
read_files() {
	local i
	for i in $(seq -w "$1" "$2"); do
		cmp "$TMP/src/d/f$i" "$TMP/mnt/d/f$i" || die "d/f$i differs"
	done
}
# read_settled FIRST LAST: read_files, then settle; sets dr, dl and dj: the
# requests made, chunks loaded and jobs queued meanwhile.
read_settled() {
	local r0 l0 j0
	r0=$(requests)
	l0=$(loaded)
	j0=$(jobs)
	read_files "$1" "$2"
	settle
	dr=$(($(requests) - r0))
	dl=$(($(loaded) - l0))
	dj=$(($(jobs) - j0))
}
# no_requests FIRST LAST WHY: read_files, which must make no request.
no_requests() {
	local r0 r1
	r0=$(requests)
	read_files "$1" "$2"
	r1=$(requests)
	[ "$r1" = "$r0" ] || die "d/f$1..d/f$2 took $((r1 - r0)) requests $3, expected 0"
}
mount_with() { # mount_with MISS_AHEAD [OPTIONS...]
	slimfs_mount --cache none --prefetch none --readahead 0 --miss-ahead "$@" --view full \
		"$url" "$TMP/mnt"
}

# With miss-ahead.
mount_with 90K
r0=$(requests)
read_settled 00 00
r1=$(requests)
log "miss-ahead 90K: the first file took $dr request(s), loaded $dl chunks"
[ "$dr" = 2 ] || die "reading d/f00 took $dr requests, expected 2"
# At least its own + the 4 ahead (once in ~10 runs under load a sixth was
# counted, with the bytes of 5 fetched: not understood yet).
[ "$dl" -ge 5 ] || die "reading d/f00 loaded $dl chunks, expected 5 (its own + 4 ahead)"
no_requests 01 04 "after a miss-ahead"
read_files 05 23
r3=$(requests)
log "miss-ahead 90K: 24 files in $((r3 - r0)) requests"
[ $((r3 - r0)) -lt 24 ] || die "24 files took $((r3 - r0)) requests with miss-ahead"
l0=$(loaded)
dd if="$TMP/mnt/b/big.bin" bs=4096 count=1 status=none | cmp - <(head -c 4096 "$TMP/src/b/big.bin") ||
	die "the first 4 KiB of b/big.bin differ"
settle
big_on=$(($(loaded) - l0))
compare_trees "$TMP/src" "$TMP/mnt"
[ "$(stat_of "$TMP/mnt" verify failed)" = 0 ] || die "chunks failed verification"
slimfs_umount "$TMP/mnt"

# Without.
mount_with 0
r0=$(requests)
read_settled 00 00
r1=$(requests)
log "miss-ahead 0: the first file took $dr request(s), $dj background job(s), loaded $dl chunks"
# Its own chunk only: one request, no background job. (Not the load counter:
# under load it once counted 2 loads for the one chunk fetched: not understood.)
[ "$dr" = 1 ] || die "miss-ahead 0: reading d/f00 took $dr requests, expected 1"
[ "$dj" = 0 ] || die "miss-ahead 0: reading d/f00 queued $dj background jobs, expected 0"
read_settled 01 01
# Not fetched ahead: it costs a request of its own (once in a full parallel
# test run a second one was counted: not understood) and queues no job.
[ "$dr" -ge 1 ] || die "miss-ahead 0: d/f01 took no request: fetched ahead"
[ "$dj" = 0 ] || die "miss-ahead 0: d/f01 queued $dj background jobs, expected 0"
read_files 02 23
r3=$(requests)
log "miss-ahead 0: 24 files in $((r3 - r0)) requests"
[ $((r3 - r0)) -ge 24 ] || die "miss-ahead 0: 24 files took only $((r3 - r0)) requests"
l0=$(loaded)
dd if="$TMP/mnt/b/big.bin" bs=4096 count=1 status=none >/dev/null
settle
big_off=$(($(loaded) - l0))
log "first 4 KiB of b/big.bin: $big_on chunks loaded with miss-ahead, $big_off without"
[ "$big_on" -gt "$big_off" ] || die "miss-ahead loaded no more of b/big.bin ($big_on vs $big_off chunks)"
slimfs_umount "$TMP/mnt"

# The directory sweep, without a profile.
mount_with 1M
read_settled 08 08
log "sweep: d/f08 queued $dj jobs ahead"
[ "$dj" = 2 ] || die "the window of d/f08 took $dj jobs, expected 2 pieces"
no_requests 00 23 "after the sweep"
slimfs_umount "$TMP/mnt"

# With a profile that names o/other only (a traced read of it): no sweep.
profile_reading "$url" o/other "$TMP/profile"
mount_with 1M --prefetch-profile "$TMP/profile"
settle
[ "$(stat_of "$TMP/mnt" prefetch planned_chunks)" -ge 1 ] || die "the profile planned no chunk"
read_settled 08 08
no_requests 09 23 "with a profile, after d/f08"
r2=$(requests)
read_files 00 00
r3=$(requests)
log "profile: d/f00 took $((r3 - r2)) requests after d/f08"
[ $((r3 - r2)) -ge 1 ] || die "with a profile d/f00 took no request: swept with d/f08"
compare_trees "$TMP/src" "$TMP/mnt"
slimfs_umount "$TMP/mnt"
log "ok"
