#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `mount --trace`: a chroot run of python3 from the rootfs image records
# python3, its libraries and modules, the names it looked for in vain, and
# the chunks it read, in the format of the trace contract (header, P and C
# records, each path and chunk once, times in order, escapes).
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

slimfs_mount --view full --trace "$trace" "$img" "$mnt"
out=$(timeout 120 unshare --mount --propagation private /bin/sh -c '
	mnt=$1
	mount --rbind /dev "$mnt/dev" && mount -t proc proc "$mnt/proc" &&
	exec chroot "$mnt" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
		python3 -c "import json; print(json.dumps(1))"' sh "$mnt") || die "chroot python3 failed"
[ "$out" = 1 ] || die "python3 printed '$out'"
# Written as it happens: the records are there before unmount (flushed each second).
sleep 1.5
grep -q $'^P\t[0-9]*\t/usr/bin/python3' "$trace" || die "the trace has no python3 before unmount"
slimfs_umount "$mnt"

python3 - "$trace" "$digest" <<'PY' || die "the trace does not follow the format"
import re, sys
path, digest = sys.argv[1], sys.argv[2]
lines = open(path, "rb").read().split(b"\n")
assert lines[-1] == b"", "the last record is not terminated"
lines = lines[:-1]
head = lines[0].decode().split("\t")
assert head[0] == "# slimfs-trace 1", head
assert head[1] == "image=" + digest, (head, digest)
assert head[2] == "view=full", head
paths, chunks, last, kinds = set(), set(), -1, {"found": 0, "hidden": 0, "missing": 0}
esc = re.compile(rb"^(?:[^\\\t\n\x00-\x1f\x7f]|\\\\|\\t|\\n|\\x[0-9a-f]{2})*$")
for l in lines[1:]:
    f = l.split(b"\t")
    assert f[0] in (b"P", b"C"), l
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
print("trace: %d paths (%d missing), %d libraries, %d chunks" %
      (len(p), kinds["missing"], len(libs), len(chunks)), file=sys.stderr)
PY

# The profile command reads it (when it is there).
if "$SLIMFS" profile --help >/dev/null 2>&1; then
	run "$SLIMFS" profile -q -o "$TMP/profile" --image "$img" "$trace"
	grep -q '^/usr/bin/python3$' "$TMP/profile" || die "the profile lacks /usr/bin/python3"
	grep -q '^#@chunk [0-9a-f]\{32\}$' "$TMP/profile" || die "the profile has no chunks"
fi

# Paths with bytes the format escapes: a name with a TAB and a newline.
mkdir -p "$TMP/odd"
name=$'a\tb\nc\\d'
echo x >"$TMP/odd/$name"
run "$SLIMFS" build -q -o "$TMP/odd.slimfs" "$TMP/odd"
slimfs_mount --trace "$TMP/odd.trace" "$TMP/odd.slimfs" "$TMP/omnt"
cat "$TMP/omnt/$name" >/dev/null || die "cannot read the odd name"
slimfs_umount "$TMP/omnt"
grep -qF $'P\t' "$TMP/odd.trace" || die "no records in the odd trace"
grep -qF '/a\tb\nc\\d' "$TMP/odd.trace" || die "the odd name is not escaped: $(cat -A "$TMP/odd.trace")"
log "ok"
