#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate a deterministic directory tree that exercises every kind of
filesystem metadata slimfs must carry through build, extract and mount.

usage: gendir.py --seed N [--big] [--no-devices] DIR

The same seed gives the same tree (names, contents, modes, owners, times,
xattrs). DIR must not exist or be empty. Devices and foreign owners need root;
without root they are left out with a note on stderr (or refused with
--strict). --big adds a 5 GiB sparse file (a few blocks on disk).
"""

import argparse
import errno
import os
import random
import struct
import sys

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# struct vfs_ns_cap_data / vfs_cap_data v2 (linux/capability.h): magic_etc,
# then {permitted, inheritable} for the low and the high 32 capability bits.
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001
CAP_NET_BIND_SERVICE = 10
CAP_NET_RAW = 13


def cap_v2(*caps):
    lo = 0
    for c in caps:
        lo |= 1 << c
    return struct.pack("<IIIII", VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, lo, 0, 0, 0)


class Gen:
    def __init__(self, root, seed, big, devices, owners):
        self.root = os.fsencode(root)
        self.rng = random.Random(seed)
        self.big = big
        self.devices = devices
        self.owners = owners
        # path -> (atime_ns, mtime_ns), applied at the end (children change
        # their directory's mtime, so directories go last, deepest first).
        self.times = {}
        self.dirs = []

    def p(self, rel):
        rel = os.fsencode(rel) if isinstance(rel, str) else rel
        return self.root if rel in (b"", b".") else os.path.join(self.root, rel)

    def rand_time(self):
        sec = self.rng.randrange(1_000_000_000, 1_700_000_000)
        return sec * 1_000_000_000 + self.rng.randrange(1_000_000_000)

    def meta(self, rel, mode=None, uid=None, gid=None, mtime=None, xattrs=None, symlink=False):
        path = self.p(rel)
        # Order matters: chown clears set-id bits and security.capability,
        # so owner first, then mode, then xattrs; times at the very end.
        if self.owners and (uid is not None or gid is not None):
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid,
                     follow_symlinks=False)
        if mode is not None and not symlink:
            os.chmod(path, mode)
        for name, value in (xattrs or {}).items():
            if name.startswith("security.") and not self.owners:
                continue
            os.setxattr(path, name, value, follow_symlinks=False)
        t = self.rand_time() if mtime is None else mtime
        self.times[path] = t

    def mkdir(self, rel, mode=0o755, **kw):
        os.mkdir(self.p(rel), 0o700)
        self.dirs.append(self.p(rel))
        self.meta(rel, mode=mode, **kw)

    def file(self, rel, data=b"", mode=0o644, **kw):
        with open(self.p(rel), "wb") as f:
            f.write(data)
        self.meta(rel, mode=mode, **kw)

    def sparse(self, rel, size, pieces, mode=0o644, **kw):
        """pieces: list of (offset, bytes); the rest of the file is holes."""
        fd = os.open(self.p(rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for off, data in pieces:
                os.pwrite(fd, data, off)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self.meta(rel, mode=mode, **kw)

    def symlink(self, target, rel, **kw):
        os.symlink(target, self.p(rel))
        self.meta(rel, symlink=True, **kw)

    def rbytes(self, n):
        return self.rng.randbytes(n)

    def text(self, n):
        words = [b"slimfs", b"chunk", b"layer", b"inode", b"digest", b"zstd",
                 b"fuse", b"image", b"rootfs", b"xattr", b"\n"]
        out = bytearray()
        while len(out) < n:
            out += self.rng.choice(words) + b" "
        return bytes(out[:n])

    def generate(self):
        r = self.rng
        os.makedirs(self.root, exist_ok=True)
        if os.listdir(self.root):
            raise SystemExit(f"gendir: {os.fsdecode(self.root)}: not empty")
        self.dirs.append(self.root)
        self.meta(".", mode=0o755, uid=0, gid=0)

        # Regular files of the interesting sizes.
        self.mkdir("files")
        self.file("files/empty")
        self.file("files/one-byte", b"x")
        self.file("files/few-kib", self.text(5 * KiB + 17))
        big100 = self.rbytes(100 * KiB)
        self.file("files/100k", big100)
        self.file("files/100k-copy", big100, mode=0o600)
        self.file("files/3m-random", self.rbytes(3 * MiB))
        self.file("files/3m-text", self.text(3 * MiB))
        self.file("files/1m-plus-1", self.rbytes(MiB + 1))
        self.file("files/zeros-256k", bytes(256 * KiB))
        self.file("files/exec", b"#!/bin/sh\necho hello\n", mode=0o755)

        # Many small files, some sharing content.
        self.mkdir("many")
        variants = [self.text(r.randrange(1, 3000)) for _ in range(25)]
        for i in range(400):
            data = r.choice(variants) if i % 3 else self.rbytes(r.randrange(0, 4000))
            self.file(f"many/f{i:04d}", data, mode=r.choice([0o644, 0o600, 0o755, 0o444]))

        # Sparse files: holes at the start, in the middle and at the end.
        self.mkdir("sparse")
        self.sparse("sparse/holes", 4 * MiB + 123,
                    [(0, self.rbytes(4 * KiB)), (MiB, self.rbytes(8 * KiB)),
                     (3 * MiB + 5, self.text(10 * KiB))])
        self.sparse("sparse/leading-hole", 2 * MiB, [(2 * MiB - 4096, self.rbytes(4096))])
        self.sparse("sparse/all-hole", 3 * MiB, [])
        if self.big:
            size = 5 * GiB
            self.sparse("sparse/big-5g", size,
                        [(0, self.rbytes(64 * KiB)), (size // 2 + 12345, self.rbytes(100 * KiB)),
                         (size - 70 * KiB, self.rbytes(70 * KiB))])

        # Directories: nested, empty, and with special modes.
        self.mkdir("dirs")
        path = "dirs"
        for depth in range(12):
            path += f"/d{depth}"
            self.mkdir(path, mode=0o755 if depth % 2 else 0o750)
        self.file(path + "/deep-file", b"deep\n")
        self.mkdir("dirs/empty")
        self.mkdir("dirs/empty-0000", mode=0o000)
        self.mkdir("dirs/sticky", mode=0o1777)
        self.mkdir("dirs/sgid", mode=0o2775, gid=5678)
        self.file("dirs/sgid/inside", b"sgid dir\n", gid=5678)

        # Symlinks.
        self.mkdir("links")
        self.symlink("../files/few-kib", "links/relative")
        self.symlink("/etc/passwd", "links/absolute")
        self.symlink("does/not/exist", "links/dangling")
        self.symlink("../dirs", "links/to-dir")
        self.symlink(".", "links/self-dir")
        self.symlink("x" * 1000, "links/long-target")
        self.symlink("../names/sp ace", "links/to-space", uid=1234, gid=5678)

        # Hardlink groups of 2 and 3, across directories.
        self.mkdir("hard")
        self.mkdir("hard/sub")
        self.file("hard/a1", self.text(3000), mode=0o640, uid=1234, gid=5678)
        os.link(self.p("hard/a1"), self.p("hard/sub/a2"))
        self.file("hard/b1", self.rbytes(70 * KiB))
        os.link(self.p("hard/b1"), self.p("hard/b2"))
        os.link(self.p("hard/b1"), self.p("hard/sub/b3"))
        self.file("hard/empty1", b"", mode=0o600)
        os.link(self.p("hard/empty1"), self.p("hard/empty2"))

        # Special files.
        self.mkdir("special")
        if self.devices:
            os.mknod(self.p("special/null-like"), 0o666 | 0o020000, os.makedev(1, 3))
            self.meta("special/null-like", mode=0o666)
            os.mknod(self.p("special/char-big"), 0o600 | 0o020000, os.makedev(511, 1048575))
            self.meta("special/char-big", mode=0o600, uid=1234, gid=5678)
            os.mknod(self.p("special/block"), 0o660 | 0o060000, os.makedev(8, 17))
            self.meta("special/block", mode=0o660, gid=6)
            os.mknod(self.p("special/block-big"), 0o640 | 0o060000, os.makedev(259, 65537))
            self.meta("special/block-big", mode=0o640)
        os.mkfifo(self.p("special/fifo"), 0o600)
        self.meta("special/fifo", mode=0o620)

        # Modes and owners.
        self.mkdir("modes")
        self.file("modes/suid", b"#!/bin/sh\n", mode=0o4755)
        self.file("modes/sgid", b"#!/bin/sh\n", mode=0o2755, gid=5678)
        self.file("modes/suid-sgid-sticky", b"x", mode=0o7777)
        self.file("modes/0000", b"nobody reads me\n", mode=0o000)
        self.file("modes/0777", b"everyone\n", mode=0o777)
        self.file("modes/0400", b"ro\n", mode=0o400)
        self.file("modes/owner-1234-5678", b"foreign\n", uid=1234, gid=5678)
        self.file("modes/owner-65534", b"nobody\n", uid=65534, gid=65534)
        self.file("modes/owner-big", b"big ids\n", uid=4000000000, gid=3000000000)
        self.mkdir("modes/dir-owned", mode=0o700, uid=1234, gid=5678)

        # Timestamps: nanoseconds everywhere, and the edges, before 1970 too.
        # libarchive < 3.8 misreads negative pax times; ingest undoes that
        # (index/ingest_tar.c), except in (-1 s, 0), where libarchive loses the
        # sign itself ("-0.5" reads as +0.5): no time here falls in that second.
        self.mkdir("times")
        self.file("times/before-1970", b"old\n", mtime=-157766400 * 10**9 + 123456789)
        self.file("times/epoch", b"0\n", mtime=0)
        self.file("times/far-future", b"new\n", mtime=7258118400 * 10**9 + 987654321)
        self.file("times/y2038-plus", b"2038\n", mtime=(2**31 + 5) * 10**9 + 1)
        self.file("times/whole-second", b"s\n", mtime=1600000000 * 10**9)
        self.symlink("before-1970", "times/link-old", mtime=-10**9 - 5)

        # Extended attributes.
        self.mkdir("xattrs", xattrs={"user.dir": b"on a directory"})
        self.file("xattrs/binary", b"data\n",
                  xattrs={"user.bin": bytes(range(256)), "user.empty": b"",
                          "user.text": b"hello", "user.nul": b"\x00\x00\x01"})
        self.file("xattrs/many", b"",
                  xattrs={f"user.k{i:02d}": self.rbytes(r.randrange(1, 64)) for i in range(20)})
        self.file("xattrs/big-value", b"", xattrs={"user.big": self.rbytes(3000)})
        self.file("xattrs/cap-net-bind", b"\x7fELF pretend\n", mode=0o755,
                  xattrs={"security.capability": cap_v2(CAP_NET_BIND_SERVICE)})
        self.file("xattrs/cap-two", b"\x7fELF pretend 2\n", mode=0o750, gid=5678,
                  xattrs={"security.capability": cap_v2(CAP_NET_BIND_SERVICE, CAP_NET_RAW),
                          "user.also": b"1"})

        # Names.
        self.mkdir("names")
        self.file("names/sp ace", b"space\n")
        self.file("names/  leading and trailing  ", b"spaces\n")
        self.file("names/new\nline", b"newline\n")
        self.file("names/tab\there", b"tab\n")
        self.file("names/back\\slash", b"backslash\n")
        self.file("names/ünïcødé-日本語-🙂", "utf-8\n".encode())
        self.file(b"names/non-utf8-\xff\xfe\x80", b"latin\n")
        self.file("names/" + "n" * 255, b"255 bytes\n")
        self.file("names/" + "é" * 127 + "x", b"255 bytes of utf-8\n")
        self.file("names/.hidden", b"dot\n")
        self.file("names/-dash", b"dash\n")
        self.file("names/=equals:colon,comma", b"punct\n")
        self.mkdir("names/dir with space")
        self.file("names/dir with space/file", b"in a spaced dir\n")

        # Times last: files and links first, then directories deepest first.
        for path, t in self.times.items():
            if path not in self.dirs:
                os.utime(path, ns=(t, t), follow_symlinks=False)
        for path in sorted(self.dirs, key=lambda d: -d.count(b"/")):
            t = self.times[path]
            os.utime(path, ns=(t, t))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--big", action="store_true", help="add a 5 GiB sparse file")
    ap.add_argument("--no-devices", action="store_true", help="leave device nodes out")
    ap.add_argument("--strict", action="store_true",
                    help="fail instead of leaving out what needs root")
    ap.add_argument("dir")
    a = ap.parse_args()

    root = os.geteuid() == 0
    if not root:
        if a.strict:
            raise SystemExit("gendir: devices, foreign owners and security.* need root")
        print("gendir: not root: no devices, foreign owners or security.capability",
              file=sys.stderr)
    g = Gen(a.dir, a.seed, a.big, devices=root and not a.no_devices, owners=root)
    try:
        g.generate()
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise SystemExit(f"gendir: {e.filename!r}: {e.strerror} "
                             "(the filesystem lacks user xattrs or mknod?)")
        raise SystemExit(f"gendir: {e.filename!r}: {e.strerror}")


if __name__ == "__main__":
    main()
