#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Stress (issue "Hardening", point 5): 32 concurrent readers read the whole
# Debian rootfs three times, with content checks, through an HTTP mount whose
# memory cache (16 MiB) and disk cache (32 MiB) are both far smaller than the
# image, while "--prefetch all" fetches the image in the background: chunks
# are evicted and fetched again under load. Zero mismatches; the daemon exits
# 0 (under ASan that includes no leaks); its peak RSS stays bounded.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"
. "$SRCDIR/servers.sh"

need_fuse
need_slimfs
make_tmp

preadcheck=
for p in "$BUILDDIR/preadcheck" "$BUILDDIR/tools/preadcheck"; do
	[ -x "$p" ] && { preadcheck=$p; break; }
done
[ -n "$preadcheck" ] || die "preadcheck is not built (meson builds it next to the tests)"
seed=${SLIMFS_TEST_SEED:-$RANDOM}

tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
rootdir=$("$SRCDIR/rootfs.sh" --dir) || die "tests/rootfs.sh --dir failed"
mkdir -p "$TMP/www"
run "$SLIMFS" build -q -o "$TMP/www/rootfs.slimfs" "$tarball"
size=$(stat -c %s "$TMP/www/rootfs.slimfs")
start_nginx "$TMP/www" >"$TMP/url"
url=$(cat "$TMP/url")/rootfs.slimfs

slimfs_mount --view full --mem-cache 16M --cache "$TMP/cache" --cache-size 32M \
	--prefetch all "$url" "$TMP/mnt"
pid=$MOUNT_PID
for pass in 1 2 3; do
	t0=$SECONDS
	"$preadcheck" -q -t 32 -n "${SLIMFS_STRESS_ITERS:-300}" -s "$((seed + pass))" -a -d \
		"$rootdir" "$TMP/mnt" || die "pass $pass: preadcheck found differences (seed $((seed + pass)))"
	log "pass $pass: 32 readers, every file whole + random preads, equal ($((SECONDS - t0))s)"
done
"$SLIMFS" stats --json "$TMP/mnt" >"$TMP/stats.json" || die "slimfs stats failed"
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
python3 - "$TMP/stats.json" "$size" "$hwm" <<'PY' || die "stats: $(cat "$TMP/stats.json")"
import json, sys
s = json.load(open(sys.argv[1]))
size, hwm_kib = int(sys.argv[2]), int(sys.argv[3])
cache, verify = s["cache"], s["verify"]
print("evictions %d, disk stores %d, verified %d, failed %d, peak RSS %d MiB, image %d MiB" % (
    cache["mem_evictions"], cache["disk_stores"], verify["ok"], verify["failed"],
    hwm_kib >> 10, size >> 20), file=sys.stderr)
assert cache["mem_evictions"] > 0, "the memory cache never evicted"
assert verify["failed"] == 0, "chunks failed verification"
PY
# Peak RSS: the memory cache bound plus working buffers; ASan builds carry
# their own shadow memory and quarantine, so the bound is for plain builds.
if ! grep -q __asan_init "$SLIMFS" 2>/dev/null; then
	[ "$hwm" -lt $((200 * 1024)) ] || die "daemon peak RSS $((hwm >> 10)) MiB with a 16 MiB memory cache"
fi
du_kib=$(du -sk "$TMP/cache" | cut -f1)
[ "$du_kib" -lt $((48 * 1024)) ] || die "disk cache holds $((du_kib >> 10)) MiB, bound 32 MiB"
slimfs_umount "$TMP/mnt"
log "pass"
