#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A mount that goes away under its readers must never hang them:
#  (a) lazy unmount (fusermount3 -u -z) while a file is open and being read:
#      the reader finishes (or gets an error) and the daemon then exits 0;
#  (b) kill -9 of the daemon during reads: every reader gets an error
#      (ENOTCONN) within seconds; then slimfs mount on the same mountpoint
#      works again (it cleans the dead mount itself) and reads right;
#  (c) a lazy unmount, then kill -9 during reads of files still open: the
#      readers get an error within seconds too (the watchdog finds the
#      connection by its fusectl directory, not by the gone mount point).
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_fuse
need_slimfs
need_cmd timeout
make_tmp

src=$TMP/src
mkdir -p "$src/many"
head -c $((96 << 20)) /dev/urandom >"$src/big"
for i in $(seq 200); do head -c $((i * 997)) "$src/big" >"$src/many/f$i"; done
img=$TMP/img
run "$SLIMFS" build -q -o "$img" "$src"
mnt=$TMP/mnt

# reader MODE FILE OUT: a python reader that writes OUT.started once reading,
# then prints "done N" or "error ERRNO N" (N reads) to OUT. MODE seq: read FILE
# whole, 3 times over, slowly enough to still be reading when the unmount
# comes; MODE rand: random 64 KiB preads with the file's page cache dropped
# before each, so each read reaches FUSE, for at most 60 s.
cat >"$TMP/reader.py" <<'PY'
import errno, os, random, sys, time
mode, path, out = sys.argv[1:4]
n = 0
res = None
try:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    open(out + ".started", "w").close()
    if mode == "seq":
        for _ in range(3):
            off = 0
            while True:
                b = os.pread(fd, 1 << 20, off)
                if not b:
                    break
                off += len(b)
                n += 1
                time.sleep(0.01)
        res = "done %d" % n
    else:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.pread(fd, 65536, random.randrange(0, size))
            n += 1
        res = "timeout %d" % n
except OSError as e:
    res = "error %s %d" % (errno.errorcode.get(e.errno, str(e.errno)), n)
with open(out, "w") as f:
    f.write(res + "\n")
PY

# wait_started OUT...: until each reader has opened its file (10 s).
wait_started() {
	local f t0=$SECONDS
	for f in "$@"; do
		while [ ! -e "$f.started" ]; do
			[ $((SECONDS - t0)) -lt 10 ] || die "reader $f did not start"
			sleep 0.05
		done
	done
}

# wait_pid PID SECONDS: waits for a background job; dies if it outlives SECONDS.
wait_pid() {
	local pid=$1 limit=$2 t0=$SECONDS
	while kill -0 "$pid" 2>/dev/null; do
		[ $((SECONDS - t0)) -lt "$limit" ] || die "process $pid still running after ${limit}s (hang)"
		sleep 0.05
	done
}

# kill_expect_enotconn WHAT DAEMON: kill -9 of DAEMON; each reader of the arrays
# pids/outs must end with ENOTCONN (no hang) within 10 s; sets ms to the time taken.
kill_expect_enotconn() {
	local what=$1 i rc res t0
	t0=$(date +%s%3N)
	kill -9 "$2"
	for i in "${!pids[@]}"; do
		rc=0
		wait "${pids[i]}" || rc=$?
		[ $rc != 124 ] || die "$what: reader $((i + 1)) hung (killed by timeout)"
		res=$(cat "${outs[i]}")
		case $res in
		"error ENOTCONN "* | "error ECONNABORTED "*) ;;
		*) die "$what: reader $((i + 1)): expected ENOTCONN, got '$res'" ;;
		esac
	done
	ms=$(($(date +%s%3N) - t0))
	[ "$ms" -lt 10000 ] || die "$what: the readers took ${ms} ms to get their errors"
}

# ---- (a) lazy unmount under an open, busy file
slimfs_mount "$img" "$mnt"
daemon=$MOUNT_PID
timeout 20 "$PYTHON" "$TMP/reader.py" seq "$mnt/big" "$TMP/a.out" &
rpid=$!
wait_started "$TMP/a.out"
sleep 0.3
run fusermount3 -u -z "$mnt"
grep -qF " $mnt " /proc/self/mounts && die "$mnt still listed in /proc/self/mounts after a lazy unmount"
rc=0
wait "$rpid" || rc=$?
[ $rc != 124 ] || die "lazy unmount: the reader hung (killed by timeout 20s)"
[ $rc = 0 ] || die "lazy unmount: the reader exited with $rc"
res=$(cat "$TMP/a.out")
case $res in
done*) log "lazy unmount: the reader finished ($res)" ;;
error*) log "lazy unmount: the reader got an error ($res)" ;;
*) die "lazy unmount: unexpected reader result '$res'" ;;
esac
# The last reference is gone: the daemon must notice and exit 0.
wait_pid "$daemon" 20
rc=0
wait "$daemon" || rc=$?
unset "_mount_pids[$mnt]"
[ $rc = 0 ] || die "lazy unmount: the daemon exited with status $rc"
log "lazy unmount: daemon exited 0 after the reader closed the file"
# A clean exit stands the connection watchdog down (and reaps it).
pgrep -f -- "__watchdog $daemon " >/dev/null && die "lazy unmount: the daemon's watchdog outlived it"


# ---- (b) kill -9 of the daemon during reads
# With the default page cache fill (chunk) a daemon killed while the filler
# waits in the kernel on a page a pending read holds cannot finish exiting:
# the connection watchdog must abort the connection (fs/watchdog.h). Its
# messages go to the daemon's stderr.
slimfs_mount "$img" "$mnt" 2>"$TMP/b.log"
daemon=$MOUNT_PID
watchdog=$(pgrep -f -- "__watchdog $daemon ") || die "kill -9: the daemon has no connection watchdog"
pids=()
outs=()
for i in 1 2 3 4; do
	f=$mnt/big
	[ $i -gt 2 ] && f=$mnt/many/f$((i * 50))
	timeout 30 "$PYTHON" "$TMP/reader.py" rand "$f" "$TMP/b$i.out" &
	pids+=($!)
	outs+=("$TMP/b$i.out")
done
wait_started "${outs[@]}"
sleep 0.5
kill_expect_enotconn "kill -9" "$daemon"
log "kill -9: all 4 readers got ENOTCONN within ${ms} ms"
wait_pid "$watchdog" 10
grep -q "died: aborted its FUSE connection" "$TMP/b.log" ||
	die "kill -9: the watchdog did not abort the connection; daemon log: $(cat "$TMP/b.log")"
log "kill -9: the watchdog aborted the connection"
rc=0
wait "$daemon" || rc=$?
[ $rc = 137 ] || die "kill -9: the daemon exited with $rc, expected 137"
unset "_mount_pids[$mnt]"
err=$(stat "$mnt" 2>&1) && die "stat of the dead mount succeeded"
case $err in
*"not connected"*) ;;
*) die "stat of the dead mount: expected ENOTCONN, got: $err" ;;
esac

# The dead mount is still there; `slimfs mount` (background, as a user runs
# it) on the same mountpoint must clean it and mount again.
run "$SLIMFS" mount "$img" "$mnt"
[ "$(stat -f -c %t "$mnt")" = 65735546 ] || die "remount: $mnt is not a FUSE mount"
cmp "$src/big" "$mnt/big" || die "remount: big differs"
cmp "$src/many/f77" "$mnt/many/f77" || die "remount: many/f77 differs"
n=$(awk -v m="$mnt" '$2 == m' /proc/self/mounts | wc -l)
[ "$n" = 1 ] || die "remount: $mnt is mounted $n times"
daemon=$(pgrep -f -- "mount $img $mnt\$") || die "remount: no daemon process found"
run fusermount3 -u "$mnt"
wait_pid "$daemon" 20
grep -qF " $mnt " /proc/self/mounts && die "$mnt still mounted after fusermount3 -u"
log "remount over the dead mount works; pass"

# ---- (c) lazy unmount, then kill -9 while files are still open and read
slimfs_mount "$img" "$mnt" 2>"$TMP/c.log"
daemon=$MOUNT_PID
watchdog=$(pgrep -f -- "__watchdog $daemon ") || die "(c): the daemon has no connection watchdog"
pids=()
outs=()
for i in 1 2 3; do
	timeout 30 "$PYTHON" "$TMP/reader.py" rand "$mnt/big" "$TMP/c$i.out" &
	pids+=($!)
	outs+=("$TMP/c$i.out")
done
wait_started "${outs[@]}"
run fusermount3 -u -z "$mnt"
sleep 0.5
kill_expect_enotconn "lazy unmount + kill -9" "$daemon"
wait_pid "$watchdog" 10
wait "$daemon" || true
unset "_mount_pids[$mnt]"
# Whether the watchdog or the kernel (the daemon's /dev/fuse closed, no store
# stuck) ended the connection first: only the first says so in the log.
if grep -q "died: aborted its FUSE connection" "$TMP/c.log"; then
	how="the watchdog aborted the connection"
else
	how="the kernel ended the connection"
fi
log "lazy unmount + kill -9: all 3 readers got ENOTCONN within ${ms} ms ($how); pass"
