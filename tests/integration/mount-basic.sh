#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# slimfs mount: a gendir tree built into an image and mounted must equal its
# source (metadata and bytes), refuse writes, survive kill -9, run in the
# background and as a mount(8) helper, turn corrupt image data into EIO (never
# wrong bytes) and heal a corrupt disk cache entry by fetching it again. The
# daemon's heap is on huge pages without executing itself again; the user's
# glibc tunables win.
set -e
. "$SRCDIR/lib.sh"
need_fuse
need_slimfs
make_tmp

src=$TMP/src img=$TMP/img.slimfs mnt=$TMP/mnt
run "$PYTHON" "$SRCDIR/gendir.py" --seed 7 "$src" >/dev/null
run "$SLIMFS" build -q -o "$img" "$src"

# Random preads at random offsets of every regular file: src and mnt agree.
pread_check() {
	"$PYTHON" - "$1" "$2" <<'EOF'
import os, random, sys
src, mnt = sys.argv[1], sys.argv[2]
rnd = random.Random(42)
n = 0
for root, dirs, files in os.walk(src):
    for f in files:
        a = os.path.join(root, f)
        if os.path.islink(a) or not os.path.isfile(a):
            continue
        b = os.path.join(mnt, os.path.relpath(a, src))
        size = os.path.getsize(a)
        with open(a, "rb") as fa, open(b, "rb") as fb:
            for _ in range(8):
                off = rnd.randrange(0, size + 2) if size < 1 << 20 else rnd.randrange(0, size)
                ln = rnd.choice([1, 7, 4096, 65536, 131072, 1 << 20])
                x, y = os.pread(fa.fileno(), ln, off), os.pread(fb.fileno(), ln, off)
                if x != y:
                    sys.exit(f"pread mismatch: {b} off {off} len {ln}")
                n += 1
print(f"{n} preads equal")
EOF
}

# Every way of writing fails with EROFS.
write_check() {
	"$PYTHON" - "$1" <<'EOF'
import errno, os, sys
m = sys.argv[1]
f = next(os.path.join(r, x) for r, _, fs in os.walk(m) for x in fs
         if os.path.isfile(os.path.join(r, x)) and not os.path.islink(os.path.join(r, x)))
def expect(what, fn):
    try:
        fn()
    except OSError as e:
        if e.errno != errno.EROFS:
            sys.exit(f"{what}: {e} (expected EROFS)")
        return
    sys.exit(f"{what}: succeeded on a read-only mount")
expect("open O_WRONLY", lambda: os.open(f, os.O_WRONLY))
expect("open O_RDWR", lambda: os.open(f, os.O_RDWR))
expect("open O_TRUNC", lambda: os.open(f, os.O_RDONLY | os.O_TRUNC))
expect("create", lambda: os.open(os.path.join(m, "new"), os.O_CREAT | os.O_WRONLY, 0o644))
expect("mkdir", lambda: os.mkdir(os.path.join(m, "newdir")))
expect("unlink", lambda: os.unlink(f))
expect("rename", lambda: os.rename(f, f + ".x"))
expect("symlink", lambda: os.symlink("x", os.path.join(m, "newlink")))
expect("link", lambda: os.link(f, os.path.join(m, "newhard")))
expect("chmod", lambda: os.chmod(f, 0o600))
expect("utime", lambda: os.utime(f, (0, 0)))
expect("setxattr", lambda: os.setxattr(f, "user.x", b"1"))
if os.access(f, os.W_OK):
    sys.exit("access(W_OK) succeeded")
print("writes refused with EROFS")
EOF
}

# Reads every file of src from mnt: each is equal or fails with EIO, never differs.
# Prints "OK EIO" counts.
read_all_or_eio() {
	"$PYTHON" - "$1" "$2" <<'EOF'
import errno, os, sys
src, mnt = sys.argv[1], sys.argv[2]
ok = eio = 0
for root, dirs, files in os.walk(src):
    for f in files:
        a = os.path.join(root, f)
        if os.path.islink(a) or not os.path.isfile(a):
            continue
        b = os.path.join(mnt, os.path.relpath(a, src))
        want = open(a, "rb").read()
        try:
            with open(b, "rb", buffering=0) as fb:
                got = b"".join(iter(lambda: fb.read(1 << 20), b""))
        except OSError as e:
            if e.errno != errno.EIO:
                sys.exit(f"{b}: {e} (expected EIO or the right bytes)")
            eio += 1
            continue
        if got != want:
            sys.exit(f"{b}: WRONG BYTES returned")
        ok += 1
print(ok, eio)
EOF
}

# ---- foreground mount (-f --ready-fd), via lib.sh
slimfs_mount "$img" "$mnt"
[ "$(stat -f -c %t "$mnt")" = 65735546 ] || die "statfs magic"
[ "$(stat -f -c %S "$mnt")" = 4096 ] || die "statfs block size"
compare_trees "$src" "$mnt"
run pread_check "$src" "$mnt"
run write_check "$mnt"
# The daemon's heap is on transparent huge pages (cmd_mount.c daemon_heap:
# the heap grown once and advised, the index mapped on huge pages), set
# without executing itself again (its environment has no GLIBC_TUNABLES of
# ours); the user's GLIBC_TUNABLES=glibc.malloc.hugetlb=0 turns all of it
# off. The advice shows in THP mode madvise, and not under ASan (its own
# allocator).
huge_heap() { awk '/^[0-9a-f]+-/ { heap = / \[heap\]$/ } heap && /^VmFlags:.* hg/ { f = 1 } END { exit !f }' "/proc/$1/smaps"; }
huge_any() { grep -q '^VmFlags:.* hg' "/proc/$1/smaps"; }
[ "$(cat "/proc/$MOUNT_PID/comm")" = slimfs ] || die "daemon is named $(cat "/proc/$MOUNT_PID/comm")"
[ -z "${GLIBC_TUNABLES+set}" ] && tr '\0' '\n' <"/proc/$MOUNT_PID/environ" | grep -q '^GLIBC_TUNABLES=' &&
	die "the daemon runs with GLIBC_TUNABLES it was not given (executed itself again?)"
# The mount comes live with one FUSE worker; the other 7 (default 8) and the 2
# read-ahead workers start right after.
for i in $(seq 50); do
	[ "$(ls "/proc/$MOUNT_PID/task" | wc -l)" -ge 11 ] && break
	sleep 0.1
done
[ "$(ls "/proc/$MOUNT_PID/task" | wc -l)" -ge 11 ] ||
	die "the daemon has $(ls "/proc/$MOUNT_PID/task" | wc -l) threads, not all its workers"
slimfs_umount "$mnt"
if grep -q __asan_init "$SLIMFS" 2>/dev/null; then
	log "huge-page heap not checked: ASan build (glibc's malloc is not in use)"
elif grep -q '\[madvise\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null; then
	slimfs_mount "$img" "$mnt"
	cat "$src/files/100k" "$mnt"/files/* >/dev/null
	huge_heap "$MOUNT_PID" || die "the daemon's heap is not advised for huge pages"
	slimfs_umount "$mnt"
	GLIBC_TUNABLES=glibc.malloc.hugetlb=0 slimfs_mount "$img" "$mnt"
	cat "$mnt"/files/* >/dev/null
	huge_any "$MOUNT_PID" && die "the user's GLIBC_TUNABLES=glibc.malloc.hugetlb=0 lost"
	cmp "$src/files/100k" "$mnt/files/100k" || die "read with the user's GLIBC_TUNABLES"
	slimfs_umount "$mnt"
	log "daemon heap on huge pages; the user's glibc tunables win"
fi

# ---- a killed daemon leaves a dead mount: the next mount detaches it and works
slimfs_mount "$img" "$mnt"
kill -9 "$MOUNT_PID"
wait "$MOUNT_PID" 2>/dev/null || true
unset "_mount_pids[$mnt]"
if stat "$mnt" >/dev/null 2>&1; then die "mount still answers after kill -9"; fi
run "$SLIMFS" mount -q "$img" "$mnt"
cmp "$src/files/100k" "$mnt/files/100k" || die "read after remount over a dead mount"
umount "$mnt" || die "umount after remount over a dead mount"
grep -qF " $mnt " /proc/self/mounts && die "stale mount left behind"

# ---- background mode: returns once live, exits on unmount
daemon_pids() { pgrep -f -- "mount .*$1" || true; }
run "$SLIMFS" mount -q "$img" "$mnt"
[ "$(stat -f -c %t "$mnt")" = 65735546 ] || die "background mount not live when mount returned"
grep -qF " $mnt fuse.slimfs ro," /proc/self/mounts || die "mount type/options: $(grep -F " $mnt " /proc/self/mounts)"
compare_trees "$src" "$mnt" --no-hash
pid=$(daemon_pids "$mnt")
[ -n "$pid" ] || die "no background daemon found"
# The mount command answered the kernel's INIT itself, then forked: the daemon
# is its child, in a session of its own, with /dev/null as its standard
# streams and / as its directory.
[ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" ] || die "daemon $pid leads no session"
for f in 0 1 2; do
	[ "$(readlink "/proc/$pid/fd/$f")" = /dev/null ] ||
		die "daemon fd $f is $(readlink "/proc/$pid/fd/$f")"
done
[ "$(readlink "/proc/$pid/cwd")" = / ] || die "daemon cwd is $(readlink "/proc/$pid/cwd")"
umount "$mnt" || die "umount failed"
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && die "daemon $pid still running after umount"
# A mount right after an unmount of the same mountpoint: umount returns before
# the old daemon has exited and closed its stats socket; the new one waits for
# it to go and serves `slimfs stats` itself.
for i in 1 2 3; do
	"$SLIMFS" mount "$img" "$mnt" 2>"$TMP/remount.err" || die "background mount $i: $(cat "$TMP/remount.err")"
	[ "$(stat -f -c %t "$mnt")" = 65735546 ] || die "background mount $i not live"
	grep -q "stats socket" "$TMP/remount.err" && die "mount $i: $(cat "$TMP/remount.err")"
	"$SLIMFS" stats "$mnt" | grep -qF "mount     $mnt" || die "no stats from mount $i"
	umount "$mnt" || die "umount $i failed"
done
for _ in $(seq 100); do [ -z "$(daemon_pids "$mnt")" ] && break; sleep 0.1; done
run_fails "$SLIMFS" mount -q "$img" "$TMP/no-such-dir"
run_fails "$SLIMFS" mount -q --view no-such-view "$img" "$mnt"
# Errors before the mount is live reach the caller's stderr, exit status 1.
rc=0
"$SLIMFS" mount -q --digest sha256:$(printf '0%.0s' $(seq 64)) "$img" "$mnt" 2>"$TMP/digest.err" ||
	rc=$?
[ "$rc" = 1 ] || die "mount with a wrong --digest: exit status $rc"
grep -q "index digest is sha256:[0-9a-f]\{64\}, expected sha256:0\{64\}" "$TMP/digest.err" ||
	die "mount with a wrong --digest says: $(cat "$TMP/digest.err")"
grep -qF " $mnt " /proc/self/mounts && die "a failed mount left a mount behind"

# ---- mount(8): mount -t fuse.slimfs runs /sbin/mount.fuse, which runs 'slimfs
# IMAGE DIR -o OPTS' from the default PATH (mount(8) drops PATH). In a private
# mount namespace, a temporary dir over /usr/local/sbin provides it.
if command -v unshare >/dev/null && [ -x /sbin/mount.fuse ]; then
	bin=$TMP/bin
	mkdir -p "$bin"
	ln -s "$(readlink -f "$SLIMFS")" "$bin/mount.slimfs"
	printf '#!/bin/sh\nexec "%s/mount.slimfs" "$@"\n' "$bin" >"$bin/slimfs"
	chmod +x "$bin/slimfs"
	unshare -m --propagation private bash -e -c '
		mount --bind "$1" /usr/local/sbin
		mount -t fuse.slimfs -o nofail,x-systemd.automount,view=full,allow_other "$2" "$3"
		grep -qF " $3 fuse.slimfs ro," /proc/self/mounts
		grep -F " $3 " /proc/self/mounts | grep -q allow_other
		cmp "$4/files/100k" "$3/files/100k"
		umount "$3"' _ "$bin" "$img" "$mnt" "$src" || die "mount -t fuse.slimfs failed"
	log "mount -t fuse.slimfs works"
else
	log "no unshare or /sbin/mount.fuse: mount(8) case not run"
fi

# ---- views: hidden entries are absent from lookup and readdir, and logged once
printf '/files/100k\n' >"$TMP/allow"
run "$SLIMFS" build -q -o "$TMP/view.slimfs" --view mini="$TMP/allow" "$src"
slimfs_mount --view mini "$TMP/view.slimfs" "$mnt" 2>"$TMP/view.log"
cmp "$src/files/100k" "$mnt/files/100k" || die "view: visible file differs"
[ ! -e "$mnt/files/1m-plus-1" ] || die "view: hidden file is visible"
[ ! -e "$mnt/files/1m-plus-1" ] || die "view: hidden file is visible"
ls "$mnt/files" | grep -qx 1m-plus-1 && die "view: readdir shows a hidden file"
slimfs_umount "$mnt"
[ "$(grep -c 'hidden by view mini: /files/1m-plus-1$' "$TMP/view.log")" = 1 ] ||
	die "view: expected one 'hidden by view' line, log: $(cat "$TMP/view.log")"
slimfs_mount --view full "$TMP/view.slimfs" "$mnt"
cmp "$src/files/1m-plus-1" "$mnt/files/1m-plus-1" || die "view full: file differs"
slimfs_umount "$mnt"
log "views hide and log"

# ---- corrupt image data: the file on that chunk gives EIO, others read fine
bad=$TMP/bad.slimfs
cp "$img" "$bad"
data_off=$("$PYTHON" -c 'import struct,sys; print(struct.unpack_from("<Q", open(sys.argv[1],"rb").read(80), 72)[0])' "$bad")
data_size=$("$PYTHON" -c 'import struct,sys; print(struct.unpack_from("<Q", open(sys.argv[1],"rb").read(88), 80)[0])' "$bad")
flip=$((data_off + data_size / 2))
"$PYTHON" -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^0x40]))' "$bad" $flip
slimfs_mount "$bad" "$mnt"
read -r ok eio < <(read_all_or_eio "$src" "$mnt") || die "reading the corrupt image"
[ "$eio" -ge 1 ] || die "a flipped byte at $flip gave no EIO"
[ "$ok" -ge 10 ] || die "only $ok files readable next to a corrupt chunk"
log "corrupt chunk: $eio files EIO, $ok files fine"
slimfs_umount "$mnt"

# ---- disk cache: filled, then a corrupt entry is detected, removed and refetched
cache=$TMP/cache
slimfs_mount --cache "$cache" --cache-size 64M "$img" "$mnt"
compare_trees "$src" "$mnt"
slimfs_umount "$mnt"
n=$(find "$cache/chunks" -type f | wc -l)
[ "$n" -ge 2 ] || die "disk cache has $n entries after a full read"
victim=$(find "$cache/chunks" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
"$PYTHON" -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(10); b=f.read(1); f.seek(10); f.write(bytes([b[0]^1]))' "$victim"
[ "$(sha256sum <"$victim" | cut -c1-64)" != "$(basename "$victim")" ] || die "flip did not change the entry"
slimfs_mount --cache "$cache" "$img" "$mnt"
compare_trees "$src" "$mnt"
slimfs_umount "$mnt"
[ -f "$victim" ] || die "corrupt entry was not stored again"
for f in $(find "$cache/chunks" -type f); do
	[ "$(sha256sum <"$f" | cut -c1-64)" = "$(basename "$f")" ] || die "disk cache entry $f does not match its digest"
done
# A tiny bound: eviction keeps the cache near it, reads still right.
slimfs_mount --cache "$cache" --cache-size 256K --mem-cache 1M "$img" "$mnt"
run pread_check "$src" "$mnt"
slimfs_umount "$mnt"
sz=$(find "$cache/chunks" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
[ "$sz" -le $((256 * 1024)) ] || die "disk cache holds $sz bytes with a 256K bound"
log "PASS"
