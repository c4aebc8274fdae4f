#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Views on a real Debian rootfs (tests/rootfs.sh): an image built with
# --entrypoint /usr/bin/python3 and an allow-list view "minimal"
# (@runtime-base + the python stdlib, minus shells, package managers, docs).
#   - python3 runs from the minimal view under chroot (json, sqlite3: the
#     extension's libsqlite3 comes with it);
#   - shells, apt and dpkg are absent there, present in the full view;
#   - nothing hidden is reachable: not by "..", not through a visible symlink
#     (absolute or relative) to a hidden file, not in a readdir;
#   - --prune gives a smaller image whose full view is the minimal view.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_fuse
need_slimfs
need_cmd chroot timeout unshare find sha256sum
make_tmp

tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
rootdir=$("$SRCDIR/rootfs.sh" --dir) || die "tests/rootfs.sh --dir failed"
pyver=$(basename "$(readlink -f "$rootdir/usr/bin/python3")")
[ -d "$rootdir/usr/lib/$pyver" ] || die "no /usr/lib/$pyver in the rootfs"
log "rootfs: $tarball, python: $pyver"

# A second layer plants escape attempts inside the allow-listed python tree.
extra=$TMP/extra
mkdir -p "$extra/usr/lib/$pyver"
ln -s /etc/shadow "$extra/usr/lib/$pyver/escape-abs"
ln -s ../../../usr/bin/dpkg "$extra/usr/lib/$pyver/escape-rel"
ln -s ../../share/doc "$extra/usr/lib/$pyver/escape-dir"
# Directory ingest takes the directories' metadata too: keep the rootfs's.
for d in usr usr/lib "usr/lib/$pyver"; do
	chmod --reference="$rootdir/$d" "$extra/$d"
	touch --reference="$rootdir/$d" "$extra/$d"
done

allow=$TMP/python.allow
cat >"$allow" <<EOF
# python3 and its standard library, nothing to get a shell or install with
@include runtime-base
/usr/lib/$pyver/
/usr/lib/python3/
!__pycache__/
@include no-shell
@include no-package-manager
@include no-docs
EOF

img=$TMP/views.img
pruned=$TMP/pruned.img
build() {
	local out=$1
	shift
	local t0=$SECONDS
	"$SLIMFS" build --no-progress -o "$out" --entrypoint /usr/bin/python3 \
		--view "minimal=$allow" "$@" "$tarball" "$extra" >"$out.log" 2>&1 ||
		{ cat "$out.log" >&2; die "slimfs build $* failed"; }
	log "built $(basename "$out") ($(du -h "$out" | cut -f1)) in $((SECONDS - t0))s:" \
		"$(grep 'view minimal' "$out.log")"
}
build "$img"
build "$pruned" --prune
grep -q "needs 'libsqlite3" "$img.log" && die "the closure missed libsqlite3: $(cat "$img.log")"

min=$TMP/min
full=$TMP/full
slimfs_mount --view minimal "$img" "$min"
slimfs_mount --view full "$img" "$full"

# --- the minimal view runs python3, and only what it was given is there
in_root() {
	local root=$1
	shift
	timeout 120 unshare --mount --propagation private /bin/sh -c '
		root=$1; shift
		mount --rbind /dev "$root/dev" && mount -t proc proc "$root/proc" &&
		exec env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/ \
			"$(command -v chroot)" "$root" "$@"' in_root "$root" "$@"
}
out=$(in_root "$min" /usr/bin/python3 -c 'import json, sqlite3; print(1)') ||
	die "python3 does not run from the minimal view"
[ "$out" = 1 ] || die "python3 in the minimal view printed '$out', expected 1"
log "minimal view: python3 -c 'import json, sqlite3' runs"

for p in /bin/sh /usr/bin/sh /usr/bin/dash /usr/bin/bash /usr/bin/apt /usr/bin/apt-get \
	/usr/bin/dpkg /usr/bin/perl /var/lib/dpkg /etc/apt /usr/share/doc /etc/shadow; do
	[ -e "$min$p" ] || [ -L "$min$p" ] && die "minimal view: $p is visible"
	[ -e "$full$p" ] || [ -L "$full$p" ] || die "full view: $p is missing"
done
in_root "$min" /bin/sh -c true 2>/dev/null && die "minimal view: chroot /bin/sh ran"
out=$(in_root "$full" /bin/sh -c 'echo ok') || die "full view: chroot /bin/sh failed"
[ "$out" = ok ] || die "full view: /bin/sh printed '$out'"
log "minimal view: no shell, apt, dpkg, perl, docs; the full view has them"

# --- escapes
# ".." from a visible directory into hidden ones
[ -d "$min/usr/lib/$pyver/.." ] || die "'..' of a visible directory fails"
for p in "usr/lib/$pyver/../../bin/dpkg" "usr/lib/$pyver/../../share/doc" \
	"usr/lib/$pyver/../../../etc/shadow" "usr/bin/../share/man"; do
	[ -e "$min/$p" ] && die "minimal view: $p is reachable"
	[ -e "$full/$p" ] || die "full view: $p is missing"
done
(cd "$min/usr/lib/$pyver" && [ -e ../../bin/dpkg ]) && die "minimal view: ../../bin/dpkg from inside"
# visible symlinks to hidden targets: they are there, and dangle
[ -L "$min/usr/lib/$pyver/escape-rel" ] || die "escape-rel symlink is not visible"
[ -e "$min/usr/lib/$pyver/escape-rel" ] && die "a relative symlink reaches the hidden dpkg"
[ -e "$min/usr/lib/$pyver/escape-dir" ] && die "a symlink reaches the hidden /usr/share/doc"
[ -e "$full/usr/lib/$pyver/escape-rel" ] || die "full view: escape-rel should resolve"
# an absolute one is resolved against the root of the process: inside the chroot
out=$(in_root "$min" /usr/bin/python3 -c "
import os, sys
bad = []
for p in ('/usr/lib/$pyver/escape-abs', '/usr/lib/$pyver/escape-rel', '/etc/shadow',
          '/usr/lib/$pyver/../../bin/dpkg', '/bin/sh'):
    try:
        os.stat(p)
        bad.append(p)
    except FileNotFoundError:
        pass
print(' '.join(bad) or 'none')
") || die "the escape checks inside the chroot failed to run"
[ "$out" = none ] || die "minimal view, inside the chroot: reachable: $out"
out=$(in_root "$full" /usr/bin/python3 -c "import os; print(os.path.exists('/usr/lib/$pyver/escape-abs'))")
[ "$out" = True ] || die "full view: escape-abs should resolve to the image's /etc/shadow"
# readdir lists nothing hidden: every name listed can be looked up, none is a shell
for d in /usr/bin /usr/lib /etc /usr/share /var/lib "/usr/lib/$pyver"; do
	[ -d "$min$d" ] || continue
	while IFS= read -r -d '' name; do
		[ -e "$min$d/$name" ] || [ -L "$min$d/$name" ] ||
			die "readdir of $d lists '$name', which cannot be looked up"
	done < <(find "$min$d" -mindepth 1 -maxdepth 1 -printf '%f\0')
done
listing=$(ls -A "$min/usr/bin")
for n in sh dash bash apt dpkg perl env; do
	grep -qx "$n" <<<"$listing" && die "readdir of /usr/bin lists the hidden '$n'"
done
[ "$(wc -l <<<"$listing")" -lt 10 ] || die "/usr/bin of the minimal view lists: $listing"
[ "$(ls -A "$full/usr/bin" | wc -l)" -gt 100 ] || die "full view: /usr/bin looks empty"
log "escapes: '..', symlinks (relative, absolute, to a directory), readdir: nothing hidden"

# --- --prune: smaller, and its full view is the minimal view
size=$(stat -c %s "$img")
psize=$(stat -c %s "$pruned")
[ "$psize" -lt "$size" ] || die "pruned image ($psize bytes) is not smaller than $size"
log "pruned image: $psize bytes, unpruned $size bytes"
pfull=$TMP/pfull
slimfs_mount --view full "$pruned" "$pfull"
# Paths, types, modes, sizes and link targets, then contents (nlink differs on purpose:
# a pruned image counts only the links it keeps).
listing() {
	(cd "$1" && find . \( -type d -printf '%p d %m %U %G\n' \) -o \
		-printf '%p %y %m %U %G %s %l\n' | LC_ALL=C sort)
}
sums() {
	(cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}
diff -u <(listing "$min") <(listing "$pfull") >"$TMP/prune.diff" ||
	{ head -n 40 "$TMP/prune.diff" >&2; die "pruned full view differs from the minimal view"; }
diff -u <(sums "$min") <(sums "$pfull") >"$TMP/prune-sums.diff" ||
	{ head -n 40 "$TMP/prune-sums.diff" >&2; die "pruned full view: contents differ"; }
[ -e "$pfull/usr/bin/dpkg" ] && die "pruned image still has /usr/bin/dpkg"
log "pruned full view = minimal view ($(listing "$pfull" | wc -l) entries)"

slimfs_umount "$pfull"
slimfs_umount "$full"
slimfs_umount "$min"
log "pass"
