# SPDX-License-Identifier: MIT
# Helpers shared by the integration scripts: source it first thing.
#
#   . "$SRCDIR/lib.sh"
#
# Environment (set by meson test; defaults for running a script by hand):
#   SLIMFS   the slimfs binary        SRCDIR   tests/ of the source tree
#   BUILDDIR tests/ of the build dir  SLIMFS_MUST_MOUNT=1  missing root/FUSE fails
#   SLIMFS_TEST_TMPDIR  where scratch dirs go (default /var/tmp: sparse files,
#                       xattrs and device nodes need a real filesystem)
#   SLIMFS_TEST_KEEP=1  keep the scratch dir after the run (for debugging)
# Exit codes: 0 pass, 1 fail, 77 skipped (meson's convention).

set -euo pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR/../build/tests}
SLIMFS=${SLIMFS:-$BUILDDIR/../slimfs}
TEST_NAME=$(basename "$0" .sh)
PYTHON=${PYTHON:-python3}

log() { printf '%s: [%ds] %s\n' "$TEST_NAME" "$SECONDS" "$*" >&2; }
die() {
	printf '%s: FAIL: %s\n' "$TEST_NAME" "$*" >&2
	exit 1
}
skip() {
	printf '%s: SKIP: %s\n' "$TEST_NAME" "$*" >&2
	exit 77
}
# A missing prerequisite skips, unless the run demands everything (CI).
need_or_skip() {
	if [ "${SLIMFS_MUST_MOUNT:-0}" = 1 ]; then
		die "$* (and SLIMFS_MUST_MOUNT=1 forbids skipping)"
	fi
	skip "$*"
}
need_root() {
	[ "$(id -u)" = 0 ] || need_or_skip "needs root"
}
need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || need_or_skip "needs the command '$c'"
	done
}
need_fuse() {
	need_root
	[ -c /dev/fuse ] || need_or_skip "needs /dev/fuse"
	need_cmd fusermount3
	grep -qw fuse /proc/filesystems || need_or_skip "the kernel has no FUSE filesystem"
}
need_slimfs() {
	[ -x "$SLIMFS" ] || die "SLIMFS=$SLIMFS is not an executable"
}

# Run a command; on failure die with the command line and its exit code.
run() {
	local rc=0
	"$@" || rc=$?
	[ $rc = 0 ] || die "command failed (exit $rc): $*"
}
# Run a command that must fail (any non-zero exit that is not a crash).
run_fails() {
	local rc=0
	"$@" >/dev/null 2>&1 || rc=$?
	[ $rc != 0 ] || die "command succeeded but should have failed: $*"
	[ $rc -lt 128 ] || die "command died from a signal (exit $rc): $*"
}

# ---------------------------------------------------------------- cleanup
_cleanup_hooks=()
# at_exit 'shell words': run at exit, last registered first.
at_exit() { _cleanup_hooks+=("$1"); }
_on_exit() {
	local rc=$? i
	set +e
	for ((i = ${#_cleanup_hooks[@]} - 1; i >= 0; i--)); do
		eval "${_cleanup_hooks[i]}"
	done
	if [ -n "${TMP:-}" ] && [ -d "$TMP" ]; then
		if [ "${SLIMFS_TEST_KEEP:-0}" = 1 ] || { [ $rc != 0 ] && [ "${SLIMFS_TEST_KEEP:-0}" = fail ]; }; then
			log "kept scratch dir $TMP"
		else
			rm -rf "$TMP"
		fi
	fi
	exit $rc
}
trap _on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# make_tmp: creates $TMP, removed at exit (with anything mounted below it unmounted first).
make_tmp() {
	local base=${SLIMFS_TEST_TMPDIR:-/var/tmp}
	TMP=$(mktemp -d "$base/slimfs-$TEST_NAME.XXXXXX")
	at_exit '_umount_below "$TMP"'
}

# ------------------------------------------------------------ tree compare
dumpdir() { "$PYTHON" "$SRCDIR/dumpdir.py" "$@"; }

# show_diff A B [LINES]: the start of a unified diff, on stderr (never fails).
show_diff() { diff -u "$1" "$2" | head -n "${3:-60}" >&2 || true; }

# compare_dumps EXPECTED_DUMP ACTUAL_DUMP WHAT: dies with a diff excerpt when they differ.
compare_dumps() {
	cmp -s "$1" "$2" && return 0
	show_diff "$1" "$2"
	die "$3 ($(diff "$1" "$2" | grep -c '^[<>]' || true) differing lines)"
}

# compare_trees EXPECTED ACTUAL [dumpdir options...]: dies with a diff excerpt on a difference.
compare_trees() {
	local a=$1 b=$2 out
	shift 2
	out=$(mktemp -d "${TMP:-/tmp}/cmp.XXXXXX")
	dumpdir "$@" "$a" >"$out/expected" || die "dumpdir $a failed"
	dumpdir "$@" "$b" >"$out/actual" || die "dumpdir $b failed"
	compare_dumps "$out/expected" "$out/actual" "trees differ: $a (expected) vs $b"
	log "trees equal: $a = $b ($(wc -l <"$out/expected") entries)"
	rm -rf "$out"
}

# GNU tar with every piece of metadata slimfs keeps, as the tests use it.
tar_full() {
	tar --xattrs --xattrs-include='*' --sparse --numeric-owner --format=pax --sort=name \
		--pax-option=delete=atime,delete=ctime "$@"
}

# stat_of MNT SECTION KEY: a counter of `slimfs stats --json MNT`.
stat_of() {
	"$SLIMFS" stats --json "$1" | "$PYTHON" -c \
		'import json,sys; print(json.load(sys.stdin)[sys.argv[1]][sys.argv[2]])' "$2" "$3"
}

# profile_reading IMAGE REL OUT: a profile (slimfs profile) of reading REL
# whole from IMAGE, traced through a mount at $TMP/mnt.
profile_reading() {
	slimfs_mount --cache none --prefetch none --view full --trace "$TMP/trace" "$1" "$TMP/mnt"
	cat "$TMP/mnt/$2" >/dev/null
	slimfs_umount "$TMP/mnt"
	run "$SLIMFS" profile -q -o "$3" "$TMP/trace"
}

# settle_loads MNT: waits until the prefetch plan is done and the chunks loaded
# stop changing (background requests), 10 s at most.
settle_loads() {
	local i a b
	a=$(stat_of "$1" cache mem_misses)
	for i in $(seq 50); do
		sleep 0.2
		b=$(stat_of "$1" cache mem_misses)
		[ "$a" = "$b" ] && [ "$(stat_of "$1" prefetch finished)" = 1 ] && return 0
		a=$b
	done
	die "chunks loaded still changing after 10 s"
}

# ------------------------------------------------------------------ mounts
# slimfs_mount [MOUNT OPTIONS...] IMAGE MNT: starts the daemon in the foreground
# (in the background of this shell), waits for READY on its ready fd, checks
# that MNT is a FUSE mount. Sets MOUNT_PID. Timeout: SLIMFS_MOUNT_TIMEOUT (30 s).
declare -A _mount_pids=()
declare -A _mount_bg=()
slimfs_mount() {
	local n=$# img=${*: -2:1} mnt=${*: -1} fifo line="" t0 pid
	[ $n -ge 2 ] || die "slimfs_mount: needs IMAGE MNT"
	local timeout=${SLIMFS_MOUNT_TIMEOUT:-30}
	mkdir -p "$mnt"
	fifo=$(mktemp -u "${TMP:-/tmp}/ready.XXXXXX")
	mkfifo "$fifo"
	# Opened read-write so neither side blocks on open; the daemon gets it as fd 3.
	exec {_rfd}<>"$fifo"
	"$SLIMFS" mount -f --ready-fd 3 "${@:1:n-2}" "$img" "$mnt" 3>"$fifo" {_rfd}<&- &
	pid=$!
	_mount_pids[$mnt]=$pid
	at_exit "_force_umount '$mnt' $pid"
	t0=$SECONDS
	while :; do
		if read -r -t 1 -u "$_rfd" line; then
			break
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			local rc=0
			wait "$pid" || rc=$?
			exec {_rfd}<&-
			die "slimfs mount $img $mnt exited (status $rc) before READY"
		fi
		if [ $((SECONDS - t0)) -ge "$timeout" ]; then
			exec {_rfd}<&-
			die "slimfs mount $img $mnt: no READY within ${timeout}s"
		fi
	done
	exec {_rfd}<&-
	rm -f "$fifo"
	[ "$line" = READY ] || die "slimfs mount: expected READY on the ready fd, got '$line'"
	local magic
	magic=$(stat -f -c %t "$mnt") || die "stat -f $mnt failed"
	[ "$magic" = 65735546 ] || die "$mnt is not a FUSE mount after READY (fs magic $magic)"
	MOUNT_PID=$pid
	log "mounted $img on $mnt (pid $pid)"
}

# slimfs_mount_bg [OPTIONS...] IMAGE MNT: mounts as a user does, in the
# background (the command returns once the mount is live, the daemon having
# forked); MOUNT_PID is the daemon's pid. slimfs_mount's -f daemon never
# forks: what only a forked daemon has (threads started after the fork) is
# tested with this one.
slimfs_mount_bg() {
	local n=$# img=${*: -2:1} mnt=${*: -1} pid magic
	[ $n -ge 2 ] || die "slimfs_mount_bg: needs IMAGE MNT"
	mkdir -p "$mnt"
	"$SLIMFS" mount "${@:1:n-2}" "$img" "$mnt" || die "slimfs mount $img $mnt (background) failed"
	pid=$(pgrep -f -- " mount .*$img $mnt\$" | head -1)
	[ -n "$pid" ] || die "slimfs mount $img $mnt: no daemon process found"
	_mount_pids[$mnt]=$pid
	_mount_bg[$mnt]=1
	at_exit "_force_umount '$mnt' $pid"
	magic=$(stat -f -c %t "$mnt") || die "stat -f $mnt failed"
	[ "$magic" = 65735546 ] || die "$mnt is not a FUSE mount (fs magic $magic)"
	MOUNT_PID=$pid
	log "mounted $img on $mnt in the background (daemon $pid)"
}

# slimfs_umount MNT: fusermount3 -u, then the daemon must exit with status 0
# (its status is known only for slimfs_mount's daemons, children of the test).
slimfs_umount() {
	local mnt=$1 pid=${_mount_pids[$1]:-} t0 rc=0
	[ -n "$pid" ] || die "slimfs_umount: $mnt was not mounted by slimfs_mount"
	fusermount3 -u "$mnt" || die "fusermount3 -u $mnt failed"
	t0=$SECONDS
	while kill -0 "$pid" 2>/dev/null; do
		[ $((SECONDS - t0)) -lt "${SLIMFS_MOUNT_TIMEOUT:-30}" ] ||
			die "slimfs daemon $pid still running after unmounting $mnt"
		sleep 0.1
	done
	[ -n "${_mount_bg[$mnt]:-}" ] || wait "$pid" || rc=$?
	unset "_mount_pids[$mnt]" "_mount_bg[$mnt]"
	[ $rc = 0 ] || die "slimfs daemon for $mnt exited with status $rc after unmount"
	log "unmounted $mnt"
}

# At exit: unmount what a failed test left mounted and stop its daemon.
_force_umount() {
	local mnt=$1 pid=$2
	if grep -qF " $mnt " /proc/self/mounts 2>/dev/null; then
		fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
	fi
	if kill -0 "$pid" 2>/dev/null; then
		local i
		for i in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill "$pid" 2>/dev/null
	fi
	return 0
}
_umount_below() {
	local dir=$1 m
	[ -n "$dir" ] || return 0
	for m in $(awk -v p="$dir/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r); do
		fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	return 0
}
