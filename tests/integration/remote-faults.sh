#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A misbehaving HTTP server (tests/faultserver.py): every kind of fault costs
# the reader an EIO within the configured timeout (plus 2 s), never a hang or
# wrong bytes; the daemon stays up, and once the server answers correctly the
# same reads succeed (errors are not cached). A corrupt chunk is not logged on
# every request.
. "$SRCDIR/lib.sh"
. "$SRCDIR/servers.sh"
need_fuse
need_slimfs
need_cmd timeout
make_tmp

TIMEOUT=3
# Files of their own chunks: random (incompressible, never deduplicated), a
# few chunks each, one per fault mode; over 256 KiB, so that a miss in one
# does not fetch the next ones ahead (miss-ahead's directory sweep takes
# files of up to 256 KiB): each file's first read is its mode's.
python3 - "$TMP/src" <<'PY'
import os, random, sys
rnd = random.Random(11)
root = sys.argv[1]
os.makedirs(root + "/d")
for i in range(12):
    with open("%s/d/f%02d" % (root, i), "wb") as f:
        f.write(bytes(rnd.getrandbits(8) for _ in range(300 * 1024 + i * 4096)))
PY
run "$SLIMFS" build -q -o "$TMP/image.slimfs" "$TMP/src"
modefile=$TMP/mode
echo ok >"$modefile"
start_faultserver "$TMP/image.slimfs" "$modefile" >"$TMP/url"
url=$(cat "$TMP/url")
(cd "$TMP/src" && ls d/*) >"$TMP/files"
modes=(500 404 416 short wrong reset stall norange)

mnt=$TMP/mnt
# The daemon's log goes to daemon.log too (log lines are counted below).
slimfs_mount --cache none --mem-cache 1M --prefetch none --timeout "$TIMEOUT" --retries 2 \
	"$url" "$mnt" 2> >(tee "$TMP/daemon.log" >&2)
pid=$MOUNT_PID

i=0
for mode in "${modes[@]}"; do
	i=$((i + 1))
	f=$(sed -n "${i}p" "$TMP/files")
	echo "$mode" >"$modefile"
	if [ "$mode" = stall ]; then
		# A read stuck on the server holds one worker: the others answer a
		# listing meanwhile (a worker passes the lead on before a read).
		(
			sleep 0.5
			t=$(date +%s%N)
			ls -l "$mnt/d" >/dev/null
			echo $((($(date +%s%N) - t) / 1000000)) >"$TMP/ls_ms"
		) &
		lister=$!
	fi
	t0=$(date +%s%N)
	rc=0
	timeout $((TIMEOUT * 4 + 10)) cat "$mnt/$f" >"$TMP/out" 2>"$TMP/err" || rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	if [ "$mode" = stall ]; then
		wait "$lister" || die "mode stall: listing $mnt/d failed"
		ls_ms=$(cat "$TMP/ls_ms")
		[ "$ls_ms" -lt 1500 ] ||
			die "mode stall: listing $mnt/d took $ls_ms ms while a read waited for the server"
		log "mode stall: listing $mnt/d took $ls_ms ms while a read waited"
	fi
	[ $rc != 124 ] || die "mode $mode: reading $f hung (killed after $((TIMEOUT * 4 + 10)) s)"
	[ $rc != 0 ] || die "mode $mode: reading $f succeeded"
	grep -q "Input/output error" "$TMP/err" || die "mode $mode: expected EIO, got: $(cat "$TMP/err")"
	[ $ms -le $(((TIMEOUT + 2) * 1000)) ] || die "mode $mode: EIO after $ms ms (timeout ${TIMEOUT}s)"
	# Whatever came out before the error is a correct prefix, never wrong bytes.
	size=$(stat -c %s "$TMP/out")
	cmp -s -n "$size" "$TMP/out" "$TMP/src/$f" || die "mode $mode: wrong bytes from $f"
	kill -0 "$pid" 2>/dev/null || die "mode $mode: the daemon died"
	log "mode $mode: EIO after $ms ms, $size bytes before it, all correct"

	# The server is back: after the short hold-off of a failed chunk, the same read works.
	# (1 s; a loaded machine may need a little more, so up to 6 s, and never wrong bytes).
	echo ok >"$modefile"
	back=0
	for _ in $(seq 12); do
		sleep 0.5
		if cat "$mnt/$f" >"$TMP/out" 2>/dev/null; then
			back=1
			break
		fi
	done
	[ $back = 1 ] || die "mode $mode: $f still unreadable 6 s after the server is back"
	cmp "$TMP/src/$f" "$TMP/out" || die "mode $mode: wrong bytes from $f once the server is back"
done

# Slow answers are answers.
i=$((i + 1))
f=$(sed -n "${i}p" "$TMP/files")
echo slow >"$modefile"
cmp "$TMP/src/$f" "$mnt/$f" || die "mode slow: $f differs"
echo ok >"$modefile"

# A chunk that keeps failing verification is not logged (nor refetched) per request.
log_before=$(grep -c "failed verification" "$TMP/daemon.log" || true)
f=$(sed -n "$((i + 1))p" "$TMP/files")
[ -n "$f" ] || f=$(sed -n 1p "$TMP/files")
echo wrong >"$modefile"
for _ in $(seq 20); do
	cat "$mnt/$f" >/dev/null 2>&1 && die "a read of $f succeeded with a server that sends wrong bytes"
done
echo ok >"$modefile"
sleep 0.5
log_after=$(grep -c "failed verification" "$TMP/daemon.log" || true)
lines=$((log_after - log_before))
# Per chunk once a minute, plus at most one EIO line a second (a file of 3 chunks).
[ $lines -le 8 ] || die "20 reads of a corrupt chunk wrote $lines log lines"
log "20 reads of a corrupt chunk: $lines log lines"

stats=$("$SLIMFS" stats --json "$mnt") || die "slimfs stats failed"
python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["fetch"]["errors"] > 0, d["fetch"]
assert d["verify"]["failed"] > 0, d["verify"]
assert d["fs"]["read_errors"] > 0, d["fs"]
print("stats: %d fetch errors, %d verification failures, %d read errors" %
      (d["fetch"]["errors"], d["verify"]["failed"], d["fs"]["read_errors"]))
' "$stats" >&2 || die "stats do not show the faults: $stats"
slimfs_umount "$mnt"
log "ok"
