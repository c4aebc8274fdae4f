#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Print one canonical line per entry of a directory tree, sorted by path bytes,
so that two trees compare with diff.

usage: dumpdir.py [--no-mtime-dirs] [--no-root] [--exclude PATTERN]... DIR

Line format (fields separated by one space, absent values are '-'):
  PATH TYPE mode=OCTAL uid=N gid=N size=N mtime=NS nlink=N rdev=MAJ:MIN
       xattrs=NAME=HEX,... target=ESCAPED sha256=HEX hl=FIRSTPATH
PATH starts with '.', and every byte outside printable ASCII, plus space,
backslash, '=' and ',' is written as \\xHH, so a line is one line whatever the
names. Sizes are printed for regular files and symlinks only (directory sizes
depend on the filesystem). hl is the first path, in sorted order, of a regular
file's inode when the file has more than one link. The content hash is the
plain SHA-256 of the file's bytes (holes are read as zeros, found with
SEEK_HOLE when the filesystem offers it).

--exclude takes an fnmatch pattern matched against the escaped path (e.g.
'./proc/*' or './dev'); an excluded directory is left out with its subtree.
Reads through FUSE mounts too. Exits 1 after printing everything it could if
any entry could not be read, with the errors on stderr.
"""

import argparse
import errno
import fnmatch
import hashlib
import os
import stat
import sys

CHUNK = 1 << 20
ZEROS = bytes(CHUNK)


def esc(b):
    out = []
    for c in b:
        if 0x21 <= c <= 0x7E and c not in b"\\=,":
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def ftype(m):
    for test, name in ((stat.S_ISREG, "reg"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "lnk"),
                       (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "sock")):
        if test(m):
            return name
    return "unknown"


def hash_file(path, size):
    """SHA-256 of the content; holes are fed as zeros without reading them."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY)
    try:
        pos = 0
        seek_ok = True
        while True:
            data_end = None
            if seek_ok:
                try:
                    data = os.lseek(fd, pos, os.SEEK_DATA)
                    if data > pos:
                        for left in range(data - pos, 0, -CHUNK):
                            h.update(ZEROS[:min(left, CHUNK)])
                        pos = data
                    data_end = os.lseek(fd, pos, os.SEEK_HOLE)
                except OSError as e:
                    if e.errno == errno.ENXIO:  # only a hole up to EOF is left
                        break
                    if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP,
                                       errno.ENOSYS):
                        raise
                    seek_ok = False
            while data_end is None or pos < data_end:
                want = CHUNK if data_end is None else min(CHUNK, data_end - pos)
                buf = os.pread(fd, want, pos)
                if not buf:
                    break
                h.update(buf)
                pos += len(buf)
            if data_end is None or pos < data_end:
                break  # EOF by read
        # Holes to EOF (a file can end in a hole).
        end = os.fstat(fd).st_size
        while pos < end:
            n = min(CHUNK, end - pos)
            h.update(ZEROS[:n])
            pos += n
        if pos != end:
            raise OSError(errno.EIO, f"read {pos} bytes but st_size is {end}", path)
    finally:
        os.close(fd)
    if pos != size:
        raise OSError(errno.EIO, f"read {pos} bytes but lstat said {size}", path)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-mtime-dirs", action="store_true",
                    help="print mtime=- for directories")
    ap.add_argument("--no-root", action="store_true", help="leave out the '.' entry")
    ap.add_argument("--exclude", action="append", default=[], metavar="PATTERN")
    ap.add_argument("--no-hash", action="store_true", help="skip content hashes")
    ap.add_argument("dir")
    a = ap.parse_args()

    top = os.fsencode(a.dir)
    errors = []
    entries = []  # (relpath bytes, stat, xattrs, target)

    def err(path, e):
        errors.append(f"dumpdir: {os.fsdecode(path)}: {e.strerror or e}")

    def excluded(rel):
        s = esc(rel)
        return any(fnmatch.fnmatchcase(s, p) for p in a.exclude)

    def visit(rel, full):
        try:
            st = os.lstat(full)
        except OSError as e:
            err(full, e)
            return
        xattrs = []
        try:
            names = os.listxattr(full, follow_symlinks=False)
            for n in names:
                try:
                    xattrs.append((os.fsencode(n), os.getxattr(full, n, follow_symlinks=False)))
                except OSError as e:
                    if e.errno != errno.ENODATA:  # removed meanwhile
                        err(full, e)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                err(full, e)
        target = None
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(full)
            except OSError as e:
                err(full, e)
        entries.append((rel, st, sorted(xattrs), target, full))
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(e.name for e in os.scandir(full))
            except OSError as e:
                err(full, e)
                return
            for name in names:
                crel = rel + b"/" + name
                if excluded(crel):
                    continue
                visit(crel, os.path.join(full, name))

    visit(b".", top)
    entries.sort(key=lambda e: e[0])

    groups = {}
    for rel, st, _, _, _ in entries:
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), rel)

    out = sys.stdout
    for rel, st, xattrs, target, full in entries:
        if rel == b"." and a.no_root:
            continue
        m = st.st_mode
        t = ftype(m)
        isdir = stat.S_ISDIR(m)
        size = str(st.st_size) if t in ("reg", "lnk") else "-"
        mtime = "-" if isdir and a.no_mtime_dirs else str(st.st_mtime_ns)
        rdev = ("%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
                if t in ("chr", "blk") else "-")
        xs = ",".join(f"{esc(n)}={v.hex()}" for n, v in xattrs) or "-"
        tgt = esc(target) if target is not None else "-"
        digest = "-"
        if t == "reg" and not a.no_hash:
            try:
                digest = hash_file(full, st.st_size)
            except OSError as e:
                err(full, e)
                digest = "ERROR"
        hl = "-"
        if t == "reg" and st.st_nlink > 1:
            hl = esc(groups[(st.st_dev, st.st_ino)])
        out.write(f"{esc(rel)} {t} mode={stat.S_IMODE(m):04o} uid={st.st_uid} gid={st.st_gid} "
                  f"size={size} mtime={mtime} nlink={st.st_nlink} rdev={rdev} xattrs={xs} "
                  f"target={tgt} sha256={digest} hl={hl}\n")
    out.flush()
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
