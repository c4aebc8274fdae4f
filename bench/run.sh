#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# slimfs benchmark: slimfs against its peers on the debootstrap rootfs, in one run.
#
#   bench/run.sh [--runs N] [--out DIR] [options] [build|mount|all|floors]
#
#   build  build time, CPU time and image size: slimfs, mksquashfs (zstd -3),
#          tar | zstd -3 -T0, tar | gzip -6, mkfs.erofs (lz4hc)
#   mount  mount time, full-tree read and metadata walk cold and warm, random
#          4 KiB read IOPS (fio), daemon peak RSS, unmount time: slimfs,
#          squashfuse_ll, kernel squashfs, kernel erofs, the plain directory
#   floors (not in 'all') what bounds three mount rows from below, beside
#          slimfs and squashfuse_ll: cold start of /bin/true and of a static
#          no-op; unmount after a full-tree read split into the unmount
#          command and the daemon's exit; daemon memory split into shared
#          libraries, executable, mapped image and anonymous memory
#
# Options:
#   --runs N         measured runs per row (default 3; medians with min-max)
#   --out DIR        where the tables go (default bench/results)
#   --slimfs PATH    slimfs binary to measure (default: a release build of
#                    the committed tree at --rev, made under the work directory)
#   --rev REV        git revision to build (default HEAD)
#   --rootfs DIR     rootfs directory (default: tests/rootfs.sh --dir)
#   --work DIR       scratch space on a real disk (default /var/tmp/slimfs-bench)
#   --fio-time S     seconds per fio run (default 10)
#   --fio-size MIB   size of the file fio reads (default 256)
#   --quiet-wait S   wait up to S seconds for the machine to be idle before each
#                    part (default 30; 0 = do not wait)
#   --keep           keep the work directory (images, tree copy)
#
# Needs root (drop_caches, loop mounts). Writes DIR/build.md, DIR/mount.md,
# DIR/machine-PART.md, raw samples DIR/*.tsv and DIR/*.png (gnuplot, if installed).
# See bench/README.md for what each row means.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

runs=3
out=$here/results
slimfs=
rev=HEAD
rootfs=
work=/var/tmp/slimfs-bench
fio_time=10
fio_size=256
quiet_wait=30
keep=0
what=all

usage() {
	sed -n '3,33p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--slimfs) slimfs=$2; shift 2 ;;
	--rev) rev=$2; shift 2 ;;
	--rootfs) rootfs=$2; shift 2 ;;
	--work) work=$2; shift 2 ;;
	--fio-time) fio_time=$2; shift 2 ;;
	--fio-size) fio_size=$2; shift 2 ;;
	--quiet-wait) quiet_wait=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage 0 ;;
	build | mount | all | floors) what=$1; shift ;;
	*) echo "run.sh: unknown argument '$1'" >&2; usage ;;
	esac
done

say() { echo "bench: $*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (drop_caches, loop mounts)"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number"
for t in mksquashfs squashfuse_ll mkfs.erofs fio zstd gzip tar python3 fusermount3 mountpoint; do
	command -v "$t" >/dev/null || die "$t is not installed (.ci/deps.sh installs it)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time is not installed (Debian package 'time')"

mkdir -p "$out" "$work"
out=$(cd "$out" && pwd)
work=$(cd "$work" && pwd)

# ---------------------------------------------------------------------------
# Inputs: slimfs binary (release build) and the rootfs

if [ -z "$slimfs" ]; then
	# A release build of the committed tree ($rev), not of the working tree, so
	# that the numbers belong to a commit.
	rev_id=$(git -C "$top" rev-parse --short "$rev") || die "no git revision '$rev' in $top"
	src=$work/src-$rev_id
	bdir=$work/build-$rev_id
	if [ ! -x "$bdir/slimfs" ]; then
		say "building slimfs $rev_id (release) in $bdir"
		rm -rf "$src" "$bdir"
		mkdir -p "$src"
		git -C "$top" archive "$rev_id" | tar -x -C "$src"
		meson setup "$bdir" "$src" --buildtype=release -Dtests=false >"$work/meson.log" 2>&1 ||
			{ tail -n 20 "$work/meson.log" >&2; die "meson setup failed"; }
		ninja -C "$bdir" slimfs >"$work/ninja.log" 2>&1 ||
			{ tail -n 30 "$work/ninja.log" >&2; die "ninja failed"; }
	fi
	slimfs=$bdir/slimfs
fi
[ -x "$slimfs" ] || die "$slimfs is not an executable"
slimfs=$(readlink -f "$slimfs")
if [ -z "$rootfs" ]; then
	rootfs=$("$top/tests/rootfs.sh" --dir) || die "tests/rootfs.sh failed"
fi
[ -d "$rootfs" ] || die "$rootfs is not a directory"

# ---------------------------------------------------------------------------
# Helpers

# Microseconds since the epoch (bash 5).
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", (b - a) / 1e6 }'; }

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# Sample file: part<TAB>measure<TAB>subject<TAB>run<TAB>value
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$raw"; }

# Waits (at most $quiet_wait s) until other processes use under 25% of the CPUs
# over a second; returns the busy percentage last seen, for the notes.
busy_pct() {
	local a b
	read -ra a </proc/stat
	sleep 1
	read -ra b </proc/stat
	local idle=$((b[4] + b[5] - a[4] - a[5])) total=0 i
	for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
	[ "$total" -gt 0 ] || total=1
	echo $((100 - 100 * idle / total))
}
wait_quiet() {
	local deadline=$((SECONDS + quiet_wait)) b
	b=$(busy_pct)
	while [ "$b" -ge 25 ] && [ $SECONDS -lt $deadline ]; do
		say "machine busy ($b% CPU used by others), waiting"
		sleep 4
		b=$(busy_pct)
	done
	echo "$b"
}

note_load() {
	local b
	b=$(busy_pct)
	printf '| %s | %s | %s%% | %s |\n' "$(date -u +%H:%M:%S)" "$1" "$b" \
		"$(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/load.md"
}

# ---------------------------------------------------------------------------
# Part 1: build

build_cmd() { # tool out
	local t=$1 o=$2
	case "$t" in
	slimfs) "$slimfs" build -q --no-progress -o "$o" "$rootfs" ;;
	mksquashfs)
		mksquashfs "$rootfs" "$o" -comp zstd -Xcompression-level 3 -noappend \
			-quiet -no-progress >/dev/null
		;;
	tar-zstd) tar -C "$rootfs" -cf - . | zstd -3 -T0 -q >"$o" ;;
	tar-gzip) tar -C "$rootfs" -cf - . | gzip -6 >"$o" ;;
	erofs) mkfs.erofs -zlz4hc --quiet "$o" "$rootfs" >/dev/null ;;
	esac
}

part_build() {
	export -f build_cmd
	export slimfs rootfs
	local tools=(slimfs mksquashfs tar-zstd tar-gzip erofs) d=$work/build t r o i n
	local t0 t1 t2 cpu
	mkdir -p "$d"
	printf 'build\tquiet\t-\t0\t%s\n' "$(wait_quiet)" >>"$raw"
	note_load "build: start"
	say "build: warming the page cache over $rootfs"
	tar -C "$rootfs" -cf - . | wc -c >/dev/null
	say "build: one untimed warm-up run of each tool"
	for t in "${tools[@]}"; do
		rm -f "$d/$t.out"
		build_cmd "$t" "$d/$t.out"
		sync
	done
	n=${#tools[@]}
	for ((r = 1; r <= runs; r++)); do
		# Rotate the order so that no tool always runs after the same one.
		for ((i = 0; i < n; i++)); do
			t=${tools[$(((i + r - 1) % n))]}
			o=$d/$t.out
			rm -f "$o"
			sync
			t0=$(now_us)
			/usr/bin/time -f '%U %S' -o "$d/time.txt" bash -c 'build_cmd "$0" "$1"' "$t" "$o"
			t1=$(now_us)
			sync
			t2=$(now_us)
			cpu=$(awk '{ printf "%.3f", $1 + $2 }' "$d/time.txt")
			record build wall "$t" "$r" "$(secs "$t0" "$t1")"
			record build wall_sync "$t" "$r" "$(secs "$t0" "$t2")"
			record build cpu "$t" "$r" "$cpu"
			record build size "$t" "$r" "$(stat -c %s "$o")"
			say "build run $r: $t $(secs "$t0" "$t1") s (+sync $(secs "$t1" "$t2") s), cpu $cpu s, $(stat -c %s "$o") bytes"
		done
	done
	note_load "build: end"
	rm -f "$d"/*.out
}

# ---------------------------------------------------------------------------
# Part 2: mount

fs_list=(slimfs squashfuse_ll squashfs erofs dir)
mnt=$work/mnt
bigrel=opt/slimfs-bench/random.bin

# Prints the pid of the FUSE daemon serving $mnt (a process whose argv has it).
daemon_pid() {
	local p a
	for p in /proc/[0-9]*; do
		case "$(cat "$p/comm" 2>/dev/null)" in
		slimfs | squashfuse_ll) ;;
		*) continue ;;
		esac
		while IFS= read -r -d '' a; do
			if [ "$a" = "$mnt" ]; then
				echo "${p#/proc/}"
				return 0
			fi
		done <"$p/cmdline" 2>/dev/null
	done
	return 1
}

# The directory the measurements read for filesystem $1.
root_of() { if [ "$1" = dir ]; then echo "$work/tree"; else echo "$mnt"; fi; }

do_mount() {
	case "$1" in
	slimfs) "$slimfs" mount -q "$work/img.slimfs" "$mnt" ;;
	squashfuse_ll) squashfuse_ll "$work/img.sqfs" "$mnt" ;;
	squashfs) mount -t squashfs -o loop,ro "$work/img.sqfs" "$mnt" ;;
	erofs) mount -t erofs -o loop,ro "$work/img.erofs" "$mnt" ;;
	dir) return 0 ;;
	esac
}

# Unmounts; prints the seconds until the daemon (if any) has exited.
do_umount() {
	local fs=$1 pid='' t0 t1
	[ "$fs" = dir ] && { echo 0; return 0; }
	case "$fs" in slimfs | squashfuse_ll) pid=$(daemon_pid) || pid= ;; esac
	t0=$(now_us)
	case "$fs" in
	slimfs | squashfuse_ll) fusermount3 -u "$mnt" ;;
	*) umount "$mnt" ;;
	esac
	if [ -n "$pid" ]; then
		# Until it has exited: a zombie counts as gone (this container's init
		# reaps orphans up to a second late, which is not the daemon's time).
		while [ -e "/proc/$pid" ] &&
			! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
			sleep 0.002
		done
	fi
	t1=$(now_us)
	secs "$t0" "$t1"
}

# Fresh mount with every cache empty; records the mount time as $2 if given:
# until the mount command returns. The check that it mounted is not timed:
# mountpoint(1) loads libmount, libblkid, libselinux and libpcre2, which
# mount(8) has just read for the kernel file systems and a FUSE daemon has not
# (~10 ms more of cold disk for the FUSE peers than for the kernel's).
cold_mount() {
	local fs=$1 t0 t1
	drop_caches
	t0=$(now_us)
	do_mount "$fs"
	t1=$(now_us)
	[ "$fs" = dir ] || mountpoint -q "$mnt" || die "$fs: $mnt is not a mount point after mounting"
	if [ -n "${2:-}" ] && [ "$fs" != dir ]; then
		record "$part" mount_s "$fs" "$run" "$(secs "$t0" "$t1")"
	fi
	return 0
}

hwm_kib() { # pid
	awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

timed() { # measure fs cmd...
	local m=$1 fs=$2 t0 t1
	shift 2
	t0=$(now_us)
	"$@"
	t1=$(now_us)
	record mount "$m" "$fs" "$run" "$(secs "$t0" "$t1")"
}

tar_read() { tar -cf - -C "$1" --exclude="./$bigrel" . | wc -c >/dev/null; }
walk() { find "$1" -printf '%s %m %u\n' | wc -l >/dev/null; }

fio_iops() { # dir jobs
	fio --name=randread --filename="$1/$bigrel" --readonly --rw=randread --bs=4k \
		--ioengine=psync --numjobs="$2" --time_based --runtime="$fio_time" \
		--invalidate=1 --group_reporting --output-format=json 2>"$work/fio.err" |
		python3 -c 'import json, sys
d = json.load(sys.stdin)
print("%.0f" % sum(j["read"]["iops"] for j in d["jobs"]))'
}

prepare_mount() {
	say "mount: copying the rootfs to $work/tree and adding a ${fio_size} MiB file for fio"
	rm -rf "$work/tree"
	cp -a "$rootfs" "$work/tree"
	mkdir -p "$work/tree/${bigrel%/*}"
	# Every 4 KiB: 2 KiB of pseudo-random bytes then 2 KiB of zeros, so that
	# the file compresses about 2:1 and shares nothing with the rest of the tree.
	python3 - "$work/tree/$bigrel" "$fio_size" <<-'EOF'
		import random, sys
		rnd = random.Random(20240601)
		with open(sys.argv[1], "wb") as f:
		    for _ in range(int(sys.argv[2]) * 256 // 64):
		        f.write(b"".join(rnd.randbytes(2048) + bytes(2048) for _ in range(64)))
	EOF
	say "mount: building the images (untimed)"
	rm -f "$work"/img.*
	"$slimfs" build -q --no-progress -o "$work/img.slimfs" "$work/tree"
	mksquashfs "$work/tree" "$work/img.sqfs" -comp zstd -Xcompression-level 3 -noappend \
		-quiet -no-progress >/dev/null
	mkfs.erofs -zlz4hc --quiet "$work/img.erofs" "$work/tree" >/dev/null
	local f
	for f in slimfs sqfs erofs; do
		printf '%s\timage_size\t%s\t0\t%s\n' "$part" "$f" "$(stat -c %s "$work/img.$f")" >>"$raw"
	done
	mkdir -p "$mnt"
	sync
}

cleanup_mount() {
	if mountpoint -q "$mnt" 2>/dev/null; then
		fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
	fi
}

part_mount() {
	local fs pid h1 h1_rss h2 i n=${#fs_list[@]} root
	prepare_mount
	printf 'mount\tquiet\t-\t0\t%s\n' "$(wait_quiet)" >>"$raw"
	note_load "mount: start"
	for ((run = 1; run <= runs; run++)); do
		for ((i = 0; i < n; i++)); do
			fs=${fs_list[$(((i + run - 1) % n))]}
			root=$(root_of "$fs")
			say "mount run $run: $fs"
			cleanup_mount
			# A: mount time, full-tree read cold then warm, RSS, unmount time.
			cold_mount "$fs" record
			pid=
			case "$fs" in slimfs | squashfuse_ll) pid=$(daemon_pid) || die "$fs: no daemon found" ;; esac
			timed read_cold "$fs" tar_read "$root"
			timed read_warm "$fs" tar_read "$root"
			h1_rss=
			[ -n "$pid" ] && h1_rss=$(hwm_kib "$pid")
			h1=$(do_umount "$fs")
			[ "$fs" = dir ] || record mount umount_s "$fs" "$run" "$h1"
			# B: metadata walk cold then warm.
			cold_mount "$fs"
			timed find_cold "$fs" walk "$root"
			timed find_warm "$fs" walk "$root"
			do_umount "$fs" >/dev/null
			# C, D: random 4 KiB reads, one job then four, each from a fresh mount.
			cold_mount "$fs"
			record mount fio_j1 "$fs" "$run" "$(fio_iops "$root" 1)"
			do_umount "$fs" >/dev/null
			cold_mount "$fs"
			record mount fio_j4 "$fs" "$run" "$(fio_iops "$root" 4)"
			[ -n "$pid" ] && pid=$(daemon_pid) && h2=$(hwm_kib "$pid")
			do_umount "$fs" >/dev/null
			if [ -n "$pid" ]; then
				record mount rss_read "$fs" "$run" "$h1_rss"
				record mount rss_fio "$fs" "$run" "$h2"
			fi
		done
	done
	note_load "mount: end"
}

# ---------------------------------------------------------------------------
# Part 3: floors (bench/README.md, "Floors")

# Resident KiB of a pid: shared libraries (*.so*), the executable, other
# mapped files (slimfs maps its image's index), anonymous memory.
rss_split() {
	local exe
	exe=$(readlink "/proc/$1/exe")
	awk -v exe="$exe" '
		/^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6) ? $6 : "" }
		/^Rss:/ {
			if (name == exe) x += $2
			else if (name ~ /^\/.*\.so/) l += $2
			else if (name ~ /^\//) f += $2
			else a += $2
		}
		END { printf "%d %d %d %d\n", l, x, f, a }' "/proc/$1/smaps"
}

# Cold start (page cache dropped) of a no-op program, in seconds.
cold_noop() { # subject path
	local t0 t1
	drop_caches
	t0=$(now_us)
	"$2"
	t1=$(now_us)
	record floors start "$1" "$run" "$(secs "$t0" "$t1")"
}

# The process has exited (or is a zombie), with bash builtins only.
exited() { # pid
	local k v
	[ -r "/proc/$1/status" ] || return 0
	while read -r k v _; do
		[ "$k" = State: ] && { [ "$v" = Z ]; return; }
	done <"/proc/$1/status" 2>/dev/null
	return 0
}

# After one cold full-tree read: the daemon's memory, then the unmount command
# and, FUSE, until the daemon has exited (a busy wait, no exec in the loop).
floors_after_read() { # fs
	local fs=$1 pid='' t0 t1 t2 split
	cold_mount "$fs"
	case "$fs" in slimfs | squashfuse_ll) pid=$(daemon_pid) || die "$fs: no daemon found" ;; esac
	tar_read "$mnt"
	if [ -n "$pid" ]; then
		read -r -a split < <(rss_split "$pid")
		record floors rss_libs "$fs" "$run" "${split[0]}"
		record floors rss_exe "$fs" "$run" "${split[1]}"
		record floors rss_file "$fs" "$run" "${split[2]}"
		record floors rss_anon "$fs" "$run" "${split[3]}"
		record floors rss_peak "$fs" "$run" "$(hwm_kib "$pid")"
	fi
	t0=$(now_us)
	case "$fs" in
	slimfs | squashfuse_ll) fusermount3 -u "$mnt" ;;
	*) umount "$mnt" ;;
	esac
	t1=$(now_us)
	if [ -n "$pid" ]; then
		while ! exited "$pid"; do :; done
	fi
	t2=$(now_us)
	record floors umount_cmd "$fs" "$run" "$(secs "$t0" "$t1")"
	[ -z "$pid" ] || record floors umount_total "$fs" "$run" "$(secs "$t0" "$t2")"
}

part_floors() {
	local subj i n starts=(true noop-static squashfuse_ll slimfs) reads=(squashfuse_ll slimfs squashfs)
	prepare_mount
	command -v cc >/dev/null || die "'cc' is missing (build-essential)"
	printf 'int main(void) { return 0; }\n' >"$work/noop.c"
	cc -O2 -static -o "$work/noop-static" "$work/noop.c" || die "cc -static failed (libc6-dev?)"
	printf 'floors\tquiet\t-\t0\t%s\n' "$(wait_quiet)" >>"$raw"
	note_load "floors: start"
	for ((run = 1; run <= runs; run++)); do
		say "floors run $run"
		n=${#starts[@]}
		for ((i = 0; i < n; i++)); do
			subj=${starts[$(((i + run - 1) % n))]}
			case "$subj" in
			true) cold_noop true /bin/true ;;
			noop-static) cold_noop noop-static "$work/noop-static" ;;
			*)
				cleanup_mount
				cold_mount "$subj" record
				do_umount "$subj" >/dev/null
				;;
			esac
		done
		n=${#reads[@]}
		for ((i = 0; i < n; i++)); do
			cleanup_mount
			floors_after_read "${reads[$(((i + run - 1) % n))]}"
		done
	done
	note_load "floors: end"
}

# ---------------------------------------------------------------------------

raw=$work/samples.tsv
: >"$raw"
{
	echo '| time (UTC) | point | CPU busy (1 s sample) | loadavg 1/5/15 min |'
	echo '|---|---|---|---|'
} >"$work/load.md"
trap 'cleanup_mount' EXIT
started=$SECONDS

part=$what # the part whose samples cold_mount records
case "$what" in
build) part_build ;;
mount) part_mount ;;
all) part_build; part=mount; part_mount ;;
floors) part_floors ;;
esac

# Keep the samples of the part that ran; the other part's tables stay as they were.
for p in build mount floors; do
	if grep -q "^$p	" "$raw"; then
		{
			printf 'part\tmeasure\tsubject\trun\tvalue\n'
			grep "^$p	" "$raw"
		} >"$out/$p.tsv"
	fi
done

python3 "$here/report.py" --out "$out" --runs "$runs" --fio-time "$fio_time" \
	--fio-size "$fio_size" --slimfs "$slimfs" --rootfs "$rootfs" --elapsed $((SECONDS - started)) \
	--parts "$what" --commit "${rev_id:-unknown (--slimfs given)}" \
	--load "$work/load.md"
[ "$keep" = 1 ] || rm -rf "$work/tree" "$work"/img.* "$work/build"
say "done in $((SECONDS - started)) s; tables in $out"
