# SPDX-License-Identifier: MIT
# Test servers on 127.0.0.1, started by the tests themselves and stopped at exit.
# Source after lib.sh (needs make_tmp's $TMP and at_exit).
#
#   start_nginx DIR >FILE             static files with Range (nginx); URL in FILE
#   start_registry >FILE              Debian's docker-registry, "127.0.0.1:PORT"
# Not in $(...): a command substitution is a subshell, whose at_exit hooks are
# lost, so the server would outlive the test.
#   start_faultserver FILE MODEFILE   range server whose answers go wrong on demand

free_port() {
	python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s).
wait_port() {
	local i
	for i in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	die "nothing listens on 127.0.0.1:$1"
}

# start_nginx DIR: serves DIR at http://127.0.0.1:PORT/; prints the URL.
start_nginx() {
	local root=$1 port d
	need_cmd nginx
	port=$(free_port)
	d=$(mktemp -d "$TMP/nginx.XXXXXX")
	mkdir -p "$d/tmp"
	cat >"$d/nginx.conf" <<NGX
daemon off;
user root;
worker_processes 2;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 256; }
http {
	access_log $d/access.log;
	client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp;
	uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
	keepalive_requests 100000;
	server { listen 127.0.0.1:$port; root $root; }
}
NGX
	nginx -c "$d/nginx.conf" >/dev/null 2>&1 </dev/null &
	at_exit "kill $! 2>/dev/null; wait $! 2>/dev/null"
	wait_port "$port"
	NGINX_LOG=$d/access.log
	echo "http://127.0.0.1:$port"
}

# start_registry [HTPASSWD]: Debian's docker-registry on 127.0.0.1; prints HOST:PORT.
start_registry() {
	local port d bin
	bin=$(command -v docker-registry || command -v registry || true)
	[ -n "$bin" ] || need_or_skip "needs docker-registry"
	port=$(free_port)
	d=$(mktemp -d "$TMP/registry.XXXXXX")
	{
		echo "version: 0.1"
		echo "log: {level: warn}"
		echo "storage: {filesystem: {rootdirectory: $d/data}, delete: {enabled: true}}"
		echo "http: {addr: 127.0.0.1:$port, secret: slimfs-tests}"
		if [ -n "${1:-}" ]; then
			echo "auth: {htpasswd: {realm: slimfs-tests, path: $1}}"
		fi
	} >"$d/config.yml"
	"$bin" serve "$d/config.yml" >"$d/log" 2>&1 </dev/null &
	at_exit "kill $! 2>/dev/null; wait $! 2>/dev/null"
	wait_port "$port"
	echo "127.0.0.1:$port"
}

# start_faultserver FILE MODEFILE: serves FILE at http://127.0.0.1:PORT/image with
# Range; each request reads MODEFILE for how to misbehave (see faultserver.py).
# Sets FAULT_PID; prints the URL.
start_faultserver() {
	local port
	port=$(free_port)
	python3 "$SRCDIR/faultserver.py" --port "$port" --mode-file "$2" "$1" \
		>"$TMP/faultserver.log" 2>&1 </dev/null &
	FAULT_PID=$!
	at_exit "kill $FAULT_PID 2>/dev/null; wait $FAULT_PID 2>/dev/null"
	wait_port "$port"
	echo "http://127.0.0.1:$port/image"
}
