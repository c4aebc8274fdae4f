#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Concurrent random preads through the FUSE mount, compared byte for byte
# with the source tree (tests/tools/preadcheck): 16 threads over every file
# of a generated tree and of the Debian rootfs, with a 4 MiB memory cache so
# that chunks are evicted and fetched again while other threads read them,
# and once with fewer FUSE workers than reading threads.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_fuse
need_slimfs
make_tmp

# The preadcheck tool: built by meson next to the tests, else built here.
preadcheck=${PREADCHECK:-}
if [ -z "$preadcheck" ]; then
	for p in "$BUILDDIR/preadcheck" "$BUILDDIR/tools/preadcheck"; do
		[ -x "$p" ] && { preadcheck=$p; break; }
	done
fi
if [ -z "$preadcheck" ]; then
	need_cmd cc
	preadcheck=$TMP/preadcheck
	run cc -std=c11 -O2 -pthread -D_GNU_SOURCE -o "$preadcheck" "$SRCDIR/tools/preadcheck.c"
fi
seed=${SLIMFS_TEST_SEED:-$RANDOM}
log "preadcheck: $preadcheck, seed $seed"

# stress SRC IMAGE NAME [MOUNT OPTIONS...]
stress() {
	local src=$1 img=$2 name=$3 mnt=$TMP/mnt-$3 t0
	shift 3
	slimfs_mount "$@" "$img" "$mnt"
	t0=$SECONDS
	"$preadcheck" -t 16 -n "${SLIMFS_STRESS_ITERS:-2000}" -s "$seed" -a -d "$src" "$mnt" ||
		die "$name: preadcheck found differences (seed $seed)"
	log "$name: preadcheck passed in $((SECONDS - t0))s"
	slimfs_umount "$mnt"
}

# (a) The generated tree: small files, holes, sparse files, large files.
src=$TMP/src
run "$PYTHON" "$SRCDIR/gendir.py" --seed 11 "$src"
# Large files made of repeated and random data: many chunks per file, dedup.
head -c $((24 << 20)) /dev/urandom >"$src/random-24m"
{ for _ in $(seq 8); do head -c $((1 << 20)) "$src/random-24m"; done; } >"$src/repeated-8m"
truncate -s $((40 << 20)) "$src/sparse-tail-40m"
printf 'end' >>"$src/sparse-tail-40m"
run "$SLIMFS" build -q -o "$TMP/gen.img" "$src"
stress "$src" "$TMP/gen.img" gendir --view full --mem-cache 4M
stress "$src" "$TMP/gen.img" gendir-2-workers --view full --mem-cache 4M --threads 2

# (b) The Debian rootfs: thousands of real files.
tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
rootdir=$("$SRCDIR/rootfs.sh" --dir) || die "tests/rootfs.sh --dir failed"
run "$SLIMFS" build -q -o "$TMP/rootfs.img" "$tarball"
stress "$rootdir" "$TMP/rootfs.img" rootfs --view full --mem-cache 4M
log "pass"
