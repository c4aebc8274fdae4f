#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Offline: `slimfs pull` fills a disk cache with a rootfs image served by
# nginx (index and every chunk, verified); with nginx gone, the image mounts
# from that cache alone: the whole tree compares equal and python3 runs in a
# chroot of it. The cached index is checked against --digest.
. "$SRCDIR/lib.sh"
. "$SRCDIR/servers.sh"
need_fuse
need_slimfs
need_cmd chroot timeout unshare
make_tmp

tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
rootdir=$("$SRCDIR/rootfs.sh" --dir) || die "tests/rootfs.sh --dir failed"
mkdir -p "$TMP/www"
run "$SLIMFS" build -q -o "$TMP/www/rootfs.slimfs" "$tarball"
digest=$("$SLIMFS" inspect --json "$TMP/www/rootfs.slimfs" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
start_nginx "$TMP/www" >"$TMP/url"
url=$(cat "$TMP/url")/rootfs.slimfs
cache=$TMP/cache

# A pull with a wrong pinned digest fetches nothing and fails.
run_fails "$SLIMFS" pull -q --cache "$cache" --digest "sha256:$(printf '%064d' 0)" "$url"

t0=$(date +%s%N)
out=$("$SLIMFS" pull --no-progress --cache "$cache" --digest "$digest" "$url") || die "pull failed"
log "$out ($((($(date +%s%N) - t0) / 1000000)) ms)"
requests=$(awk '$9 == 206' "$NGINX_LOG" | wc -l)
chunks=$("$SLIMFS" inspect --json "$TMP/www/rootfs.slimfs" |
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["chunks"]["count"])')
log "pull: $requests range requests for $chunks chunks"
[ "$requests" -lt $((chunks / 4)) ] ||
	die "pull made $requests requests for $chunks chunks: not coalesced"
# A second pull finds everything and fetches no chunk.
out=$("$SLIMFS" pull --no-progress --cache "$cache" "$url") || die "second pull failed"
case $out in *", 0 fetched"*) ;; *) die "second pull fetched again: $out" ;; esac

# The server goes away.
kill "$(cat "$(dirname "$NGINX_LOG")/nginx.pid")"
port=${url#http://127.0.0.1:}
port=${port%%/*}
for _ in $(seq 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
	sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && die "nginx still listens"
run_fails "$SLIMFS" inspect "$url"

mnt=$TMP/mnt
# The cached index must match a pinned digest.
run_fails "$SLIMFS" mount -f --cache "$cache" --view full --digest "sha256:$(printf '%064d' 0)" "$url" "$mnt"
slimfs_mount --cache "$cache" --view full --digest "$digest" "$url" "$mnt"
offline=$("$SLIMFS" stats --json "$mnt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mount"]["offline"])')
[ "$offline" = 1 ] || die "stats do not say offline"
compare_trees "$rootdir" "$mnt"

in_root() {
	timeout 120 unshare --mount --propagation private /bin/sh -c '
		mnt=$1; shift
		mount --rbind /dev "$mnt/dev" && mount -t proc proc "$mnt/proc" &&
		exec chroot "$mnt" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \
			LANG=C.UTF-8 HOME=/root "$@"' in_root "$mnt" "$@"
}
out=$(in_root python3 -c 'import json, sqlite3; print(json.dumps([1]))') || die "chroot python3 failed"
[ "$out" = "[1]" ] || die "chroot python3 printed '$out'"
stats=$("$SLIMFS" stats --json "$mnt")
python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["fetch"]["requests"] == 0, d["fetch"]
assert d["fs"]["read_errors"] == 0, d["fs"]
assert d["cache"]["disk_hits"] > 0, d["cache"]
' "$stats" || die "offline stats are off: $stats"
slimfs_umount "$mnt"
log "ok"
