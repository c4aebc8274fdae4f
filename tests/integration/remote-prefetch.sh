#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Prefetch at mount: an image built with a profile (traced from a run that
# reads a few files) is served by nginx; at mount the profile's chunks are
# fetched in a few large range requests, the stats say so, and reading those
# files afterwards costs no request at all. Then `--prefetch all` with a disk
# cache: after the prefetch, the whole tree reads without a request. The
# stats' byte and request counts match nginx's access log.
. "$SRCDIR/lib.sh"
. "$SRCDIR/servers.sh"
need_fuse
need_slimfs
make_tmp

python3 "$SRCDIR/gendir.py" --seed 5 "$TMP/src" >/dev/null
mkdir -p "$TMP/www"
run "$SLIMFS" build -q -o "$TMP/plain.slimfs" "$TMP/src"
(cd "$TMP/src" && find . -type f | sort | awk 'NR % 9 == 1' | sed -n 1,40p) >"$TMP/workload"
[ -s "$TMP/workload" ] || die "no files for the workload"

wait_prefetch() {
	local i
	for i in $(seq 300); do
		[ "$(stat_of "$1" prefetch finished)" = 1 ] && return 0
		sleep 0.1
	done
	die "prefetch did not finish in 30 s"
}
nginx_206() { awk '$9 == 206' "$NGINX_LOG" | wc -l; }
nginx_bytes() { awk '$9 == 206 { n += $10 } END { print n + 0 }' "$NGINX_LOG"; }

# Trace the workload on the plain image, make a profile, build with it.
slimfs_mount --view full --trace "$TMP/trace" "$TMP/plain.slimfs" "$TMP/mnt"
while read -r f; do cat "$TMP/mnt/$f" >/dev/null; done <"$TMP/workload"
slimfs_umount "$TMP/mnt"
run "$SLIMFS" profile -q -o "$TMP/profile" "$TMP/trace"
run "$SLIMFS" build -q --profile "$TMP/profile" -o "$TMP/www/tree.slimfs" "$TMP/src"
log "built with a profile"
start_nginx "$TMP/www" >"$TMP/url"
url=$(cat "$TMP/url")/tree.slimfs

slimfs_mount --cache none --view full "$url" "$TMP/mnt"
wait_prefetch "$TMP/mnt"
planned=$(stat_of "$TMP/mnt" prefetch planned_chunks)
loaded=$(stat_of "$TMP/mnt" prefetch loaded_chunks)
requests=$(stat_of "$TMP/mnt" fetch requests)
log "prefetch: $loaded of $planned planned chunks loaded; $requests requests so far"
[ "$planned" -gt 0 ] || die "the image has no prefetch list"
[ "$loaded" = "$planned" ] || die "prefetch loaded $loaded of $planned chunks"
[ "$requests" -le 4 ] || die "prefetch of $planned chunks took $requests requests (index included)"
before=$(nginx_206)
while read -r f; do
	cmp "$TMP/src/$f" "$TMP/mnt/$f" || die "$f differs"
done <"$TMP/workload"
after=$(nginx_206)
[ "$after" = "$before" ] || die "reading the profiled files made $((after - before)) requests"
log "the profiled files read with no request"
slimfs_umount "$TMP/mnt"

# --prefetch all, into a disk cache: then the whole tree costs no request.
slimfs_mount --cache "$TMP/cache" --prefetch all --view full "$url" "$TMP/mnt"
wait_prefetch "$TMP/mnt"
planned=$(stat_of "$TMP/mnt" prefetch planned_chunks)
total=$("$SLIMFS" inspect --json "$TMP/www/tree.slimfs" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["chunks"]["count"])')
[ "$planned" = "$total" ] || die "prefetch all planned $planned of $total chunks"
before=$(nginx_206)
compare_trees "$TMP/src" "$TMP/mnt"
after=$(nginx_206)
[ "$after" = "$before" ] || die "reading the tree after prefetch all made $((after - before)) requests"

# The stats' figures agree with nginx's access log (the size probe at open,
# which also brings the superblock, included).
json=$("$SLIMFS" stats --json "$TMP/mnt") || die "stats --json failed"
prom=$("$SLIMFS" stats --prometheus "$TMP/mnt") || die "stats --prometheus failed"
grep -q '^slimfs_fetch_bytes_total{mountpoint=' <<<"$prom" || die "no fetch bytes in the Prometheus output"
slimfs_umount "$TMP/mnt"
python3 - "$json" "$(cat "$NGINX_LOG")" <<'PY' || die "stats and the nginx log disagree"
import json, sys
d = json.loads(sys.argv[1])
lines = [l.split() for l in sys.argv[2].splitlines() if l.strip()]
# this mount only: its requests are the last ones in the log
n = d["fetch"]["requests"]
mine = lines[-n:]
assert all(l[8] == "206" for l in mine), mine
got = sum(int(l[9]) for l in mine)
assert got == d["fetch"]["bytes"], (got, d["fetch"])
assert d["verify"]["failed"] == 0 and d["verify"]["ok"] > 0, d["verify"]
for k in ("latency_p50_us", "latency_p90_us", "latency_p99_us"):
    assert d["fetch"][k] > 0, d["fetch"]
assert d["fetch"]["latency_p50_us"] <= d["fetch"]["latency_p90_us"] <= d["fetch"]["latency_p99_us"]
print("stats match nginx: %d requests, %d bytes" % (n, got), file=sys.stderr)
PY
log "ok"
