#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Profiles on a real Debian rootfs (tests/rootfs.sh):
#   - mount the image with --trace, run python3 (json, sqlite3, urllib.request)
#     in a chroot of it, unmount, and merge the trace with 'slimfs profile';
#   - rebuild with --profile P --view minimal=ALLOW, ALLOW being the profile
#     plus @include runtime-base: the prefetch count is the profile's chunk
#     count, and those chunks come first in the data, in the profile's order;
#   - the minimal view runs the same command in a chroot, and has no /bin/sh.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_fuse
need_slimfs
need_cmd chroot timeout unshare
"$SLIMFS" profile --help >/dev/null 2>&1 || die "slimfs has no profile command"
make_tmp

tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
log "rootfs: $tarball"
cmd='import json, sqlite3, urllib.request; print(1)'

in_root() {
	local root=$1
	shift
	timeout 120 unshare --mount --propagation private /bin/sh -c '
		root=$1; shift
		mount --rbind /dev "$root/dev" && mount -t proc proc "$root/proc" &&
		exec env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/ \
			"$(command -v chroot)" "$root" "$@"' in_root "$root" "$@"
}

build() {
	local out=$1 t0=$SECONDS
	shift
	"$SLIMFS" build --no-progress -o "$out" "$@" "$tarball" >"$out.log" 2>&1 ||
		{ cat "$out.log" >&2; die "slimfs build $* failed"; }
	log "built $(basename "$out") ($(du -h "$out" | cut -f1)) in $((SECONDS - t0))s"
}

# --- trace a run on the full image
img=$TMP/full.img
build "$img"
mnt=$TMP/mnt
trace=$TMP/run.trace
slimfs_mount --trace "$trace" "$img" "$mnt"
out=$(in_root "$mnt" /usr/bin/python3 -c "$cmd") || die "python3 does not run from the image"
[ "$out" = 1 ] || die "python3 printed '$out', expected 1"
slimfs_umount "$mnt"
[ -s "$trace" ] || die "no trace written"
head -n 1 "$trace" | grep -q '^# slimfs-trace 1' || die "trace header: $(head -n 1 "$trace")"
log "trace: $(grep -c '^P' "$trace") paths, $(grep -c '^C' "$trace") chunks"

# --- the profile
profile=$TMP/python.profile
"$SLIMFS" profile -o "$profile" --image "$img" "$trace" 2>"$TMP/profile.log" ||
	{ cat "$TMP/profile.log" >&2; die "slimfs profile failed"; }
cat "$TMP/profile.log" >&2
head -n 1 "$profile" | grep -qx '# slimfs-profile 1 (from 1 trace)' ||
	die "profile header: $(head -n 1 "$profile")"
nchunks=$(grep -c '^#@chunk ' "$profile") || die "the profile has no chunk line"
grep -q "$nchunks of $nchunks profile chunks present" "$TMP/profile.log" ||
	die "--image did not find every chunk of its own trace"
jsonpy=$(grep -m1 -o '^/usr/lib/python3\.[0-9]*/json/__init__\.py$' "$profile") ||
	die "the profile lacks python's json package"
# Python lists a package directory, then stats the sources it found there: a
# tracer that lets readdirplus replies make the dentries never sees those stats.
grep -q '^/usr/lib/python3\.[0-9]*/encodings/aliases\.py$' "$profile" ||
	die "the trace lacks encodings/aliases.py, which python stats after a readdir" \
		"(does mount --trace keep readdirplus on? its entries never reach lookup)"
grep -q '^/.*/libsqlite3\.so' "$profile" || die "the profile lacks libsqlite3"
grep -qx '/etc/ld\.so\.cache' "$profile" || die "the profile lacks /etc/ld.so.cache"
for p in / /usr /usr/lib /usr/bin /usr/bin/sh /usr/bin/dash /bin/sh; do
	grep -qx "$p" "$profile" && die "the profile lists $p"
done
grep -q '^# missing: ' "$profile" || die "no '# missing:' comment (python probes for files)"
grep -q '^# hidden: ' "$profile" && die "a trace of the full view has hidden paths"
npaths=$(grep -c '^/' "$profile")
log "profile: $npaths paths, $nchunks chunks ($jsonpy among them)"

# Merging a trace with itself changes nothing but the header.
"$SLIMFS" profile -q -o "$TMP/twice.profile" "$trace" "$trace" || die "profile of two traces failed"
diff <(tail -n +2 "$profile") <(tail -n +2 "$TMP/twice.profile") >/dev/null ||
	die "merging a trace with itself changed the profile"

# --- rebuild with the profile: prefetch order and a minimal view
allow=$TMP/python.allow
printf '@include %s\n@include runtime-base\n' "$profile" >"$allow"
pimg=$TMP/profiled.img
build "$pimg" --profile "$profile" --view "minimal=$allow"
npre=$(sed -n 's/^slimfs: profile: .* \([0-9]*\) chunks prefetched$/\1/p' "$pimg.log")
[ -n "$npre" ] || die "build --profile: $(cat "$pimg.log")"

prefetch=$("$SLIMFS" inspect --json "$pimg" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["prefetch"])') ||
	die "slimfs inspect --json failed"
[ "$prefetch" = "$npre" ] || die "prefetch count $prefetch, the build said $npre"

# The chunk table is in data order (format.h): its first entries are the
# profile's chunks in order, and PREFETCH lists them as 0, 1, 2, ... (read
# from the plain index: the default index is compressed, format 1.1)
"$PYTHON" - "$pimg" "$profile" <<'EOF' || die "the profile's chunks are not first in the data"
import ctypes, struct, sys
img, prof = sys.argv[1], sys.argv[2]
want = [l.split()[1] for l in open(prof, "rb").read().decode("latin-1").split("\n")
        if l.startswith("#@chunk ")]
with open(img, "rb") as f:
    sb = f.read(256)
    assert sb[:8] == b"SLIMFS\x89\n", "magic"
    index = sb + f.read(struct.unpack_from("<Q", sb, 64)[0] - 256)
if struct.unpack_from("<I", sb, 12)[0] & 1:  # ZINDEX: the sections are one zstd frame
    z = ctypes.CDLL("libzstd.so.1")
    z.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
    z.ZSTD_getFrameContentSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    z.ZSTD_decompress.restype = ctypes.c_size_t
    z.ZSTD_decompress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                  ctypes.c_size_t]
    n = z.ZSTD_getFrameContentSize(index[256:], len(index) - 256)
    out = ctypes.create_string_buffer(n)
    assert z.ZSTD_decompress(out, n, index[256:], len(index) - 256) == n, "index frame"
    index = sb + out.raw  # section offsets are in this plain index
sec = [struct.unpack_from("<QQ", sb, 120 + 16 * i) for i in range(8)]
coff, ccount = sec[4]
poff, pcount = sec[7]
table = index[coff:coff + 64 * ccount]
pre = struct.unpack_from("<%dI" % pcount, index, poff)
ids = [table[64 * i:64 * i + 16].hex() for i in range(ccount)]
offs = [struct.unpack_from("<Q", table, 64 * i + 48)[0] for i in range(ccount)]
assert offs == sorted(offs), "chunk table not in data order"
# (1) packs of the profiled small files, (2) the profile's chunks found here,
# in profile order; PREFETCH is (1) + (2)
assert list(pre) == list(range(pcount)), "PREFETCH is not 0..n-1"
found = [i for i in want if i in ids]
pos = [ids.index(i) for i in found]
assert pos == sorted(pos) and all(p < pcount for p in pos), "profile chunks not first, in order"
print("%d chunks first: %d packs of profiled files, then %d of the profile's %d chunks" % (
    pcount, pcount - len(found), len(found), len(want)))
EOF

min=$TMP/min
slimfs_mount --view minimal "$pimg" "$min"
out=$(in_root "$min" /usr/bin/python3 -c "$cmd") || die "python3 does not run from the minimal view"
[ "$out" = 1 ] || die "python3 in the minimal view printed '$out', expected 1"
for p in /bin/sh /usr/bin/sh /usr/bin/dash /usr/bin/bash /usr/bin/perl /usr/bin/apt; do
	[ -e "$min$p" ] || [ -L "$min$p" ] && die "minimal view: $p is visible"
done
in_root "$min" /bin/sh -c true 2>/dev/null && die "minimal view: chroot /bin/sh ran"
[ -e "$min$jsonpy" ] || die "minimal view: $jsonpy is missing"
entries=$(find "$min" -xdev | wc -l)
log "minimal view from the profile: python3 runs, no shell ($entries entries)"
slimfs_umount "$min"
log "pass"
