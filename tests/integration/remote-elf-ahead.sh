#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ELF-ahead over HTTP (nginx): without a profile, the first read of an ELF
# file's header fetches, in the background, the libraries ld.so will load for
# it (DT_NEEDED, found in the image the way ld.so finds them), so that they
# are in memory before ld.so opens them. An image with a small program
# usr/bin/prog that needs libslimea.so.1, which lives in another directory
# (usr/lib/TRIPLET, reached through the lib -> usr/lib symlink and the
# libslimea.so.1 -> libslimea.so.1.0.0 one; ~200 KB of random bytes appended
# so that it spans several chunks and is no "small file" for miss-ahead):
#   - no profile: reading the first 4 KiB of prog (nothing of the library)
#     fetches the library: stats count one library ahead, and the library
#     then reads whole without a request;
#   - --miss-ahead 0: nothing is fetched ahead, the library costs requests;
#   - with a profile (naming another file only): no library is fetched ahead,
#     the library costs requests (the profile drives the prefetch);
#   - everything reads back identical.
# Background read-ahead is off (--readahead 0) so that only miss-ahead acts.
. "$SRCDIR/lib.sh"
. "$SRCDIR/servers.sh"
need_fuse
need_slimfs
need_cmd nginx cc
make_tmp

tri=$(cc -print-multiarch)
[ -n "$tri" ] || skip "cc -print-multiarch names no triplet"
src=$TMP/src lib=usr/lib/$tri/libslimea.so.1.0.0
mkdir -p "$src/usr/bin" "$src/usr/lib/$tri" "$src/o" "$TMP/www" "$TMP/cc"
ln -s usr/lib "$src/lib"
head -c 20000 /dev/urandom >"$src/o/other"
cat >"$TMP/cc/lib.c" <<'C'
int slimea(int x) { return x + 1; }
C
cat >"$TMP/cc/prog.c" <<'C'
int slimea(int x);
int main(void) { return slimea(-1); }
C
run cc -shared -fPIC -Wl,-soname,libslimea.so.1 -o "$TMP/cc/libslimea.so.1" "$TMP/cc/lib.c"
run cc -o "$src/usr/bin/prog" "$TMP/cc/prog.c" -L"$TMP/cc" -l:libslimea.so.1
{ cat "$TMP/cc/libslimea.so.1"; head -c 200000 /dev/urandom; } >"$src/$lib"
ln -s libslimea.so.1.0.0 "$src/usr/lib/$tri/libslimea.so.1"
readelf -d "$src/usr/bin/prog" | grep -q 'NEEDED.*libslimea.so.1' || die "prog does not need libslimea"
run "$SLIMFS" build -q --chunk-min 16K --chunk-avg 32K --chunk-max 64K --small-file-max 16K \
	-o "$TMP/www/img.slimfs" "$src"
start_nginx "$TMP/www" >"$TMP/url" # not in $(...): its stop hook would be lost
url=$(cat "$TMP/url")/img.slimfs

requests() { stat_of "$TMP/mnt" fetch requests; }
settle() { settle_loads "$TMP/mnt"; }
mount_with() { # mount_with MISS_AHEAD [OPTIONS...]
	${mounter:-slimfs_mount} --cache none --prefetch none --readahead 0 --miss-ahead "$@" \
		--view full "$url" "$TMP/mnt"
}
# prog_head: the first 4 KiB of prog (its ELF header), then settle.
prog_head() {
	dd if="$TMP/mnt/usr/bin/prog" bs=4096 count=1 status=none |
		cmp - <(head -c 4096 "$src/usr/bin/prog") || die "the first 4 KiB of prog differ"
	settle
}
# lib_requests: reads the library whole (through the symlinks), prints the requests it took.
lib_requests() {
	local r0
	r0=$(requests)
	cmp "$src/$lib" "$TMP/mnt/lib/$tri/libslimea.so.1" || die "the library differs"
	echo $(($(requests) - r0))
}

# No profile: the library comes ahead of its first read. In the background, as
# users mount: the prefetch workers that run ELF-ahead must start in the daemon, after its fork.
mounter=slimfs_mount_bg mount_with 1M
prog_head
ahead=$(stat_of "$TMP/mnt" prefetch elf_ahead_files)
log "no profile: $ahead libraries fetched ahead of prog's header"
[ "$ahead" = 1 ] || die "reading prog's header fetched $ahead libraries ahead, expected 1"
n=$(lib_requests)
log "no profile: the library read in $n requests"
[ "$n" = 0 ] || die "the library took $n requests after prog's header, expected 0"
compare_trees "$src" "$TMP/mnt"
[ "$(stat_of "$TMP/mnt" verify failed)" = 0 ] || die "chunks failed verification"
slimfs_umount "$TMP/mnt"

# Miss-ahead off: no ELF-ahead either.
mount_with 0
prog_head
[ "$(stat_of "$TMP/mnt" prefetch elf_ahead_files)" = 0 ] || die "--miss-ahead 0 fetched ahead"
n=$(lib_requests)
[ "$n" -ge 1 ] || die "--miss-ahead 0: the library took no request"
slimfs_umount "$TMP/mnt"

# With a profile that names o/other only: nothing ahead of ld.so.
profile_reading "$url" o/other "$TMP/profile"
mount_with 1M --prefetch-profile "$TMP/profile"
settle
[ "$(stat_of "$TMP/mnt" prefetch planned_chunks)" -ge 1 ] || die "the profile planned no chunk"
prog_head
[ "$(stat_of "$TMP/mnt" prefetch elf_ahead_files)" = 0 ] || die "with a profile, fetched ahead"
n=$(lib_requests)
log "profile: the library read in $n requests"
[ "$n" -ge 1 ] || die "with a profile the library took no request: fetched ahead"
compare_trees "$src" "$TMP/mnt"
slimfs_umount "$TMP/mnt"
log "ok"
