#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Hostile and broken sources (tests/data/should-fail-*, written by
# tests/mkbad.py) must make `slimfs build` fail: non-zero exit (not a
# crash), an error message naming the bad entry, no image and no temporary
# file left behind (TMPDIR points into the scratch dir, so a leaked spool
# file would show up there too).
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_slimfs
make_tmp

data=$SRCDIR/data
# fixture | text the error message must contain
cases=(
	"should-fail-truncated.tar|truncated-file"
	"should-fail-corrupt.tar.gz|should-fail-corrupt.tar.gz"
	"should-fail-dotdot.tar|../escape"
	"should-fail-dotdot-mid.tar|a/../../escape-mid"
	"should-fail-hardlink-missing.tar|link-to-nothing"
	"should-fail-hardlink-dotdot.tar|link-up"
	"should-fail-symlink-dir.tar|d/passwd"
	"should-fail-huge-size.tar|huge-file"
	"should-fail-long-name.tar|longdir/nnnnnnnn"
	"should-fail-whiteout-root.tar|.wh.."
	"should-fail-oci-digest|digest mismatch"
)

# Every fixture in tests/data has a case, and every case a fixture.
for f in "$data"/should-fail-*; do
	name=$(basename "$f")
	found=0
	for c in "${cases[@]}"; do
		[ "${c%%|*}" = "$name" ] && found=1
	done
	[ $found = 1 ] || die "fixture $name has no case in $TEST_NAME.sh"
done

failed=0
for c in "${cases[@]}"; do
	fixture=$data/${c%%|*}
	want=${c#*|}
	work=$TMP/work
	rm -rf "$work"
	mkdir -p "$work/tmpdir"
	[ -e "$fixture" ] || die "missing fixture $fixture (run tests/mkbad.py)"

	rc=0
	TMPDIR=$work/tmpdir "$SLIMFS" build -o "$work/out.img" "$fixture" \
		>"$TMP/stdout" 2>"$TMP/stderr" || rc=$?
	name=$(basename "$fixture")
	if [ $rc = 0 ]; then
		log "$name: build succeeded, should have failed"
		failed=1
	elif [ $rc -ge 128 ]; then
		log "$name: build died from a signal (exit $rc)"
		failed=1
	elif ! grep -qF -- "$want" "$TMP/stderr"; then
		log "$name: error message does not mention '$want':"
		sed 's/^/    /' "$TMP/stderr" >&2
		failed=1
	fi
	left=$(cd "$work" && find . -mindepth 1 ! -path ./tmpdir | head -n 5)
	left_tmp=$(find "$work/tmpdir" -mindepth 1 | head -n 5)
	if [ -n "$left" ] || [ -n "$left_tmp" ]; then
		log "$name: files left behind: $left $left_tmp"
		failed=1
	fi
	[ $failed = 1 ] || log "$name: refused ($(head -n 1 "$TMP/stderr" | cut -c1-160))"
	[ $failed = 0 ] || die "$name"
done
log "all ${#cases[@]} fixtures refused"
