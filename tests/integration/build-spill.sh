#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The writer keeps compressed frames in an unlinked spill file, not in
# memory, and assembles the image at the end (index/writer.c, step 4):
#  (a) the image does not depend on the thread count nor on where the spill
#      file is (next to the output: copy_file_range; on tmpfs, another file
#      system: the buffered copy), and extracts back to the source;
#  (b) a build that fails after many frames were spilled (the file size
#      limit stops the spill file's writes) leaves no output, no temporary
#      file in the output's directory, the spill directory or TMPDIR, and an
#      older image at the output path untouched;
#  (c) peak memory does not grow with the image: ~300 MB of files, half of
#      them incompressible, build with less RSS than half the image (plain
#      builds only: ASan carries its own shadow memory and quarantine).
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_slimfs
need_cmd cmp
make_tmp

# gen_data DIR SEED MIB: MIB MiB in 4 MiB files, half random, half text.
gen_data() {
	"$PYTHON" - "$@" <<'PY'
import os, random, sys
d, seed, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
os.makedirs(d, exist_ok=True)
# text: random bytes mapped onto 16 letters, about half as big compressed
text = bytes(b"etaoinshrdlu \n.,"[i % 16] for i in range(256))
for i in range(max(1, mib // 4)):
    data = rng.randbytes(4 << 20)
    with open(os.path.join(d, "f%04d" % i), "wb") as f:
        f.write(data if i % 2 == 0 else data.translate(text))
PY
}

# no_leftovers DIR WHAT: DIR holds nothing but the names that follow.
no_leftovers() {
	local dir=$1 what=$2 left
	shift 2
	left=$(cd "$dir" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | sort)
	for keep in "$@"; do
		left=$(printf '%s\n' "$left" | grep -vx -- "$keep" || true)
	done
	[ -z "$left" ] || die "$what: files left behind: $left"
}

src=$TMP/src
run "$PYTHON" "$SRCDIR/gendir.py" --seed 7 --no-devices "$src"
gen_data "$src/data" 7 24
mkdir "$TMP/out" "$TMP/spill" "$TMP/tmpdir"
export TMPDIR=$TMP/tmpdir

# (a) Thread counts and spill places give the same bytes.
run "$SLIMFS" build -q -j 1 -o "$TMP/out/j1.img" "$src"
run "$SLIMFS" build -q -j 2 --spill-dir "$TMP/spill" -o "$TMP/out/j2.img" "$src"
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=$TMP/spill
run "$SLIMFS" build -q -j 4 --spill-dir "$shm" -o "$TMP/out/j4.img" "$src"
cmp "$TMP/out/j1.img" "$TMP/out/j2.img" || die "-j 1 and -j 2 images differ"
cmp "$TMP/out/j1.img" "$TMP/out/j4.img" || die "-j 1 and -j 4 (spill on $shm) images differ"
# The output on ext4 or XFS gets its frames during the build and the index
# inserted in front of them at the end; elsewhere (tmpfs) the frames are
# copied after the index: the same bytes.
if [ "$shm" = /dev/shm ]; then
	shmout=$(mktemp -d /dev/shm/slimfs-test.XXXXXX)
	at_exit "rm -rf '$shmout'"
	run "$SLIMFS" build -q -j 2 -o "$shmout/j2.img" "$src"
	cmp "$TMP/out/j1.img" "$shmout/j2.img" || die "images on $(stat -f -c %T "$TMP/out") and tmpfs differ"
	rm -rf "$shmout"
fi
run "$SLIMFS" verify "$TMP/out/j1.img"
run "$SLIMFS" extract "$TMP/out/j1.img" "$TMP/x"
compare_trees "$src" "$TMP/x"
rm -rf "$TMP/x"
no_leftovers "$TMP/out" "after good builds" j1.img j2.img j4.img
no_leftovers "$TMP/spill" "spill dir after good builds"
no_leftovers "$TMP/tmpdir" "TMPDIR after good builds"
log "(a) -j 1, 2, 4, three spill places and the output on tmpfs: identical images"

# (a') The same with a profile whose "#@range" lines pack byte ranges of the
# large files first (the rest of them chunked around the ranges).
prof=$TMP/ranges.profile
{
	printf '/data/f0001\n'
	printf '#@range\t%d\t%d\t%s\n' 1052672 262144 /data/f0002 0 8192 /data/f0000 \
		4096 409600 /data/f0001 3145728 1048576 /data/f0000 65536 4096 /data/f0002
} >"$prof"
for j in 1 2 4; do
	run "$SLIMFS" build -q -j $j --profile "$prof" -o "$TMP/out/r$j.img" "$src"
done
cmp "$TMP/out/r1.img" "$TMP/out/r2.img" || die "with ranges, -j 1 and -j 2 images differ"
cmp "$TMP/out/r1.img" "$TMP/out/r4.img" || die "with ranges, -j 1 and -j 4 images differ"
cmp -s "$TMP/out/r1.img" "$TMP/out/j1.img" && die "the ranges changed nothing"
run "$SLIMFS" verify "$TMP/out/r1.img"
run "$SLIMFS" extract "$TMP/out/r1.img" "$TMP/x"
compare_trees "$src" "$TMP/x"
rm -rf "$TMP/x" "$TMP"/out/r?.img
log "(a') with hot ranges: identical images at -j 1, 2, 4, the same tree"

# (b) The spill file hits the file size limit after a few MiB of frames:
# the build fails with a message, the older image stays as it was.
cp "$TMP/out/j1.img" "$TMP/old.img"
for spill in "" "$TMP/spill"; do
	rc=0
	(
		trap '' XFSZ
		ulimit -f 8192 # KiB: 8 MiB, a third of the incompressible data
		exec "$SLIMFS" build -q -j 2 ${spill:+--spill-dir "$spill"} \
			-o "$TMP/out/j1.img" "$src"
	) >"$TMP/stdout" 2>"$TMP/stderr" || rc=$?
	what="failed build (spill dir ${spill:-default})"
	[ $rc != 0 ] || die "$what: build succeeded under an 8 MiB file size limit"
	[ $rc -lt 128 ] || die "$what: died from a signal (exit $rc)"
	grep -q "spill file" "$TMP/stderr" || {
		sed 's/^/    /' "$TMP/stderr" >&2
		die "$what: the message does not name the spill file"
	}
	cmp "$TMP/old.img" "$TMP/out/j1.img" || die "$what: the older image was changed"
	no_leftovers "$TMP/out" "$what" j1.img j2.img j4.img
	no_leftovers "$TMP/spill" "$what, spill dir"
	no_leftovers "$TMP/tmpdir" "$what, TMPDIR"
	log "(b) $what: refused ($(sed -n 1p "$TMP/stderr" | cut -c1-120))"
done
rm -rf "$TMP/out"/*.img "$TMP/old.img" "$src"

# (c) Peak memory: bounded by buffers, not by the image's size.
if grep -q __asan_init "$SLIMFS" 2>/dev/null; then
	log "(c) skipped: ASan build (its own shadow memory and quarantine)"
	log "pass"
	exit 0
fi
gen_data "$TMP/big" 11 300
rss=$("$PYTHON" - "$SLIMFS" "$TMP/out/big.img" "$TMP/big" <<'PY'
import resource, subprocess, sys
subprocess.run([sys.argv[1], "build", "-q", "-j", "2", "-o", sys.argv[2], sys.argv[3]],
               check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
) || die "build of the 300 MB tree failed"
size=$(stat -c %s "$TMP/out/big.img")
log "(c) 300 MB tree: image $((size >> 20)) MiB, peak RSS $((rss >> 10)) MiB"
[ "$rss" -lt $((size / 1024 / 2)) ] ||
	die "peak RSS $((rss >> 10)) MiB is not below half the image ($((size >> 20)) MiB)"
run "$SLIMFS" verify "$TMP/out/big.img"
log "pass"
