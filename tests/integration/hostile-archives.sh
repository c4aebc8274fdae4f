#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Hostile tar layers (tests/hostile/mkhostile.py writes them, with what each
# must do): path traversal, writes through symlinks, hardlink escapes,
# whiteout tricks, odd device numbers and sizes, negative times, bad pax
# records, GNU long names, duplicates, type changes across layers, truncation
# at every structure, a zstd bomb (8 GiB of zeros in 256 KiB), a million
# entries in one directory, 10,000 nested directories (tar and directory
# sources). Each case is a clear error or a correct image (`slimfs verify`
# passes and the listed entries read back right); never a crash, a hang, a
# file written outside the case's scratch dir, or a temporary file left.
#
# The heavy inputs are generated once into ${SLIMFS_TEST_CACHE:-/var/cache/slimfs-tests}/hostile.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_slimfs
need_cmd timeout zstd
make_tmp

CACHE=${SLIMFS_TEST_CACHE:-/var/cache/slimfs-tests}/hostile
# A case is a hang when it outlives this. The million-entry case needs ~20 s of
# CPU under ASan, more on a loaded machine: sanitizer builds get more time.
slimfs_libs=$(ldd "$SLIMFS" 2>/dev/null || true)
case "$slimfs_libs" in
*libasan*) CASE_TIMEOUT=${SLIMFS_HOSTILE_TIMEOUT:-400} ;;
*) CASE_TIMEOUT=${SLIMFS_HOSTILE_TIMEOUT:-90} ;;
esac
ESC=slimfs-hostile-escape
cases=$TMP/cases
mkdir -p "$CACHE" 2>/dev/null || CACHE=$TMP/cache
run "$PYTHON" "$SRCDIR/hostile/mkhostile.py" "$cases" --heavy "$CACHE"

# Markers that an escaping entry would create; none may exist before or after.
escape_markers() {
	local d
	for d in / /tmp /var/tmp "$TMP" "$TMP/.." "$cases" "$cases/.." /etc; do
		compgen -G "$d/$ESC*" || true
	done
}
pre=$(escape_markers)
[ -z "$pre" ] || die "escape markers exist before the test (remove them): $pre"

# entry_line IMAGE PATH: the `ls -l` line of PATH, from its parent's listing.
entry_line() {
	local img=$1 path=$2 parent base
	parent=${path%/*}
	base=${path##*/}
	"$SLIMFS" ls -l "$img" "${parent:-/}" | awk -v n="$base" '{
		line = $0
		skip = $5 ~ /,$/ ? 8 : 7 # devices: "major, minor"
		for (i = 0; i < skip; i++) sub(/^[^ ]+ +/, "", line)
		sub(/ -> .*$/, "", line)
		if (line == n) { print; found = 1 }
	} END { exit !found }'
}

check() {
	local img=$1 spec=$2 kind path want got rc
	kind=${spec%%:*}
	spec=${spec#*:}
	path=${spec%%=*}
	want=${spec#*=}
	case $kind in
	has) "$SLIMFS" ls -l "$img" "$path" >/dev/null 2>&1 || { echo "missing: $path"; return 1; } ;;
	not)
		rc=0
		"$SLIMFS" ls -l "$img" "$path" >/dev/null 2>&1 || rc=$?
		[ $rc != 0 ] && [ $rc -lt 128 ] || { echo "present (rc $rc): $path"; return 1; }
		;;
	cat)
		got=$("$SLIMFS" cat "$img" "$path" 2>&1 | head -c ${#want}) || true
		[ "$got" = "$want" ] || { echo "cat $path: '$got', want '$want'"; return 1; }
		;;
	size)
		got=$("$SLIMFS" ls -l "$img" "$path" | awk '{print $5}')
		[ "$got" = "$want" ] || { echo "size of $path: '$got', want $want"; return 1; }
		;;
	type)
		got=$(entry_line "$img" "$path" | cut -c1) || true
		[ "$got" = "$(echo "$want" | sed 's/^f$/-/')" ] || { echo "type of $path: '$got', want $want"; return 1; }
		;;
	*) echo "unknown check '$kind'"; return 1 ;;
	esac
}

n=0 failed=0 refused=0 built=0
declare -a failures=()
while IFS=$'\t' read -r name layers expect checks; do
	[ -n "$name" ] || continue
	[ -z "${SLIMFS_HOSTILE_ONLY:-}" ] || [[ $name == $SLIMFS_HOSTILE_ONLY ]] || continue
	n=$((n + 1))
	work=$TMP/work
	rm -rf "$work"
	mkdir -p "$work/tmpdir" "$work/cwd"
	args=()
	IFS=, read -ra ls_ <<<"$layers"
	for l in "${ls_[@]}"; do
		case $l in @*) args+=("$CACHE/${l#@}") ;; *) args+=("$cases/$l") ;; esac
	done
	t0=$(date +%s.%N)
	rc=0
	(cd "$work/cwd" && TMPDIR=$work/tmpdir timeout -k 5 "$CASE_TIMEOUT" \
		"$SLIMFS" build -q -j 2 -o "$work/out.img" "${args[@]}") \
		>"$work/stdout" 2>"$work/stderr" || rc=$?
	secs=$(echo "$(date +%s.%N) $t0" | awk '{ printf "%.1f", $1 - $2 }')
	why=""
	if [ $rc = 124 ] || [ $rc = 137 ]; then
		why="hang: no result within ${CASE_TIMEOUT}s"
	elif [ $rc -ge 128 ]; then
		why="crash: exit $rc"
	elif [ $rc != 0 ]; then
		refused=$((refused + 1))
		case $expect in
		ok) why="refused a valid input: $(head -c 300 "$work/stderr")" ;;
		fail:*)
			grep -qF -- "${expect#fail:}" "$work/stderr" ||
				why="message lacks '${expect#fail:}': $(head -c 300 "$work/stderr")"
			;;
		esac
		grep -q 'error' "$work/stderr" || why="failed without an error message"
		[ ! -e "$work/out.img" ] || why="failed but left $work/out.img"
	else
		built=$((built + 1))
		case $expect in
		fail:*) why="built an image, must fail with '${expect#fail:}'" ;;
		*)
			if ! out=$("$SLIMFS" verify -q "$work/out.img" 2>&1); then
				why="verify failed: $(echo "$out" | head -c 300)"
			else
				IFS=';' read -ra cs <<<"$checks"
				for c in "${cs[@]}"; do
					[ -n "$c" ] || continue
					out=$(check "$work/out.img" "$c" 2>&1) || { why="check $c: $out"; break; }
				done
			fi
			;;
		esac
	fi
	left=$(find "$work/tmpdir" "$work/cwd" -mindepth 1 | head -n 3)
	[ -z "$left" ] || why="${why:+$why; }left behind: $left"
	esc=$(escape_markers)
	[ -z "$esc" ] || why="${why:+$why; }WROTE OUTSIDE: $esc"
	res=$([ $rc = 0 ] && echo built || echo "refused ($(grep -m1 error "$work/stderr" | cut -c1-110))")
	if [ -n "$why" ]; then
		log "FAIL $name: $why"
		failures+=("$name")
		failed=$((failed + 1))
	else
		log "ok   $name (${secs}s): $res"
	fi
done <"$cases/cases.tsv"

# The directory source of the same depth (index/ingest_dir.c + tree_set_at).
if [ -z "${SLIMFS_HOSTILE_ONLY:-}" ] || [[ deep-10000-dir == $SLIMFS_HOSTILE_ONLY ]]; then
	n=$((n + 1))
	deep=$CACHE/deep-dir-v2
	if [ ! -e "$deep.done" ]; then
		rm -rf "$deep"
		"$PYTHON" - "$deep" <<'PY'
import os, sys
os.makedirs(sys.argv[1])
os.chdir(sys.argv[1])
# files only down to level 1000: deeper, their full path would pass PATH_MAX,
# which the writer (opening files by path) cannot open
for i in range(10000):
    os.mkdir("d")
    os.chdir("d")
    if i % 100 == 99 and i < 1000:
        open("f", "w").write("L%d\n" % (i + 1))
PY
		touch "$deep.done"
	fi
	work=$TMP/work
	rm -rf "$work"
	mkdir -p "$work/tmpdir"
	t0=$SECONDS
	rc=0
	TMPDIR=$work/tmpdir timeout 60 "$SLIMFS" build -q -o "$work/out.img" "$deep" 2>"$work/stderr" || rc=$?
	if [ $rc = 0 ]; then
		if ! "$SLIMFS" verify -q "$work/out.img" >/dev/null 2>&1; then
			log "FAIL deep-10000-dir: verify"
			failed=$((failed + 1))
		elif ! out=$(check "$work/out.img" "cat:$(printf 'd/%.0s' $(seq 1000))f=L1000"); then
			log "FAIL deep-10000-dir: $out"
			failed=$((failed + 1))
		else
			log "ok   deep-10000-dir ($((SECONDS - t0))s): built"
		fi
	else
		log "FAIL deep-10000-dir: exit $rc: $(head -c 300 "$work/stderr")"
		failed=$((failed + 1))
	fi
	[ $((SECONDS - t0)) -le 20 ] || { log "FAIL deep-10000-dir: took $((SECONDS - t0))s"; failed=$((failed + 1)); }
fi

log "$n cases: $built built, $refused refused, $failed failed"
[ $failed = 0 ] || die "failed cases: ${failures[*]}"
