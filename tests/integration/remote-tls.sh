#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# HTTPS: TLS is verified by default. nginx on 127.0.0.1 serves an image with a
# certificate from a CA of this test's own: the mount refuses it, mounts with
# --cacert CA (and reads the right bytes), and with --insecure; pull too.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"
. "$SRCDIR/servers.sh"
need_fuse
need_slimfs
need_cmd openssl nginx
make_tmp

python3 "$SRCDIR/gendir.py" --seed 3 "$TMP/src" >/dev/null
mkdir -p "$TMP/www" "$TMP/pki"
run "$SLIMFS" build -q -o "$TMP/www/tree.slimfs" "$TMP/src"
first=$(cd "$TMP/src" && find . -type f -size +1k | sort | sed -n 1p)

# A CA and a server certificate for 127.0.0.1, signed by it.
cd "$TMP/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=slimfs-test-ca \
	-keyout ca.key -out ca.pem 2>/dev/null || die "openssl: CA"
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout srv.key -out srv.csr \
	2>/dev/null || die "openssl: request"
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
	-extfile ext.cnf -out srv.pem 2>/dev/null || die "openssl: sign"
cd - >/dev/null

port=$(free_port)
cat >"$TMP/nginx.conf" <<NGX
daemon off;
user root;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events { worker_connections 64; }
http {
	access_log $TMP/nginx-access.log;
	client_body_temp_path $TMP; proxy_temp_path $TMP; fastcgi_temp_path $TMP;
	uwsgi_temp_path $TMP; scgi_temp_path $TMP;
	server {
		listen 127.0.0.1:$port ssl;
		ssl_certificate $TMP/pki/srv.pem;
		ssl_certificate_key $TMP/pki/srv.key;
		root $TMP/www;
	}
}
NGX
nginx -c "$TMP/nginx.conf" </dev/null >/dev/null 2>&1 &
at_exit "kill $! 2>/dev/null; wait $! 2>/dev/null"
wait_port "$port"
url=https://127.0.0.1:$port/tree.slimfs
mkdir -p "$TMP/mnt"

# Not trusted: refused, with a message about the certificate.
rc=0
"$SLIMFS" mount -f --cache none "$url" "$TMP/mnt" 2>"$TMP/err" || rc=$?
[ $rc != 0 ] || die "an untrusted certificate was accepted"
grep -qi "certificate\|SSL" "$TMP/err" || die "no word about the certificate: $(cat "$TMP/err")"
log "untrusted certificate refused: $(head -n 1 "$TMP/err")"

slimfs_mount --cache none --cacert "$TMP/pki/ca.pem" "$url" "$TMP/mnt"
cmp "$TMP/src/$first" "$TMP/mnt/$first" || die "wrong bytes over HTTPS"
slimfs_umount "$TMP/mnt"
slimfs_mount --cache none --insecure "$url" "$TMP/mnt"
cmp "$TMP/src/$first" "$TMP/mnt/$first" || die "wrong bytes over HTTPS (--insecure)"
slimfs_umount "$TMP/mnt"
run_fails "$SLIMFS" pull -q --no-progress --cache "$TMP/cache" "$url"
run "$SLIMFS" pull -q --no-progress --cache "$TMP/cache" --cacert "$TMP/pki/ca.pem" "$url"
log "pass"
