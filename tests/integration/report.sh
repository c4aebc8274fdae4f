#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# slimfs report: figures, findings, packages and SBOMs, checked against a
# rootfs-like tree made here (counts and bytes computed independently with
# find), then against a minimal view that hides the shell (when build has
# --view), then against the debootstrap rootfs (when tests/rootfs.sh has it).
set -euo pipefail

SLIMFS=${SLIMFS:?SLIMFS must name the slimfs binary}
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
command -v python3 >/dev/null || { echo "SKIP: python3 is missing"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/slimfs-report.XXXXXX")
# SLIMFS_KEEP_TMP=1 keeps the work directory for a post-mortem.
trap '[ "${SLIMFS_KEEP_TMP:-0}" = 1 ] && echo "kept $tmp" || rm -rf "$tmp"' EXIT
src=$tmp/src

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
say() { echo "report.sh: $*"; }

# Exit status of a command that is expected to fail.
status() {
	local rc=0
	"$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
	echo "$rc"
}

# --- a small rootfs-like tree ----------------------------------------------
shell_bin=$(readlink -f /bin/dash 2>/dev/null || readlink -f /bin/sh)
[ -x "$shell_bin" ] || { echo "SKIP: no shell binary to copy"; exit 77; }

mkdir -p "$src"/usr/bin "$src"/usr/sbin "$src"/usr/lib/x86_64-linux-gnu \
	"$src"/usr/share/doc/libfoo "$src"/etc/cron.daily "$src"/srv/drop "$src"/tmp \
	"$src"/var/lib/dpkg/info "$src"/opt/app
ln -s usr/bin "$src"/bin
cp "$shell_bin" "$src"/usr/bin/dash               # a shell, by name
ln -s dash "$src"/usr/bin/sh                      # a shell, by name (a link)
cp "$shell_bin" "$src"/opt/app/launcher           # a shell, by content
{                                                 # a shell, by signature
	printf '\177ELF\002\001\001'
	head -c 70000 /dev/zero
	printf 'BusyBox v1.36.1 (2024-01-01 00:00:00 UTC) multi-call binary.'
	head -c 3000 /dev/zero
} >"$src"/opt/app/multitool
chmod 755 "$src"/opt/app/multitool
printf '#!/bin/sh\nexit 0\n' >"$src"/usr/bin/dpkg   # package managers
printf '#!/bin/sh\nexit 0\n' >"$src"/usr/bin/apt-get
printf '#!/bin/sh\n: daily\n' >"$src"/etc/cron.daily/dpkg # not one: a cron job
chmod 755 "$src"/usr/bin/dpkg "$src"/usr/bin/apt-get "$src"/etc/cron.daily/dpkg
printf 'not a shell\n' >"$src"/usr/share/doc/libfoo/bash  # not executable: not a shell
printf '#!/bin/sh\nid\n' >"$src"/usr/bin/su-lite
chmod 4755 "$src"/usr/bin/su-lite
printf '#!/bin/sh\nid\n' >"$src"/usr/sbin/checkpw
chmod 2755 "$src"/usr/sbin/checkpw
cp /bin/true "$src"/usr/bin/pinger
have_caps=1
# vfs_cap_data v2: effective, permitted = cap_net_bind_service (10) | cap_net_raw (13)
if command -v setfattr >/dev/null &&
	setfattr -n security.capability -v 0x0100000200240000000000000000000000000000 \
		"$src"/usr/bin/pinger 2>/dev/null; then
	:
elif command -v setcap >/dev/null &&
	setcap cap_net_bind_service,cap_net_raw+ep "$src"/usr/bin/pinger 2>/dev/null; then
	:
else
	say "cannot set security.capability here; capability checks skipped"
	have_caps=0
fi
chmod 1777 "$src"/tmp
chmod 0777 "$src"/srv/drop
printf 'x=1\n' >"$src"/etc/shared.conf
chmod 0666 "$src"/etc/shared.conf
printf 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n' \
	>"$src"/etc/os-release
head -c 12345 /dev/urandom >"$src"/usr/lib/x86_64-linux-gnu/libfoo.so.1
printf 'Copyright: nobody\n' >"$src"/usr/share/doc/libfoo/copyright

cat >"$src"/var/lib/dpkg/status <<'EOF'
Package: dash
Status: install ok installed
Priority: required
Architecture: amd64
Version: 0.5.12-2
Description: POSIX-compliant shell
 The Debian Almquist Shell.
 .
 Small and fast.

Package: pkgtools
Status: install ok installed
Architecture: amd64
Version: 1:2.3+dfsg-1~deb12u1
Description: tools

Package: libfoo1
Status: install ok installed
Multi-Arch: same
Architecture: amd64
Version: 1.0-1

Package: oldstuff
Status: deinstall ok config-files
Architecture: all
Version: 0.1
EOF
printf '/.\n/bin\n/bin/dash\n/usr/bin/sh\n/usr/share/man/man1/dash.1.gz\n' \
	>"$src"/var/lib/dpkg/info/dash.list
printf '/.\n/usr\n/usr/bin\n/usr/bin/dpkg\n/usr/bin/apt-get\n/etc/cron.daily/dpkg\n' \
	>"$src"/var/lib/dpkg/info/pkgtools.list
printf '/.\n/usr/lib/x86_64-linux-gnu/libfoo.so.1\n/usr/share/doc/libfoo/copyright\n' \
	>"$src"/var/lib/dpkg/info/libfoo1:amd64.list
printf '/etc/oldstuff.conf\n' >"$src"/var/lib/dpkg/info/oldstuff.list

# Figures, independently: paths below the root, regular files, their bytes.
figures() {
	local d=$1
	echo "$(find "$d" -mindepth 1 | wc -l) $(find "$d" -type f | wc -l)" \
		"$(find "$d" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')"
}
read -r want_entries want_files want_bytes < <(figures "$src")
say "tree: $want_entries entries, $want_files files, $want_bytes bytes"

img=$tmp/img.slimfs
"$SLIMFS" build -q -o "$img" "$src" || fail "build"
digest=$("$SLIMFS" report "$img" --view full --json |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')

# --- checks of a JSON report (python) ---------------------------------------
cat >"$tmp/check.py" <<'EOF'
import json, os, re, sys

def die(msg):
    sys.exit("FAIL: " + msg)

def eq(what, got, want):
    if got != want:
        die("%s: got %r, want %r" % (what, got, want))

mode = sys.argv[1]
j = json.load(open(sys.argv[2]))
env = os.environ
for k in ("image", "digest", "view", "views", "summary", "shells", "package_managers",
          "setuid", "setgid", "capabilities", "world_writable", "packages", "os"):
    if k not in j:
        die("key %s missing" % k)
eq("digest", j["digest"], env["DIGEST"])
s = j["summary"]
for k in ("entries", "regular_files", "bytes", "packages"):
    for f in ("view", "full", "share"):
        if f not in s[k]:
            die("summary.%s.%s missing" % (k, f))
eq("entries full", s["entries"]["full"], int(env["WANT_ENTRIES"]))
eq("files full", s["regular_files"]["full"], int(env["WANT_FILES"]))
eq("bytes full", s["bytes"]["full"], int(env["WANT_BYTES"]))
paths = lambda key: sorted(x["path"] for x in j[key])
pkgs = {p["name"]: p for p in j["packages"]}
eq("packages", sorted(pkgs), ["dash", "libfoo1", "pkgtools"])
eq("package count", s["packages"]["full"], 3)
eq("dash files", pkgs["dash"]["files"], 1)
eq("pkgtools files", pkgs["pkgtools"]["files"], 3)
eq("libfoo1 files", pkgs["libfoo1"]["files"], 2)
eq("pkgtools version", pkgs["pkgtools"]["version"], "1:2.3+dfsg-1~deb12u1")
eq("pkgtools purl", pkgs["pkgtools"]["purl"],
   "pkg:deb/debian/pkgtools@1%3A2.3%2Bdfsg-1~deb12u1?arch=amd64&distro=debian-12")
eq("os", j["os"], {"id": "debian", "version_id": "12"})

if mode in ("full", "noscan"):
    eq("view", j["view"], "full")
    for k in ("entries", "regular_files", "bytes"):
        eq(k + " view", s[k]["view"], s[k]["full"])
        eq(k + " share", s[k]["share"], 1.0)
    shells = sorted((x["path"], x["found_by"], x["name"]) for x in j["shells"])
    want = [("/opt/app/launcher", "content", "dash"), ("/usr/bin/dash", "name", "dash"),
            ("/usr/bin/sh", "name", "sh")]
    if mode == "full":
        want.append(("/opt/app/multitool", "signature", "busybox"))
    eq("shells", shells, sorted(want))
    eq("sh target", [x.get("target") for x in j["shells"] if x["path"] == "/usr/bin/sh"],
       ["dash"])
    eq("package managers", paths("package_managers"), ["/usr/bin/apt-get", "/usr/bin/dpkg"])
    eq("setuid", [(x["path"], x["mode"]) for x in j["setuid"]], [("/usr/bin/su-lite", "4755")])
    eq("setgid", [(x["path"], x["mode"]) for x in j["setgid"]], [("/usr/sbin/checkpw", "2755")])
    eq("world writable", sorted((x["path"], x["type"]) for x in j["world_writable"]),
       [("/etc/shared.conf", "file"), ("/srv/drop", "dir")])
    for p in pkgs.values():
        eq(p["name"] + " visible", p["files_visible"], p["files"])
        eq(p["name"] + " present", p["present"], True)
    eq("packages view", s["packages"]["view"], 3)
elif mode == "minimal":
    eq("view", j["view"], "minimal")
    eq("entries view", s["entries"]["view"], int(env["VIEW_ENTRIES"]))
    eq("files view", s["regular_files"]["view"], int(env["VIEW_FILES"]))
    eq("bytes view", s["bytes"]["view"], int(env["VIEW_BYTES"]))
    eq("shells", j["shells"], [])
    eq("package managers", j["package_managers"], [])
    eq("setuid", j["setuid"], [])
    eq("setgid", j["setgid"], [])
    eq("world writable", paths("world_writable"), ["/srv/drop"])
    eq("present", sorted(p["name"] for p in j["packages"] if p["present"]), ["libfoo1"])
    eq("libfoo1 visible", pkgs["libfoo1"]["files_visible"], 2)
    eq("dash visible", pkgs["dash"]["files_visible"], 0)
    eq("packages view", s["packages"]["view"], 1)
    if not s["entries"]["view"] < s["entries"]["full"]:
        die("the view is not smaller than the image")

if env["HAVE_CAPS"] == "1":
    eq("capabilities", paths("capabilities"), ["/usr/bin/pinger"])
    c = j["capabilities"][0]
    eq("permitted", c["permitted"], ["cap_net_bind_service", "cap_net_raw"])
    eq("inheritable", c["inheritable"], [])
    eq("effective", c["effective"], True)
    eq("caps text", c["capabilities"], "cap_net_bind_service,cap_net_raw=ep")
    eq("caps valid", c["valid"], True)
EOF

cat >"$tmp/check-sbom.py" <<'EOF'
import json, re, sys, urllib.parse

def die(msg):
    sys.exit("FAIL: " + msg)

kind, path, digest, present = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
want = sorted(present.split(",")) if present else []
hexd = digest.split(":")[1]
j = json.load(open(path))
if kind == "spdx":
    for k in ("spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace",
              "creationInfo", "packages", "relationships"):
        if k not in j:
            die("spdx: %s missing" % k)
    if j["spdxVersion"] != "SPDX-2.3" or j["dataLicense"] != "CC0-1.0" or \
       j["SPDXID"] != "SPDXRef-DOCUMENT":
        die("spdx: header %r" % {k: j[k] for k in ("spdxVersion", "dataLicense", "SPDXID")})
    if hexd not in j["documentNamespace"] or not re.match(r"^https?://", j["documentNamespace"]):
        die("spdx: namespace %s" % j["documentNamespace"])
    ci = j["creationInfo"]
    if not any(re.match(r"^Tool: slimfs-\d+\.\d+\.\d+", c) for c in ci["creators"]):
        die("spdx: creators %r" % ci["creators"])
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", ci["created"]):
        die("spdx: created %r" % ci["created"])
    ids = [p["SPDXID"] for p in j["packages"]]
    if len(set(ids)) != len(ids) or not all(re.match(r"^SPDXRef-[A-Za-z0-9.-]+$", i) for i in ids):
        die("spdx: SPDXIDs %r" % ids)
    pk = [p for p in j["packages"] if p["SPDXID"] != "SPDXRef-Image"]
    for p in pk:
        for k in ("name", "SPDXID", "versionInfo", "downloadLocation", "externalRefs"):
            if k not in p:
                die("spdx: package %s: %s missing" % (p.get("name"), k))
        if p["downloadLocation"] != "NOASSERTION":
            die("spdx: downloadLocation")
        refs = [r for r in p["externalRefs"] if r["referenceType"] == "purl"]
        if len(refs) != 1 or not re.match(r"^pkg:(deb/debian|apk/alpine)/" + re.escape(urllib.parse.quote(p["name"], safe="")) + "@",
                                           refs[0]["referenceLocator"]) or \
           refs[0]["referenceCategory"] != "PACKAGE-MANAGER":
            die("spdx: purl of %s: %r" % (p["name"], refs))
    if sorted(p["name"] for p in pk) != want:
        die("spdx: packages %r, want %r" % (sorted(p["name"] for p in pk), want))
    rel = j["relationships"]
    desc = [r for r in rel if r["relationshipType"] == "DESCRIBES" and r["spdxElementId"] == "SPDXRef-DOCUMENT"]
    if not desc or any(r["relatedSpdxElement"] not in ids for r in desc):
        die("spdx: no DESCRIBES relationship")
    related = {r["relatedSpdxElement"] for r in rel}
    if any(p["SPDXID"] not in related for p in pk):
        die("spdx: a package is in no relationship")
else:
    for k in ("bomFormat", "specVersion", "serialNumber", "version", "metadata", "components"):
        if k not in j:
            die("cyclonedx: %s missing" % k)
    if j["bomFormat"] != "CycloneDX" or j["specVersion"] != "1.5":
        die("cyclonedx: header")
    if not re.match(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                    j["serialNumber"]):
        die("cyclonedx: serialNumber %s" % j["serialNumber"])
    mc = j["metadata"]["component"]
    if mc["type"] != "container" or mc["version"] != digest:
        die("cyclonedx: metadata.component %r" % mc)
    refs = [c["bom-ref"] for c in j["components"]]
    if len(set(refs)) != len(refs):
        die("cyclonedx: bom-refs not unique")
    for c in j["components"]:
        for k in ("type", "name", "version", "purl"):
            if k not in c:
                die("cyclonedx: component %s: %s missing" % (c.get("name"), k))
        if c["type"] != "library" or not c["purl"].startswith("pkg:"):
            die("cyclonedx: component %r" % c)
    if sorted(c["name"] for c in j["components"]) != want:
        die("cyclonedx: components %r, want %r" % (sorted(c["name"] for c in j["components"]), want))
EOF

export DIGEST=$digest WANT_ENTRIES=$want_entries WANT_FILES=$want_files WANT_BYTES=$want_bytes
export HAVE_CAPS=$have_caps

# --- the full image ---------------------------------------------------------
"$SLIMFS" report "$img" --view full --json >"$tmp/full.json" || fail "report --json"
python3 "$tmp/check.py" full "$tmp/full.json"
"$SLIMFS" report "$img" --view full --json --no-scan >"$tmp/noscan.json" || fail "report --no-scan"
python3 "$tmp/check.py" noscan "$tmp/noscan.json"
"$SLIMFS" report "$img" --view full >"$tmp/full.txt" || fail "report (table)"
grep -q '^entries  *'"$want_entries"'  *'"$want_entries"' ' "$tmp/full.txt" ||
	{ cat "$tmp/full.txt"; fail "table: entries row"; }
grep -q '^  /usr/bin/su-lite ' "$tmp/full.txt" || fail "table: setuid file"
say "full view: figures and findings match the tree"

# -o writes atomically (no temporary file is left) and equals stdout.
mkdir "$tmp/out.d"
"$SLIMFS" report "$img" --view full --json -o "$tmp/out.d/r.json" || fail "report -o"
cmp "$tmp/full.json" "$tmp/out.d/r.json" || fail "-o differs from stdout"
[ "$(ls "$tmp/out.d")" = r.json ] || fail "-o left $(ls "$tmp/out.d")"

# SBOMs: required keys, packages of the view, deterministic with SOURCE_DATE_EPOCH.
for k in spdx cyclonedx; do
	SOURCE_DATE_EPOCH=86400 "$SLIMFS" report "$img" --view full --sbom $k -o "$tmp/$k.json" ||
		fail "--sbom $k"
	SOURCE_DATE_EPOCH=86400 "$SLIMFS" report "$img" --view full --sbom $k >"$tmp/$k.2.json"
	cmp "$tmp/$k.json" "$tmp/$k.2.json" || fail "--sbom $k is not deterministic"
	python3 "$tmp/check-sbom.py" $k "$tmp/$k.json" "$digest" dash,libfoo1,pkgtools
done
grep -q '"created": "1970-01-02T00:00:00Z"' "$tmp/spdx.json" || fail "SOURCE_DATE_EPOCH ignored"
say "SPDX and CycloneDX documents are valid and deterministic"

# Usage errors and failures: the right exit codes, no crash.
[ "$(status "$SLIMFS" report)" = 2 ] || fail "no image: want exit 2"
[ "$(status "$SLIMFS" report "$img" --sbom xml)" = 2 ] || fail "--sbom xml: want exit 2"
[ "$(status "$SLIMFS" report "$img" --json --sbom spdx)" = 2 ] || fail "--json --sbom: want 2"
[ "$(status "$SLIMFS" report "$img" --view nosuchview)" = 1 ] || fail "unknown view: want 1"
grep -q "nosuchview" "$tmp/err" || fail "unknown view: no message"
[ "$(status "$SLIMFS" report "$tmp/nonexistent")" = 1 ] || fail "missing image: want 1"
cp "$img" "$tmp/bad.slimfs"
printf '\377\377\377\377' | dd of="$tmp/bad.slimfs" bs=1 seek=300 conv=notrunc status=none
[ "$(status "$SLIMFS" report "$tmp/bad.slimfs")" = 1 ] || fail "corrupt image: want exit 1"
[ "$(status "$SLIMFS" report "$img" -o "$tmp/no/such/dir/r.txt")" = 1 ] || fail "-o bad dir"
say "errors: usage 2, failures 1"

# --- a minimal view that hides the shell ------------------------------------
cat >"$tmp/allow" <<'EOF'
/usr/lib/
/usr/share/doc/libfoo/copyright
/usr/bin/pinger
/srv/
/etc/os-release
EOF
vimg=$tmp/view.slimfs
"$SLIMFS" build -q -o "$vimg" --view "minimal=$tmp/allow" "$src" || fail "build --view"
# What the view shows, materialized by extract (another reader of the image):
# the allowed paths, their parent directories, and whatever the builder adds
# to every view (such as the /bin -> usr/bin link of a merged /usr).
"$SLIMFS" extract --view minimal "$vimg" "$tmp/vtree" >/dev/null 2>&1 ||
	fail "extract --view minimal"
for p in usr/lib/x86_64-linux-gnu/libfoo.so.1 usr/share/doc/libfoo/copyright \
	usr/bin/pinger srv/drop etc/os-release; do
	[ -e "$tmp/vtree/$p" ] || fail "view: $p missing"
done
[ ! -e "$tmp/vtree/usr/bin/dash" ] || fail "view: the shell is visible"
read -r v_entries v_files v_bytes < <(figures "$tmp/vtree")
vdigest=$("$SLIMFS" report "$vimg" --view full --json |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
DIGEST=$vdigest VIEW_ENTRIES=$v_entries VIEW_FILES=$v_files VIEW_BYTES=$v_bytes \
	"$SLIMFS" report "$vimg" --view minimal --json >"$tmp/min.json" ||
	fail "report --view minimal"
DIGEST=$vdigest VIEW_ENTRIES=$v_entries VIEW_FILES=$v_files VIEW_BYTES=$v_bytes \
	python3 "$tmp/check.py" minimal "$tmp/min.json"
# Without --view: the image's default view if it has one, else full.
"$SLIMFS" report "$vimg" --json >"$tmp/def.json"
python3 - "$tmp/def.json" <<'EOF' || fail "default view"
import json, sys
j = json.load(open(sys.argv[1]))
want = j["default_view"] if j["default_view"] is not None else "full"
sys.exit(0 if j["view"] == want else "view %r, default %r" % (j["view"], j["default_view"]))
EOF
for k in spdx cyclonedx; do
	"$SLIMFS" report "$vimg" --view minimal --sbom $k >"$tmp/min-$k.json"
	python3 "$tmp/check-sbom.py" $k "$tmp/min-$k.json" "$vdigest" libfoo1
done
say "minimal view: $v_entries of $want_entries entries, no shell, 1 of 3 packages"

# --- the debootstrap rootfs ---------------------------------------------------
if [ -x "$SRCDIR/tests/rootfs.sh" ] || [ -f "$SRCDIR/tests/rootfs.sh" ]; then
	if rdir=$(bash "$SRCDIR/tests/rootfs.sh" --dir 2>"$tmp/rootfs.log") &&
		rtar=$(bash "$SRCDIR/tests/rootfs.sh" 2>>"$tmp/rootfs.log"); then
		rimg=$tmp/rootfs.slimfs
		"$SLIMFS" build -q -o "$rimg" "$rtar" || fail "build the rootfs image"
		"$SLIMFS" report "$rimg" --view full --json >"$tmp/rootfs.json" || fail "report rootfs"
		installed=$(awk '/^Package:/ { p = 1 } /^Status:.* installed$/ { n += p; p = 0 }
			/^$/ { p = 0 } END { print n + 0 }' "$rdir/var/lib/dpkg/status")
		packages=$(grep -c '^Package:' "$rdir/var/lib/dpkg/status")
		say "rootfs: $packages packages in status, $installed installed"
		# Hardlinked files count once, as in the image.
		rfig="$(find "$rdir" -mindepth 1 | wc -l) $(find "$rdir" -type f -printf '%i\n' |
			sort -u | wc -l) $(find "$rdir" -type f -printf '%i %s\n' | sort -u |
			awk '{ s += $2 } END { print s + 0 }')"
		python3 - "$tmp/rootfs.json" "$installed" $rfig <<'EOF' || fail "rootfs report"
import json, sys
j = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
s = j["summary"]
fig = [s[k]["full"] for k in ("entries", "regular_files", "bytes")]
if fig != [int(x) for x in sys.argv[3:6]]:
    sys.exit("figures %r, find says %r" % (fig, sys.argv[3:6]))
if s["packages"]["full"] != n or len(j["packages"]) != n:
    sys.exit("packages: %d, want %d" % (s["packages"]["full"], n))
pk = {p["name"]: p for p in j["packages"]}
for name in ("bash", "dash", "dpkg", "apt", "libc6", "coreutils"):
    if name not in pk or not pk[name]["files"] or pk[name]["files_visible"] != pk[name]["files"]:
        sys.exit("package %s: %r" % (name, pk.get(name)))
shells = {x["path"] for x in j["shells"]}
for p in ("/usr/bin/bash", "/usr/bin/dash", "/usr/bin/sh"):
    if p not in shells:
        sys.exit("shell %s not found: %r" % (p, sorted(shells)))
pms = {x["path"] for x in j["package_managers"]}
if not {"/usr/bin/dpkg", "/usr/bin/apt-get"} <= pms:
    sys.exit("package managers: %r" % sorted(pms))
if "/usr/bin/passwd" not in {x["path"] for x in j["setuid"]}:
    sys.exit("setuid: passwd missing")
EOF
		SOURCE_DATE_EPOCH=0 "$SLIMFS" report "$rimg" --view full --sbom spdx >"$tmp/r-spdx.json"
		"$SLIMFS" report "$rimg" --view full --sbom cyclonedx >"$tmp/r-cdx.json"
		names=$(python3 -c 'import json,sys; print(",".join(p["name"] for p in json.load(open(sys.argv[1]))["packages"]))' "$tmp/rootfs.json")
		rdigest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "$tmp/rootfs.json")
		python3 "$tmp/check-sbom.py" spdx "$tmp/r-spdx.json" "$rdigest" "$names"
		python3 "$tmp/check-sbom.py" cyclonedx "$tmp/r-cdx.json" "$rdigest" "$names"
		say "rootfs: $installed packages, SBOMs valid"
		# A python3 view: its closure (libc, libexpat, zlib), no shell.
		printf '/etc/os-release\n' >"$tmp/rallow"
		"$SLIMFS" build -q -o "$tmp/rootfs-min.slimfs" --view "minimal=$tmp/rallow" \
			--entrypoint /usr/bin/python3 "$rtar" || fail "build the rootfs view"
		"$SLIMFS" report "$tmp/rootfs-min.slimfs" --json >"$tmp/rootfs-min.json"
		"$SLIMFS" report "$tmp/rootfs-min.slimfs" --sbom cyclonedx >"$tmp/rmin-cdx.json"
		python3 - "$tmp/rootfs-min.json" "$tmp/rmin-cdx.json" "$installed" <<'EOF' ||
import json, sys
j = json.load(open(sys.argv[1]))
bom = json.load(open(sys.argv[2]))
n = int(sys.argv[3])
s = j["summary"]
if j["view"] != "minimal" or j["default_view"] != "minimal":
    sys.exit("view %r, default %r" % (j["view"], j["default_view"]))
if j["shells"] or j["package_managers"] or j["setuid"]:
    sys.exit("shells %r, package managers %r, setuid %r" %
             (j["shells"], j["package_managers"], j["setuid"]))
present = {p["name"] for p in j["packages"] if p["present"]}
if s["packages"]["full"] != n or not 0 < s["packages"]["view"] < n or \
   s["packages"]["view"] != len(present):
    sys.exit("packages %r" % s["packages"])
if not {"libc6", "python3.11-minimal"} <= present or "bash" in present or "dpkg" in present:
    sys.exit("present packages %r" % sorted(present))
if sorted(c["name"] for c in bom["components"]) != sorted(present):
    sys.exit("cyclonedx components differ from the present packages")
if not s["bytes"]["view"] < s["bytes"]["full"] / 4:
    sys.exit("bytes %r" % s["bytes"])
EOF
			fail "rootfs minimal view report"
		say "rootfs python3 view: no shell, $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["packages"]["view"])' "$tmp/rootfs-min.json") of $installed packages"
	else
		say "no debootstrap rootfs available (see tests/rootfs.sh); rootfs checks skipped"
	fi
fi
say "ok"
