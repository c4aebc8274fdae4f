#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Prints the path of a cached Debian bookworm minbase rootfs tarball, building it
# once per machine (debootstrap from the mirror apt itself uses).
#
#   tests/rootfs.sh          prints the tarball path (tar --xattrs --numeric-owner, pax)
#   tests/rootfs.sh --dir    prints the path of the unpacked rootfs directory
#
# Cache: ${SLIMFS_TEST_CACHE:-/var/cache/slimfs-tests}/rootfs-bookworm{,.tar}.
# Concurrent runs serialize on a lock; a half-built tree is never published.
# Needs root (debootstrap). Logs go to stderr, the path alone to stdout.
set -euo pipefail

suite=bookworm
include=python3,perl
cache=${SLIMFS_TEST_CACHE:-/var/cache/slimfs-tests}
dir=$cache/rootfs-$suite
tarball=$cache/rootfs-$suite.tar
stamp=$cache/rootfs-$suite.done

want=tar
case "${1:-}" in
--dir) want=dir ;;
"") ;;
*)
	echo "usage: $0 [--dir]" >&2
	exit 2
	;;
esac

say() { echo "rootfs.sh: $*" >&2; }

print_result() {
	if [ "$want" = dir ]; then echo "$dir"; else echo "$tarball"; fi
}

# The first mirror URI serving $suite in apt's own configuration: one-line
# sources.list format and deb822 .sources files both.
find_mirror() {
	local f line uri
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		while read -r line; do
			line=${line%%#*}
			# deb [opts] URI SUITE COMPONENTS...
			set -- $line
			[ "${1:-}" = deb ] || continue
			shift
			if [ "${1:0:1}" = "[" ]; then
				while [ $# -gt 0 ] && [ "${1: -1}" != "]" ]; do shift; done
				shift
			fi
			[ $# -ge 2 ] && [ "$2" = "$suite" ] && { echo "$1"; return 0; }
		done <"$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		uri=$(awk -v suite="$suite" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
				    enabled !~ /^[Nn]o/ && uris != "" && !done) {
					split(uris, u, " "); print u[1]; done = 1
				}
				types = ""; suites = ""; uris = ""; enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				key = tolower($1); sub(/:$/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") types = val
				else if (key == "suites") suites = val
				else if (key == "uris") uris = val
				else if (key == "enabled") enabled = val
			}
			END { flush() }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return 0; }
	done
	return 1
}

if [ -e "$stamp" ] && [ -f "$tarball" ] && [ -d "$dir" ]; then
	print_result
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	say "building the rootfs cache needs root (debootstrap)"
	exit 1
fi
command -v debootstrap >/dev/null || { say "debootstrap is not installed"; exit 1; }
command -v flock >/dev/null || { say "flock (util-linux) is not installed"; exit 1; }

mkdir -p "$cache"
exec 9>"$cache/rootfs-$suite.lock"
say "waiting for the cache lock $cache/rootfs-$suite.lock"
flock 9
# Someone else may have finished while we waited.
if [ -e "$stamp" ] && [ -f "$tarball" ] && [ -d "$dir" ]; then
	print_result
	exit 0
fi

mirror=$(find_mirror) || mirror=http://deb.debian.org/debian
tmp=$cache/rootfs-$suite.tmp
rm -rf "$tmp" "$tarball.tmp" "$stamp"
umount_all() {
	# debootstrap mounts proc/sys inside the target; never leave them behind.
	local m
	for m in $(awk -v p="$tmp/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
}
trap 'umount_all; rm -rf "$tmp" "$tarball.tmp"' EXIT

say "debootstrap --variant=minbase --include=$include $suite from $mirror (takes minutes)"
start=$(date +%s)
if ! debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" \
	>"$cache/debootstrap.log" 2>&1; then
	say "debootstrap failed; last lines of $cache/debootstrap.log:"
	tail -n 20 "$cache/debootstrap.log" >&2
	exit 1
fi
umount_all
# Downloaded .debs are not part of a rootfs image.
rm -f "$tmp"/var/cache/apt/archives/*.deb
say "debootstrap done in $(($(date +%s) - start))s; writing the tarball"

tar --xattrs --xattrs-include='*' --numeric-owner --format=pax --sort=name \
	--pax-option=delete=atime,delete=ctime \
	-C "$tmp" -cf "$tarball.tmp" .

rm -rf "$dir"
mv "$tmp" "$dir"
mv "$tarball.tmp" "$tarball"
touch "$stamp"
trap - EXIT
say "cached $tarball ($(du -sh "$tarball" | cut -f1))"
print_result
