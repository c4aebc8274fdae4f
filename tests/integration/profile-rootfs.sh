#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Profiles on a real Debian rootfs (tests/rootfs.sh):
#   - mount the image with --trace, run python3 (json, sqlite3, urllib.request)
#     in a chroot of it, unmount, and merge the trace with 'slimfs profile';
#   - rebuild with --profile P --view minimal=ALLOW, ALLOW being the profile
#     plus @include runtime-base: the prefetch count is the profile's chunk
#     count, and those chunks come first in the data, in the profile's order;
#   - the minimal view runs the same command in a chroot, and has no /bin/sh;
#   - "#@range" lines written by hand for python3.11 and libsqlite3: their
#     bytes are packed first (a smaller prefetch than whole chunks), the
#     image verifies and extracts to the same tree, and a read inside a hot
#     range touches prefetched chunks only, one in a cold part none.
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
head -n 1 "$trace" | grep -q '^# slimfs-trace 2' || die "trace header: $(head -n 1 "$trace")"
log "trace: $(grep -c '^P' "$trace") paths, $(grep -c '^C' "$trace") chunks, $(grep -c '^R' "$trace") ranges"

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
# The byte ranges read: python3's binary and libsqlite3, in part (mmap'ed).
grep -q $'^#@range\t[0-9]*\t[0-9]*\t/usr/bin/python3\\.[0-9]*$' "$profile" ||
	die "no #@range line for python3"
grep -q $'^#@range\t[0-9]*\t[0-9]*\t/.*/libsqlite3\\.so' "$profile" ||
	die "no #@range line for libsqlite3"
npaths=$(grep -c '^/' "$profile")
log "profile: $npaths paths, $nchunks chunks, $(grep -c '^#@range' "$profile") ranges ($jsonpy among them)"

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
# profile's chunks in order, and PREFETCH lists them as 0, 1, 2, ...
"$PYTHON" - "$pimg" "$profile" <<'EOF' || die "the profile's chunks are not first in the data"
import struct, subprocess, sys
img, prof = sys.argv[1], sys.argv[2]
lines = open(prof, "rb").read().decode("latin-1").split("\n")
want = [l.split()[1] for l in lines if l.startswith("#@chunk ")]
# with "#@range" lines, chunks that only files with hot ranges use are not
# prefetched (the ranges are)
ranges = any(l.startswith("#@range\t") for l in lines)
with open(img, "rb") as f:
    sb = f.read(256)
    assert sb[:8] == b"SLIMFS\x89\n", "magic"
    (incompat,) = struct.unpack_from("<I", sb, 12)
    (index_size,) = struct.unpack_from("<Q", sb, 64)
    stored = sb + f.read(index_size - 256)
# format 1.1: the sections are one zstd frame after the superblock (FORMAT.md);
# section offsets count in the plain index
index = stored
if incompat & 1:
    index = sb + subprocess.run(["zstd", "-dc"], input=stored[256:], stdout=subprocess.PIPE,
                                check=True).stdout
sec = [struct.unpack_from("<QQ", sb, 120 + 16 * i) for i in range(8)]
coff, ccount = sec[4]
poff, pcount = sec[7]
table = index[coff:coff + 64 * ccount]
pre = struct.unpack_from("<%dI" % pcount, index, poff)
ids = [table[64 * i:64 * i + 16].hex() for i in range(ccount)]
offs = [struct.unpack_from("<Q", table, 64 * i + 48)[0] for i in range(ccount)]
assert offs == sorted(offs), "chunk table not in data order"
# (0) packs of hot ranges, (1) packs of the profiled small files, (2) the
# profile's chunks found here, in profile order; PREFETCH is (0) + (1) + (2)
assert list(pre) == list(range(pcount)), "PREFETCH is not 0..n-1"
found = [i for i in want if i in ids]
pos = [ids.index(i) for i in found]
first = [p for p in pos if p < pcount]
assert first == sorted(first) and (ranges or first == pos), "profile chunks not first, in order"
print("%d chunks first: %d packs, then %d of the profile's %d chunks" % (
    pcount, pcount - len(first), len(first), len(want)))
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

# --- hot ranges: "#@range" lines for two large ELF files, written by hand
# Their bytes are packed first and prefetched, the rest of those files is
# chunked around them and their whole chunks are no longer prefetched.
py=/usr/bin/python3.11
sqlite=$(grep -m1 -o '^/.*/libsqlite3\.so[.0-9]*$' "$profile")
pysize=$("$SLIMFS" cat "$img" "$py" | wc -c)
sqsize=$("$SLIMFS" cat "$img" "$sqlite" | wc -c)
{ [ "$pysize" -gt $((6 << 20)) ] && [ "$sqsize" -gt $((512 << 10)) ]; } ||
	die "$py ($pysize bytes) or $sqlite ($sqsize bytes) is smaller than expected"
tail=$(((pysize - 10000) / 4096 * 4096))
# The traced profile has #@range lines of its own: start from its paths and
# chunks only, and compare with the image those whole chunks make.
cprofile=$TMP/chunks.profile
grep -v '^#@range' "$profile" >"$cprofile"
cimg=$TMP/chunks.img
build "$cimg" --profile "$cprofile"
rprofile=$TMP/ranges.profile
{
	cat "$cprofile"
	printf '#@range\t%d\t%d\t%s\n' 0 65536 "$py" $((1 << 20)) $((512 << 10)) "$py" \
		0 131072 "$sqlite" "$tail" $((pysize - tail)) /usr/bin/python3 \
		0 4096 /no/such/file
} >"$rprofile"
rimg=$TMP/ranges.img
build "$rimg" --profile "$rprofile"
grep -q '^slimfs: profile: 4 of 5 ranges in 2 large files packed first: ' "$rimg.log" ||
	die "build with ranges: $(cat "$rimg.log")"
"$SLIMFS" verify "$rimg" >"$TMP/verify.log" 2>&1 || { cat "$TMP/verify.log" >&2; die "verify failed"; }
read -r pre_t pre_tn < <("$SLIMFS" inspect --json "$pimg" | "$PYTHON" -c 'import json, sys
s = json.load(sys.stdin); print(s["prefetch_bytes"], s["prefetch"])')
read -r pre_w pre_wn < <("$SLIMFS" inspect --json "$cimg" | "$PYTHON" -c 'import json, sys
s = json.load(sys.stdin); print(s["prefetch_bytes"], s["prefetch"])')
read -r pre_r pre_rn < <("$SLIMFS" inspect --json "$rimg" | "$PYTHON" -c 'import json, sys
s = json.load(sys.stdin); print(s["prefetch_bytes"], s["prefetch"])')
[ "$pre_r" -lt "$pre_w" ] ||
	die "prefetch with ranges is $pre_r bytes, not less than whole chunks' $pre_w"
log "prefetch: $pre_wn chunks, $pre_w bytes from whole chunks; $pre_rn, $pre_r bytes with ranges"
# The traced run's own ranges (what the kernel asked for, read-ahead included)
# prefetch less than the whole chunks they touch.
[ "$pre_t" -lt "$pre_w" ] ||
	die "prefetch from the trace's ranges is $pre_t bytes, not less than whole chunks' $pre_w"
log "prefetch from the trace's ranges: $pre_tn chunks, $pre_t bytes"
# The prefetched packs are compressed at --prefetch-level (default 15): fewer
# bytes than at the data's level 3, the same chunks, the same content.
rimg3=$TMP/ranges-l3.img
build "$rimg3" --profile "$rprofile" --prefetch-level 3
read -r pre_3 pre_3n < <("$SLIMFS" inspect --json "$rimg3" | "$PYTHON" -c 'import json, sys
s = json.load(sys.stdin); print(s["prefetch_bytes"], s["prefetch"])')
[ "$pre_3n" = "$pre_rn" ] || die "--prefetch-level 3: $pre_3n prefetched chunks, not $pre_rn"
[ "$pre_r" -lt "$pre_3" ] ||
	die "prefetch at the default level is $pre_r bytes, not less than level 3's $pre_3"
"$SLIMFS" cat "$rimg3" "$py" | cmp - <("$SLIMFS" cat "$rimg" "$py") || die "cat $py differs at level 3"
"$SLIMFS" verify "$rimg3" >"$TMP/verify3.log" 2>&1 || { cat "$TMP/verify3.log" >&2; die "verify (level 3) failed"; }
log "prefetch level: $pre_r bytes at the default, $pre_3 at level 3"

# the content is exact: the whole tree against the image built without a profile
"$SLIMFS" extract "$img" "$TMP/x-full" >/dev/null 2>&1 || die "extract of the full image failed"
"$SLIMFS" extract "$rimg" "$TMP/x-ranges" >/dev/null 2>&1 || die "extract with ranges failed"
cmp "$TMP/x-full$py" "$TMP/x-ranges$py" || die "$py differs"
cmp "$TMP/x-full$sqlite" "$TMP/x-ranges$sqlite" || die "$sqlite differs"
dumpdir "$TMP/x-full" >"$TMP/x-full.dump"
dumpdir "$TMP/x-ranges" >"$TMP/x-ranges.dump"
compare_dumps "$TMP/x-full.dump" "$TMP/x-ranges.dump" "the image with ranges extracts other content"
rm -rf "$TMP/x-full" "$TMP/x-ranges"

# reading inside a hot range touches prefetched chunks only, reading a cold
# part of the same file none of them (the traces list the chunks read)
rmnt=$TMP/rmnt
for part in hot cold; do
	skip=1280 # 4 KiB blocks: 1 MiB (hot), 5 MiB (cold)
	[ $part = cold ] || skip=256
	slimfs_mount --prefetch none --trace "$TMP/$part.trace" "$rimg" "$rmnt"
	dd if="$rmnt$py" of=/dev/null bs=4096 skip=$skip count=1 status=none ||
		die "reading $py from the mount failed"
	slimfs_umount "$rmnt"
	awk -F'\t' -v n="$pre_rn" -v part="$part" '
		$1 == "C" { c++; if ((part == "hot") != ($4 < n)) bad++ }
		END { exit !(c > 0 && !bad) }' "$TMP/$part.trace" ||
		die "a $part read of $py read chunks $(awk -F'\t' '$1 == "C" { printf "%s ", $4 }' \
			"$TMP/$part.trace")(prefetch: $pre_rn)"
done
"$SLIMFS" cat "$rimg" "$py" | cmp - <("$SLIMFS" cat "$img" "$py") || die "cat $py differs"
log "hot ranges: packed first, content exact, hot reads within the prefetch"
log "pass"
