#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A generated tree with every kind of metadata (tests/gendir.py --big) goes
# through slimfs build from a directory, from a pax tar, from compressed tars
# and as two layers; each image must verify, build reproducibly, and extract
# back to exactly the source tree (tests/dumpdir.py). ls and cat spot checks,
# and a corrupted image must fail verify and cat, never return wrong bytes.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_root
need_slimfs
need_cmd tar zstd xz cmp
make_tmp

src=$TMP/src
run "$PYTHON" "$SRCDIR/gendir.py" --seed 42 --big "$src"
dumpdir "$src" >"$TMP/src.dump" || die "dumpdir of the source failed"
log "generated $(wc -l <"$TMP/src.dump") entries"

# check_extract IMAGE NAME: verify, extract, compare with the source tree.
check_extract() {
	local img=$1 name=$2 out=$TMP/x-$2 blocks
	run "$SLIMFS" verify "$img"
	run "$SLIMFS" extract "$img" "$out"
	dumpdir "$out" >"$TMP/x-$name.dump" || die "$name: dumpdir of the extracted tree failed"
	compare_dumps "$TMP/src.dump" "$TMP/x-$name.dump" "$name: extracted tree differs from the source"
	# 5 GiB apparent, about 250 KiB of data: the holes must stay holes.
	blocks=$(stat -c %b "$out/sparse/big-5g")
	[ "$blocks" -lt $((64 * 1024 * 2)) ] ||
		die "$name: extracted sparse/big-5g uses $blocks blocks (holes were filled in)"
	log "$name: extract matches the source, big sparse file has $blocks blocks"
	rm -rf "$out"
}

# (a) From the directory, twice: byte-identical images.
run "$SLIMFS" build -q -o "$TMP/dir.img" "$src"
run "$SLIMFS" build -q -o "$TMP/dir2.img" "$src"
cmp "$TMP/dir.img" "$TMP/dir2.img" || die "two builds of the same directory differ"
rm -f "$TMP/dir2.img"
check_extract "$TMP/dir.img" dir

# (b) From a pax tar with xattrs, sparse entries and numeric owners.
tar_full -C "$src" -cf "$TMP/src.tar" .
run "$SLIMFS" build -q -o "$TMP/tar.img" "$TMP/src.tar"
run "$SLIMFS" build -q -o "$TMP/tar2.img" "$TMP/src.tar"
cmp "$TMP/tar.img" "$TMP/tar2.img" || die "two builds of the same tar differ"
rm -f "$TMP/tar2.img"
check_extract "$TMP/tar.img" tar

# (b') The same tar with a profile whose "#@range" lines pack byte ranges of
# large and sparse files first: the same image at -j 1 and 4, the same tree,
# holes still holes.
{
	printf '#@range\t%d\t%d\t%s\n' 1048576 524288 /files/3m-random 0 1048576 /sparse/holes \
		0 2097152 /sparse/big-5g 4294967296 1048576 /sparse/big-5g 0 4096 /files/3m-text
} >"$TMP/ranges.profile"
for j in 1 4; do
	run "$SLIMFS" build -q -j $j --profile "$TMP/ranges.profile" -o "$TMP/ranges$j.img" \
		"$TMP/src.tar"
done
cmp "$TMP/ranges1.img" "$TMP/ranges4.img" || die "with ranges, -j 1 and -j 4 images differ"
cmp -s "$TMP/ranges1.img" "$TMP/tar.img" && die "the ranges changed nothing"
rm -f "$TMP/ranges4.img"
check_extract "$TMP/ranges1.img" tar-ranges
rm -f "$TMP/ranges1.img"

# (c) The same tar compressed with zstd and xz (and gzip): the same tree.
zstd -q -T0 -c "$TMP/src.tar" >"$TMP/src.tar.zst"
xz -T0 -c "$TMP/src.tar" >"$TMP/src.tar.xz"
gzip -n -c "$TMP/src.tar" >"$TMP/src.tar.gz"
for ext in zst xz gz; do
	run "$SLIMFS" build -q -o "$TMP/$ext.img" "$TMP/src.tar.$ext"
	# The decompressed stream is the same tar, so the image must be the same.
	cmp -s "$TMP/tar.img" "$TMP/$ext.img" ||
		log "note: image from src.tar.$ext differs from the plain tar's (allowed)"
	check_extract "$TMP/$ext.img" "tar-$ext"
	rm -f "$TMP/$ext.img"
done

# (d) Two layers: the directory, then a tar layer with whiteouts, an opaque
# directory, a file turned into a directory, and new entries.
up=$TMP/upper
mkdir -p "$up/files" "$up/dirs" "$up/names" "$up/links"
touch "$up/files/.wh.100k" "$up/files/.wh.3m-text" "$up/.wh.many"
mkdir "$up/hard"
touch "$up/hard/.wh..wh..opq"
echo "after the opaque marker" >"$up/hard/new"
mkdir "$up/files/one-byte"
echo "a file that replaced a directory" >"$up/dirs/d0"
printf 'changed\n' >"$up/names/sp ace"
ln -s ../files "$up/links/relative"
setfattr -n user.upper -v 0x00ff "$up/names/sp ace" 2>/dev/null || true
chown 1234:5678 "$up/hard/new"
chmod 0751 "$up/files"
touch -d @1234567890.123456789 "$up/hard/new" "$up/names/sp ace" "$up/dirs/d0"
touch -h -d @1234567891.5 "$up/links/relative"
touch -d @1234567892.25 "$up/files/one-byte" "$up/files" "$up/dirs" "$up/names" "$up/links" \
	"$up/hard" "$up"
tar_full -C "$up" -cf "$TMP/upper.tar" .
run "$PYTHON" "$SRCDIR/mkoci.py" merge "$TMP/expected2" "$src" "$up"
dumpdir "$TMP/expected2" >"$TMP/expected2.dump" || die "dumpdir of the merged tree failed"
rm -rf "$TMP/expected2"
run "$SLIMFS" build -q -o "$TMP/two.img" "$src" "$TMP/upper.tar"
run "$SLIMFS" verify "$TMP/two.img"
run "$SLIMFS" extract "$TMP/two.img" "$TMP/x-two"
dumpdir "$TMP/x-two" >"$TMP/x-two.dump" || die "dumpdir of the two-layer extract failed"
compare_dumps "$TMP/expected2.dump" "$TMP/x-two.dump" \
	"two layers: extracted tree differs from the layers merged by hand"
grep -q '\.wh\.' "$TMP/x-two.dump" && die "two layers: a whiteout file leaked into the tree"
rm -rf "$TMP/x-two" "$TMP/two.img"
log "two layers: whiteouts, opaque dir and replacements applied as expected"

# cat: whole files, byte for byte; holes read as zeros.
img=$TMP/dir.img
for f in files/3m-random files/3m-text files/empty files/one-byte files/100k \
	sparse/holes sparse/leading-hole sparse/all-hole hard/sub/b3 "names/sp ace" \
	"names/ünïcødé-日本語-🙂" modes/0000 dirs/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/deep-file; do
	"$SLIMFS" cat "$img" "/$f" >"$TMP/cat.out" || die "slimfs cat /$f failed"
	cmp "$src/$f" "$TMP/cat.out" || die "slimfs cat /$f: content differs from the source"
done
# Through a pipe (not seekable), the 5 GiB sparse file too (cmp reads the
# source's holes as zeros).
for f in sparse/holes files/3m-text sparse/big-5g; do
	"$SLIMFS" cat "$img" "/$f" | cmp - "$src/$f" || die "slimfs cat /$f | cmp: differs or failed"
done
run_fails "$SLIMFS" cat "$img" /does/not/exist
run_fails "$SLIMFS" cat "$img" /files
log "cat: contents match"

# ls: names of a directory, -l sizes, -R reaches the deepest file.
out=$("$SLIMFS" ls "$img" /files) || die "slimfs ls /files failed"
for n in empty one-byte few-kib 100k 100k-copy 3m-random 3m-text exec; do
	grep -qx "$n" <<<"$out" || grep -qE "(^|[[:space:]/])$n\$" <<<"$out" ||
		die "slimfs ls /files: '$n' missing from: $out"
done
[ "$(grep -c . <<<"$out")" = "$(ls -A "$src/files" | wc -l)" ] ||
	die "slimfs ls /files: expected $(ls -A "$src/files" | wc -l) lines, got: $out"
out=$("$SLIMFS" ls -l "$img" /files) || die "slimfs ls -l /files failed"
grep -q 3145728 <<<"$out" || die "slimfs ls -l /files: no 3145728 byte size in: $out"
out=$("$SLIMFS" ls -R "$img" /dirs) || die "slimfs ls -R /dirs failed"
grep -q deep-file <<<"$out" || die "slimfs ls -R /dirs does not reach deep-file"
"$SLIMFS" ls "$img" >/dev/null || die "slimfs ls IMAGE (the root) failed"
run_fails "$SLIMFS" ls "$img" /does/not/exist
log "ls: listings as expected"

# inspect: --json is JSON.
"$SLIMFS" inspect --json "$img" >"$TMP/inspect.json" || die "slimfs inspect --json failed"
"$PYTHON" -m json.tool "$TMP/inspect.json" >/dev/null || die "slimfs inspect --json is not JSON"
"$SLIMFS" inspect "$img" >/dev/null || die "slimfs inspect failed"

# Corruption: one flipped byte inside a file's stored data (random data is
# stored as is, so it can be found in the image) must fail verify, and cat
# of that file must fail rather than print wrong bytes.
cp "$img" "$TMP/bad.img"
"$PYTHON" - "$src/files/3m-random" "$TMP/bad.img" <<'EOF' || die "could not corrupt the image"
import sys
needle = open(sys.argv[1], "rb").read()[1500000:1500064]
with open(sys.argv[2], "r+b") as f:
    data = f.read()
    off = data.find(needle)
    if off < 0:
        off = len(data) // 2
        print(f"corrupt: file data not found verbatim, flipping at {off}", file=sys.stderr)
    else:
        off += 32
    f.seek(off)
    f.write(bytes([data[off] ^ 0x40]))
EOF
run_fails "$SLIMFS" verify "$TMP/bad.img"
rc=0
"$SLIMFS" cat "$TMP/bad.img" /files/3m-random >"$TMP/cat.out" 2>/dev/null || rc=$?
[ $rc != 0 ] || die "slimfs cat of a corrupted file succeeded"
[ $rc -lt 128 ] || die "slimfs cat of a corrupted file crashed (exit $rc)"
log "corruption: verify and cat fail cleanly"

# A truncated image fails verify without crashing.
head -c $(($(stat -c %s "$img") / 2)) "$img" >"$TMP/short.img"
run_fails "$SLIMFS" verify "$TMP/short.img"
log "all checks passed"
