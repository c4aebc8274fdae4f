#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A real Debian rootfs (debootstrap minbase + python3 + perl, cached by
# tests/rootfs.sh) through slimfs build: as one tar layer, then split into an
# OCI image layout of 4 layers (gzip, zstd, plain; the 4th with whiteouts, an
# opaque directory and replacements) and the docker-save tarballs of the same
# layers. Each extract must equal the tree the layers give when merged by hand.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_root
need_slimfs
need_cmd tar debootstrap cmp
rootfs_tar=$(bash "$SRCDIR/rootfs.sh") || die "could not build or find the cached rootfs (tests/rootfs.sh)"
rootfs=$(bash "$SRCDIR/rootfs.sh" --dir) || die "tests/rootfs.sh --dir failed"
[ -f "$rootfs_tar" ] && [ -d "$rootfs" ] || die "rootfs cache incomplete: $rootfs_tar, $rootfs"
make_tmp
mkoci() { "$PYTHON" "$SRCDIR/mkoci.py" "$@"; }

dumpdir "$rootfs" >"$TMP/rootfs.dump" || die "dumpdir of the rootfs failed"
log "rootfs: $(wc -l <"$TMP/rootfs.dump") entries, tar $(du -h "$rootfs_tar" | cut -f1)"

# check_image IMAGE NAME EXPECTED_DUMP: verify, extract, compare.
check_image() {
	local img=$1 name=$2 expected=$3 out=$TMP/x-$2
	run "$SLIMFS" verify "$img"
	run "$SLIMFS" extract "$img" "$out"
	dumpdir "$out" >"$TMP/x-$name.dump" || die "$name: dumpdir of the extracted tree failed"
	compare_dumps "$expected" "$TMP/x-$name.dump" "$name: extracted tree differs from the expected tree"
	log "$name: extracted tree matches ($(wc -l <"$expected") entries)"
	rm -rf "$out"
}

# 1. The rootfs as one tar layer.
run "$SLIMFS" build -q -o "$TMP/tar.img" "$rootfs_tar"
check_image "$TMP/tar.img" tar "$TMP/rootfs.dump"
"$SLIMFS" cat "$TMP/tar.img" /usr/lib/os-release >"$TMP/os-release" || die "slimfs cat /usr/lib/os-release failed"
cmp "$rootfs/usr/lib/os-release" "$TMP/os-release" || die "slimfs cat /usr/lib/os-release differs"
"$SLIMFS" cat "$TMP/tar.img" /usr/bin/perl | cmp - "$rootfs/usr/bin/perl" || die "slimfs cat /usr/bin/perl differs"
out=$("$SLIMFS" ls "$TMP/tar.img" /usr/bin) || die "slimfs ls /usr/bin failed"
grep -q python3 <<<"$out" || die "slimfs ls /usr/bin has no python3"
rm -f "$TMP/tar.img"

# 2. Three layers from the rootfs; their plain merge must be the rootfs itself
# (a check of the test tools, so a failure below is slimfs's).
mkoci split "$rootfs" "$TMP/layer" 3 || die "mkoci split failed"
mkoci merge "$TMP/merged3" "$TMP/layer1" "$TMP/layer2" "$TMP/layer3" || die "mkoci merge failed"
dumpdir "$TMP/merged3" | cmp -s - "$TMP/rootfs.dump" || die "test tools: split + merge of the rootfs is not the rootfs"
rm -rf "$TMP/merged3"

# 3. A fourth layer: whiteouts (a file, a whole directory), an opaque
# directory with new content, a file replaced by a directory and a directory
# by a file, a directory's metadata changed, a new capability binary with a
# hardlink. Parent directories carry the rootfs's own metadata.
L4=$TMP/layer4
for p in etc usr usr/share usr/share/man usr/local usr/local/bin opt var var/lib; do
	[ -d "$rootfs/$p" ] || die "rootfs has no /$p, the layer-4 recipe needs updating"
done
for p in etc/motd etc/hostname usr/share/doc var/lib/dpkg/info usr/share/man/de; do
	[ -e "$rootfs/$p" ] || die "rootfs has no /$p, the layer-4 recipe needs updating"
done
mkdir -p "$L4"/{etc,usr/share/man,usr/local/bin,opt,var/lib/dpkg}
touch "$L4/etc/.wh.motd" "$L4/usr/share/.wh.doc" "$L4/usr/share/man/.wh..wh..opq"
mkdir -p "$L4/usr/share/man/man1"
printf '.TH SLIMFS 1\n' >"$L4/usr/share/man/man1/slimfs.1"
mkdir "$L4/etc/hostname"
printf 'replaced a directory\n' >"$L4/var/lib/dpkg/info"
printf '#!/bin/sh\necho tool\n' >"$L4/usr/local/bin/tool"
chmod 0750 "$L4/usr/local/bin/tool"
chown 0:5678 "$L4/usr/local/bin/tool"
setfattr -n security.capability -v 0x0100000200040000000000000000000000000000 "$L4/usr/local/bin/tool" ||
	die "setfattr security.capability failed"
ln "$L4/usr/local/bin/tool" "$L4/usr/local/bin/tool-link"
touch -d @1700000000.123456789 "$L4/usr/local/bin/tool" "$L4/etc/hostname" \
	"$L4/usr/share/man/man1/slimfs.1" "$L4/usr/share/man/man1" "$L4/var/lib/dpkg/info"
# The parents: rootfs metadata, except /opt whose mode and owner change.
for p in etc usr usr/share usr/share/man usr/local usr/local/bin var var/lib var/lib/dpkg opt .; do
	chown --reference="$rootfs/$p" "$L4/$p"
	chmod --reference="$rootfs/$p" "$L4/$p"
done
chmod 0700 "$L4/opt"
chown 1234:5678 "$L4/opt"
for p in etc usr/share/man usr/local/bin usr/local var/lib/dpkg var/lib var usr/share usr opt .; do
	touch -h --reference="$rootfs/$p" "$L4/$p"
done
touch -d @1700000001.5 "$L4/opt"

mkoci merge "$TMP/expected" "$TMP/layer1" "$TMP/layer2" "$TMP/layer3" "$L4" || die "mkoci merge failed"
dumpdir "$TMP/expected" >"$TMP/expected.dump" || die "dumpdir of the expected tree failed"
rm -rf "$TMP/expected"
grep -q '^\./usr/share/doc ' "$TMP/expected.dump" && die "test tools: merge kept /usr/share/doc"
grep -q '^\./usr/share/man/man1/slimfs\.1 ' "$TMP/expected.dump" || die "test tools: merge lost the opaque dir's file"

config=(--entrypoint '["/usr/bin/python3", "-c"]' --cmd '["print(42)"]'
	--env PATH=/usr/local/bin:/usr/bin:/bin --env SLIMFS_TEST_TOKEN=rootfs4242
	--workdir /root --user 1000:1000)
layers=("$TMP/layer1:gzip" "$TMP/layer2:zstd" "$TMP/layer3:none" "$L4:gzip")
mkoci oci "$TMP/oci" --ref slimfs-test:rootfs "${config[@]}" "${layers[@]}" || die "mkoci oci failed"
mkoci docker "$TMP/docker.tar" --ref slimfs-test:rootfs "${config[@]}" "${layers[@]}" ||
	die "mkoci docker failed"
mkoci docker "$TMP/docker-oci.tar" --style oci --ref slimfs-test:rootfs "${config[@]}" "${layers[@]}" ||
	die "mkoci docker --style oci failed"

# 4. The OCI layout, with --ref; twice, byte-identical.
run "$SLIMFS" build -q --ref slimfs-test:rootfs -o "$TMP/oci.img" "$TMP/oci"
run "$SLIMFS" build -q --ref slimfs-test:rootfs -o "$TMP/oci2.img" "$TMP/oci"
cmp "$TMP/oci.img" "$TMP/oci2.img" || die "two builds of the same OCI layout differ"
rm -f "$TMP/oci2.img"
check_image "$TMP/oci.img" oci "$TMP/expected.dump"
run_fails "$SLIMFS" build -q --ref no-such-ref -o "$TMP/bad.img" "$TMP/oci"
[ ! -e "$TMP/bad.img" ] || die "a failed build left $TMP/bad.img behind"

# inspect --json is JSON and shows the image config.
"$SLIMFS" inspect --json "$TMP/oci.img" >"$TMP/inspect.json" || die "slimfs inspect --json failed"
"$PYTHON" -m json.tool "$TMP/inspect.json" >/dev/null || die "slimfs inspect --json is not valid JSON"
grep -q rootfs4242 "$TMP/inspect.json" || die "slimfs inspect --json does not show the config's Env"
"$SLIMFS" inspect "$TMP/oci.img" >/dev/null || die "slimfs inspect failed"
rm -f "$TMP/oci.img"

# 5. The docker-save tarballs of the same layers: the same tree.
for t in docker docker-oci; do
	run "$SLIMFS" build -q --ref slimfs-test:rootfs -o "$TMP/$t.img" "$TMP/$t.tar"
	check_image "$TMP/$t.img" "$t" "$TMP/expected.dump"
	rm -f "$TMP/$t.img"
done
log "all checks passed"
