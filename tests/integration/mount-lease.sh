#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A local image under a read lease (fetch.h: slimfs_backend_lease): a frame
# whose SHA-256 matched once is not hashed again while nobody can have
# written the file (verify.frames_reused); a writer that opens the image
# gets it at once (the daemon gives the lease up, it does not wait for
# lease-break-time), and from then on every frame is hashed again, so a byte
# it flips gives EIO, never wrong bytes. The daemon survives the break.
set -e
. "$SRCDIR/lib.sh"
need_fuse
need_slimfs
make_tmp

src=$TMP/src img=$TMP/img.slimfs mnt=$TMP/mnt
mkdir -p "$src"
head -c $((16 << 20)) /dev/urandom >"$src/big"
echo small >"$src/small"
run "$SLIMFS" build -q -o "$img" "$src"

stat_in() {
	"$SLIMFS" stats --json "$mnt" |
		"$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]][sys.argv[2]])' "$1" "$2"
}
# Reads big whole, its page cache dropped first: prints "ok" or "eio"; dies on wrong bytes.
read_big() {
	"$PYTHON" - "$src/big" "$mnt/big" <<'EOF'
import errno, os, sys
want = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
try:
    got = b"".join(os.pread(fd, 1 << 20, off) for off in range(0, len(want), 1 << 20))
except OSError as e:
    if e.errno != errno.EIO:
        sys.exit("big: %s (expected EIO or the right bytes)" % e)
    print("eio")
    sys.exit(0)
if got != want:
    sys.exit("big: wrong bytes")
print("ok")
EOF
}

# A memory cache far smaller than big and no page cache fill: every pass
# decodes most chunks again.
slimfs_mount --mem-cache 1M --page-cache-fill off "$img" "$mnt"
[ "$(read_big)" = ok ] || die "first read of big failed"
[ "$(read_big)" = ok ] || die "second read of big failed"
reused=$(stat_in verify frames_reused)
fs=$(stat -f -c %T "$TMP")
log "two passes over big: $reused frames not hashed again ($fs)"
case "$fs" in
ext2/ext3 | xfs | btrfs | tmpfs | f2fs)
	[ "$reused" -gt 0 ] || die "no frame reused under a lease on $fs" ;;
esac

# A writer: its open must not wait for the lease (45 s by default).
data_off=$("$PYTHON" -c 'import struct,sys; print(struct.unpack_from("<Q", open(sys.argv[1],"rb").read(80), 72)[0])' "$img")
data_size=$("$PYTHON" -c 'import struct,sys; print(struct.unpack_from("<Q", open(sys.argv[1],"rb").read(88), 80)[0])' "$img")
flip=$((data_off + data_size / 2))
ms=$(timeout 60 "$PYTHON" - "$img" $flip <<'EOF'
import sys, time
t0 = time.monotonic()
f = open(sys.argv[1], "r+b")
ms = int((time.monotonic() - t0) * 1000)
o = int(sys.argv[2])
f.seek(o)
b = f.read(1)
f.seek(o)
f.write(bytes([b[0] ^ 0x40]))
f.close()
print(ms)
EOF
) || die "the writer could not open the image"
log "a writer opened the mounted image in $ms ms and flipped a byte"
[ "$ms" -lt 10000 ] || die "the writer waited $ms ms for the lease"

# From now on every frame is hashed: the flipped chunk is EIO, never wrong.
before=$(stat_in verify frames_reused)
[ "$(read_big)" = eio ] || die "a flipped byte in a leased image gave no EIO"
[ "$(stat_in verify failed)" -gt 0 ] || die "no failed verification counted"
[ "$(stat_in verify frames_reused)" = "$before" ] || die "frames reused after the lease broke"
cat "$mnt/small" >/dev/null || die "small unreadable next to the corrupt chunk"
slimfs_umount "$mnt"
log "OK"
