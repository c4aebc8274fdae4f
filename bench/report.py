#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turns bench/run.sh's samples (OUT/build.tsv, OUT/mount.tsv) into markdown
tables (medians with min-max, ratios against the peers) and gnuplot charts.

    report.py --out DIR [--runs N ...]   (run.sh calls it; it can be rerun alone)
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
from collections import defaultdict

BUILD_TOOLS = ["slimfs", "mksquashfs", "tar-zstd", "tar-gzip", "erofs"]
BUILD_LABEL = {
    "slimfs": "slimfs build",
    "mksquashfs": "mksquashfs zstd-3",
    "tar-zstd": "tar \\| zstd -3 -T0",
    "tar-gzip": "tar \\| gzip -6",
    "erofs": "mkfs.erofs lz4hc",
}
FS = ["slimfs", "squashfuse_ll", "squashfs", "erofs", "dir"]
FS_LABEL = {
    "slimfs": "slimfs (FUSE)",
    "squashfuse_ll": "squashfuse_ll",
    "squashfs": "kernel squashfs",
    "erofs": "kernel erofs",
    "dir": "plain dir",
}
# measure: (label, unit, scale, higher_is_better)
MOUNT_ROWS = [
    ("mount_s", "mount time, caches dropped", "s", 1, False),
    ("read_cold", "full-tree read cold (tar \\| wc -c)", "s", 1, False),
    ("read_warm", "full-tree read warm", "s", 1, False),
    ("find_cold", "metadata walk cold (find -printf)", "s", 1, False),
    ("find_warm", "metadata walk warm", "s", 1, False),
    ("fio_j1", "random 4 KiB read, 1 job", "IOPS", 1, True),
    ("fio_j4", "random 4 KiB read, 4 jobs", "IOPS", 1, True),
    ("rss_read", "daemon peak RSS after full-tree read", "MiB", 1 / 1024, False),
    ("rss_fio", "daemon peak RSS after fio, 4 jobs", "MiB", 1 / 1024, False),
    ("umount_s", "unmount until the daemon exits", "s", 1, False),
]


def load(path):
    data = defaultdict(list)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        next(f)
        for line in f:
            part, measure, subject, run, value = line.rstrip("\n").split("\t")
            try:
                data[(measure, subject)].append(float(value))
            except ValueError:
                pass
    return data


def fmt(v, unit):
    if unit == "IOPS":
        return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    if unit == "MB":
        return f"{v:.1f}"
    if unit == "MiB":
        return f"{v:.0f}"
    if unit == "MiB2":
        return f"{v:.2f}"
    if unit == "ms":
        return f"{v:.1f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(vals, unit, scale=1):
    if not vals:
        return "-"
    vals = [v * scale for v in vals]
    med = statistics.median(vals)
    if len(vals) == 1 or min(vals) == max(vals):
        return fmt(med, unit)
    return f"{fmt(med, unit)} ({fmt(min(vals), unit)}-{fmt(max(vals), unit)})"


def med(data, m, s):
    v = data.get((m, s))
    return statistics.median(v) if v else None


def verdict(ratio, goal):
    if ratio is None:
        return "-"
    mark = "ok" if ratio >= goal else "**MISS**"
    return f"{ratio:.2f}x {mark}" if ratio >= 0.1 else f"{ratio:.3f}x {mark}"


def info(ratio):
    return "-" if ratio is None else f"{ratio:.2f}x"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        return ""


def gnuplot(script, datafiles):
    if not shutil.which("gnuplot"):
        return False
    with tempfile.TemporaryDirectory() as d:
        for name, text in datafiles.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        r = subprocess.run(["gnuplot"], input=script.encode(), cwd=d,
                           capture_output=True)
        if r.returncode != 0:
            print("report.py: gnuplot failed:", r.stderr.decode(errors="replace")[:500])
            return False
    return True


def bar_panels(out_png, title, panels, subjects, labels, cols):
    """panels: list of (title, unit, {subject: [values]}); one bar chart each."""
    rows = (len(panels) + cols - 1) // cols
    files = {}
    script = [
        f"set terminal pngcairo size {cols * 420},{rows * 300 + 40} font 'sans,9' noenhanced",
        f"set output '{out_png}'",
        "set style fill solid 0.8 border -1",
        "set boxwidth 0.7",
        "set grid ytics",
        "set key off",
        "set xtics rotate by -30 nomirror",
        "set yrange [0:*]",
        f"set multiplot layout {rows},{cols} title '{title}'",
    ]
    for i, (ptitle, unit, series) in enumerate(panels):
        lines = []
        for j, s in enumerate(subjects):
            v = series.get(s)
            if not v:
                continue
            lines.append(f"{j}\t\"{labels[s]}\"\t{statistics.median(v)}\t{min(v)}\t{max(v)}")
        if not lines:
            continue
        name = f"p{i}.dat"
        files[name] = "\n".join(lines) + "\n"
        script += [
            f"set title \"{ptitle}\"",
            f"set ylabel '{unit}'",
            f"plot '{name}' using 1:3:xtic(2) with boxes lc rgb '#4a7ebb', "
            f"'' using 1:3:4:5 with yerrorbars lc rgb 'black' pt 0",
        ]
    script.append("unset multiplot")
    return gnuplot("\n".join(script) + "\n", files)


def build_report(out, data):
    md = ["# Build: slimfs vs mksquashfs, tar | zstd, tar | gzip, mkfs.erofs", ""]
    md += [
        "Same rootfs directory, page cache warm (one untimed warm-up run of each tool), "
        "all cores, outputs removed before each run and synced after it. "
        "Median of the runs with (min-max). Wall = the command as a user runs it "
        "(slimfs fsyncs its output before renaming it into place; the others do not); "
        "wall + sync = until the output is on disk, the fair comparison. "
        "CPU = user + system time of the command and its children.",
        "",
    ]
    hdr = "| | " + " | ".join(BUILD_LABEL[t] for t in BUILD_TOOLS) + " |"
    md += [hdr, "|---" * (len(BUILD_TOOLS) + 1) + "|"]
    for m, label, unit, scale in [
        ("wall", "wall time (s)", "s", 1),
        ("wall_sync", "wall time + sync (s)", "s", 1),
        ("cpu", "CPU time (s)", "s", 1),
        ("size", "output size (MB, 10^6 bytes)", "MB", 1e-6),
    ]:
        md.append(f"| {label} | " + " | ".join(cell(data.get((m, t)), unit, scale)
                                              for t in BUILD_TOOLS) + " |")
    md.append("")

    def ratio(m, peer, invert=False):
        a, b = med(data, m, "slimfs"), med(data, m, peer)
        if not a or not b:
            return None
        return a / b if invert else b / a

    md += ["## Goals", "",
           "| goal | slimfs vs mksquashfs | vs tar \\| zstd -3 | vs mkfs.erofs |",
           "|---|---|---|---|"]
    md.append("| build >= 1.5x faster than mksquashfs (wall + sync; speedup) | "
              f"{verdict(ratio('wall_sync', 'mksquashfs'), 1.5)} | "
              f"{info(ratio('wall_sync', 'tar-zstd'))} | {info(ratio('wall_sync', 'erofs'))} |")
    md.append("| build speedup, wall time as run | "
              f"{info(ratio('wall', 'mksquashfs'))} | "
              f"{info(ratio('wall', 'tar-zstd'))} | {info(ratio('wall', 'erofs'))} |")
    md.append("| CPU time ratio (peer / slimfs) | "
              f"{info(ratio('cpu', 'mksquashfs'))} | "
              f"{info(ratio('cpu', 'tar-zstd'))} | {info(ratio('cpu', 'erofs'))} |")
    r = ratio("size", "mksquashfs", invert=True)
    ok = "-" if r is None else f"{r:.3f}x {'ok' if r <= 1.0 else '**MISS**'}"
    md.append(f"| image no larger than squashfs (slimfs / peer size) | {ok} | "
              f"{info(ratio('size', 'tar-zstd', invert=True))} | "
              f"{info(ratio('size', 'erofs', invert=True))} |")
    md.append("")
    png = os.path.join(out, "build.png")
    panels = [
        ("wall time + sync", "s", {t: data.get(("wall_sync", t), []) for t in BUILD_TOOLS}),
        ("CPU time", "s", {t: data.get(("cpu", t), []) for t in BUILD_TOOLS}),
        ("output size", "MB", {t: [v / 1e6 for v in data.get(("size", t), [])]
                               for t in BUILD_TOOLS}),
    ]
    labels = {t: BUILD_LABEL[t].replace("\\|", "|") for t in BUILD_TOOLS}
    if bar_panels(png, "build (median, min-max)", panels, BUILD_TOOLS, labels, 3):
        md += ["![build chart](build.png)", ""]
    return md


def mount_report(out, data, args):
    md = ["# Mount: slimfs vs squashfuse_ll, kernel squashfs, kernel erofs, plain directory", ""]
    md += [
        "Same tree for all (the rootfs plus one "
        f"{args.fio_size} MiB file for fio, excluded from the full-tree read); squashfuse_ll "
        "and kernel squashfs mount the same squashfs image (zstd-3), kernel erofs an lz4hc "
        "image, slimfs its default image. Cold = `sync; echo 3 > /proc/sys/vm/drop_caches` "
        "and a fresh mount (fresh slimfs daemon, no disk cache); warm = the same command "
        "again right after, on the same mount. fio: randread, bs 4k, psync, "
        f"time-based {args.fio_time} s, invalidate=1 (the file's page cache is dropped at "
        "the start of each pass over the file), fresh mount with caches dropped before "
        "each fio run; daemon caches (slimfs' decoded-chunk memory cache) are kept across "
        "passes. Median of the runs with (min-max).",
        "",
    ]
    sizes = {
        "slimfs": med(data, "image_size", "slimfs"),
        "squashfuse_ll": med(data, "image_size", "sqfs"),
        "squashfs": med(data, "image_size", "sqfs"),
        "erofs": med(data, "image_size", "erofs"),
    }
    hdr = "| | " + " | ".join(FS_LABEL[f] for f in FS) + " |"
    md += [hdr, "|---" * (len(FS) + 1) + "|"]
    md.append("| image size (MB) | " + " | ".join(
        f"{sizes[f] / 1e6:.1f}" if sizes.get(f) else "-" for f in FS) + " |")
    for m, label, unit, scale, _ in MOUNT_ROWS:
        md.append(f"| {label} ({unit}) | " + " | ".join(
            cell(data.get((m, f)), unit, scale) for f in FS) + " |")
    md.append("")

    def better(m, peer, hib):
        a, b = med(data, m, "slimfs"), med(data, m, peer)
        if a is None or b is None or a <= 0 or b <= 0:
            return None
        return a / b if hib else b / a

    md += ["## slimfs against each peer (> 1 = slimfs better)", "",
           "Goals: >= 1.5x squashfuse_ll and >= 0.8x kernel squashfs on every row. "
           "Times and RSS: peer / slimfs; IOPS: slimfs / peer.", "",
           "| | vs squashfuse_ll (goal 1.5x) | vs kernel squashfs (goal 0.8x) "
           "| vs kernel erofs | vs plain dir |",
           "|---|---|---|---|---|"]
    for m, label, unit, scale, hib in MOUNT_ROWS:
        md.append(f"| {label} | {verdict(better(m, 'squashfuse_ll', hib), 1.5)} | "
                  f"{verdict(better(m, 'squashfs', hib), 0.8)} | "
                  f"{info(better(m, 'erofs', hib))} | {info(better(m, 'dir', hib))} |")
    md.append("")
    panels = []
    for m, label, unit, scale, _ in MOUNT_ROWS:
        series = {f: [v * scale for v in data.get((m, f), [])] for f in FS}
        panels.append((label.replace("\\|", "|"), unit, series))
    if bar_panels(os.path.join(out, "mount.png"), "mount (median, min-max)", panels, FS,
                  FS_LABEL, 4):
        md += ["![mount chart](mount.png)", ""]
    return md


def floors_report(data, args):
    """What bounds the mount time, unmount and memory rows from below (run.sh floors)."""
    sq = "squashfuse_ll"
    md = ["# Floors of the mount time, unmount and memory rows", "",
          "`bench/run.sh floors`: the mount part's tree and images; subjects alternate in every "
          "run; median (min-max). Cold = page cache dropped first. The goals of the mount "
          "part: 1.5x better than squashfuse_ll.", "",
          "## Cold start (ms)", "",
          "| /bin/true (ld.so + libc) | static no-op | squashfuse_ll mount | slimfs mount "
          "| goal: squashfuse_ll / 1.5 |", "|---|---|---|---|---|"]
    ms = lambda m, s: cell(data.get((m, s)), "ms", 1000)
    goal = lambda m, s, scale, f: f % (med(data, m, s) * scale / 1.5) if med(data, m, s) else "-"
    md.append(f"| {ms('start', 'true')} | {ms('start', 'noop-static')} | "
              f"{ms('mount_s', sq)} | {ms('mount_s', 'slimfs')} | "
              f"{goal('mount_s', sq, 1000, '%.1f')} |")
    md += ["", "## Unmount after one cold full-tree read (ms)", "",
           "| | the unmount command (the kernel drops the mount's page cache in it) "
           "| until the daemon has exited |", "|---|---|---|"]
    for s, label in ((sq, sq), ("slimfs", "slimfs"), ("squashfs", "kernel squashfs")):
        md.append(f"| {label} | {ms('umount_cmd', s)} | {ms('umount_total', s)} |")
    md += ["", f"Goal: squashfuse_ll / 1.5 = {goal('umount_total', sq, 1000, '%.1f')} ms.", "",
           "## Daemon memory after one cold full-tree read (MiB, resident)", "",
           "| | shared libraries | executable | other mapped files | anonymous | peak (VmHWM) |",
           "|---|---|---|---|---|---|"]
    mib = lambda m, s: cell(data.get((m, s)), "MiB2", 1 / 1024)
    for s in (sq, "slimfs"):
        md.append(f"| {s} | " + " | ".join(mib(m, s) for m in (
            "rss_libs", "rss_exe", "rss_file", "rss_anon", "rss_peak")) + " |")
    md += ["", f"Goal: squashfuse_ll / 1.5 = {goal('rss_peak', sq, 1 / 1024, '%.2f')} MiB.",
           ""]
    return md


def machine_report(out, args):
    md = ["# Machine and versions of the last run", ""]
    cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -n1")
    mem = sh("free -g | awk '/^Mem:/ { print $2 }'")
    os_rel = sh(". /etc/os-release && echo \"$PRETTY_NAME\"")
    virt = sh("systemd-detect-virt 2>/dev/null") or "unknown"
    vers = sh("dpkg-query -W -f '${Package} ${Version}\\n' squashfs-tools squashfuse "
              "erofs-utils fio zstd gzip tar fuse3 libfuse3-3 2>/dev/null")
    commit = args.commit
    md += [
        f"- date: {sh('date -u +%Y-%m-%dT%H:%MZ')}",
        f"- CPU: {cpu}, {os.cpu_count()} cores; memory {mem} GiB; virtualisation: {virt}",
        f"- OS: {os_rel}, kernel {platform.release()}",
        f"- slimfs: {args.slimfs} (git {commit}, `{sh(args.slimfs + ' --version')}`)",
        f"- rootfs: {args.rootfs} ({sh('du -sh --apparent-size ' + args.rootfs + ' | cut -f1')}"
        f", {sh('find ' + args.rootfs + ' | wc -l')} entries)",
        f"- runs per row: {args.runs}; parts: {args.parts}; elapsed {args.elapsed} s",
        "- peers:", "",
    ]
    md += ["      " + line for line in vers.splitlines()]
    md.append("")
    load = args.load
    if os.path.exists(load):
        md += ["## Machine load seen during the run (other users of this machine)", ""]
        md += open(load).read().splitlines()
        md.append("")
    return md


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", default="?")
    ap.add_argument("--fio-time", default="10")
    ap.add_argument("--fio-size", default="256")
    ap.add_argument("--slimfs", default="slimfs")
    ap.add_argument("--rootfs", default="?")
    ap.add_argument("--elapsed", default="?")
    ap.add_argument("--parts", default="all")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--load", default="", help="markdown table of the load seen")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    b = load(os.path.join(args.out, "build.tsv"))
    m = load(os.path.join(args.out, "mount.tsv"))
    if b and args.parts in ("build", "all"):
        with open(os.path.join(args.out, "build.md"), "w") as f:
            f.write("\n".join(build_report(args.out, b)) + "\n")
    if m and args.parts in ("mount", "all"):
        with open(os.path.join(args.out, f"mount.md"), "w") as f:
            f.write("\n".join(mount_report(args.out, m, args)) + "\n")
    fl = load(os.path.join(args.out, "floors.tsv"))
    if fl and args.parts == "floors":
        with open(os.path.join(args.out, "floors.md"), "w") as f:
            f.write("\n".join(floors_report(fl, args)) + "\n")
    with open(os.path.join(args.out, f"machine-{args.parts}.md"), "w") as f:
        f.write("\n".join(machine_report(args.out, args)) + "\n")


if __name__ == "__main__":
    main()
