#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes corrupted variants of a slimfs image for tests/integration/hostile-images.sh.

    tests/hostile/corrupt-image.py IMAGE OUTDIR

Every field of the superblock and of a sample of the records of every
section gets a few bad values; the index checksum (XXH3-64, through
libxxhash with ctypes) is recomputed so that the checks behind it are
reached, except in the variants that test the checksum itself. Also: chunk
records pointing outside the data, lying usize/csize, a directory cycle, a
directory referenced twice, flipped data bytes.

A compressed index (format 1.1, feature_incompat bit ZINDEX: the sections
are one zstd frame after the superblock) is decompressed (libzstd with
ctypes), the records are patched in the plain index, and the sections are
compressed again into the variant, so the structural damage reaches the
same checks as in a plain image. The frame itself gets its own variants
(zindex-*): flipped bytes, cut short, bytes after it, a lying or missing
content size, a decompression bomb.

OUTDIR/variants.tsv lists NAME <TAB> EXPECT, one a line; EXPECT is
"index" (the index must be refused: every command fails), "data" (the index
may open, but `verify` must fail, and reading the damage gives EIO), or
"any" (a field a reader may ignore: anything but a crash or a hang).
"""
import ctypes
import os
import struct
import sys

SUPER = [  # name, offset, size, expect
    ("magic", 0, 8, "index"), ("version_major", 8, 2, "index"),
    ("version_minor", 10, 2, "any"), ("feature_incompat", 12, 4, "index"),
    ("feature_compat", 16, 4, "any"), ("inode_size", 20, 4, "index"),
    ("dirent_size", 24, 4, "index"), ("xattr_size", 28, 4, "index"),
    ("chunk_size", 32, 4, "index"), ("extent_size", 36, 4, "index"),
    ("cdc_min", 40, 4, "any"), ("cdc_avg", 44, 4, "any"), ("cdc_max", 48, 4, "any"),
    ("zstd_level", 52, 4, "any"), ("small_file_max", 56, 4, "any"),
    ("default_view", 60, 4, "any"), ("index_size", 64, 8, "any"), ("data_off", 72, 8, "any"),
    ("data_size", 80, 8, "any"), ("total_bytes", 88, 8, "any"), ("entry_count", 96, 8, "any"),
    ("config_off", 104, 8, "any"), ("config_len", 112, 8, "any"),
]
SEC_NAMES = ["inodes", "dirents", "strings", "xattrs", "chunks", "extents", "views", "prefetch"]
for i, n in enumerate(SEC_NAMES):
    SUPER.append(("sec_%s_off" % n, 120 + 16 * i, 8, "any"))
    SUPER.append(("sec_%s_count" % n, 128 + 16 * i, 8, "any"))

RECORDS = {  # section: (record size, [(field, offset, size)])
    "inodes": (64, [("mode", 0, 4), ("uid", 4, 4), ("gid", 8, 4), ("nlink", 12, 4),
                    ("size", 16, 8), ("mtime", 24, 8), ("mtime_ns", 32, 4), ("views", 36, 4),
                    ("data", 40, 8), ("count", 48, 4), ("xattr_start", 52, 4),
                    ("xattr_count", 56, 4), ("parent", 60, 4)]),
    "dirents": (16, [("name_off", 0, 8), ("name_len", 8, 4), ("ino", 12, 4)]),
    "xattrs": (24, [("name_off", 0, 8), ("value_off", 8, 8), ("name_len", 16, 4),
                    ("value_len", 20, 4)]),
    "chunks": (64, [("id", 0, 16), ("sha256", 16, 32), ("off", 48, 8), ("csize", 56, 4),
                    ("usize", 60, 4)]),
    "extents": (24, [("file_off", 0, 8), ("chunk", 8, 4), ("chunk_off", 12, 4), ("len", 16, 4),
                     ("reserved", 20, 4)]),
    "views": (16, [("name_off", 0, 8), ("name_len", 8, 4), ("flags", 12, 4)]),
    "prefetch": (4, [("chunk", 0, 4)]),
}

ZINDEX = 0x1  # SLIMFS_FEATURE_INCOMPAT_ZINDEX

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


_zstd = ctypes.CDLL("libzstd.so.1")
_zstd.ZSTD_compressBound.restype = ctypes.c_size_t
_zstd.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
_zstd.ZSTD_createCCtx.restype = ctypes.c_void_p
_zstd.ZSTD_freeCCtx.argtypes = [ctypes.c_void_p]
_zstd.ZSTD_CCtx_setParameter.restype = ctypes.c_size_t
_zstd.ZSTD_CCtx_setParameter.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
_zstd.ZSTD_compress2.restype = ctypes.c_size_t
_zstd.ZSTD_compress2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                 ctypes.c_char_p, ctypes.c_size_t]
_zstd.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
_zstd.ZSTD_getFrameContentSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_zstd.ZSTD_decompress.restype = ctypes.c_size_t
_zstd.ZSTD_decompress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                  ctypes.c_size_t]
_zstd.ZSTD_isError.argtypes = [ctypes.c_size_t]


def zcompress(data, content_size=True):
    """One zstd frame (level 9, content checksum), as slimfs writes the index."""
    cap = _zstd.ZSTD_compressBound(len(data))
    out = ctypes.create_string_buffer(cap)
    cctx = _zstd.ZSTD_createCCtx()
    for param, value in ((100, 9), (200, int(content_size)), (201, 1)):
        _zstd.ZSTD_CCtx_setParameter(cctx, param, value)
    n = _zstd.ZSTD_compress2(cctx, out, cap, bytes(data), len(data))
    _zstd.ZSTD_freeCCtx(cctx)
    assert not _zstd.ZSTD_isError(n)
    return out.raw[:n]


def zdecompress(frame):
    size = _zstd.ZSTD_getFrameContentSize(bytes(frame), len(frame))
    assert size < 1 << 30, "no usable content size in the index frame"
    out = ctypes.create_string_buffer(max(size, 1))
    n = _zstd.ZSTD_decompress(out, size, bytes(frame), len(frame))
    assert n == size, "the index frame does not decompress"
    return out.raw[:n]


def fcs_field(b, f):
    """Offset and width of the content size field of the frame at b[f:]."""
    fhd = b[f + 4]
    single = (fhd >> 5) & 1
    width = (0, 2, 4, 8)[fhd >> 6] or single
    return f + 5 + (1 - single) + (0, 1, 2, 4)[fhd & 3], width


def fix_checksum(b):
    isz = struct.unpack_from("<Q", b, 64)[0]
    if isz < 256 or isz > len(b):
        return
    b[248:256] = bytes(8)
    struct.pack_into("<Q", b, 248, _xxh.XXH3_64bits(bytes(b[:isz]), isz))


def bad_values(v, size):
    top = (1 << (8 * size)) - 1
    vals = {0, 1, top, (v + 1) & top, (v - 1) & top, v ^ (1 << (8 * size - 1)),
            (v * 2 + 4096) & top, 1 << (8 * size - 2)}
    vals.discard(v)
    return sorted(vals)


def main():
    img, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    orig = open(img, "rb").read()
    variants = []
    isz, data_off = struct.unpack_from("<QQ", orig, 64)
    zindex = struct.unpack_from("<I", orig, 12)[0] & ZINDEX
    # the plain index: record offsets are offsets in it (format.h)
    plain = orig[:256] + zdecompress(orig[256:isz]) if zindex else orig[:isz]

    def repack(p):
        """The image with plain index p; None when it no longer fits before data_off."""
        if not zindex:
            return bytes(p) + orig[isz:]
        frame = zcompress(p[256:])
        if 256 + len(frame) > data_off:
            return None
        b = bytearray(p[:256]) + frame + bytes(data_off - 256 - len(frame)) + orig[data_off:]
        struct.pack_into("<Q", b, 64, 256 + len(frame))
        return b

    def emit(name, data, expect, fix=True):
        if data is None:
            return
        b = bytearray(data)
        if fix:
            fix_checksum(b)
        with open(os.path.join(out, name + ".img"), "wb") as f:
            f.write(b)
        variants.append((name, expect))

    # the superblock, field by field
    for name, off, size, expect in SUPER:
        if size > 8:
            for i, flip in enumerate((0, 3, size - 1)):
                b = bytearray(orig)
                b[off + flip] ^= 0x20
                emit("super-%s-byte%d" % (name, flip), b, expect)
            continue
        fmt = {2: "<H", 4: "<I", 8: "<Q"}[size]
        v = struct.unpack_from(fmt, orig, off)[0]
        for bad in bad_values(v, size):
            b = bytearray(orig)
            struct.pack_into(fmt, b, off, bad)
            emit("super-%s-%x" % (name, bad), b, expect)
    b = bytearray(orig)
    b[250] ^= 1
    emit("super-checksum-wrong", b, "index", fix=False)
    b = bytearray(orig)
    b[300] ^= 1
    emit("index-byte-flipped-checksum-kept", b, "index", fix=False)
    emit("truncated-in-super", orig[:100], "index", fix=False)
    emit("truncated-in-index", orig[:isz - 8], "index", fix=False)
    data_size = struct.unpack_from("<Q", orig, 80)[0]
    emit("truncated-in-data", orig[:data_off + data_size // 2], "data", fix=False)
    emit("empty-file", b"", "index", fix=False)

    # a sample of the records of every section
    # the compressed index itself
    if zindex:
        f = 256
        flen = isz - 256
        for name, off in (("magic", f), ("header", f + 4), ("middle", f + flen // 2),
                          ("last", isz - 1)):
            b = bytearray(orig)
            b[off] ^= 0xff
            emit("zindex-%s-byte-flipped" % name, b, "index")
        for cut in (1, 4, flen // 2, flen - 1):
            b = bytearray(orig)
            struct.pack_into("<Q", b, 64, isz - cut)
            emit("zindex-cut-%d" % cut, b, "index")
        if isz + 8 <= data_off:
            b = bytearray(orig)
            struct.pack_into("<Q", b, 64, isz + 8)
            emit("zindex-zeros-after-frame", b, "index")
        fo, width = fcs_field(orig, f)
        size = int.from_bytes(orig[fo:fo + width], "little")
        for name, v in (("more", size + 1), ("less", size - 1), ("max", (1 << 8 * width) - 1)):
            b = bytearray(orig)
            b[fo:fo + width] = (v % (1 << 8 * width)).to_bytes(width, "little")
            emit("zindex-content-size-%s" % name, b, "index")
        b = bytearray(orig[:256]) + zcompress(plain[256:], content_size=False)
        if len(b) <= data_off:
            struct.pack_into("<Q", b, 64, len(b))
            emit("zindex-no-content-size", b + bytes(data_off - len(b)) + orig[data_off:],
                 "index")
        bomb = zcompress(bytes(16 << 20))  # 16 MiB of zeros: a ratio no index has
        if 256 + len(bomb) <= data_off:
            b = bytearray(orig[:256]) + bomb
            struct.pack_into("<Q", b, 64, len(b))
            emit("zindex-bomb", b + bytes(data_off - len(b)) + orig[data_off:], "index")
        b = bytearray(orig)
        struct.pack_into("<I", b, 12, struct.unpack_from("<I", orig, 12)[0] & ~ZINDEX)
        emit("zindex-bit-cleared", b, "index")

    sec = {}
    for i, n in enumerate(SEC_NAMES):
        sec[n] = struct.unpack_from("<QQ", plain, 120 + 16 * i)
    for sname, (rsize, fields) in RECORDS.items():
        soff, count = sec[sname]
        picks = sorted({0, count - 1}) if count else []
        for r in picks:
            base = soff + r * rsize
            for fname, off, size in fields:
                if size > 8:
                    b = bytearray(plain)
                    b[base + off] ^= 0xff
                    # ids and digests are only checked when a chunk is read
                    emit("%s%d-%s-flipped" % (sname, r, fname), repack(b), "data")
                    continue
                fmt = {4: "<I", 8: "<Q"}[size]
                v = struct.unpack_from(fmt, plain, base + off)[0]
                for bad in bad_values(v, size)[:3]:
                    b = bytearray(plain)
                    struct.pack_into(fmt, b, base + off, bad)
                    emit("%s%d-%s-%x" % (sname, r, fname, bad), repack(b), "any")

    # chunks: out of range, overlapping, lying sizes (the index may accept
    # a size that still fits; then reading must fail)
    coff, ccount = sec["chunks"]
    if ccount:
        last = coff + (ccount - 1) * 64
        o, cs, us = struct.unpack_from("<QII", plain, last + 48)
        for name, vals, expect in (
                ("chunk-off-beyond-data", (data_size, cs, us), "index"),
                ("chunk-off-huge", ((1 << 64) - 16, cs, us), "index"),
                ("chunk-csize-beyond-data", (o, data_size - o + 1, us), "index"),
                ("chunk-csize-short", (o, max(cs - 1, 1), us), "data"),
                ("chunk-usize-more", (o, cs, us + 1), "data"),
                ("chunk-usize-less", (o, cs, max(us - 1, 1)), "data"),
                ("chunk-usize-over-max", (o, cs, (4 << 20) + 1), "index"),
                ("chunk-usize-zero", (o, cs, 0), "index")):
            b = bytearray(plain)
            struct.pack_into("<QII", b, last + 48, *vals)
            emit(name, repack(b), expect)
        if ccount > 1:
            b = bytearray(plain)
            o0 = struct.unpack_from("<Q", plain, coff + 48)[0]
            struct.pack_into("<Q", b, coff + 64 + 48, o0)
            emit("chunk-overlap", repack(b), "index")

    # flipped data bytes: the index is fine, the chunk is not
    b = bytearray(orig)
    b[data_off + 5] ^= 0x55
    emit("data-byte-flipped", b, "data", fix=False)
    b = bytearray(orig)
    b[data_off + data_size - 1] ^= 0x55
    emit("data-last-byte-flipped", b, "data", fix=False)

    # directory cycles: a subdirectory's entry pointing at its ancestor, and
    # parent fields forming a loop
    ioff, icount = sec["inodes"]
    doff, dcount = sec["dirents"]
    dirs = [i for i in range(icount)
            if struct.unpack_from("<I", plain, ioff + 64 * i)[0] & 0o170000 == 0o040000]
    sub = [i for i in dirs if i != 0]
    if sub:
        d = sub[0]
        first, cnt = struct.unpack_from("<QI", plain, ioff + 64 * d + 40)
        if cnt:
            b = bytearray(plain)
            struct.pack_into("<I", b, doff + 16 * first + 12, 0)  # entry -> the root
            emit("dir-cycle-to-root", repack(b), "index")
            parent = struct.unpack_from("<I", plain, ioff + 64 * d + 60)[0]
            b = bytearray(plain)
            struct.pack_into("<I", b, doff + 16 * first + 12, d)  # entry -> itself
            emit("dir-cycle-self", repack(b), "index")
        b = bytearray(plain)
        struct.pack_into("<I", b, ioff + 64 * d + 60, d)  # own parent
        emit("dir-parent-self", repack(b), "index")
        if len(sub) > 1:
            b = bytearray(plain)
            struct.pack_into("<I", b, ioff + 64 * sub[0] + 60, sub[1])
            struct.pack_into("<I", b, ioff + 64 * sub[1] + 60, sub[0])
            emit("dir-parent-loop", repack(b), "index")
    # a directory entry of the root pointing at another directory a second time
    rfirst, rcnt = struct.unpack_from("<QI", plain, ioff + 40)
    if len(sub) > 1 and rcnt > 1:
        b = bytearray(plain)
        for k in range(rcnt):
            ino = struct.unpack_from("<I", plain, doff + 16 * (rfirst + k) + 12)[0]
            if ino not in dirs:
                struct.pack_into("<I", b, doff + 16 * (rfirst + k) + 12, sub[0])
                emit("dir-linked-twice", repack(b), "index")
                break

    with open(os.path.join(out, "variants.tsv"), "w") as f:
        for name, expect in variants:
            f.write("%s\t%s\n" % (name, expect))


if __name__ == "__main__":
    main()
