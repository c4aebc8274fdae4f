#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A real Debian rootfs (tests/rootfs.sh: bookworm minbase + python3 + perl),
# built from its tar and mounted with FUSE: the whole tree must read back
# exactly as the directory it came from (content, metadata, hardlinks,
# xattrs, device nodes), the mount must refuse writes, and the rootfs's own
# programs must run from it under chroot. Unmounting ends the daemon with 0.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_fuse
need_slimfs
need_cmd chroot timeout tar unshare
make_tmp

tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
rootdir=$("$SRCDIR/rootfs.sh" --dir) || die "tests/rootfs.sh --dir failed"
log "rootfs: $tarball ($(du -sh "$tarball" | cut -f1)), $rootdir"

img=$TMP/rootfs.img
mnt=$TMP/mnt
t0=$SECONDS
run "$SLIMFS" build -q -o "$img" "$tarball"
log "built $(du -h "$img" | cut -f1) image in $((SECONDS - t0))s"

# The full view: the test compares every file, whatever the default view is.
slimfs_mount --view full "$img" "$mnt"

t0=$SECONDS
compare_trees "$rootdir" "$mnt"
log "dumpdir of the whole mount took $((SECONDS - t0))s"

# Read-only: no write of any kind gets through.
touch "$mnt/new-file" 2>/dev/null && die "creating a file in the mount succeeded"
echo x 2>/dev/null >>"$mnt/etc/hostname" && die "appending to etc/hostname succeeded"
rm -f "$mnt/etc/hostname" 2>/dev/null || true
[ -e "$mnt/etc/hostname" ] || die "rm removed etc/hostname from the mount"
mkdir "$mnt/new-dir" 2>/dev/null && die "mkdir in the mount succeeded"
err=$(touch "$mnt/new-file" 2>&1) || true
case $err in
*"Read-only file system"*) ;;
*) die "touch in the mount: expected EROFS, got: $err" ;;
esac

# The rootfs's own programs, with their own libraries, from the mount. The
# mount is nodev (device nodes of an image open nothing: perl -e wants
# /dev/null), so, as a container runtime does, a private mount namespace gets
# the host's /dev and a proc on top of the image's directories.
in_root() {
	timeout 120 unshare --mount --propagation private /bin/sh -c '
		mnt=$1; shift
		mount --rbind /dev "$mnt/dev" && mount -t proc proc "$mnt/proc" &&
		exec chroot "$mnt" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \
			LANG=C.UTF-8 HOME=/root "$@"' in_root "$mnt" "$@"
}
out=$(in_root /bin/sh -c 'echo ok') || die "chroot /bin/sh failed"
[ "$out" = ok ] || die "chroot /bin/sh printed '$out', expected 'ok'"
out=$(in_root python3 -c 'import json, sqlite3; print(1)') || die "chroot python3 failed"
[ "$out" = 1 ] || die "chroot python3 printed '$out', expected '1'"
out=$(in_root perl -e 'print 1+1') || die "chroot perl failed"
[ "$out" = 2 ] || die "chroot perl printed '$out', expected '2'"
# Something that reads many files: python compiles nothing (read-only), imports a lot.
out=$(in_root python3 -c 'import email.mime.text, http.client, xml.dom.minidom, unittest, asyncio; print("imports")') ||
	die "chroot python3 imports failed"
[ "$out" = imports ] || die "chroot python3 imports printed '$out'"
out=$(in_root /bin/sh -c 'ls /usr/bin | wc -l')
[ "$out" -gt 100 ] || die "ls /usr/bin in the chroot shows only $out entries"
log "chroot: sh, python3 and perl of the image run from the mount"

slimfs_umount "$mnt"
grep -qF " $mnt " /proc/self/mounts && die "$mnt is still mounted after unmount"

# The background mode (the default) returns once the mount is live.
run "$SLIMFS" mount --view full "$img" "$mnt"
[ "$(stat -f -c %t "$mnt")" = 65735546 ] || die "background mount: $mnt is not a FUSE mount"
cmp "$rootdir/usr/bin/perl" "$mnt/usr/bin/perl" || die "background mount: usr/bin/perl differs"
run fusermount3 -u "$mnt"
grep -qF " $mnt " /proc/self/mounts && die "$mnt is still mounted after fusermount3 -u"
log "pass"
