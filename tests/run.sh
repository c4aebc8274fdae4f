#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The one command that runs slimfs's tests (Debian 12, as root):
#
#   tests/run.sh [-B BUILDDIR] [--no-deps] [-Doption=value]... [-- MESON TEST ARGS...]
#
# Installs what is missing (.ci/deps.sh), configures BUILDDIR (default: build,
# reconfigured when it exists) with the -D options, builds, runs
# `meson test --print-errorlogs` and ends with one line:
#   tests: N passed, N failed[, N skipped]
# Exit status non-zero when anything failed (a failed setup or build counts as
# one failed test). Under .ci/run (SLIMFS_CI=1) tests that need root or FUSE
# fail instead of skipping (SLIMFS_MUST_MOUNT=1).
set -euo pipefail

cd "$(dirname "$0")/.."
builddir=build
deps=1
setup_args=()
test_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	-B) builddir=$2; shift 2 ;;
	-B*) builddir=${1#-B}; shift ;;
	--no-deps) deps=0; shift ;;
	-D) setup_args+=("-D$2"); shift 2 ;;
	-D*) setup_args+=("$1"); shift ;;
	--) shift; test_args=("$@"); break ;;
	-h|--help) sed -n '3,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done

if [ "${SLIMFS_CI:-0}" = 1 ]; then
	export SLIMFS_MUST_MOUNT=1
fi

summary() {
	local passed=$1 failed=$2 skipped=$3 line
	line="tests: $passed passed, $failed failed"
	[ "$skipped" -gt 0 ] && line+=", $skipped skipped"
	echo "$line"
}
fail_early() {
	echo "run.sh: $*" >&2
	summary 0 1 0
	exit 1
}

if [ "$deps" = 1 ]; then
	if [ "$(id -u)" = 0 ]; then
		bash .ci/deps.sh || fail_early "installing dependencies (.ci/deps.sh) failed"
	else
		echo "run.sh: not root, not installing dependencies (.ci/deps.sh)" >&2
	fi
fi

# The rootfs cache takes minutes the first time; build it before the clock of
# any test starts. A failure here shows again, as a failed test, in build-rootfs.
if [ "$(id -u)" = 0 ] && [ "${SLIMFS_SKIP_ROOTFS:-0}" != 1 ]; then
	bash tests/rootfs.sh >/dev/null || echo "run.sh: warning: tests/rootfs.sh failed" >&2
fi

if [ -f "$builddir/build.ninja" ]; then
	meson setup --reconfigure "$builddir" "${setup_args[@]}" ||
		fail_early "meson setup --reconfigure $builddir failed"
else
	meson setup "$builddir" "${setup_args[@]}" || fail_early "meson setup $builddir failed"
fi
ninja -C "$builddir" || fail_early "the build (ninja -C $builddir) failed"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
meson test -C "$builddir" --print-errorlogs "${test_args[@]}" 2>&1 | tee "$log" || rc=$?

# Meson's summary block: "Ok:  N", "Expected Fail:  N", "Fail:  N", ...
count() { awk -v k="$1:" 'index($0, k) == 1 { n = $NF } END { print n + 0 }' "$log"; }
if ! grep -q '^Ok:' "$log"; then
	if [ "$rc" = 0 ] && grep -qi 'no .*tests defined' "$log"; then
		echo "run.sh: warning: no tests matched" >&2
		summary 0 0 0
		exit 0
	fi
	fail_early "no summary from meson test (exit $rc)"
fi
passed=$(($(count Ok) + $(count 'Expected Fail')))
failed=$(($(count Fail) + $(count 'Unexpected Pass') + $(count Timeout)))
skipped=$(count Skipped)
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then
	echo "run.sh: meson test exited with $rc but reported no failure" >&2
	failed=1
fi
summary "$passed" "$failed" "$skipped"
[ "$failed" = 0 ]
