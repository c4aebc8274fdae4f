#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A live mount changes daemons under its readers (slimfs restart, slimfs
# mount --takeover), none of them noticing:
#  - 4 readers loop over every file (page cache dropped first, so reads reach
#    FUSE) and check its SHA-256, for the whole test;
#  - slimfs restart 3 times: a new daemon each time, the old one gone (the
#    first, our child, with exit 0), the mount still FUSE;
#  - refused or failed, the old daemon serving on: --takeover with an image
#    of another digest, a restart that cannot open the image, a taker that
#    vanishes with the descriptor, restart of a directory that is no slimfs
#    mount, restart of a mount with -o auto_unmount;
#  - slimfs mount --takeover -f (our child again), then umount: it exits 0;
#  - 0 reader errors, every checksum right.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_fuse
need_slimfs
need_cmd timeout
need_cmd sha256sum
make_tmp

src=$TMP/src
mkdir -p "$src/a/b" "$src/c"
head -c $((6 << 20)) /dev/urandom >"$src/big"
for i in $(seq 120); do head -c $((i * 1553)) /dev/urandom >"$src/a/f$i"; done
for i in $(seq 40); do head -c $((i * 9001)) /dev/urandom >"$src/a/b/g$i"; done
for i in $(seq 30); do echo "small $i" >"$src/c/s$i"; done
img=$TMP/img
run "$SLIMFS" build -q -o "$img" "$src"
echo other >"$src/c/extra"
other=$TMP/other
run "$SLIMFS" build -q -o "$other" "$src"
rm "$src/c/extra"
(cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$TMP/sums"
mnt=$TMP/mnt

# reader.py MNT SUMS OUT: passes over every file until OUT.stop exists;
# OUT.pass holds the passes done; OUT gets "ok PASSES" or the first error.
cat >"$TMP/reader.py" <<'PY'
import hashlib, os, sys
mnt, sums, out = sys.argv[1:4]
files = []
with open(sums) as f:
    for line in f:
        h, p = line.rstrip("\n").split("  ", 1)
        files.append((h, os.path.join(mnt, p)))
passes, res = 0, None
try:
    while res is None and not os.path.exists(out + ".stop"):
        for h, p in files:
            os.listdir(os.path.dirname(p))
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                d = hashlib.sha256()
                while True:
                    b = os.read(fd, 1 << 17)
                    if not b:
                        break
                    d.update(b)
            finally:
                os.close(fd)
            if d.hexdigest() != h:
                res = "error checksum %s" % p
                break
        passes += 1
        with open(out + ".pass.tmp", "w") as f:
            f.write("%d\n" % passes)
        os.rename(out + ".pass.tmp", out + ".pass")
except OSError as e:
    res = "error %s %s" % (e.strerror, e.filename)
with open(out, "w") as f:
    f.write((res or "ok %d" % passes) + "\n")
PY

passes() { cat "$1.pass" 2>/dev/null || echo 0; }

# progress: until every reader has made one more whole pass (or ended).
progress() {
	local r before=() i=0 t0=$SECONDS
	for r in "${readers[@]}"; do before+=("$(passes "$r")"); done
	for r in "${readers[@]}"; do
		while [ "$(passes "$r")" -le "${before[i]}" ] && [ ! -e "$r" ]; do
			[ $((SECONDS - t0)) -lt 600 ] || die "reader $r makes no progress"
			sleep 0.2
		done
		[ ! -e "$r" ] || die "reader $r ended: $(cat "$r")"
		i=$((i + 1))
	done
}

# gone PID: until PID is no more (or a zombie).
gone() {
	local t0=$SECONDS st
	while st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) &&
		[ -n "$st" ] && [ "$st" != Z ]; do
		[ $((SECONDS - t0)) -lt 120 ] || die "old daemon $1 still running"
		sleep 0.1
	done
}

fuse_mounted() {
	local magic
	magic=$(stat -f -c %t "$1") || die "stat -f $1 failed"
	[ "$magic" = 65735546 ] || die "$1 is not a FUSE mount (fs magic $magic)"
}

slimfs_mount --threads 4 "$img" "$mnt"
pid=$MOUNT_PID
first=$pid

readers=()
for i in 1 2 3 4; do
	"$PYTHON" "$TMP/reader.py" "$mnt" "$TMP/sums" "$TMP/r$i" &
	readers+=("$TMP/r$i")
done
at_exit 'for r in "${readers[@]}"; do touch "$r.stop"; done'
progress

# --- slimfs restart, 3 times
for n in 1 2 3; do
	out=$("$SLIMFS" restart "$mnt") || die "slimfs restart $mnt failed (round $n)"
	log "restart $n: $out"
	[ "$out" = "$mnt: pid $pid -> ${out##* }" ] || die "restart said '$out', old pid $pid"
	new=${out##* }
	[ "$new" != "$pid" ] || die "restart kept pid $pid"
	kill -0 "$new" 2>/dev/null || die "new daemon $new is not running"
	if [ "$pid" = "$first" ]; then
		rc=0
		timeout 120 tail --pid="$pid" -f /dev/null || die "first daemon $pid did not exit"
		wait "$pid" || rc=$?
		[ $rc = 0 ] || die "the old daemon exited with status $rc after the handover"
		unset "_mount_pids[$mnt]"
	else
		gone "$pid"
	fi
	fuse_mounted "$mnt"
	# The old daemon stood its connection watchdog down (it would abort the
	# connection the new daemon now serves); the new one runs its own.
	pgrep -f -- "__watchdog $pid " >/dev/null && die "the old daemon's watchdog outlived it"
	t0=$SECONDS
	until pgrep -f -- "__watchdog $new " >/dev/null; do
		[ $((SECONDS - t0)) -lt 10 ] || die "new daemon $new has no connection watchdog"
		sleep 0.1
	done
	pid=$new
	progress
done

# --- refusals: the daemon serves on
err=$("$SLIMFS" mount --takeover "$other" "$mnt" 2>&1) &&
	die "takeover with an image of another digest succeeded"
log "other image: $err"
case $err in *"not the mounted one"*) ;; *) die "no reason given: $err" ;; esac
kill -0 "$pid" 2>/dev/null || die "the daemon died on a refused takeover"
fuse_mounted "$mnt"
progress

mv "$img" "$img.away"
err=$("$SLIMFS" restart "$mnt" 2>&1) && die "restart without the image file succeeded"
mv "$img.away" "$img"
log "image gone: $err"
case $err in *"cannot open image"*) ;; *) die "no reason given: $err" ;; esac
kill -0 "$pid" 2>/dev/null || die "the daemon died on a failed restart"
fuse_mounted "$mnt"
progress

# A new daemon that takes the descriptor and vanishes before serving: the
# old one serves on (and its stats socket comes back).
cat >"$TMP/vanish.py" <<'PY'
import socket, struct, sys
ctl, digest = sys.argv[1:3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(ctl)
s.sendall(b"TAKEOVER " + digest.encode() + b"\n")
msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(4))
magic, version, status = struct.unpack_from("<IIi", msg)
fds = [struct.unpack_from("<i", d)[0] for l, t, d in anc if t == socket.SCM_RIGHTS]
print("status %d fds %d" % (status, len(fds)))
s.close()
PY
if [ "$(id -u)" = 0 ]; then
	stats=$("$SLIMFS" stats "$mnt")
	digest=$(printf '%s\n' "$stats" | sed -n 's/^digest[[:space:]]*//p')
	ctl=""
	for f in /run/slimfs/*"${TMP##*.}-mnt.ctl"; do ctl=$f; done
	[ -S "$ctl" ] || die "no control socket for $mnt in /run/slimfs"
	res=$("$PYTHON" "$TMP/vanish.py" "$ctl" "$digest") || die "vanish.py failed"
	[ "$res" = "status 0 fds 1" ] || die "vanishing takeover: $res"
	log "a taker vanished with the descriptor: $res"
	progress
	kill -0 "$pid" 2>/dev/null || die "the daemon died after a vanished takeover"
	stats=$("$SLIMFS" stats "$mnt") || die "no stats socket after a vanished takeover"
fi

mkdir -p "$TMP/plain"
err=$("$SLIMFS" restart "$TMP/plain" 2>&1) && die "restart of a plain directory succeeded"
log "plain directory: $err"
case $err in *"not a FUSE mount"*) ;; *) die "unclear error: $err" ;; esac
err=$("$SLIMFS" mount --takeover "$img" "$TMP/plain" 2>&1) &&
	die "takeover of a plain directory succeeded"
log "plain directory: $err"
case $err in *"no slimfs daemon"*) ;; *) die "unclear error: $err" ;; esac

mnt2=$TMP/mnt2
slimfs_mount -o auto_unmount "$img" "$mnt2"
pid2=$MOUNT_PID
err=$("$SLIMFS" restart "$mnt2" 2>&1) && die "restart of an auto_unmount mount succeeded"
log "auto_unmount: $err"
case $err in *auto_unmount*) ;; *) die "no reason given: $err" ;; esac
kill -0 "$pid2" 2>/dev/null || die "the auto_unmount daemon died"
run cmp "$src/a/f77" "$mnt2/a/f77"
slimfs_umount "$mnt2"

# --- explicit --takeover, in the foreground: umount ends it with exit 0
slimfs_mount --takeover --mem-cache 16M "$img" "$mnt"
gone "$pid"
pid=$MOUNT_PID
fuse_mounted "$mnt"
progress

for r in "${readers[@]}"; do touch "$r.stop"; done
wait_readers() {
	local r t0=$SECONDS
	for r in "${readers[@]}"; do
		while [ ! -e "$r" ]; do
			[ $((SECONDS - t0)) -lt 600 ] || die "reader $r did not stop"
			sleep 0.2
		done
	done
}
wait_readers
for r in "${readers[@]}"; do
	res=$(cat "$r")
	log "reader $r: $res"
	case $res in ok*) ;; *) die "reader $r: $res" ;; esac
done
cmp "$src/big" "$mnt/big" || die "big differs"
slimfs_umount "$mnt"
log "ok"
