#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# slimfs bench on a real image over HTTP with an emulated link: a Debian
# rootfs (tests/rootfs.sh) with a minimal view for python3, served by nginx on
# loopback.
#   - full vs lazy: full fetched every chunk and took at least data/rate; lazy
#     fetched much less; both ran python3 in every run
#   - --record: a traced run becomes a profile; the profile mode then makes
#     fewer requests than lazy (with mount --prefetch-profile when this slimfs
#     has it, else through an image built with that profile: build --profile)
#   - --ready: the clock stops at the line, far below the command's 600 s
#     sleep, and nothing of the command is left afterwards
#   - --chart writes an SVG that parses as XML; --markdown writes a table
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"
. "$SRCDIR/servers.sh"

need_fuse
need_slimfs
need_cmd nginx chroot
make_tmp

tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
allow=$SRCDIR/../bench/python.allow
[ -f "$allow" ] || die "missing $allow"
mkdir -p "$TMP/www" "$TMP/work"
build_image() { # OUTPUT [build options...]
	local out=$1
	shift
	run "$SLIMFS" build -q -o "$out" --entrypoint /usr/bin/python3 --view minimal="$allow" "$@" "$tarball"
}
build_image "$TMP/www/img.slimfs"
start_nginx "$TMP/www" >"$TMP/base" # not in $(...): its stop hook would be lost
base=$(cat "$TMP/base")
url=$base/img.slimfs
log "serving $url ($(du -h "$TMP/www/img.slimfs" | cut -f1))"

bench() { "$SLIMFS" bench --workdir "$TMP/work" "$@"; }
# check_json FILE PYTHON: runs PYTHON with j = the parsed FILE; an assert fails the test.
check_json() {
	"$PYTHON" - "$1" "$2" <<'PY' || die "check of $1 failed (see above)"
import json, sys
j = json.load(open(sys.argv[1]))
def summary(mode, field):
    v = j["modes"][mode]["summary"][field]
    assert v is not None, f"{mode}: no {field}"
    return v["median"]
exec(sys.argv[2])
PY
}

# ---- full vs lazy, emulated link
py=(/usr/bin/python3 -c 'import json; print(1)')
t0=$SECONDS
bench "$url" --modes lazy,full --runs 2 --rate 50mbit --rtt 10ms --json -- "${py[@]}" \
	>"$TMP/full.json" 2>"$TMP/full.err" || { cat "$TMP/full.err" >&2; die "bench lazy,full failed"; }
log "lazy,full: $((SECONDS - t0))s"
check_json "$TMP/full.json" '
o = j["options"]
assert o["emulated"] and o["rate_bytes_per_s"] == 6250000, o
assert o["rtt_ms"] == 10, o
rate = o["rate_bytes_per_s"]
for mode in ("lazy", "full"):
    runs = j["modes"][mode]["runs"]
    assert len(runs) == 2 and all(r["ok"] and r["exit_code"] == 0 for r in runs), (mode, runs)
    assert all(r["cache_was_empty"] for r in runs), mode
full = j["modes"]["full"]
for r in full["runs"]:
    assert r["chunks_fetched"] == j["chunks"], ("full did not fetch every chunk", r["chunks_fetched"], j["chunks"])
    assert r["bytes_fetched"] >= j["data_size"], ("full fetched less than the data", r["bytes_fetched"], j["data_size"])
    assert r["time_s"] >= 0.97 * r["bytes_fetched"] / rate, ("faster than the link", r["time_s"], r["bytes_fetched"] / rate)
    assert r["pull_s"] is not None and r["pull_s"] < r["time_s"]
lazy_b, full_b = summary("lazy", "bytes_fetched"), summary("full", "bytes_fetched")
assert lazy_b < full_b / 4, ("lazy fetched too much", lazy_b, full_b)
assert summary("lazy", "share") < 0.5
assert summary("lazy", "time_s") < summary("full", "time_s")
lt, ft = summary("lazy", "time_s"), summary("full", "time_s")
print("lazy %d B in %.2f s, full %d B in %.2f s (link: %.2f s for the image)" % (lazy_b, lt, full_b, ft, j["size"] / rate))
'
grep -q emulated "$TMP/full.err" || die "bench did not say the link is emulated"

# ---- --record: a profile, and what it buys
t0=$SECONDS
bench "$url" --record --profile-out "$TMP/profile" --modes lazy,profile --runs 2 --rtt 10ms \
	--markdown -- "${py[@]}" >"$TMP/record.md" 2>"$TMP/record.err" ||
	{ cat "$TMP/record.err" >&2; die "bench --record failed"; }
log "--record lazy,profile: $((SECONDS - t0))s"
grep -q '^# slimfs-profile' "$TMP/profile" || die "--profile-out did not write a profile"
grep -q '^#@chunk ' "$TMP/profile" || die "the recorded profile has no chunks"
grep -q '^/usr/bin/python3' "$TMP/profile" || die "the recorded profile lacks /usr/bin/python3"
grep -q '^| lazy ' "$TMP/record.md" || die "--markdown: no lazy row in: $(cat "$TMP/record.md")"
grep -q '^| profile ' "$TMP/record.md" || die "--markdown: no profile row"
bench "$url" --record --modes lazy,profile --runs 2 --rtt 10ms --json -- "${py[@]}" \
	>"$TMP/record.json" 2>"$TMP/record.err" || die "bench --record --json failed"
prof_json=$TMP/record.json
check_json "$prof_json" '
lazy, prof = summary("lazy", "requests"), summary("profile", "requests")
assert prof < lazy, ("profile did not save requests", prof, lazy)
assert j["modes"]["profile"]["summary"]["runs_ok"] == 2
print("requests: lazy %d, profile %d; time lazy %.2f s, profile %.2f s" % (lazy, prof, summary("lazy", "time_s"), summary("profile", "time_s")))
'

# ---- --ready: the clock stops at the line, the command is stopped
marker="bench-cmd-$$-$RANDOM"
t0=$SECONDS
bench "$url" --modes lazy --runs 2 --ready '^READY$' --json --chart "$TMP/chart.svg" -- \
	/usr/bin/python3 -c "import time; print('READY', flush=True); time.sleep(600); print('$marker')" \
	>"$TMP/ready.json" 2>"$TMP/ready.err" || { cat "$TMP/ready.err" >&2; die "bench --ready failed"; }
took=$((SECONDS - t0))
log "--ready: $took s"
[ $took -lt 60 ] || die "bench --ready took $took s: the command was not stopped at the line"
check_json "$TMP/ready.json" '
for r in j["modes"]["lazy"]["runs"]:
    assert r["ok"] and r["ready_matched"] and r["stopped"], r
    assert r["time_s"] < 30, r["time_s"]
assert j["options"]["ready"] == "^READY$"
'
if pgrep -f "$marker" >/dev/null; then
	pgrep -af "$marker" >&2
	die "the command is still running after bench --ready"
fi
"$PYTHON" -c '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
rects = root.findall(".//{http://www.w3.org/2000/svg}rect")
assert len(rects) >= 3, len(rects)
' "$TMP/chart.svg" || die "--chart did not write a valid SVG"

# ---- the scratch directory is gone, nothing is left mounted
leftover=$(find "$TMP/work" -mindepth 1 -maxdepth 1 | head -n 3)
[ -z "$leftover" ] || die "bench left its scratch directory behind: $leftover"
if grep -qF "$TMP/work" /proc/self/mounts; then
	die "bench left mounts behind: $(grep -F "$TMP/work" /proc/self/mounts)"
fi

# ---- usage errors
run_fails "$SLIMFS" bench "$url"
run_fails "$SLIMFS" bench "$url" --modes lazy,bogus -- /bin/true
run_fails "$SLIMFS" bench "$url" --ready '(' -- /bin/true
run_fails "$SLIMFS" bench "$url" --rate fast -- /bin/true
log "pass"
