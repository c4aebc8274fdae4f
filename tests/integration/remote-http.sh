#!/usr/bin/env bash
# Lazy mounts over HTTP (nginx) and an OCI registry (docker-registry), both on
# 127.0.0.1 and started here: the whole tree compares equal to its source, the
# index digest pins what is mounted, and only some of the image is fetched
# when only some of it is read.
. "$SRCDIR/lib.sh"
. "$SRCDIR/servers.sh"
need_fuse
need_slimfs
make_tmp

python3 "$SRCDIR/gendir.py" --seed 7 "$TMP/src" >/dev/null
mkdir -p "$TMP/www"
run "$SLIMFS" build -q -o "$TMP/www/tree.slimfs" "$TMP/src"
digest=$("$SLIMFS" inspect --json "$TMP/www/tree.slimfs" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
size=$(stat -c %s "$TMP/www/tree.slimfs")

# Not in $(...): NGINX_LOG and the stop-at-exit hook must reach this shell.
start_nginx "$TMP/www" >"$TMP/url"
url=$(cat "$TMP/url")
log "serving at $url"

# --- HTTP: one small read fetches a small part of the image
slimfs_mount --cache none "$url/tree.slimfs" "$TMP/mnt"
first=$(cd "$TMP/src" && find . -type f -size +1k | sort | sed -n 1p)
cmp "$TMP/src/$first" "$TMP/mnt/$first" || die "first file differs over HTTP"
fetched=$(awk '$9 == 206 { n += $10 } END { print n + 0 }' "$NGINX_LOG")
log "one file read: $fetched of $size bytes fetched"
[ "$fetched" -lt $((size / 2)) ] || die "reading one file fetched $fetched of $size bytes"
compare_trees "$TMP/src" "$TMP/mnt"
slimfs_umount "$TMP/mnt"
bad=$(awk '$9 != 206' "$NGINX_LOG" | wc -l)
[ "$bad" = 0 ] || die "$bad requests were not answered with 206"

# --- digest pinning
slimfs_mount --cache none --digest "$digest" "$url/tree.slimfs" "$TMP/mnt"
slimfs_umount "$TMP/mnt"
wrong=sha256:$(printf '%064d' 0)
# Failing while libcurl still loads on its own thread (the index came over plain
# HTTP): the exit must wait for that load, or OpenSSL's exit handlers run under
# it (a SIGSEGV about 1 in 40 before the fix): 20 times.
for i in $(seq 20); do
	run_fails "$SLIMFS" mount -f --cache none --digest "$wrong" "$url/tree.slimfs" "$TMP/mnt"
done
run_fails "$SLIMFS" mount -f --cache none "$url/missing.slimfs" "$TMP/mnt"
run_fails "$SLIMFS" inspect "http://127.0.0.1:1/tree.slimfs"

# --- OCI registry: push, then mount by tag and by digest
start_registry >"$TMP/reg"
reg=$(cat "$TMP/reg")
out=$("$SLIMFS" push "$TMP/www/tree.slimfs" "$reg/slimfs/tree:v1") || die "push failed"
pinned=$(printf '%s\n' "$out" | tail -n 1)
case $pinned in
oci://"$reg"/slimfs/tree@sha256:*) ;;
*) die "push printed '$pinned', not a pinned reference" ;;
esac
# pushing again uploads nothing new and gives the same manifest
again=$("$SLIMFS" push -q "$TMP/www/tree.slimfs" "$reg/slimfs/tree:v1" | tail -n 1)
[ "$again" = "$pinned" ] || die "second push gave $again, first $pinned"

slimfs_mount --cache none "oci://$reg/slimfs/tree:v1" "$TMP/mnt"
compare_trees "$TMP/src" "$TMP/mnt"
slimfs_umount "$TMP/mnt"
slimfs_mount --cache none "$pinned" "$TMP/mnt"
cmp "$TMP/src/$first" "$TMP/mnt/$first" || die "pinned mount reads wrong bytes"
slimfs_umount "$TMP/mnt"
run_fails "$SLIMFS" mount -f --cache none "oci://$reg/slimfs/tree:nosuchtag" "$TMP/mnt"
run_fails "$SLIMFS" mount -f --cache none "${pinned%?}0" "$TMP/mnt"

# --- a registry with Basic auth (htpasswd): --creds works, no creds fails
if command -v htpasswd >/dev/null; then
	htpasswd -Bbc "$TMP/htpasswd" tester s3cret >/dev/null 2>&1
	start_registry "$TMP/htpasswd" >"$TMP/areg"
	areg=$(cat "$TMP/areg")
	run_fails "$SLIMFS" push "$TMP/www/tree.slimfs" "$areg/slimfs/tree:v1"
	run "$SLIMFS" push -q --creds tester:s3cret "$TMP/www/tree.slimfs" "$areg/slimfs/tree:v1"
	slimfs_mount --cache none --creds tester:s3cret "oci://$areg/slimfs/tree:v1" "$TMP/mnt"
	cmp "$TMP/src/$first" "$TMP/mnt/$first" || die "authenticated mount reads wrong bytes"
	slimfs_umount "$TMP/mnt"
	run_fails "$SLIMFS" mount -f --cache none "oci://$areg/slimfs/tree:v1" "$TMP/mnt"
else
	need_or_skip "needs htpasswd (apache2-utils) for the auth part"
fi
log "ok"
