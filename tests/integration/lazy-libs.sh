#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# libarchive, libcurl and libelf are loaded on first use (index/dl.h), so that
# a local mount does not read ~40 libraries from disk (issue #3):
#   - slimfs does not link them (no DT_NEEDED), nor libcrypto/libssl (SHA-256
#     and base64 are its own: libcrypto's relocations cost every exec; it
#     comes in only with libcurl, for TLS); built with -Dstatic_libs=true (the
#     default), libzstd, libxxhash and libjansson are linked in, so the daemon
#     maps no shared object but libfuse3 and libc's;
#   - a mounted local image, read through, has none of them in the daemon's
#     maps; `slimfs ls`/`cat`/`inspect` of it do not load them (LD_DEBUG);
#   - building from a tar loads libarchive, an --entrypoint closure libelf;
#   - with the three hidden (bind-mounted /dev/null in a private mount
#     namespace), a local image still builds from a directory, mounts and
#     reads; a tar build and an http:// mount fail cleanly, saying which
#     library could not be loaded, also when the server is up (the size probe
#     and the index come over plain HTTP while libcurl loads: the mount still
#     waits for it before it goes live).
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"
. "$SRCDIR/servers.sh"

need_fuse
need_slimfs
need_cmd readelf unshare ldconfig
make_tmp

lazy='lib(archive|curl[a-z-]*|elf)\.so'

needed=$(readelf -d "$SLIMFS")
if grep -Eq "NEEDED.*$lazy" <<<"$needed"; then
	die "slimfs links a lazily loaded library: $(grep -E "$lazy" <<<"$needed")"
fi
if grep -Eq 'NEEDED.*lib(crypto|ssl)\.so' <<<"$needed"; then
	die "slimfs links OpenSSL: $(grep -E 'lib(crypto|ssl)\.so' <<<"$needed")"
fi
static='lib(zstd|xxhash|jansson)\.so'
if [ "${SLIMFS_STATIC_LIBS:-0}" = 1 ] && grep -Eq "NEEDED.*$static" <<<"$needed"; then
	die "slimfs links shared what -Dstatic_libs links in: $(grep -E "$static" <<<"$needed")"
fi

src=$TMP/src img=$TMP/img.slimfs mnt=$TMP/mnt
mkdir -p "$mnt"
run "$PYTHON" "$SRCDIR/gendir.py" --seed 3 "$src" >/dev/null
run "$SLIMFS" build -q -o "$img" "$src"
run tar -C "$src" -cf "$TMP/src.tar" .

# loaded_by NAME CMD...: runs CMD with LD_DEBUG=files; prints the lazily loaded
# libraries any of its processes opened (one soname a line, sorted).
loaded_by() {
	local name=$1 out
	shift
	mkdir -p "$TMP/ld-$name"
	LD_DEBUG=files LD_DEBUG_OUTPUT=$TMP/ld-$name/log "$@" >"$TMP/ld-$name/stdout" ||
		die "$name: command failed: $*"
	out=$(cat "$TMP/ld-$name"/log.*)
	grep -Eo "file=$lazy[.0-9]*" <<<"$out" | sed 's/^file=//' | sort -u || true
}

# ---- positive controls: the detection works, the libraries load when needed
libs=$(loaded_by build-tar "$SLIMFS" build -q -o "$TMP/tar.slimfs" "$TMP/src.tar")
grep -q '^libarchive\.so' <<<"$libs" || die "a build from a tar did not load libarchive: '$libs'"
archive_so=$(grep '^libarchive\.so' <<<"$libs")
mkdir -p "$TMP/elfsrc/bin"
cp /bin/true "$TMP/elfsrc/bin/true"
libs=$(loaded_by build-elf "$SLIMFS" build -q -o "$TMP/elf.slimfs" --entrypoint /bin/true "$TMP/elfsrc")
grep -q '^libelf\.so' <<<"$libs" || die "an --entrypoint closure did not load libelf: '$libs'"
elf_so=$(grep '^libelf\.so' <<<"$libs")
log "loaded on use: $archive_so, $elf_so"

# ---- the read path of a local image loads none of them
libs=$(loaded_by read "$SLIMFS" ls -R "$img")
[ -z "$libs" ] || die "slimfs ls of a local image loaded: $libs"
libs=$(loaded_by cat "$SLIMFS" cat "$img" /files/100k)
[ -z "$libs" ] || die "slimfs cat of a local image loaded: $libs"
libs=$(loaded_by inspect "$SLIMFS" inspect "$img")
[ -z "$libs" ] || die "slimfs inspect of a local image loaded: $libs"

slimfs_mount "$img" "$mnt"
compare_trees "$src" "$mnt"
maps=$(cat "/proc/$MOUNT_PID/maps")
if grep -Eq "/$lazy" <<<"$maps"; then
	die "the mount daemon mapped: $(grep -Eo "/[^ ]*$lazy[.0-9]*" <<<"$maps" | sort -u)"
fi
if grep -Eq 'NEEDED.*lib(asan|ubsan)\.so' <<<"$needed"; then
	log "shared objects of the daemon not checked: sanitizer build"
elif [ "${SLIMFS_STATIC_LIBS:-0}" = 1 ]; then
	so=$(grep -Eo '/[^ ]*\.so[.0-9]*$' <<<"$maps" | sort -u |
		grep -Ev '/(ld-linux[^/]*|libc\.so\.6|libfuse3\.so[.0-9]*)$' || true)
	[ -z "$so" ] || die "the mount daemon mapped more than libfuse3 and libc: $so"
fi
slimfs_umount "$mnt"

# ---- the three hidden: what needs none of them works, the rest fails cleanly
cache=$(ldconfig -p)
hide=()
for so in "$archive_so" "$elf_so" libcurl.so.4 libcurl-gnutls.so.4; do
	path=$(sed -n "s|^[[:space:]]*$so (libc6,x86-64) => ||p" <<<"$cache" | sed -n 1p)
	[ -n "$path" ] && hide+=("$(readlink -f "$path")")
done
[ ${#hide[@]} -ge 3 ] || die "could not find the libraries to hide: ${hide[*]}"
cat >"$TMP/hidden.sh" <<'EOF'
set -euo pipefail
for f in $HIDE; do mount --bind /dev/null "$f"; done
"$SLIMFS" build -q -o "$TMP/dir.slimfs" "$SRC"
"$SLIMFS" mount -q "$TMP/dir.slimfs" "$MNT"
cmp "$SRC/files/100k" "$MNT/files/100k"
umount "$MNT"
rc=0
"$SLIMFS" build -q -o "$TMP/tar2.slimfs" "$TMP/src.tar" 2>"$TMP/tar.err" || rc=$?
echo "tar build: $rc"
rc=0
"$SLIMFS" mount -q http://127.0.0.1:9/img.slimfs "$MNT" 2>"$TMP/http.err" || rc=$?
echo "http mount: $rc"
rc=0
"$SLIMFS" mount -q --cache none "$URL/img.slimfs" "$MNT" 2>"$TMP/http-up.err" || rc=$?
echo "http mount, server up: $rc"
EOF
mkdir -p "$TMP/www"
cp "$img" "$TMP/www/img.slimfs"
start_nginx "$TMP/www" >"$TMP/url" # not in $(...): its stop hook would be lost
out=$(HIDE="${hide[*]}" SLIMFS=$SLIMFS SRC=$src MNT=$mnt TMP=$TMP URL=$(cat "$TMP/url") \
	unshare -m bash "$TMP/hidden.sh" 2>&1) ||
	die "with the libraries hidden, a local build+mount failed: $out"
grep -qx 'tar build: [1-9][0-9]\{0,1\}' <<<"$out" || die "tar build without libarchive: $out"
grep -qx 'http mount: [1-9][0-9]\{0,1\}' <<<"$out" || die "http mount without libcurl: $out"
grep -qx 'http mount, server up: [1-9][0-9]\{0,1\}' <<<"$out" ||
	die "http mount without libcurl, server up: $out"
grep -q "cannot load $archive_so: " "$TMP/tar.err" || die "tar build error: $(cat "$TMP/tar.err")"
grep -q "cannot load libcurl[a-z-]*\.so\.4: " "$TMP/http.err" ||
	die "http mount error: $(cat "$TMP/http.err")"
log "hidden: $(sed -n 1p "$TMP/tar.err")"
log "hidden: $(sed -n 1p "$TMP/http.err")"
grep -q "cannot load libcurl[a-z-]*\.so\.4: " "$TMP/http-up.err" ||
	die "http mount error, server up: $(cat "$TMP/http-up.err")"
log "hidden, server up: $(tr '\n' ' ' <"$TMP/http-up.err")"
if mountpoint -q "$mnt"; then
	die "a failed http mount left a mount at '$mnt'"
fi
log "OK"
