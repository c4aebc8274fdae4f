#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Registry bearer-token auth (the distribution token flow): a front that
# demands tokens (tests/tokenproxy.py) sits before docker-registry. mount and
# pull of oci://... get a token from the realm with --creds and read the right
# bytes; without credentials, or with wrong ones, they fail with a message.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"
. "$SRCDIR/servers.sh"
need_fuse
need_slimfs
make_tmp

python3 "$SRCDIR/gendir.py" --seed 5 "$TMP/src" >/dev/null
run "$SLIMFS" build -q -o "$TMP/tree.slimfs" "$TMP/src"
first=$(cd "$TMP/src" && find . -type f -size +1k | sort | sed -n 1p)
start_registry >"$TMP/reg"
reg=$(cat "$TMP/reg")
run "$SLIMFS" push -q "$TMP/tree.slimfs" "$reg/slimfs/tree:v1"

port=$(free_port)
python3 "$SRCDIR/tokenproxy.py" --port "$port" --upstream "$reg" --creds tester:s3cret \
	>"$TMP/proxy.log" 2>&1 </dev/null &
at_exit "kill $! 2>/dev/null; wait $! 2>/dev/null"
wait_port "$port"
ref=oci://127.0.0.1:$port/slimfs/tree:v1
mkdir -p "$TMP/mnt"

run_fails "$SLIMFS" mount -f --cache none "$ref" "$TMP/mnt"
run_fails "$SLIMFS" mount -f --cache none --creds tester:wrong "$ref" "$TMP/mnt"
slimfs_mount --cache none --creds tester:s3cret "$ref" "$TMP/mnt"
cmp "$TMP/src/$first" "$TMP/mnt/$first" || die "wrong bytes through the token-protected registry"
compare_trees "$TMP/src" "$TMP/mnt"
slimfs_umount "$TMP/mnt"
grep -q "token asked: service=\['slimfs-test'\] scope=\['repository:slimfs/tree:pull'\]" \
	"$TMP/proxy.log" || die "no token request with the repository's pull scope: $(grep token "$TMP/proxy.log")"
grep -q 'GET /v2/slimfs/tree/blobs/sha256:.* 206' "$TMP/proxy.log" ||
	die "no ranged blob read went through the token front"
# credentials from the Docker config file
mkdir -p "$TMP/docker"
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$port" \
	"$(printf tester:s3cret | base64)" >"$TMP/docker/config.json"
DOCKER_CONFIG=$TMP/docker run "$SLIMFS" pull -q --no-progress --cache "$TMP/cache" "$ref"
log "pass"
