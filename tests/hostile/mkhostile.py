#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hostile-archive cases for tests/integration/hostile-archives.sh.

    tests/hostile/mkhostile.py OUTDIR [--heavy CACHEDIR]

OUTDIR gets one file per layer and cases.tsv, one case a line:

    NAME <TAB> LAYERS <TAB> EXPECT <TAB> CHECKS

LAYERS: comma-separated file names in OUTDIR (or in CACHEDIR for heavy cases),
applied in order by one `slimfs build`. EXPECT: "fail:TEXT" (the build must
fail and its message contain TEXT), "ok" (it must succeed) or "either" (a
clear error or a correct image, both fine; see the comment of the case).
CHECKS (ok/either when the build succeeds), ';'-separated:
    has:PATH  not:PATH  cat:PATH=TEXT  size:PATH=N  type:PATH=d|f|l|c|b|p
Every case must also never crash, hang, or write outside the test's dir:
names that try to escape point at ESCAPE_MARK files, which the script
checks do not exist afterwards.

--heavy writes the big cases once into CACHEDIR (a 1,000,000-entry directory,
a zstd bomb that expands to 8 GiB): generated without ever holding them in
memory, and kept for later runs.
"""
import io
import os
import struct
import sys
import tarfile
import zlib

ESCAPE_MARK = "slimfs-hostile-escape"

NUL = b"\0"


# ---------------------------------------------------------------- tar bytes
def hdr(name, typ=b"0", size=0, mode=0o644, linkname=b"", uid=0, gid=0, mtime=0,
        devmajor=0, devminor=0, magic=b"ustar\x0000", raw_size=None):
    """One ustar header block, fields as given (bytes or str), valid checksum."""
    def enc(s):
        return s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    h = bytearray(512)
    name, linkname = enc(name), enc(linkname)
    h[0:min(100, len(name))] = name[:100]
    h[100:108] = b"%07o\0" % mode
    h[108:116] = b"%07o\0" % uid
    h[116:124] = b"%07o\0" % gid
    if raw_size is not None:
        h[124:136] = raw_size
    elif size < 8 ** 11:
        h[124:136] = b"%011o\0" % size
    else:
        h[124] = 0x80
        h[125:136] = size.to_bytes(11, "big")
    h[136:148] = b"%011o\0" % (mtime & (8 ** 11 - 1))
    h[156:157] = typ
    h[157:157 + min(100, len(linkname))] = linkname[:100]
    h[257:265] = magic
    for off, v in ((329, devmajor), (337, devminor)):
        if v < 8 ** 7:
            h[off:off + 8] = b"%07o\0" % v
        else:
            h[off] = 0x80
            h[off + 1:off + 8] = v.to_bytes(7, "big")
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def pad(data):
    return data + bytes(-len(data) % 512)


def entry(name, data=b"", **kw):
    if isinstance(data, str):
        data = data.encode()
    return hdr(name, size=len(data), **kw) + pad(data)


def pax(records, name="PaxHeaders/x"):
    """A pax extended header ('x') with raw records {key: value}."""
    body = b""
    for k, v in records.items():
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        rec = b" " + k + b"=" + v + b"\n"
        n = len(rec) + 1
        while len(str(n).encode() + rec) != n:
            n = len(str(n).encode() + rec)
        body += str(n).encode() + rec
    return hdr(name, typ=b"x", size=len(body)) + pad(body)


def gnu_long(typ, value):
    value = (value.encode() if isinstance(value, str) else value) + NUL
    return hdr("././@LongLink", typ=typ, size=len(value), magic=b"ustar  \0") + pad(value)


END = bytes(1024)


def tarball(*parts):
    return b"".join(parts) + END


# ---------------------------------------------------------------- zstd frames
def zstd_frame(pieces):
    """A zstd frame from (kind, bytes-or-(byte, count)) pieces, without
    compressing: raw blocks and RLE blocks (128 KiB max each)."""
    out = bytearray(struct.pack("<I", 0xFD2FB528))
    out += bytes([0x00, (17 - 10) << 3])  # no content size, window 128 KiB
    blocks = []
    for kind, v in pieces:
        if kind == "raw":
            for i in range(0, len(v), 1 << 17):
                blocks.append((0, v[i:i + (1 << 17)], len(v[i:i + (1 << 17)])))
        else:
            byte, count = v
            while count:
                n = min(count, 1 << 17)
                blocks.append((1, bytes([byte]), n))
                count -= n
    for i, (typ, payload, size) in enumerate(blocks):
        last = 1 if i == len(blocks) - 1 else 0
        h = last | (typ << 1) | (size << 3)
        out += h.to_bytes(3, "little") + payload
    return bytes(out)


def zstd_frame_stream(f, header, zero_bytes, trailer):
    """Same, written to f: header raw, zero_bytes of RLE zeros, trailer raw."""
    f.write(struct.pack("<I", 0xFD2FB528) + bytes([0x00, (17 - 10) << 3]))

    def block(typ, payload, size, last):
        f.write(((1 if last else 0) | (typ << 1) | (size << 3)).to_bytes(3, "little") + payload)
    block(0, header, len(header), False)
    rle = ((1 << 1) | ((1 << 17) << 3)).to_bytes(3, "little") + NUL
    n, rest = divmod(zero_bytes, 1 << 17)
    chunk = rle * 4096
    for _ in range(n // 4096):
        f.write(chunk)
    f.write(rle * (n % 4096))
    if rest:
        block(1, NUL, rest, False)
    block(0, trailer, len(trailer), True)


def gzip_bytes(data):
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


# ---------------------------------------------------------------- cases
def cases():
    """Yields (name, [(layer file name, bytes)], expect, checks, why)."""
    esc = ESCAPE_MARK
    good = entry("dir/", typ=b"5", mode=0o755) + entry("dir/file", "hello hostile world\n" * 30)
    good_tar = good + END

    yield ("traversal-dotdot", [tarball(entry("../" + esc + "-1", "x"))],
           "fail:'..' component", "", "'..' would leave the image root")
    yield ("traversal-dotdot-deep", [tarball(entry("a/b/../../../../" + esc + "-2", "x"))],
           "fail:'..' component", "", "")
    yield ("traversal-dotdot-dir", [tarball(entry("../", typ=b"5"))],
           "fail:'..' component", "", "")
    yield ("absolute-name", [tarball(entry("/tmp/" + esc + "-abs", "abs\n"),
                                     entry("//etc///./hosts", "h\n"))],
           "ok", "cat:/tmp/%s-abs=abs;cat:/etc/hosts=h" % esc,
           "absolute names are relative to the image root, like tar -x does")
    yield ("symlink-then-file", [tarball(entry("d", typ=b"2", linkname="/tmp"),
                                         entry("d/" + esc + "-3", "x"))],
           "fail:a parent directory is a symlink", "", "a write through a symlink")
    yield ("symlink-dotdot-then-file", [tarball(entry("up", typ=b"2", linkname=".."),
                                                entry("up/" + esc + "-4", "x"))],
           "fail:a parent directory is a symlink", "", "")
    yield ("symlink-then-file-next-layer",
           [tarball(entry("etc", typ=b"2", linkname="/etc")),
            tarball(entry("etc/" + esc + "-5", "x"))],
           "fail:a parent directory is a symlink", "", "the symlink from a lower layer")
    yield ("symlink-then-dir-then-file",
           [tarball(entry("s", typ=b"2", linkname="/"), entry("s/sub/", typ=b"5"),
                    entry("s/sub/" + esc + "-6", "x"))],
           "fail:a parent directory is a symlink", "", "")
    yield ("hardlink-dotdot", [tarball(entry("f", "x"), entry("h", typ=b"1",
                                                                linkname="../../etc/passwd"))],
           "fail:'..' component", "", "")
    yield ("hardlink-absolute-missing", [tarball(entry("h", typ=b"1", linkname="/etc/shadow"))],
           "fail:target missing", "", "the target is looked up in the image, not on the host")
    yield ("hardlink-absolute-inside", [tarball(entry("etc/passwd", "root:x:0:0\n"),
                                                entry("h", typ=b"1", linkname="/etc/passwd"))],
           "ok", "cat:/h=root:x:0:0", "")
    yield ("hardlink-through-symlink",
           [tarball(entry("d", typ=b"2", linkname="/etc"),
                    entry("h", typ=b"1", linkname="d/passwd"))],
           "fail:hardlink to", "", "")
    yield ("hardlink-to-dir", [tarball(entry("dir/", typ=b"5"), entry("h", typ=b"1",
                                                                       linkname="dir"))],
           "fail:cannot hardlink a directory", "", "")
    yield ("hardlink-to-self", [tarball(entry("h", typ=b"1", linkname="h"))],
           "fail:target missing", "", "")
    yield ("hardlink-root", [tarball(entry("f", "x"), entry("./", typ=b"1", linkname="f"))],
           "fail:hardlink in place of the root", "", "")
    yield ("whiteout-root", [tarball(entry(".wh..", ""))], "fail:whiteout", "", "")
    yield ("whiteout-bare-prefix", [tarball(entry(".wh.", ""))], "fail:whiteout", "", "")
    yield ("whiteout-dotdot-name", [tarball(entry("dir/", typ=b"5"), entry("dir/.wh...", ""))],
           "fail:invalid whiteout name", "", "")
    yield ("whiteout-opaque-root",
           [tarball(entry("a", "lower"), entry("b/", typ=b"5"), entry("b/c", "lower")),
            tarball(entry(".wh..wh..opq", ""), entry("new", "upper"))],
           "ok", "not:/a;not:/b;cat:/new=upper", "an opaque root hides every lower entry")
    yield ("whiteout-missing-and-aufs",
           [tarball(entry(".wh.nothing", ""), entry("x/.wh..wh.plnk", ""),
                    entry(".wh..wh.aufs", ""), entry("keep", "k"))],
           "ok", "cat:/keep=k;not:/nothing;not:/.wh..wh.aufs", "")
    yield ("whiteout-with-data", [tarball(entry("f", "lower")),
                                  tarball(entry(".wh.f", "payload ignored" * 50))],
           "ok", "not:/f", "")
    yield ("whiteout-dir-component", [tarball(entry(".wh.x/y", "in a dir named .wh.x"))],
           "ok", "cat:/.wh.x/y=in a dir named .wh.x",
           "only a whiteout's last component has meaning (like containerd)")
    yield ("device-huge-numbers",
           [tarball(entry("dev/huge", typ=b"3", devmajor=(1 << 31) - 1, devminor=(1 << 40)),
                    entry("dev/blk", typ=b"4", devmajor=4095, devminor=(1 << 20) - 1))],
           "either", "type:/dev/blk=b",
           "numbers dev_t cannot hold: refused or truncated, never a crash")
    yield ("zero-size-and-empty", [tarball(entry("empty", ""), entry("dir/", typ=b"5"))],
           "ok", "size:/empty=0;type:/dir=d", "")
    yield ("size-absurd", [tarball(hdr("huge", size=1 << 45) + bytes(512))],
           "fail:absurd file size", "", "")
    yield ("size-lies-beyond-end", [hdr("liar", size=1 << 30) + b"only a little data" + END],
           "fail:liar", "", "the data ends long before the declared size")
    yield ("size-field-garbage", [hdr("g", raw_size=b"zzzzzzzzzzz\0") + END],
           "either", "", "libarchive decides what a non-octal size means")
    yield ("mtime-negative", [tarball(pax({"mtime": "-1234567890.25"}), entry("old", "o"),
                                      entry("older", "o", mtime=8 ** 11 - 1))],
           "ok", "cat:/old=o", "times before 1970 are kept, signed")
    yield ("mtime-absurd", [tarball(pax({"mtime": "1e300"}), entry("a", "a"),
                                    pax({"mtime": "-99999999999999999999999"}), entry("b", "b"))],
           "either", "", "")
    yield ("pax-bad-size", [tarball(pax({"size": "-5"}), entry("f", "x"))], "either", "", "")
    yield ("pax-bad-uid", [tarball(pax({"uid": "99999999999999"}), entry("f", "x"))],
           "fail:uid or gid out of range", "", "")
    yield ("pax-record-length-lies",
           [tarball(hdr("PaxHeaders/x", typ=b"x", size=32) + pad(b"999 path=whatever\n"),
                    entry("f", "x"))], "either", "", "")
    yield ("pax-path-with-nul", [tarball(pax({"path": b"a\0b"}), entry("f", "x"))],
           "either", "", "")
    yield ("pax-xattr-empty-name", [tarball(pax({"SCHILY.xattr.": "v"}), entry("f", "x"))],
           "either", "", "")
    yield ("pax-xattr-huge-value",
           [tarball(pax({"SCHILY.xattr.user.big": "v" * (100 << 10)}), entry("f", "x"))],
           "fail:too large", "", "an xattr value over 64 KiB")
    yield ("gnu-longname-ok", [tarball(gnu_long(b"L", "/".join(["c" * 200] * 40)),
                                       entry("placeholder", "deep long"))],
           "ok", "cat:/%s=deep long" % "/".join(["c" * 200] * 40), "")
    yield ("gnu-longname-component", [tarball(gnu_long(b"L", "d/" + "n" * 300),
                                              entry("placeholder", "x"))],
           "fail:longer than 255", "", "")
    yield ("gnu-longlink-huge", [tarball(gnu_long(b"K", "t" * 5000),
                                         entry("l", typ=b"2", linkname="placeholder"))],
           "fail:symlink target longer", "", "")
    yield ("gnu-longname-truncated", [gnu_long(b"L", "x" * 2000)[:700]],
           "fail:", "", "")
    yield ("symlink-loop", [tarball(entry("a", typ=b"2", linkname="b"),
                                    entry("b", typ=b"2", linkname="a"))],
           "ok", "type:/a=l;type:/b=l", "symlinks are stored, never followed")
    yield ("symlink-empty-target", [tarball(entry("l", typ=b"2", linkname=""))],
           "fail:symlink without a target", "", "")
    yield ("duplicate-file", [tarball(entry("f", "first"), entry("f", "second"))],
           "ok", "cat:/f=second", "the last entry wins, like tar -x")
    yield ("file-then-dir-same-layer", [tarball(entry("x", "file"), entry("x/", typ=b"5"),
                                                entry("x/y", "child"))],
           "ok", "type:/x=d;cat:/x/y=child", "")
    yield ("dir-then-file-same-layer", [tarball(entry("x/", typ=b"5"), entry("x/y", "child"),
                                                entry("x", "file"))],
           "ok", "type:/x=f;not:/x/y;cat:/x=file", "")
    yield ("file-replaced-by-dir-next-layer",
           [tarball(entry("x", "file")), tarball(entry("x/", typ=b"5"), entry("x/y", "child"))],
           "ok", "type:/x=d;cat:/x/y=child", "")
    yield ("implied-dir-over-file-next-layer", [tarball(entry("x", "file")),
                                                tarball(entry("x/y", "child"))],
           "fail:a parent is not a directory", "",
           "a lower file is not silently turned into a directory (docker refuses too)")
    yield ("dir-replaced-by-file-next-layer", [tarball(entry("x/y", "child")),
                                               tarball(entry("x", "file"))],
           "ok", "type:/x=f;not:/x/y", "")
    yield ("root-as-file", [tarball(entry(".", "i am a file"))],
           "fail:in place of the root directory", "", "")
    yield ("root-as-file-slash", [tarball(entry("./", "i am a file"))],
           "fail:", "", "libarchive takes a trailing '/' for a directory: its data is junk")
    yield ("odd-names", [tarball(entry("new\nline", "n"), entry(b"latin1-\xe9", "l"),
                                 entry("sp ace/ tab\t", "s"))],
           "ok", "type:/sp ace=d", "")
    yield ("setuid-sticky", [tarball(entry("s", "x", mode=0o4755), entry("t/", typ=b"5",
                                                                         mode=0o1777))],
           "ok", "type:/t=d", "")
    yield ("unknown-typeflag", [tarball(entry("z", "x", typ=b"Z"))], "either", "", "")
    yield ("empty-file", [b""], "either", "", "an empty layer: an empty image or an error")
    yield ("only-end-blocks", [END], "ok", "", "")
    yield ("garbage", [bytes(range(256)) * 8], "fail:", "", "not an archive")
    # truncation at every structure of a tar with one file
    t = good_tar
    file_hdr = 512  # offset of dir/file's header
    data_end = file_hdr + 512 + len("hello hostile world\n" * 30)
    for name, cut, expect in (
            ("trunc-mid-first-header", 100, "fail:"),
            ("trunc-mid-second-header", file_hdr + 200, "fail:"),
            ("trunc-after-header", file_hdr + 512, "fail:"),
            ("trunc-mid-data", file_hdr + 512 + 100, "fail:"),
            ("trunc-before-padding", data_end, "either"),
            ("trunc-mid-padding", data_end + 10, "either"),
            ("trunc-no-end-blocks", len(t) - 1024, "either"),
            ("trunc-half-end-block", len(t) - 700, "either")):
        yield (name, [t[:cut]], expect, "" if expect.startswith("fail") else "cat:/dir/file=hello",
               "a cut inside a header or data is an error; a missing end-of-archive "
               "marker is what tar tolerates too")
    gz = gzip_bytes(good_tar)
    yield ("trunc-gzip", [gz[:len(gz) // 2]], "fail:", "", "")
    yield ("gzip-trailing-garbage", [gz + b"garbage after the stream"], "either", "", "")
    yield ("zstd-crafted-ok",
           [zstd_frame([("raw", hdr("z", size=1 << 20)), ("rle", (0x41, 1 << 20)),
                        ("raw", END)])],
           "ok", "size:/z=1048576", "a hand-made zstd frame: raw + RLE blocks")
    yield ("zstd-truncated", [zstd_frame([("raw", hdr("z", size=1 << 20)),
                                          ("rle", (0, 1 << 20)), ("raw", END)])[:600]],
           "fail:", "", "")


def main():
    out = sys.argv[1]
    heavy = sys.argv[sys.argv.index("--heavy") + 1] if "--heavy" in sys.argv else None
    os.makedirs(out, exist_ok=True)
    lines = []
    for name, layers, expect, checks, why in cases():
        files = []
        for i, data in enumerate(layers):
            fn = "%s.%d.tar" % (name, i)
            with open(os.path.join(out, fn), "wb") as f:
                f.write(data)
            files.append(fn)
        lines.append("\t".join([name, ",".join(files), expect, checks]))
    if heavy:
        os.makedirs(heavy, exist_ok=True)
        lines += heavy_cases(heavy)
    with open(os.path.join(out, "cases.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")


def heavy_cases(d):
    """Big inputs, generated once (a .done marker next to each)."""
    lines = []

    def once(fn, gen):
        p = os.path.join(d, fn)
        if not os.path.exists(p + ".done"):
            with open(p + ".tmp", "wb") as f:
                gen(f)
            os.rename(p + ".tmp", p)
            open(p + ".done", "w").close()
        return "@" + fn  # '@': in the cache dir

    # 8 GiB of zeros in a 256 KiB .zst: a legit (if silly) file
    def bomb(f):
        zstd_frame_stream(f, hdr("zeros", size=8 << 30), 8 << 30, END)
    lines.append("\t".join(["zstd-bomb-8g", once("bomb-8g.tar.zst", bomb), "ok",
                            "size:/zeros=8589934592"]))

    # 1,000,000 empty files in one directory, zstd'ed on the fly
    def million(f):
        import subprocess
        p = subprocess.Popen(["zstd", "-q", "-c", "-3"], stdin=subprocess.PIPE, stdout=f)
        base = bytearray(hdr("m/f0000000", size=0))
        buf = bytearray()
        p.stdin.write(entry("m/", typ=b"5", mode=0o755))
        for i in range(1000000):
            h = base[:]
            h[0:10] = b"m/f%07d" % i
            h[148:156] = b" " * 8
            h[148:156] = b"%06o\0 " % sum(h)
            buf += h
            if len(buf) >= 1 << 20:
                p.stdin.write(buf)
                buf = bytearray()
        p.stdin.write(bytes(buf) + END)
        p.stdin.close()
        if p.wait() != 0:
            raise SystemExit("zstd failed")
    lines.append("\t".join(["million-entries", once("million.tar.zst", million), "ok",
                            "size:/m/f0999999=0;size:/m/f0000000=0"]))

    # 10,000 nested directories in one tar entry's pax path (parents implied),
    # plus one entry at every 1000th level
    def deep(f):
        parts = []
        for lvl in range(1000, 10001, 1000):
            parts.append(pax({"path": "d/" * lvl + "f"}) + entry("placeholder", "L%d" % lvl))
        f.write(tarball(*parts))
    lines.append("\t".join(["deep-10000-tar", once("deep.tar", deep), "ok",
                            "cat:/%sf=L10000" % ("d/" * 10000)]))
    return lines


if __name__ == "__main__":
    main()
