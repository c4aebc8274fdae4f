#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `mount --trace`: a chroot run of python3 from the rootfs image records
# python3, its libraries and modules, the names it looked for in vain, and
# the chunks and the byte ranges it read, in the trace format of
# index/FORMAT.md (header, P, C and R records, each path, chunk and page once,
# times in order, escapes); with --kernel-readahead 0 the ranges are what
# python3 asked for, and the profile's "#@range" lines cover them.
. "$SRCDIR/lib.sh"
need_fuse
need_slimfs
need_cmd chroot timeout unshare
make_tmp

tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
img=$TMP/rootfs.slimfs
run "$SLIMFS" build -q -o "$img" "$tarball"
digest=$("$SLIMFS" inspect --json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
mnt=$TMP/mnt
trace=$TMP/trace

slimfs_mount_bg --view full --kernel-readahead 0 --trace "$trace" "$img" "$mnt"
out=$(timeout 120 unshare --mount --propagation private /bin/sh -c '
	mnt=$1
	mount --rbind /dev "$mnt/dev" && mount -t proc proc "$mnt/proc" &&
	exec chroot "$mnt" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
		python3 -c "import json; print(json.dumps(1))"' sh "$mnt") || die "chroot python3 failed"
[ "$out" = 1 ] || die "python3 printed '$out'"
# Written as it happens: the records are there before unmount (flushed each second).
sleep 1.5
grep -q $'^P\t[0-9]*\t/usr/bin/python3' "$trace" || die "the trace has no python3 before unmount"
read_bytes=$("$SLIMFS" stats --json "$mnt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["fs"]["read_bytes"])')
slimfs_umount "$mnt"

python3 - "$trace" "$digest" "$read_bytes" <<'PY' || die "the trace does not follow the format"
import re, sys
path, digest, read_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(path, "rb").read().split(b"\n")
assert lines[-1] == b"", "the last record is not terminated"
lines = lines[:-1]
head = lines[0].decode().split("\t")
assert head[0] == "# slimfs-trace 2", head
assert head[1] == "image=" + digest, (head, digest)
assert head[2] == "view=full", head
assert head[3] == "kernel_readahead=0", head
paths, chunks, last, kinds = set(), set(), -1, {"found": 0, "hidden": 0, "missing": 0}
pages, sizes, ranged = {}, {}, 0
esc = re.compile(rb"^(?:[^\\\t\n\x00-\x1f\x7f]|\\\\|\\t|\\n|\\x[0-9a-f]{2})*$")
for l in lines[1:]:
    f = l.split(b"\t")
    assert f[0] in (b"P", b"C", b"R"), l
    t = int(f[1])
    assert t >= last, ("times go back", l)
    last = t
    if f[0] == b"P":
        assert len(f) in (3, 4), l
        assert f[2].startswith(b"/") and esc.match(f[2]), l
        assert f[2] not in paths, ("path twice", l)
        paths.add(f[2])
        kind = f[3].decode() if len(f) == 4 else "found"
        assert kind in kinds, l
        kinds[kind] += 1
    elif f[0] == b"R":
        assert len(f) == 6 and f[5].startswith(b"/") and esc.match(f[5]), l
        off, n, size = int(f[2]), int(f[3]), int(f[4])
        assert n > 0 and off + n <= size, l
        assert sizes.setdefault(f[5], size) == size, ("size changed", l)
        # each page of a file once, over all its R records
        got = pages.setdefault(f[5], set())
        mine = set(range(off // 4096, (off + n - 1) // 4096 + 1))
        assert not (got & mine), ("page recorded twice", l)
        got |= mine
        ranged += n
    else:
        assert len(f) == 4 and re.fullmatch(rb"[0-9a-f]{32}", f[2]) and f[3].isdigit(), l
        assert f[2] not in chunks, ("chunk twice", l)
        chunks.add(f[2])
p = {x.decode() for x in paths}
need = ["/usr/bin/python3", "/usr/lib/python3.11/json/__init__.py"]
for n in need:
    assert n in p, ("missing path", n)
libs = [x for x in p if re.search(r"/lib[^/]*\.so(\.[0-9]+)*$", x)]
assert any("libc.so" in x for x in libs), libs
assert kinds["missing"] > 0, "python3 looks for files that are not there"
assert len(chunks) > 10, len(chunks)
r = {x.decode() for x in pages}
# what python3 reads: its binary (python3 is a symlink to it), libc, json's bytecode
assert "/usr/bin/python3.11" in r, sorted(r)
for pat in [r"/libc\.so\.6$", r"/json/__pycache__/__init__\.[^/]*\.pyc$"]:
    assert any(re.search(pat, x) for x in r), (pat, sorted(r))
# the kernel read each page once (nothing evicted meanwhile): the ranges are
# exactly what it asked for
assert 0 < ranged <= read_bytes, (ranged, read_bytes)
print("trace: %d paths (%d missing), %d libraries, %d chunks, %d files read: %d bytes "
      "in ranges, %d bytes read through FUSE" %
      (len(p), kinds["missing"], len(libs), len(chunks), len(r), ranged, read_bytes),
      file=sys.stderr)
PY

# The profile command reads it (when it is there).
if "$SLIMFS" profile --help >/dev/null 2>&1; then
	run "$SLIMFS" profile -q -o "$TMP/profile" --image "$img" "$trace"
	grep -q '^/usr/bin/python3$' "$TMP/profile" || die "the profile lacks /usr/bin/python3"
	grep -q '^#@chunk [0-9a-f]\{32\}$' "$TMP/profile" || die "the profile has no chunks"
	python3 - "$trace" "$TMP/profile" <<'PY' || die "the profile's #@range lines do not cover the trace"
import re, sys
reads, ranges, order = {}, {}, []
for l in open(sys.argv[1], "rb").read().split(b"\n")[1:-1]:
    f = l.split(b"\t")
    if f[0] == b"R":
        reads.setdefault(f[5], []).append((int(f[2]), int(f[3]), int(f[4])))
lines = open(sys.argv[2], "rb").read().split(b"\n")
first = next(i for i, l in enumerate(lines) if l.startswith(b"#@range"))
assert not any(l.startswith(b"#@chunk") for l in lines[first:]), "#@range lines come last"
for l in lines[first:-1]:
    m = re.fullmatch(rb"#@range\t(0|[1-9][0-9]*)\t([1-9][0-9]*)\t(/[^\t]*)", l)
    assert m, l
    off, n = int(m[1]), int(m[2])
    assert off % 4096 == 0, l
    ranges.setdefault(m[3], []).append((off, n))
assert set(ranges) == set(reads), set(ranges) ^ set(reads)
for path, rs in reads.items():
    spans = sorted(ranges[path])
    for a, b in zip(spans, spans[1:]):
        assert a[0] + a[1] < b[0], ("spans of a file overlap or touch", path, a, b)
    size = rs[0][2]
    for off, n, _ in rs:
        lo, hi = off // 4096 * 4096, min(size, -(-(off + n) // 4096) * 4096)
        assert any(s <= lo and hi <= s + k for s, k in spans), (path, off, n, spans)
    for s, k in spans:
        assert s + k <= size and (k % 4096 == 0 or s + k == size), (path, s, k, size)
print("profile: %d #@range lines over %d files" % (sum(map(len, ranges.values())), len(ranges)),
      file=sys.stderr)
PY
fi

# Paths with bytes the format escapes: a name with a TAB and a newline.
mkdir -p "$TMP/odd"
name=$'a\tb\nc\\d'
echo x >"$TMP/odd/$name"
run "$SLIMFS" build -q -o "$TMP/odd.slimfs" "$TMP/odd"
slimfs_mount -o kernel_readahead=16K --trace "$TMP/odd.trace" "$TMP/odd.slimfs" "$TMP/omnt"
cat "$TMP/omnt/$name" >/dev/null || die "cannot read the odd name"
slimfs_umount "$TMP/omnt"
grep -qF $'P\t' "$TMP/odd.trace" || die "no records in the odd trace"
grep -qF '/a\tb\nc\\d' "$TMP/odd.trace" || die "the odd name is not escaped: $(cat -A "$TMP/odd.trace")"
grep -qF $'R\t' "$TMP/odd.trace" && grep -qF $'\t0\t2\t2\t/a\\tb\\nc\\\\d' "$TMP/odd.trace" ||
	die "no R record of the odd name: $(cat -A "$TMP/odd.trace")"
head -1 "$TMP/odd.trace" | grep -qF $'\tkernel_readahead=16384' ||
	die "-o kernel_readahead=16K is not in the header: $(head -1 "$TMP/odd.trace")"
log "ok"
