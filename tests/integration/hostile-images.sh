#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Hostile images (tests/hostile/corrupt-image.py): every superblock field and
# a sample of the records of every section get bad values (with the index
# checksum recomputed, so the deeper checks are reached), chunk records point
# outside the data or lie about their sizes, directories form cycles, data
# bytes are flipped; the compressed index's frame is damaged (zindex-*). The
# image has the default compressed index (records are patched in the plain
# index and compressed again); the superblock and structural variants also
# run on the same tree built with --index-compression none (format 1.0). `slimfs inspect/ls/verify/cat` must exit non-zero with
# a message, or succeed where the damage is harmless -- never crash (exit >=
# 128) or hang. verify must fail on any damage to the data. With FUSE: a
# refused index is not mounted, damaged data reads give EIO, and the daemon
# survives (alive after the reads, exits 0 on unmount).
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_slimfs
need_cmd timeout
make_tmp

CMD_TIMEOUT=${SLIMFS_HOSTILE_TIMEOUT:-20}

# ---------------------------------------------------------------- the image
src=$TMP/src
mkdir -p "$src/etc" "$src/usr/bin" "$src/usr/lib/deep/er" "$src/var/empty"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$src/etc/passwd"
head -c 300000 /dev/urandom >"$src/usr/bin/big"
for i in $(seq 20); do printf 'small file %d\n' "$i" >"$src/usr/lib/deep/er/f$i"; done
seq 1 50000 >"$src/usr/lib/numbers"
ln -s ../lib/numbers "$src/usr/bin/link"
ln "$src/etc/passwd" "$src/etc/passwd-hardlink"
setfattr -n user.note -v hostile "$src/etc/passwd" 2>/dev/null || true
printf '/etc/\n' >"$TMP/allow"
run "$SLIMFS" build -q -j 2 --chunk-min 4K --chunk-avg 16K --chunk-max 64K \
	--view "etc=$TMP/allow" -o "$TMP/good.img" "$src"
run "$SLIMFS" verify -q "$TMP/good.img"
run "$SLIMFS" build -q -j 2 --chunk-min 4K --chunk-avg 16K --chunk-max 64K \
	--view "etc=$TMP/allow" --index-compression none -o "$TMP/plain.img" "$src"
run "$SLIMFS" verify -q "$TMP/plain.img"
"$SLIMFS" inspect "$TMP/good.img" | grep -q '^index: .*, zstd; ' || die "good.img: index not compressed"
"$SLIMFS" inspect "$TMP/plain.img" | grep -q '^index: .*, not compressed$' ||
	die "plain.img: index compressed despite --index-compression none"
files=(/etc/passwd /usr/bin/big /usr/lib/numbers /usr/bin/link)

run "$PYTHON" "$SRCDIR/hostile/corrupt-image.py" "$TMP/good.img" "$TMP/v"
run "$PYTHON" "$SRCDIR/hostile/corrupt-image.py" "$TMP/plain.img" "$TMP/vp"

# slimfs_run NAME CMD...: runs one command on a variant; records exit code.
# A crash or hang fails the test at once; a failure must say why.
slimfs_run() {
	local name=$1 rc=0
	shift
	timeout -k 5 "$CMD_TIMEOUT" "$SLIMFS" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if [ $rc = 124 ] || [ $rc = 137 ]; then
		die "$name: 'slimfs $*' hung (no exit within ${CMD_TIMEOUT}s)"
	elif [ $rc -ge 128 ]; then
		die "$name: 'slimfs $*' crashed (exit $rc): $(tail -c 300 "$TMP/err")"
	elif [ $rc != 0 ] && ! [ -s "$TMP/err" ] && ! { [ "$1" = verify ] && [ -s "$TMP/out" ]; }; then
		# (verify reports on standard output)
		die "$name: 'slimfs $*' failed (exit $rc) without a message"
	fi
	RC=$rc
}

for f in "${files[@]}"; do
	"$SLIMFS" cat "$TMP/good.img" "$f" >"$TMP/want-${f//\//_}" || die "cat $f of the good image"
	"$SLIMFS" cat "$TMP/plain.img" "$f" | cmp -s - "$TMP/want-${f//\//_}" ||
		die "$f reads differently from the plain index"
done

# variants DIR GOOD [GLOB]: the variants of DIR/variants.tsv (those matching
# GLOB); GOOD is the image they were made from.
n=0 refused=0 opened=0
variants() {
	local dir=$1 good=$2 glob=${3:-*} name expect digest
	digest=$("$SLIMFS" inspect "$good" | awk '$1 == "digest:" { print $2 }')
	[ -n "$digest" ] || die "no digest from inspect"
	while IFS=$'\t' read -r name expect; do
		[[ $name == $glob ]] || continue
		check_variant "$dir/$name.img" "${dir##*/}:$name" "$expect" "$digest"
	done <"$dir/variants.tsv"
}

check_variant() {
	local img=$1 name=$2 expect=$3 digest=$4
	# SLIMFS_HOSTILE_ONLY=GLOB: only the matching variants (debugging)
	[ -z "${SLIMFS_HOSTILE_ONLY:-}" ] || [[ ${name#*:} == $SLIMFS_HOSTILE_ONLY ]] || return 0
	n=$((n + 1))
	slimfs_run "$name" inspect "$img"
	inspect_rc=$RC
	slimfs_run "$name" ls -R -l "$img"
	ls_rc=$RC
	# pinned to the good digest, any change must be found (index or data)
	slimfs_run "$name" verify -q --digest "$digest" "$img"
	[ $RC != 0 ] || die "$name: verify --digest passed a changed image"
	slimfs_run "$name" verify -q "$img"
	verify_rc=$RC
	cat_fail=0
	for f in "${files[@]}"; do
		slimfs_run "$name" cat "$img" "$f"
		if [ $RC != 0 ]; then
			cat_fail=$((cat_fail + 1))
		elif [ "$expect" = data ] && ! cmp -s "$TMP/want-${f//\//_}" "$TMP/out"; then
			# the index is intact: a file reads right or not at all
			die "$name: '$f' read wrong bytes without an error"
		fi
	done
	case $expect in
	index)
		[ $inspect_rc != 0 ] && [ $ls_rc != 0 ] && [ $verify_rc != 0 ] &&
			[ $cat_fail = ${#files[@]} ] ||
			die "$name: the index must be refused (inspect $inspect_rc, ls $ls_rc, verify $verify_rc, cat failed $cat_fail/${#files[@]})"
		;;
	data)
		[ $verify_rc != 0 ] || die "$name: verify passed a damaged image"
		;;
	esac
	if [ $inspect_rc = 0 ]; then opened=$((opened + 1)); else refused=$((refused + 1)); fi
}
variants "$TMP/v" "$TMP/good.img"
nz=$n
# the plain index (1.0): where the two forms differ (sizes, offsets, the
# bit, the checksum), truncations, structure
variants "$TMP/vp" "$TMP/plain.img" \
	'@(super-@(index_size|data_off|feature_incompat|checksum|sec_inodes_off|sec_strings_off)-*|truncated-*|index-*|chunk-*|dir-*)'
log "$n variants ($nz of the compressed index, $((n - nz)) of the plain one): $refused refused at open, $opened opened; no crash, no hang"
[ -n "${SLIMFS_HOSTILE_ONLY:-}" ] || [ $n -ge 100 ] || die "only $n variants"

# ---------------------------------------------------------------- the daemon
if [ "$(id -u)" != 0 ] || ! [ -c /dev/fuse ] || ! command -v fusermount3 >/dev/null ||
	! grep -qw fuse /proc/filesystems; then
	[ "${SLIMFS_MUST_MOUNT:-0}" != 1 ] || die "FUSE needed (SLIMFS_MUST_MOUNT=1)"
	log "no FUSE here: mount checks skipped"
	exit 0
fi

# A refused index: mount exits non-zero with a message, nothing is mounted.
for name in super-checksum-wrong dir-cycle-to-root chunk-off-beyond-data super-magic-0 \
	zindex-middle-byte-flipped zindex-content-size-less zindex-bomb; do
	[ -e "$TMP/v/$name.img" ] || continue
	mnt=$TMP/mnt-$name
	mkdir -p "$mnt"
	rc=0
	timeout -k 5 30 "$SLIMFS" mount -f "$TMP/v/$name.img" "$mnt" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if grep -qF " $mnt " /proc/self/mounts; then
		fusermount3 -u "$mnt" || true
		die "mount $name: a corrupt index was mounted"
	fi
	[ $rc != 0 ] && [ $rc -lt 124 ] || die "mount $name: exit $rc (want a clean refusal)"
	[ -s "$TMP/err" ] || die "mount $name: refused without a message"
	log "mount $name: refused ($(head -n 1 "$TMP/err" | cut -c1-100))"
done

# Damaged data: the mount works, the damaged file reads EIO, others read
# fine, and the daemon is alive afterwards and exits 0 on unmount.
for name in data-byte-flipped data-last-byte-flipped chunk-usize-more chunk-csize-short \
	truncated-in-data chunks0-sha256-flipped; do
	img=$TMP/v/$name.img
	[ -e "$img" ] || continue
	"$SLIMFS" inspect "$img" >/dev/null 2>&1 || continue # refused at open: covered above
	mnt=$TMP/mnt-$name
	slimfs_mount --cache none "$img" "$mnt"
	eio=0
	for f in "${files[@]}"; do
		rc=0
		cat "$mnt$f" >"$TMP/out" 2>"$TMP/err" || rc=$?
		if [ $rc != 0 ]; then
			grep -q "Input/output error" "$TMP/err" ||
				die "mount $name: reading $f failed, but not with EIO: $(cat "$TMP/err")"
			eio=$((eio + 1))
		else
			"$SLIMFS" cat "$TMP/good.img" "$f" >"$TMP/want"
			cmp -s "$TMP/want" "$TMP/out" || die "mount $name: $f read wrong bytes without an error"
		fi
	done
	find "$mnt" -xdev >/dev/null || die "mount $name: the tree does not walk"
	kill -0 "$MOUNT_PID" 2>/dev/null || die "mount $name: the daemon died"
	[ $eio -gt 0 ] || die "mount $name: no read failed with EIO"
	slimfs_umount "$mnt"
	log "mount $name: $eio of ${#files[@]} files EIO, the rest intact, daemon fine"
done
log "all good"
