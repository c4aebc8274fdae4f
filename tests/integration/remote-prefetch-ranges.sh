#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Prefetch of an image built with a ranged profile: a traced run reads a few
# byte ranges of large files (kernel read-ahead off, so the trace's ranges are
# the pages read); the image built with that profile packs the hot ranges
# first. Mounted over HTTP with --prefetch profile, the same reads (sequential
# within each range, which would start per-file read-ahead) fetch the index
# and the prefetch list and nothing else: no read-ahead into the cold chunks
# around the ranges, whether the reads come before or after the plan is done.
# A read outside the profile still reads ahead (the guesses are off only for
# what the profile foresaw). Bytes are counted by `slimfs stats --json`.
. "$SRCDIR/lib.sh"
. "$SRCDIR/servers.sh"
need_fuse
need_slimfs
make_tmp

mkdir -p "$TMP/src" "$TMP/www"
# Large random files (nothing dedups or compresses away), and a few small ones.
python3 - "$TMP/src" <<'PY'
import os, random, sys
r = random.Random(11)
for i in range(4):
    with open(os.path.join(sys.argv[1], "big%d.bin" % i), "wb") as f:
        f.write(r.randbytes(3 << 20))
for i in range(20):
    with open(os.path.join(sys.argv[1], "small%02d.txt" % i), "w") as f:
        f.write(("line %d of file %d\n" % (i, i)) * (i + 1))
PY
# The workload: sequential 4 KiB reads of a few ranges (OFFSET LENGTH FILE).
cat >"$TMP/ranges" <<'EOF'
0 262144 big0.bin
1048576 393216 big0.bin
524288 131072 big1.bin
2097152 262144 big2.bin
EOF
workload() { # workload ROOT
	local off len f
	while read -r off len f; do
		dd if="$1/$f" of=/dev/null bs=4096 iflag=skip_bytes,count_bytes skip="$off" \
			count="$len" status=none || die "reading $f failed"
	done <"$TMP/ranges"
	cat "$1/small03.txt" "$1/small07.txt" >/dev/null
}
# Waits until the prefetch is done and the fetched bytes stay put for a second.
settle() {
	local i prev=-1 cur
	for i in $(seq 150); do
		cur=$(stat_of "$1" fetch bytes)
		[ "$(stat_of "$1" prefetch finished)" = 1 ] && [ "$cur" = "$prev" ] && return 0
		prev=$cur
		sleep 0.5
	done
	die "fetching did not settle in 75 s"
}

run "$SLIMFS" build -q -o "$TMP/plain.slimfs" "$TMP/src"
slimfs_mount --view full --kernel-readahead 0 --trace "$TMP/trace" "$TMP/plain.slimfs" "$TMP/mnt"
workload "$TMP/mnt"
slimfs_umount "$TMP/mnt"
run "$SLIMFS" profile -q -o "$TMP/profile" "$TMP/trace"
grep -q '^#@range' "$TMP/profile" || die "the profile has no #@range lines"
run "$SLIMFS" build -q --profile "$TMP/profile" -o "$TMP/www/tree.slimfs" "$TMP/src"
read -r isize pbytes < <("$SLIMFS" inspect --json "$TMP/www/tree.slimfs" |
	python3 -c 'import json,sys; d = json.load(sys.stdin); print(d["index_size"], d["prefetch_bytes"])')
# the hot ranges are 1 MiB of random bytes: the prefetch is about that much
[ "$pbytes" -ge 1000000 ] && [ "$pbytes" -le 1400000 ] ||
	die "prefetch of the ranged profile is $pbytes bytes, not about 1 MiB"
log "built with a ranged profile: index $isize bytes, prefetch $pbytes bytes"
start_nginx "$TMP/www" >"$TMP/url"
url=$(cat "$TMP/url")/tree.slimfs

# fetched FETCHED: the index (read from the start of the image, superblock
# first) plus the prefetch list, and not a byte more.
check_bytes() {
	local limit=$((isize + 4096 + pbytes))
	[ "$1" -le "$limit" ] ||
		die "fetched $1 bytes, more than index + prefetch ($limit): read-ahead past the profile"
	[ "$1" -ge "$((isize + pbytes))" ] || die "fetched $1 bytes, less than index + prefetch"
}

# Reads right at mount (racing the plan), then again after it.
for when in early late; do
	slimfs_mount --cache none --view full --kernel-readahead 0 "$url" "$TMP/mnt"
	if [ $when = late ]; then
		settle "$TMP/mnt"
	fi
	workload "$TMP/mnt"
	settle "$TMP/mnt"
	fetched=$(stat_of "$TMP/mnt" fetch bytes)
	planned=$(stat_of "$TMP/mnt" prefetch planned_chunks)
	loaded=$(stat_of "$TMP/mnt" prefetch loaded_chunks)
	log "$when: fetched $fetched bytes; loaded $loaded chunks, $planned planned"
	check_bytes "$fetched"
	# (early: a reader may load a planned chunk itself, before the plan gets to it)
	[ "$loaded" -le "$planned" ] || die "$when: loaded $loaded chunks, the plan has $planned"
	[ $when = early ] || [ "$loaded" = "$planned" ] ||
		die "$when: loaded $loaded chunks, the plan has $planned"
	# Off the profile: a cold part of a file read sequentially reads ahead.
	if [ $when = late ]; then
		dd if="$TMP/mnt/big3.bin" of=/dev/null bs=4096 count=64 status=none
		settle "$TMP/mnt"
		ra=$(stat_of "$TMP/mnt" prefetch readahead_jobs)
		[ "$ra" -gt 0 ] || die "a sequential read outside the profile queued no read-ahead"
		log "outside the profile: $ra read-ahead jobs"
	fi
	cmp "$TMP/src/big0.bin" "$TMP/mnt/big0.bin" || die "big0.bin differs"
	slimfs_umount "$TMP/mnt"
done
log "ok"
