#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# slimfs bundle end to end with a real runtime: an OCI image (tests/mkoci.py)
# of the Debian rootfs whose entrypoint prints a line, built into a slimfs
# image; `slimfs bundle` mounts it as DIR/rootfs and writes DIR/config.json;
# `runc run` must print the line (Env, WorkingDir, hostname, user applied),
# see a read-only root, a loopback-only network and its own pid namespace;
# a non-root --user must read the image too (allow_other); `bundle --remove`
# unmounts, waits for the daemon and removes DIR. Usage errors leave nothing.
. "${SRCDIR:-$(dirname "$0")/..}/lib.sh"

need_fuse
need_slimfs
need_cmd runc timeout
make_tmp

tarball=$("$SRCDIR/rootfs.sh") || die "tests/rootfs.sh failed"
run "$PYTHON" "$SRCDIR/mkoci.py" oci "$TMP/oci" --ref slimfs-test \
	--entrypoint '["/bin/sh", "-c"]' \
	--cmd '["echo \"slimfs-bundle-ok $GREETING $(pwd) $(id -u):$(id -g) $(hostname)\""]' \
	--env GREETING=hello --workdir /tmp "$tarball:none"
img=$TMP/img
run "$SLIMFS" build -q -o "$img" "$TMP/oci"
expect_root="slimfs-bundle-ok hello /tmp 0:0 slimfs"
expect_nobody="slimfs-bundle-ok hello /tmp 65534:65534 slimfs"

n=0
# runc_run DIR: runs the bundle, no terminal, stdin /dev/null; output in $OUT.
runc_run() {
	local id=slimfs-test-$$-$((++n)) rc=0
	at_exit "runc delete -f $id >/dev/null 2>&1"
	OUT=$(timeout 120 runc run --bundle "$1" "$id" </dev/null 2>"$TMP/runc.err") || rc=$?
	if [ $rc != 0 ]; then
		cat "$TMP/runc.err" >&2
		die "runc run --bundle $1 exited with $rc (output: $OUT)"
	fi
}

# remove_bundle DIR: --remove must unmount, leave no daemon and no DIR.
remove_bundle() {
	local dir=$1 rootfs
	rootfs=$(cd "$dir" && pwd)/rootfs
	run "$SLIMFS" bundle --remove "$dir"
	[ ! -e "$dir" ] || die "bundle --remove left $dir behind"
	grep -qF " $rootfs " /proc/self/mounts && die "bundle --remove left $rootfs mounted"
	pgrep -f -- "mount .*$rootfs\$" >/dev/null && die "bundle --remove: a daemon for $rootfs still runs"
	return 0
}

# (a) The image's own process: Entrypoint + Cmd, Env (+ PATH), WorkingDir.
# (a)-(c) use the full view: they run programs a minimal view may leave out.
b=$TMP/b1
run "$SLIMFS" bundle --view full "$img" "$b"
[ "$(stat -f -c %t "$b/rootfs")" = 65735546 ] || die "$b/rootfs is not a FUSE mount"
"$PYTHON" - "$b/config.json" <<'PY' || die "config.json is not what it should be"
import json, sys
c = json.load(open(sys.argv[1]))
p = c["process"]
def check(cond, what):
    if not cond:
        sys.exit("config.json: " + what + ": " + json.dumps(c, indent=1)[:3000])
check(c["ociVersion"] == "1.0.2", "ociVersion")
check(p["args"][:2] == ["/bin/sh", "-c"] and len(p["args"]) == 3, "process.args")
check("GREETING=hello" in p["env"], "process.env lacks GREETING")
check(any(e.startswith("PATH=") for e in p["env"]), "process.env lacks PATH")
check(p["cwd"] == "/tmp", "process.cwd")
check(p["user"]["uid"] == 0 and p["user"]["gid"] == 0, "process.user")
check(p["terminal"] is False, "process.terminal")
check(c["root"] == {"path": "rootfs", "readonly": True}, "root")
check(c["hostname"] == "slimfs", "hostname")
ns = {n["type"] for n in c["linux"]["namespaces"]}
check(ns == {"pid", "ipc", "uts", "mount", "network"}, "namespaces")
dests = [m["destination"] for m in c["mounts"]]
for d in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]:
    check(d in dests, "mounts lack " + d)
check("/proc/kcore" in c["linux"]["maskedPaths"], "maskedPaths")
check("/proc/sys" in c["linux"]["readonlyPaths"], "readonlyPaths")
check("CAP_KILL" in p["capabilities"]["bounding"], "capabilities")
check("CAP_SYS_ADMIN" not in p["capabilities"]["bounding"], "capabilities")
PY
runc_run "$b"
[ "$OUT" = "$expect_root" ] || die "container printed '$OUT', expected '$expect_root'"
log "runc run: '$OUT'"
remove_bundle "$b"

# (b) Arguments after --: the container sees a read-only root, its own pid
# namespace and only a loopback interface.
b=$TMP/b2
run "$SLIMFS" bundle -q --view full "$img" "$b" -- /bin/sh -c '
	if touch /probe 2>/dev/null; then echo root=writable; else echo root=read-only; fi
	if (: >/usr/bin/perl) 2>/dev/null; then echo perl=writable; else echo perl=read-only; fi
	echo pid1=$(cat /proc/1/comm)
	echo net=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | sort | tr "\n" " ")
	perl -e "print \"perl=ok\\n\""
	python3 -c "import json; print(\"python=\" + json.dumps([1]))"'
runc_run "$b"
expect=$(printf '%s\n' root=read-only perl=read-only pid1=sh net=lo perl=ok 'python=[1]')
[ "$OUT" = "$expect" ] || die "container printed:
$OUT
expected:
$expect"
log "runc run: read-only root, own pid namespace, loopback only, perl and python run"
remove_bundle "$b"

# (c) A non-root user by name, resolved through the image's /etc/passwd:
# the mount must let it read (allow_other) and the ids must be the image's.
b=$TMP/b3
run "$SLIMFS" bundle -q --view full --user nobody "$img" "$b"
runc_run "$b"
[ "$OUT" = "$expect_nobody" ] || die "container as nobody printed '$OUT', expected '$expect_nobody'"
log "runc run as nobody: '$OUT'"
remove_bundle "$b"

# (d) The image's default view (minimal when the build made one): the
# entrypoint's shell must be in it, whatever else it leaves out.
b=$TMP/b5
run "$SLIMFS" bundle -q "$img" "$b" -- /bin/sh -c 'echo default-view-ok'
runc_run "$b"
[ "$OUT" = default-view-ok ] || die "container on the default view printed '$OUT'"
remove_bundle "$b"

# (e) Failures leave nothing behind and keep what was there.
mkdir "$TMP/full"
echo keep >"$TMP/full/file"
run_fails "$SLIMFS" bundle "$img" "$TMP/full"
[ "$(cat "$TMP/full/file")" = keep ] && [ ! -e "$TMP/full/rootfs" ] ||
	die "bundle into a non-empty directory changed it"
run_fails "$SLIMFS" bundle --user no-such-user "$img" "$TMP/b4"
[ ! -e "$TMP/b4" ] || die "a failed bundle (unknown user) left $TMP/b4"
run_fails "$SLIMFS" bundle --view no-such-view "$img" "$TMP/b4"
[ ! -e "$TMP/b4" ] || die "a failed bundle (unknown view) left $TMP/b4"
run_fails "$SLIMFS" bundle "$TMP/no-such-image" "$TMP/b4"
[ ! -e "$TMP/b4" ] || die "a failed bundle (no image) left $TMP/b4"
run_fails "$SLIMFS" bundle --remove "$TMP/full"
[ "$(cat "$TMP/full/file")" = keep ] || die "bundle --remove of a non-bundle changed it"
rc=0
"$SLIMFS" bundle "$img" >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || die "bundle with one operand: exit $rc, expected 2 (usage)"
log "pass"
