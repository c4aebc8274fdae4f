#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Lazy pulls, the headline benchmark: cold start of a command from an image served
# over a real (shaped) network, for docker-style pull+extract, squashfs download,
# and slimfs (lazy, profile prefetch, minimal view), against the limit.
#
#   bench/lazy.sh [--runs N] [options]
#
# Part 1 (real network): nginx in network namespace "server", a delaying proxy
#   (bench/lazy-proxy.c, DELAY per HTTP request) in front of it, a veth pair to
#   namespace "client" capped with tc tbf. Conditions: 100mbit + 20 ms per request,
#   1gbit + 1 ms. Configurations, each cold (page cache dropped, fresh dirs, fresh
#   daemons), median of N:
#     a  docker-style: curl the gzip'ed tar layer, tar xzf, run
#     b  curl a squashfs image (zstd), squashfuse_ll, run
#     c  slimfs lazy: image without profile, --prefetch none, fresh cache dir
#     d  slimfs profile: image built with --profile (prefetch at mount)
#     e  slimfs minimal: same image, --view minimal (runtime-base + profile paths)
#     f  limit: run on the plain directory + one transfer of the zstd -3 size of
#        exactly the bytes the workload reads
#     g  slimfs full: slimfs pull of the whole image (d's), then mount and run (the
#        real-network twin of slimfs bench's "full" mode)
# Part 2 (emulated network): slimfs bench --rate/--rtt on the same images, and a
#   table comparing it with part 1.
#
# Options:
#   --runs N         runs per configuration (default 3)
#   --out DIR        results (default bench/results): lazy.md, lazy.png, lazy-*.{json,svg,png}
#   --slimfs PATH    slimfs binary (default: release build of the committed tree at
#                    --rev, made under the work directory)
#   --rev REV        git revision to build (default HEAD)
#   --rootfs DIR     rootfs (default: tests/rootfs.sh --dir)
#   --work DIR       scratch space (default /var/tmp/slimfs-lazybench)
#   --conditions L   comma list of slow,fast (default both)
#   --workloads L    comma list of w1,w2 (default both)
#   --configs L      comma list of a..g (default all)
#   --kernel-readahead SIZE  'slimfs mount --kernel-readahead SIZE' for the traced run
#                    and every slimfs run (c, d, e, g, part 2) alike (default: the
#                    kernel's read-ahead, 128K)
#   --no-emulated    skip part 2
#   --keep           keep the work directory
#   --reuse          reuse the inputs (images, profiles, read sizes) of a kept work dir
#   --report-only    only redo lazy.md and lazy.png from the samples in --out
#
# Needs root. Cleans up namespaces, qdiscs, mounts, loop devices, nginx and the
# proxy on exit, also on failure. See bench/results/lazy.md for what is measured.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

runs=3
out=$here/results
slimfs=
rev=HEAD
rootfs=
work=/var/tmp/slimfs-lazybench
conditions=slow,fast
workloads=w1,w2
configs=a,b,c,d,e,f,g
emulated=1
keep=0
reuse=0
kra=() # --kernel-readahead: mount options, the same for the trace and the runs
report_only=0

usage() {
	sed -n '3,40p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

# --- report (tables, goals, comparison, chart) ------------------------------------------
# report DIR: lazy.md and lazy.png from DIR/lazy-samples.tsv, lazy-meta.txt, lazy-bench-*.json
# (and the hand-written DIR/lazy-notes.md, included as is when present)
report() {
	python3 - "$1" <<'PY'
import json, os, statistics, subprocess, sys, time
out = sys.argv[1]
meta = {}
for line in open(os.path.join(out, "lazy-meta.txt")):
    k, _, v = line.rstrip("\n").partition("=")
    meta[k] = v
rows = {}
for i, line in enumerate(open(os.path.join(out, "lazy-samples.tsv"))):
    if i == 0:
        continue
    c, w, cfg, run, total, b, req, parts = line.rstrip("\n").split("\t")
    pd = {}
    for kv in parts.split():
        k, _, v = kv.partition("=")
        pd[k] = float(v)
    rows.setdefault((c, w, cfg), []).append(
        {"t": float(total), "bytes": int(b), "req": int(req), "parts": pd})

CONDS = [c for c in ("slow", "fast") if any(k[0] == c for k in rows)]
WLS = [w for w in ("w1", "w2") if any(k[1] == w for k in rows)]
CFGS = [c for c in "abcdefg" if any(k[2] == c for k in rows)]
COND = {"slow": "100 Mbit/s + 20 ms/request", "fast": "1 Gbit/s + 1 ms/request"}
RATE = {"slow": 100e6 / 8, "fast": 1e9 / 8}
DELAY = {"slow": 0.020, "fast": 0.001}
WL = {"w1": "W1 python3 (`import json, sqlite3, urllib.request`)",
      "w2": "W2 perl (`-MPOSIX -MFile::Spec`)"}
CFG = {
    "a": "docker-style: curl layer.tar.gz, tar xzf, run",
    "b": "curl squashfs (zstd -3), squashfuse_ll, run",
    "c": "slimfs lazy (no profile, --prefetch none)",
    "d": "slimfs, image with profile (prefetch)",
    "e": "slimfs minimal view + profile",
    "f": "limit: plain dir + transfer of zstd-3(bytes read)",
    "g": "slimfs pull (whole image) + mount + run",
}

def med(c, w, cfg, key="t", part=None):
    xs = rows.get((c, w, cfg), [])
    if part:
        xs = [r["parts"][part] for r in xs if part in r["parts"]]
    else:
        xs = [r[key] for r in xs]
    return statistics.median(xs) if xs else None

def rng(c, w, cfg):
    xs = [r["t"] for r in rows.get((c, w, cfg), [])]
    return (min(xs), max(xs)) if xs else (None, None)

def ft(v):
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"

def cell_t(c, w, cfg):
    m = med(c, w, cfg)
    if m is None:
        return "-"
    lo, hi = rng(c, w, cfg)
    return f"{ft(m)} ({ft(lo)}-{ft(hi)})"

def mb(b):
    return "-" if b is None else f"{b / 1e6:.2f}"

readsum = {}
for w in WLS:
    rb, nf, fs, zs = (int(x) for x in meta[f"readsum_{w}"].split())
    readsum[w] = {"read": rb, "files": nf, "whole": fs, "zstd": zs}

L = []
P = L.append
P("# Lazy pulls: cold start over a real network")
P("")
P(f"_Written by `bench/lazy.sh` on {time.strftime('%Y-%m-%d %H:%M %Z')}; slimfs "
  f"{meta.get('slimfs_rev')}; {meta.get('runs')} run(s) per cell; slimfs mounts with kernel "
  f"read-ahead {meta.get('kernel_readahead', 'default')}; kernel {meta.get('kernel')}, "
  f"{meta.get('cpus')} vCPUs, load average at the end {meta.get('load')}; whole run "
  f"{float(meta.get('total_s', 0)) / 60:.1f} min (part 1 {float(meta.get('part1_s', 0)) / 60:.1f}, "
  f"part 2 {float(meta.get('part2_s', 0)) / 60:.1f}). nginx {meta.get('nginx')}, curl "
  f"{meta.get('curl')}, squashfuse {meta.get('squashfuse')}._")
P("")
P("Cells are `median (min-max)` in seconds, from the start of the first step until the "
  "workload has exited having printed `1`. Bytes are response bodies sent by nginx "
  "(its access log) during the timed steps and what slimfs fetched in the background "
  "before unmounting (prefetch and read-ahead finish first, untimed), in 10^6 bytes.")
P("")
P("## Setup")
P("")
P("- **Link**: nginx (2 workers, sendfile) listens on 127.0.0.1 inside network namespace "
  "`server`; `bench/lazy-proxy.c` listens on the server's veth address and forwards to it. "
  "The veth pair joins namespace `client`; both ends have `tc qdisc ... tbf rate RATE burst "
  "256kb latency 1000ms`. Every client command (curl, `slimfs mount`, `slimfs pull`) runs "
  "with `nsenter --net=/run/netns/client` (network namespace only: FUSE mounts are "
  "visible outside, the chroot runs outside).")
P("- **Delay**: the proxy holds every byte of an HTTP request until its first byte's "
  "arrival time + DELAY, then forwards it; responses pass undelayed. Requests are found "
  "by parsing HTTP/1.x roughly: a request starts with the first byte after the previous one "
  "ended (end of headers at CRLF CRLF, plus Content-Length body bytes). So every request/"
  "response exchange costs DELAY more, in parallel across connections and pipelined "
  "requests; TCP connection setup is not delayed and TCP does not see a long path (no "
  "slow start or window limit from the delay: a veth RTT is ~0.05 ms). Proxy counters: "
  + "; ".join(f"{c}: {meta.get('proxy_' + c, '?')}" for c in CONDS) + ". Link check, "
  "curl's time to first byte of 5 small range requests on one connection (s): "
  + "; ".join(f"{c}: {meta.get('link_' + c, '?')}" for c in CONDS) + ".")
P("- **Conditions**: " + "; ".join(f"{c} = {COND[c]}" for c in CONDS) + ".")
P("- **Cold**: before each run `sync; echo 3 > /proc/sys/vm/drop_caches`, then the file the "
  "server will send is read once (the server's page cache is warm, as a registry serving "
  "a popular image would be; the client's is cold); fresh download/extract/cache "
  "directories and mount points; a fresh FUSE daemon per run. Configurations take turns "
  "in a rotating order.")
P("- **Workload**: as `slimfs bench` runs it: `unshare --mount --pid --fork`, `/dev` "
  "bound, `/proc` and a tmpfs `/tmp` mounted where ROOT has those directories, then "
  "`env -i PATH=... chroot ROOT CMD`; the same for every configuration, the trace and "
  "the bytes-read measurement. Its output is checked to be `1`. The slimfs, curl, tar "
  "and squashfuse_ll binaries are cold too (a cold `slimfs --help` takes 70-90 ms here, "
  "warm 17 ms).")
P("")
P("Configurations:")
P("")
for cfg in CFGS:
    P(f"- **({cfg})** {CFG[cfg]}")
P("")
P("Details: (a) `curl -o` then `tar --numeric-owner -xzf` (one gzip thread) into a fresh "
  "directory on ext4, chroot there. (b) `curl -o`, `squashfuse_ll IMG MNT`. (c) `slimfs "
  "mount --view full --prefetch none --cache FRESH URL MNT` on an image built without a "
  "profile. (d) the same on the image built with `--profile` from a traced run of the "
  "workload (`slimfs mount --trace`, `slimfs profile`), default `--prefetch profile`. (e) "
  "that image's `minimal` view: `--view minimal=ALLOW`, ALLOW = `@include runtime-base` + "
  "the profile's paths, `--entrypoint` the interpreter. (f) the workload chrooted in the "
  "plain rootfs directory, cold, plus one `curl` of a file of Z bytes (below) over the same "
  "link; the sum. (g) `slimfs pull --cache FRESH URL` of (d)'s image, then `slimfs mount "
  "--prefetch none --cache` that directory, run.")
P("")
P("## Inputs")
P("")
P("| artifact | bytes (10^6) |")
P("|---|---:|")
P(f"| rootfs directory (du -sb) | {mb(int(meta['rootfs_bytes']))} |")
for f in ["layer.tar.gz", "image.sqfs", "lazy.slimfs"] + [f"{w}.slimfs" for w in WLS]:
    P(f"| {f} | {mb(int(meta['size_' + f]))} |")
P("")
P("What each workload reads, and Z, the denominator of the bytes goal and the size (f) "
  "transfers:")
P("")
P("| workload | files with data read | their whole size | bytes read (4 KiB pages) | "
  "Z = zstd -3 of those bytes | profile |")
P("|---|---:|---:|---:|---:|---|")
for w in WLS:
    r = readsum[w]
    P(f"| {w} | {r['files']} | {mb(r['whole'])} | {mb(r['read'])} | {mb(r['zstd'])} | "
      f"{meta.get('profile_' + w, '')} |")
P("")
P("_How Z is measured_: the rootfs as ext4 (no journal) on a read-only loop device with "
  "read-ahead 0 (`blockdev --setra 0`, `read_ahead_kb` 0), mounted fresh; the workload "
  "runs once chrooted there; then `mincore()` over every regular file lists the 4 KiB "
  "pages in the page cache, i.e. exactly the pages the workload read or faulted in (with "
  "read-ahead off the kernel reads only the pages asked for; the last page of a file is "
  "clipped to its size). Those bytes, concatenated in path order, compressed as one "
  "`zstd -3` stream, are Z. The measurement is repeated when the kernel's "
  "`drop_pagecache` counter moves meanwhile (others drop caches on this machine).")
P("")

for c in CONDS:
    P(f"## Part 1: {COND[c]}")
    P("")
    hdr = "| config |" + "".join(f" {w} time (s) | {w} MB | {w} req |" for w in WLS)
    P(hdr)
    P("|---|" + "---:|---:|---:|" * len(WLS))
    for cfg in CFGS:
        line = f"| ({cfg}) {CFG[cfg]} |"
        for w in WLS:
            rq = med(c, w, cfg, "req")
            line += (f" {cell_t(c, w, cfg)} | {mb(med(c, w, cfg, 'bytes'))} | "
                     f"{'-' if rq is None else f'{rq:.0f}'} |")
        P(line)
    P("")
    P("Steps (medians, s):")
    P("")
    P("| config | workload | download / pull | extract | mount | run | transfer (f) |")
    P("|---|---|---:|---:|---:|---:|---:|")
    for cfg in CFGS:
        for w in WLS:
            vals = [med(c, w, cfg, part=k) for k in ("download", "extract", "mount", "run", "transfer")]
            P(f"| ({cfg}) | {w} | " + " | ".join(ft(v) for v in vals) + " |")
    P("")

P("## Goals")
P("")
P("| condition | workload | (a)/(c) goal >= 5 | (a)/(d) goal >= 10 | (d)/(f) goal <= 1.5 | "
  "bytes(d)/Z goal <= 1.25 |")
P("|---|---|---:|---:|---:|---:|")
goals = []
def verdict(v, ok):
    return "-" if v is None else f"{v:.2f} {'**met**' if ok else '**missed**'}"
for c in CONDS:
    for w in WLS:
        a, cc, d, f = (med(c, w, x) for x in "acdf")
        bd = med(c, w, "d", "bytes")
        r1 = a / cc if a and cc else None
        r2 = a / d if a and d else None
        r3 = d / f if d and f else None
        r4 = bd / readsum[w]["zstd"] if bd else None
        g = [(r1, r1 is not None and r1 >= 5), (r2, r2 is not None and r2 >= 10),
             (r3, r3 is not None and r3 <= 1.5), (r4, r4 is not None and r4 <= 1.25)]
        goals.append((c, w, g))
        P(f"| {COND[c]} | {w} | " + " | ".join(verdict(v, ok) for v, ok in g) + " |")
P("")
P("Z: see Inputs. bytes(d): nginx body bytes of run (d), median.")
P("")

# automatic decomposition of the misses
P("### Where the time goes (computed from the medians above)")
P("")
for c, w, g in goals:
    rate, dl = RATE[c], DELAY[c]
    notes = []
    a_dl, a_x, a_run = (med(c, w, "a", part=k) for k in ("download", "extract", "run"))
    if a_dl is not None:
        notes.append(f"(a) = download {ft(a_dl)} + extract {ft(a_x)} + run {ft(a_run)} s "
                     f"(the layer alone is {mb(int(meta['size_layer.tar.gz']))} MB = "
                     f"{int(meta['size_layer.tar.gz']) / rate:.2f} s at the line rate)")
    for cfg in "cde":
        if med(c, w, cfg) is None:
            continue
        m, run, b, rq = (med(c, w, cfg, part="mount"), med(c, w, cfg, part="run"),
                         med(c, w, cfg, "bytes"), med(c, w, cfg, "req"))
        notes.append(f"({cfg}) = mount {ft(m)} + run {ft(run)} s; {mb(b)} MB = {b / rate:.2f} s "
                     f"at the line rate; {rq:.0f} requests x {dl * 1000:.0f} ms = "
                     f"{rq * dl:.2f} s if they were serial")
    if med(c, w, "f") is not None:
        notes.append(f"(f) = plain-directory run {ft(med(c, w, 'f', part='run'))} + transfer of "
                     f"Z = {mb(readsum[w]['zstd'])} MB {ft(med(c, w, 'f', part='transfer'))} s")
    missed = [n for (v, ok), n in zip(g, ["(a)/(c)", "(a)/(d)", "(d)/(f)", "bytes(d)/Z"])
              if v is not None and not ok]
    P(f"- **{COND[c]}, {w}**" + (f" (missed: {', '.join(missed)})" if missed else " (all met)")
      + ": " + "; ".join(notes) + ".")
P("")

# part 2
bench = {}
for c in CONDS:
    for w in WLS:
        pth = os.path.join(out, f"lazy-bench-{w}-{c}.json")
        try:
            bench[(c, w)] = json.load(open(pth))
        except (OSError, ValueError):
            pass
if bench:
    P("## Part 2: `slimfs bench` (emulated network) and real shaping")
    P("")
    P("`slimfs bench --rate R --rtt T --modes lazy,profile,minimal,full --runs N --json "
      "--chart lazy-bench-W-C.svg IMAGE -- CMD` on each workload's image with profile and "
      "minimal view (the image of (d)/(e)); the network is emulated inside slimfs (every "
      "request waits RTT, then its bytes pass a token bucket of rate R shared by all "
      "requests); no namespaces. (`--json` and `--markdown` are exclusive in slimfs bench; "
      "the tables below are made from the JSON.) Raw output: `lazy-bench-W-C.json`, charts "
      "`lazy-bench-W-C.svg`/`.png`.")
    P("")
    for (c, w), j in bench.items():
        P(f"### {w}, {COND[c]}")
        P("")
        P("| mode | ok | time (s) | mount | pull | fetched MB | requests | chunks |")
        P("|---|---:|---:|---:|---:|---:|---:|---:|")
        for m, mj in j.get("modes", {}).items():
            sm = mj.get("summary", {})
            t = sm.get("time_s") or {}
            def g_(k):
                v = sm.get(k)
                return v.get("median") if isinstance(v, dict) else None
            P(f"| {m} | {sm.get('runs_ok')}/{j['options']['runs']} | "
              f"{ft(t.get('median'))} ({ft(t.get('min'))}-{ft(t.get('max'))}) | "
              f"{ft(g_('mount_s'))} | {ft(g_('pull_s'))} | {mb(g_('bytes_fetched'))} | "
              f"{g_('requests') if g_('requests') is not None else '-'} | "
              f"{g_('chunks_fetched') if g_('chunks_fetched') is not None else '-'} |")
        if j.get("warnings"):
            P("")
            P("warnings: " + "; ".join(j["warnings"]))
        P("")
    noprof = {}
    for c in CONDS:
        for w in WLS:
            try:
                noprof[(c, w)] = json.load(open(os.path.join(out, f"lazy-bench-{w}-{c}-noprofile.json")))
            except (OSError, ValueError):
                pass
    P("### Emulated vs real")
    P("")
    P("Relative difference = (emulated - real) / real of the median times; **bold** when "
      "over 15%. Each pair uses the same image: `lazy` ~ (c) is a second `slimfs bench "
      "--modes lazy` run on the image without a profile (`lazy-bench-W-C-noprofile.json`); "
      "`lazy (profiled image)` is the lazy mode of the run above, on the image with a "
      "profile (the profile's chunks first in the data), compared with the same (c).")
    P("")
    P("| condition | workload | mode ~ real | emulated s | real s | difference | emulated MB / req | real MB / req |")
    P("|---|---|---|---:|---:|---:|---:|---:|")
    MATCH = [("lazy", "c"), ("lazy (profiled image)", "c"), ("profile", "d"),
             ("minimal", "e"), ("full", "g")]
    for (c, w), j in bench.items():
        for m, cfg in MATCH:
            if m == "lazy":
                mj = noprof.get((c, w), {}).get("modes", {}).get("lazy")
            else:
                mj = j.get("modes", {}).get(m.split()[0])
            real = med(c, w, cfg)
            if not mj or real is None:
                continue
            sm = mj["summary"]
            emu = (sm.get("time_s") or {}).get("median")
            if emu is None:
                continue
            diff = (emu - real) / real
            ds = f"{diff * 100:+.0f}%"
            if abs(diff) > 0.15:
                ds = f"**{ds}**"
            eb = (sm.get("bytes_fetched") or {}).get("median")
            er = (sm.get("requests") or {}).get("median")
            P(f"| {COND[c]} | {w} | {m} ~ ({cfg}) | {ft(emu)} | {ft(real)} | {ds} | "
              f"{mb(eb)} / {er if er is not None else '-'} | "
              f"{mb(med(c, w, cfg, 'bytes'))} / {med(c, w, cfg, 'req'):.0f} |")
    P("")

notes = os.path.join(out, "lazy-notes.md")
if os.path.exists(notes):
    P("## Analysis and suggestions (written by hand after the committed run)")
    P("")
    P(open(notes).read().strip())
    P("")
P("## Files")
P("")
P("`lazy-samples.tsv` (every run: time, bytes, requests, steps), `lazy-meta.txt` (sizes, "
  "versions, proxy counters), `lazy.png` (part 1 chart), `lazy-bench-*.json/.svg/.png` "
  "(part 2; `*-noprofile.json`: lazy mode on the image without a profile), `lazy-notes.md` (the hand-written analysis included above).")
open(os.path.join(out, "lazy.md"), "w").write("\n".join(L) + "\n")

# chart: one panel per condition x workload, a bar per configuration, log scale
try:
    subprocess.run(["gnuplot", "--version"], check=True, capture_output=True)
except (OSError, subprocess.CalledProcessError):
    sys.exit(0)
dat = os.path.join(out, ".lazy-chart.dat")
with open(dat, "w") as f:
    for c in CONDS:
        for w in WLS:
            for i, cfg in enumerate(CFGS):
                m = med(c, w, cfg)
                lo, hi = rng(c, w, cfg)
                if m is not None:
                    f.write(f"{i} \"({cfg})\" {m} {lo} {hi}\n")
            f.write("\n\n")
gp = ["set terminal pngcairo size 1400,900 font ',10'",
      f"set output '{os.path.join(out, 'lazy.png')}'",
      f"set multiplot layout {len(CONDS)},{len(WLS)} title \"Cold start until the workload "
      "output (median, min-max), log scale. a docker pull+extract, b squashfs download, "
      "c slimfs lazy, d slimfs+profile, e minimal view, f limit, g slimfs pull\"",
      "set style fill solid 0.6 border -1", "set boxwidth 0.6", "set logscale y",
      "set ylabel 'seconds'", "set grid ytics", "unset key", "set yrange [0.1:*]"]
idx = 0
for c in CONDS:
    for w in WLS:
        gp.append(f"set title '{w}, {COND[c]}'")
        gp.append(f"plot '{dat}' index {idx} using 1:3:xtic(2) with boxes lc rgb '#4a7ab5', "
                  f"'' index {idx} using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0, "
                  f"'' index {idx} using 1:($5*1.15):(sprintf('%.2f',$3)) with labels")
        idx += 1
gp.append("unset multiplot")
subprocess.run(["gnuplot"], input="\n".join(gp), text=True, check=True)
os.unlink(dat)
PY
}

while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--slimfs) slimfs=$2; shift 2 ;;
	--rev) rev=$2; shift 2 ;;
	--rootfs) rootfs=$2; shift 2 ;;
	--work) work=$2; shift 2 ;;
	--conditions) conditions=$2; shift 2 ;;
	--workloads) workloads=$2; shift 2 ;;
	--configs) configs=$2; shift 2 ;;
	--kernel-readahead) kra=(--kernel-readahead "$2"); shift 2 ;;
	--no-emulated) emulated=0; shift ;;
	--keep) keep=1; shift ;;
	--reuse) reuse=1; shift ;;
	--report-only) report_only=1; shift ;;
	-h | --help) usage 0 ;;
	*) echo "lazy.sh: unknown argument '$1'" >&2; usage ;;
	esac
done

die() { echo "lazy.sh: $*" >&2; exit 1; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

work=$(realpath -m "$work")
out=$(realpath -m "$out")
if [ $report_only = 1 ]; then
	report "$out"
	exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root (namespaces, tc, FUSE, drop_caches, loop devices)"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number"
for c in ip tc nginx curl tar gzip mksquashfs squashfuse_ll fusermount3 nsenter zstd \
	mkfs.ext4 losetup blockdev cc python3 chroot; do
	command -v "$c" >/dev/null || die "'$c' is missing"
done
command -v gnuplot >/dev/null || log "no gnuplot: the tables are written, not the chart"

# Network layout. The namespace names are the brief's; never touch ones that are not ours.
NS_S=${LAZY_NS_SERVER:-server}
NS_C=${LAZY_NS_CLIENT:-client}
VETH_S=lzb-s
VETH_C=lzb-c
IP_S=10.201.77.1
IP_C=10.201.77.2
NGX_PORT=8080
PROXY_PORT=8081
URL=http://$IP_S:$PROXY_PORT

declare -A RATE=([slow]=100mbit [fast]=1gbit)
declare -A DELAY=([slow]=20 [fast]=1)
declare -A RTT=([slow]=20ms [fast]=1ms)
declare -A ENTRY=([w1]=/usr/bin/python3 [w2]=/usr/bin/perl)
W1=(/usr/bin/python3 -c 'import json, sqlite3, urllib.request; print(1)')
W2=(/usr/bin/perl -MPOSIX -MFile::Spec -e 'print 1')
CHROOT_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)

wcmd() { # wcmd W: the workload's argv, in array WC
	case "$1" in
	w1) WC=("${W1[@]}") ;;
	w2) WC=("${W2[@]}") ;;
	*) die "unknown workload $1" ;;
	esac
}

# --- cleanup (trap) ---------------------------------------------------------------
ngx_pid=
proxy_pid=
made_ns=0
loopdev=
cleanup() {
	local rc=$? m p
	set +e
	trap - EXIT INT TERM
	# mounts under the work directory (FUSE and the ext4 loop mount)
	if [ -d "$work" ]; then
		while read -r m; do
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
		done < <(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r)
	fi
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	for p in $proxy_pid $ngx_pid; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	if [ $made_ns = 1 ]; then
		tc -n "$NS_S" qdisc del dev "$VETH_S" root 2>/dev/null
		tc -n "$NS_C" qdisc del dev "$VETH_C" root 2>/dev/null
		ip -n "$NS_S" link del "$VETH_S" 2>/dev/null
		ip netns del "$NS_S" 2>/dev/null
		ip netns del "$NS_C" 2>/dev/null
	fi
	if [ $keep = 0 ] && [ -d "$work" ]; then
		rm -rf "$work"
	fi
	[ $rc = 0 ] || echo "lazy.sh: failed (exit $rc); cleaned up" >&2
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -------------------------------------------------------------------------
now() { echo "$EPOCHREALTIME"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# wait_gone PID: until the process has exited (10 s), then SIGKILL that pid.
wait_gone() {
	local _
	for _ in $(seq 100); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	log "pid $1 did not exit after unmount; killing it"
	kill -9 "$1" 2>/dev/null || true
}

# fuse_pid MNT: the daemon serving MNT (its command line names the mountpoint).
fuse_pid() {
	local p
	for p in /proc/[0-9]*; do
		if { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qxF -- "$1"; then
			echo "${p#/proc/}"
			return 0
		fi
	done
	return 1
}

unmount_fuse() {
	local mnt=$1 pid
	pid=$(fuse_pid "$mnt" || true)
	fusermount3 -u "$mnt" || umount -l "$mnt"
	[ -z "$pid" ] || wait_gone "$pid"
}

# run_workload DIR W: runs W chrooted in DIR, as slimfs bench does: in new mount and PID
# namespaces with /dev (bind), /proc and a tmpfs /tmp where DIR has those directories,
# with a clean environment; checks that it printed 1.
run_workload() {
	local got
	wcmd "$2"
	got=$(unshare --mount --pid --fork --propagation private /bin/sh -c '
		r=$1
		shift
		[ -d "$r/dev" ] && mount --rbind /dev "$r/dev"
		[ -d "$r/proc" ] && mount -t proc proc "$r/proc"
		[ -d "$r/tmp" ] && mount -t tmpfs tmpfs "$r/tmp"
		exec "$@"' sh "$1" "${CHROOT_ENV[@]}" /usr/sbin/chroot "$1" "${WC[@]}" \
		2>"$work/last-stderr") ||
		die "workload $2 failed in $1: $(head -c 500 "$work/last-stderr")"
	[ "$got" = 1 ] || die "workload $2 in $1 printed '$got', not 1"
}

nginx_lines() { wc -l <"$work/nginx/access.log"; }
# nginx_since N: "BYTES REQUESTS" of the log lines after line N (body bytes sent)
nginx_since() {
	tail -n +"$(($1 + 1))" "$work/nginx/access.log" |
		awk '{ b += $3; n++ } END { printf "%d %d\n", b, n }'
}

# --- work directory, slimfs, proxy ------------------------------------------------------------
for ns in "$NS_S" "$NS_C"; do
	[ ! -e "/run/netns/$ns" ] || die "network namespace '$ns' exists already (not ours?); " \
		"delete it or set LAZY_NS_SERVER/LAZY_NS_CLIENT"
done
ip link show "$VETH_S" >/dev/null 2>&1 && die "interface $VETH_S exists already"
if [ -e "$work" ]; then
	awk -v w="$work/" 'index($2, w) == 1 { exit 1 }' /proc/self/mounts ||
		die "something is mounted under $work"
	if [ $reuse = 1 ] && [ -f "$work/inputs.done" ]; then
		rm -rf "$work/nginx" "$work/run" "$work/stats" "$work/benchtmp"
	else
		reuse=0
		rm -rf "$work"
	fi
else
	reuse=0
fi
mkdir -p "$work"/{www,nginx/tmp,tmp,stats} "$out"
[ -n "$rootfs" ] || rootfs=$("$top/tests/rootfs.sh" --dir)
[ -d "$rootfs/usr/bin" ] || die "no rootfs at '$rootfs'"

if [ -z "$slimfs" ] && [ $reuse = 1 ]; then
	slimfs=$work/obj/slimfs
elif [ -z "$slimfs" ]; then
	log "building slimfs (release) from $rev"
	mkdir -p "$work/src"
	git -C "$top" archive "$rev" | tar -x -C "$work/src"
	meson setup "$work/obj" "$work/src" --buildtype=release >"$work/meson.log" 2>&1 ||
		die "meson setup failed: see $work/meson.log"
	ninja -C "$work/obj" slimfs >>"$work/meson.log" 2>&1 || die "build failed: $work/meson.log"
	slimfs=$work/obj/slimfs
fi
slimfs=$(realpath "$slimfs")
slimfs_rev=$(git -C "$top" rev-parse --short "$rev" 2>/dev/null || echo unknown)
cc -O2 -Wall -Wextra -std=c11 -pthread -o "$work/lazy-proxy" "$here/lazy-proxy.c"

# --- inputs --------------------------------------------------------------------------------
t_start=$(now)
R=$work/rootfs
IFS=, read -ra WLS <<<"$workloads"
IFS=, read -ra CONDS <<<"$conditions"
IFS=, read -ra CFGS <<<"$configs"
if [ $reuse = 0 ]; then
	log "copying the rootfs ($rootfs) to $work/rootfs"
	cp -a "$rootfs" "$work/rootfs"
	R=$work/rootfs

	gz=gzip
	command -v pigz >/dev/null && gz=pigz # same format and level, all cores
	log "building the gzip'ed tar layer ($gz -6)"
	tar --numeric-owner -C "$R" -cf - . | $gz -6 >"$work/www/layer.tar.gz"
	log "building the squashfs image (zstd -3)"
	mksquashfs "$R" "$work/www/image.sqfs" -comp zstd -Xcompression-level 3 -noappend -quiet \
		>/dev/null
	log "building the slimfs image without a profile"
	"$slimfs" build -q -o "$work/www/lazy.slimfs" "$R"

	IFS=, read -ra WLS <<<"$workloads"
	IFS=, read -ra CONDS <<<"$conditions"
	IFS=, read -ra CFGS <<<"$configs"

	for w in "${WLS[@]}"; do
		wcmd "$w"
		log "$w: tracing a run on the lazy image, profile, image with --profile and --view minimal"
		mkdir -p "$work/trace-$w"
		"$slimfs" mount -q "${kra[@]}" --trace "$work/trace-$w/trace" \
			--stats-socket "$work/trace-$w/sock" \
			"$work/www/lazy.slimfs" "$work/trace-$w"
		run_workload "$work/trace-$w" "$w"
		unmount_fuse "$work/trace-$w"
		"$slimfs" profile -o "$work/$w.profile" --image "$work/www/lazy.slimfs" \
			"$work/trace-$w/trace" 2>"$work/$w.profile.log" ||
			die "slimfs profile failed: $(cat "$work/$w.profile.log")"
		{
			echo "# $w: runtime-base and what the traced run touched"
			echo "@include runtime-base"
			grep -v '^#' "$work/$w.profile" || true
		} >"$work/$w.allow"
		"$slimfs" build -q -o "$work/www/$w.slimfs" --profile "$work/$w.profile" \
			--entrypoint "${ENTRY[$w]}" --view minimal="$work/$w.allow" "$R"
	done

	# --- what the workload reads (for f and the bytes goal) ------------------------------------
	# The rootfs as ext4 on a read-only loop device with read-ahead off: after a run on a
	# fresh mount, exactly the 4 KiB pages the workload read or faulted in are in the page
	# cache. mincore() lists them; their bytes (clipped to the file size), concatenated in
	# path order, compressed as one zstd -3 stream, are "the compressed data it reads".
	log "measuring the bytes each workload reads (ext4 loop, read-ahead 0, mincore)"
	mkfs.ext4 -q -F -O ^has_journal -N 40000 -d "$R" "$work/plain.ext4" 600M
	loopdev=$(losetup --find --show --read-only "$work/plain.ext4")
	blockdev --setra 0 "$loopdev"
	echo 0 >"/sys/block/${loopdev#/dev/}/queue/read_ahead_kb"
	mkdir -p "$work/ext4"
	cat >"$work/mincore.py" <<'PY'
import ctypes, mmap, os, sys
root, out, listing = sys.argv[1:4]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
PG = os.sysconf("SC_PAGE_SIZE")
with open(out, "wb") as o, open(listing, "w") as lst:
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(d, name)
            st = os.lstat(p)
            if not os.path.isfile(p) or os.path.islink(p) or st.st_size == 0:
                continue
            fd = os.open(p, os.O_RDONLY | os.O_NOATIME)
            try:
                addr = libc.mmap(None, st.st_size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
                if addr in (None, ctypes.c_void_p(-1).value):
                    continue
                n = (st.st_size + PG - 1) // PG
                vec = ctypes.create_string_buffer(n)
                if libc.mincore(addr, st.st_size, vec) != 0:
                    raise OSError(ctypes.get_errno(), "mincore " + p)
                libc.munmap(addr, st.st_size)
                pages = [i for i in range(n) if vec.raw[i] & 1]
                if not pages:
                    continue
                got = 0
                for i in pages:
                    data = os.pread(fd, PG, i * PG)  # the page is cached: no disk read
                    o.write(data)
                    got += len(data)
                lst.write(f"{got}\t{st.st_size}\t{p[len(root):]}\n")
            finally:
                os.close(fd)
PY
	for w in "${WLS[@]}"; do
		# other sessions on this machine drop the page cache now and then: retry when the
		# kernel's drop counter moved during the measurement
		for attempt in $(seq 10); do
			d0=$(awk '$1 == "drop_pagecache" { print $2 }' /proc/vmstat)
			mount -t ext4 -o ro "$loopdev" "$work/ext4"
			run_workload "$work/ext4" "$w"
			python3 "$work/mincore.py" "$work/ext4" "$work/$w.read" "$work/$w.readfiles"
			umount "$work/ext4"
			d1=$(awk '$1 == "drop_pagecache" { print $2 }' /proc/vmstat)
			[ "$d0" != "$d1" ] || break
			log "the page cache was dropped during the measurement (attempt $attempt); again"
			[ "$attempt" != 10 ] || die "could not measure the bytes $w reads undisturbed"
		done
		# bytes read, files, their whole size, zstd -3 (one stream), zstd -3 per file
		read -r rb nf fs < <(awk -F'\t' '{ b += $1; n++; s += $2 } END { print b, n, s }' "$work/$w.readfiles")
		zs=$(zstd -3 -q -c "$work/$w.read" | wc -c)
		echo "$rb $nf $fs $zs" >"$work/$w.readsum"
		head -c "$zs" /dev/urandom >"$work/www/xfer-$w.bin"
		log "$w reads $rb bytes of $nf files ($fs bytes whole), $zs bytes at zstd -3"
	done
	losetup -d "$loopdev"
	loopdev=
	touch "$work/inputs.done"
else
	log "reusing the inputs in $work"
fi

# --- network -------------------------------------------------------------------------------
log "network: namespaces $NS_S and $NS_C, veth, nginx, proxy"
ip netns add "$NS_S"
made_ns=1
ip netns add "$NS_C"
ip link add "$VETH_S" type veth peer name "$VETH_C"
ip link set "$VETH_S" netns "$NS_S"
ip link set "$VETH_C" netns "$NS_C"
ip -n "$NS_S" addr add "$IP_S/24" dev "$VETH_S"
ip -n "$NS_C" addr add "$IP_C/24" dev "$VETH_C"
for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up; done
ip -n "$NS_S" link set "$VETH_S" up
ip -n "$NS_C" link set "$VETH_C" up

cat >"$work/nginx/nginx.conf" <<NGX
daemon off;
user root;
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
	log_format lazy '\$msec \$status \$body_bytes_sent \$request_time "\$request" \$connection';
	access_log $work/nginx/access.log lazy;
	client_body_temp_path $work/nginx/tmp; proxy_temp_path $work/nginx/tmp;
	fastcgi_temp_path $work/nginx/tmp; uwsgi_temp_path $work/nginx/tmp;
	scgi_temp_path $work/nginx/tmp;
	sendfile on;
	keepalive_requests 100000;
	keepalive_timeout 300s;
	server { listen 127.0.0.1:$NGX_PORT; root $work/www; }
}
NGX
: >"$work/nginx/access.log"
nsenter --net="/run/netns/$NS_S" nginx -c "$work/nginx/nginx.conf" </dev/null \
	>"$work/nginx/stdout" 2>&1 &
ngx_pid=$!

wait_http() {
	local _
	for _ in $(seq 100); do
		nsenter --net="/run/netns/$NS_C" curl -sf -o /dev/null "$URL/xfer-${WLS[0]}.bin" &&
			return 0
		sleep 0.1
	done
	die "no answer from $URL"
}

# set_condition C: the qdiscs and the proxy for condition C
set_condition() {
	local c=$1
	tc -n "$NS_S" qdisc replace dev "$VETH_S" root tbf rate "${RATE[$c]}" burst 256kb latency 1000ms
	tc -n "$NS_C" qdisc replace dev "$VETH_C" root tbf rate "${RATE[$c]}" burst 256kb latency 1000ms
	if [ -n "$proxy_pid" ]; then
		kill "$proxy_pid"
		wait "$proxy_pid" 2>/dev/null || true
	fi
	nsenter --net="/run/netns/$NS_S" "$work/lazy-proxy" "$IP_S:$PROXY_PORT" \
		"127.0.0.1:$NGX_PORT" "${DELAY[$c]}" "$work/proxy-$c.stats" </dev/null &
	proxy_pid=$!
	wait_http
	# link check: time to first byte of 5 small requests on one connection (the first
	# one includes the TCP handshake), as curl sees them
	nsenter --net="/run/netns/$NS_C" curl -s -o /dev/null -o /dev/null -o /dev/null \
		-o /dev/null -o /dev/null -w '%{time_starttransfer} ' \
		"$URL/xfer-${WLS[0]}.bin" "$URL/xfer-${WLS[0]}.bin" "$URL/xfer-${WLS[0]}.bin" \
		"$URL/xfer-${WLS[0]}.bin" "$URL/xfer-${WLS[0]}.bin" -r 0-99 >"$work/link-$c"
	log "link $c: time to first byte of 5 requests: $(cat "$work/link-$c")"
}

# --- part 1: the runs ----------------------------------------------------------------------
samples=$out/lazy-samples.tsv
printf 'cond\tworkload\tconfig\trun\ttotal_s\tbytes\trequests\tparts\n' >"$samples"

# one_run COND W CONFIG RUN: one cold run, appends a sample
one_run() {
	local c=$1 w=$2 cfg=$3 run=$4 d=$work/run t0 t1 t2 t3 l0 bytes req parts img view pf
	local mnt pid sock st
	rm -rf "$d"
	mkdir -p "$d/mnt" "$d/cache"
	case "$cfg" in
	a) srv=layer.tar.gz ;;
	b) srv=image.sqfs ;;
	c) srv=lazy.slimfs ;;
	d | e | g) srv=$w.slimfs ;;
	f) srv=xfer-$w.bin ;;
	esac
	drop_caches
	# the server's copy stays warm (a registry serving a popular image); the client is cold
	cat "$work/www/$srv" >/dev/null
	l0=$(nginx_lines)
	mnt=$d/mnt
	case "$cfg" in
	a)
		t0=$(now)
		nsenter --net="/run/netns/$NS_C" curl -sSf -o "$d/layer.tar.gz" "$URL/layer.tar.gz"
		t1=$(now)
		mkdir "$d/root"
		tar --numeric-owner -xzf "$d/layer.tar.gz" -C "$d/root"
		t2=$(now)
		run_workload "$d/root" "$w"
		t3=$(now)
		parts="download=$(sub "$t0" "$t1") extract=$(sub "$t1" "$t2") run=$(sub "$t2" "$t3")"
		;;
	b)
		t0=$(now)
		nsenter --net="/run/netns/$NS_C" curl -sSf -o "$d/image.sqfs" "$URL/image.sqfs"
		t1=$(now)
		squashfuse_ll "$d/image.sqfs" "$mnt"
		t2=$(now)
		run_workload "$mnt" "$w"
		t3=$(now)
		parts="download=$(sub "$t0" "$t1") mount=$(sub "$t1" "$t2") run=$(sub "$t2" "$t3")"
		unmount_fuse "$mnt"
		;;
	c | d | e)
		img=$srv view=full pf=profile
		[ "$cfg" = c ] && pf=none
		[ "$cfg" = e ] && view=minimal
		sock=$d/stats.sock
		t0=$(now)
		nsenter --net="/run/netns/$NS_C" "$slimfs" mount -q "${kra[@]}" --view "$view" \
			--prefetch "$pf" \
			--cache "$d/cache" --stats-socket "$sock" "$URL/$img" "$mnt"
		t1=$(now)
		run_workload "$mnt" "$w"
		t2=$(now)
		parts="mount=$(sub "$t0" "$t1") run=$(sub "$t1" "$t2")"
		# untimed: let the prefetch and read-ahead finish so that bytes are complete
		local prev=-1 cur fin
		for _ in $(seq 300); do
			"$slimfs" stats --json --socket "$sock" "$mnt" >"$d/stats.json" 2>/dev/null || break
			read -r cur fin < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))
print(s["fetch"]["bytes"], int(s["prefetch"]["finished"] or s["prefetch"]["planned_chunks"] == 0))' "$d/stats.json")
			[ "$fin" = 1 ] && [ "$cur" = "$prev" ] && break
			prev=$cur
			sleep 0.2
		done
		cp "$d/stats.json" "$work/stats/$c-$w-$cfg-$run.json"
		st=$(python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
print("slimfs_bytes=%d slimfs_requests=%d prefetch_bytes=%d fs_read_bytes=%d" % (
    s["fetch"]["bytes"], s["fetch"]["requests"], s["prefetch"]["loaded_bytes"],
    s["fs"]["read_bytes"]))' "$d/stats.json")
		parts="$parts $st"
		unmount_fuse "$mnt"
		t3=$t2
		;;
	g)
		t0=$(now)
		nsenter --net="/run/netns/$NS_C" "$slimfs" pull -q --no-progress --cache "$d/cache" \
			"$URL/$srv"
		t1=$(now)
		nsenter --net="/run/netns/$NS_C" "$slimfs" mount -q "${kra[@]}" --view full \
			--prefetch none --cache "$d/cache" --stats-socket "$d/stats.sock" "$URL/$srv" "$mnt"
		t2=$(now)
		run_workload "$mnt" "$w"
		t3=$(now)
		parts="download=$(sub "$t0" "$t1") mount=$(sub "$t1" "$t2") run=$(sub "$t2" "$t3")"
		unmount_fuse "$mnt"
		;;
	f)
		t0=$(now)
		run_workload "$R" "$w"
		t1=$(now)
		nsenter --net="/run/netns/$NS_C" curl -sSf -o /dev/null "$URL/xfer-$w.bin"
		t2=$(now)
		parts="run=$(sub "$t0" "$t1") transfer=$(sub "$t1" "$t2")"
		t3=$t2
		;;
	esac
	read -r bytes req < <(nginx_since "$l0")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$w" "$cfg" "$run" "$(sub "$t0" "$t3")" \
		"$bytes" "$req" "$parts" >>"$samples"
	log "$c $w $cfg run $run: $(sub "$t0" "$t3") s, $bytes bytes, $req requests ($parts)"
	rm -rf "$d"
}

t_part1=$(now)
for c in "${CONDS[@]}"; do
	[ -n "${RATE[$c]:-}" ] || die "unknown condition $c"
	log "condition $c: ${RATE[$c]}, ${DELAY[$c]} ms per request"
	set_condition "$c"
	for run in $(seq "$runs"); do
		n=${#CFGS[@]}
		for wi in "${!WLS[@]}"; do
			for k in $(seq 0 $((n - 1))); do
				# rotate the order so that no configuration always follows the same one
				one_run "$c" "${WLS[$wi]}" "${CFGS[$(((k + run + wi) % n))]}" "$run"
			done
		done
	done
done
t_part1=$(sub "$t_part1" "$(now)")

kill "$proxy_pid" && wait "$proxy_pid" 2>/dev/null || true
proxy_pid=

# --- part 2: slimfs bench (emulated) -------------------------------------------------------
t_part2=$(now)
if [ $emulated = 1 ]; then
	mkdir -p "$work/benchtmp"
	kra_bench=()
	[ ${#kra[@]} = 0 ] || kra_bench=("--mount-arg=--kernel-readahead=${kra[1]}")
	for c in "${CONDS[@]}"; do
		for w in "${WLS[@]}"; do
			wcmd "$w"
			log "slimfs bench $w $c (--rate ${RATE[$c]} --rtt ${RTT[$c]})"
			"$slimfs" bench -q --rate "${RATE[$c]}" --rtt "${RTT[$c]}" "${kra_bench[@]}" \
				--modes lazy,profile,minimal,full --runs "$runs" --json \
				--chart "$out/lazy-bench-$w-$c.svg" --workdir "$work/benchtmp" \
				"$work/www/$w.slimfs" -- "${WC[@]}" >"$out/lazy-bench-$w-$c.json" \
				2>"$work/bench-$w-$c.log" ||
				log "slimfs bench $w $c failed ($(tail -n 3 "$work/bench-$w-$c.log"))"
			# the twin of (c): lazy mode on the image without a profile
			"$slimfs" bench -q --rate "${RATE[$c]}" --rtt "${RTT[$c]}" "${kra_bench[@]}" \
				--modes lazy \
				--runs "$runs" --json --workdir "$work/benchtmp" "$work/www/lazy.slimfs" \
				-- "${WC[@]}" >"$out/lazy-bench-$w-$c-noprofile.json" \
				2>"$work/bench-$w-$c-noprofile.log" ||
				log "slimfs bench (no profile) $w $c failed ($(tail -n 3 "$work/bench-$w-$c-noprofile.log"))"
			if command -v rsvg-convert >/dev/null && [ -s "$out/lazy-bench-$w-$c.svg" ]; then
				rsvg-convert -b white -o "$out/lazy-bench-$w-$c.png" "$out/lazy-bench-$w-$c.svg"
			fi
		done
	done
fi
t_part2=$(sub "$t_part2" "$(now)")

# --- report --------------------------------------------------------------------------------
{
	echo "slimfs_rev=$slimfs_rev"
	echo "runs=$runs"
	echo "kernel_readahead=${kra[1]:-default}"
	echo "kernel=$(uname -r)"
	echo "cpus=$(nproc)"
	echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "nginx=$(nginx -v 2>&1 | sed 's/.*\///')"
	echo "squashfuse=$(dpkg-query -W -f '${Version}' squashfuse 2>/dev/null || echo '?')"
	echo "curl=$(curl --version | head -1 | cut -d' ' -f2)"
	echo "part1_s=$t_part1"
	echo "part2_s=$t_part2"
	echo "total_s=$(sub "$t_start" "$(now)")"
	for f in layer.tar.gz image.sqfs lazy.slimfs; do echo "size_$f=$(stat -c %s "$work/www/$f")"; done
	for w in "${WLS[@]}"; do
		echo "size_$w.slimfs=$(stat -c %s "$work/www/$w.slimfs")"
		echo "readsum_$w=$(cat "$work/$w.readsum")"
		echo "profile_$w=$(grep -c '^#@chunk' "$work/$w.profile") chunks, $(grep -vc '^#' "$work/$w.profile") paths"
		echo "profile_log_$w=$(tr '\n' ' ' <"$work/$w.profile.log")"
	done
	for c in "${CONDS[@]}"; do
		[ -f "$work/proxy-$c.stats" ] && echo "proxy_$c=$(cat "$work/proxy-$c.stats")"
		[ -f "$work/link-$c" ] && echo "link_$c=$(cat "$work/link-$c")"
	done
	echo "rootfs_bytes=$(du -sb "$R" | cut -f1)"
} >"$out/lazy-meta.txt"
[ -n "${LAZY_NO_REPORT:-}" ] || report "$out"
log "done in $(sub "$t_start" "$(now)") s: $out/lazy.md"
