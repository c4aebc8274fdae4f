#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

    tests/fuzz/mkcorpus.py SLIMFS_BINARY

Seeds are small (the fuzzers mutate them): images built by `slimfs build`
(for fuzz-index only the index part, which is all the reader needs; each
image plain, --index-compression none, and as built by default, with the
compressed index, seed-*-z.idx),
chunk records with their frames (fuzz-chunk's input layout), tar layers of
every entry type and compression, the should-fail fixtures of tests/data,
allow-lists, a few roundtrip programs, and server answers for the plain HTTP
client (fuzz-http-plain's input layout). Reproducible: mtime 0, sorted.
regress-* files are never touched.
"""
import gzip
import io
import os
import random
import struct
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
DATA = os.path.join(HERE, "..", "data")


def info(name, typ=tarfile.REGTYPE, size=0, mode=0o644, linkname="", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.size = size
    ti.mode = mode
    ti.mtime = kw.get("mtime", 0)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.linkname = linkname
    ti.devmajor = kw.get("devmajor", 0)
    ti.devminor = kw.get("devminor", 0)
    if "pax" in kw:
        ti.pax_headers = kw["pax"]
    return ti


def tar(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            name, kind = e[0], e[1]
            if kind == "file":
                data = e[2] if isinstance(e[2], bytes) else e[2].encode()
                tf.addfile(info(name, size=len(data), **(e[3] if len(e) > 3 else {})),
                           io.BytesIO(data))
            elif kind == "dir":
                tf.addfile(info(name, tarfile.DIRTYPE, mode=0o755))
            elif kind == "symlink":
                tf.addfile(info(name, tarfile.SYMTYPE, mode=0o777, linkname=e[2]))
            elif kind == "hardlink":
                tf.addfile(info(name, tarfile.LNKTYPE, linkname=e[2]))
            elif kind == "chr":
                tf.addfile(info(name, tarfile.CHRTYPE, devmajor=e[2], devminor=e[3]))
            elif kind == "fifo":
                tf.addfile(info(name, tarfile.FIFOTYPE))
        end = tf.offset
    return buf.getvalue()[:end + 1024]


def gz(data):
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return out.getvalue()


def zst(data):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, check=True,
                          stdout=subprocess.PIPE).stdout


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


LAYERS = {
    "seed-basic.tar": lambda: tar([
        ("etc/", "dir"), ("etc/hostname", "file", "fuzz\n"),
        ("bin/", "dir"), ("bin/sh", "file", b"\x7fELF" + bytes(60)),
        ("bin/bash", "hardlink", "bin/sh"), ("usr/lib", "symlink", "../lib"),
        ("dev/null", "chr", 1, 3), ("run/fifo", "fifo")]),
    "seed-whiteouts.tar": lambda: tar([
        ("etc/", "dir"), ("etc/.wh.passwd", "file", ""), ("var/.wh..wh..opq", "file", ""),
        ("var/new", "file", "x")]),
    "seed-pax-xattr.tar": lambda: tar([
        ("f", "file", "data", {"pax": {"SCHILY.xattr.user.k": "v",
                                        "SCHILY.xattr.security.capability": "\x01\x00",
                                        "mtime": "-12345.5"}})]),
    "seed-gnu-longname.tar": lambda: tar([
        ("d/" + "n" * 200 + "/f", "file", "long"),
        ("l", "symlink", "t" * 300)], fmt=tarfile.GNU_FORMAT),
    "seed-ustar.tar": lambda: tar([("a/b/c", "file", "abc" * 100)], fmt=tarfile.USTAR_FORMAT),
    "seed-big-file.tar": lambda: tar([("big", "file", bytes(range(256)) * 64)]),
    "seed-basic.tar.gz": lambda: gz(tar([("x/y", "file", "gz\n"), ("x/z", "dir")])),
    "seed-basic.tar.zst": lambda: zst(tar([("x/y", "file", "zst\n")])),
}


def sparse_tar():
    """GNU tar --sparse: a 1 MiB file with 4 KiB of data in the middle."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "src")
        os.mkdir(p)
        with open(os.path.join(p, "sparse"), "wb") as f:
            f.truncate(1 << 20)
            f.seek(512 << 10)
            f.write(b"S" * 4096)
        out = subprocess.run(["tar", "-C", p, "--sparse", "--format=gnu", "--numeric-owner",
                              "--mtime=@0", "-cf", "-", "sparse"], check=True,
                             stdout=subprocess.PIPE).stdout
    return out.rstrip(b"\0") + bytes(1024 - len(out.rstrip(b"\0")) % 512)


def images(slimfs, extra=("--index-compression", "none")):
    """Small images; returns [(name, bytes)]."""
    out = []
    with tempfile.TemporaryDirectory() as d:
        srcs = {
            "basic": LAYERS["seed-basic.tar"](),
            "xattr": LAYERS["seed-pax-xattr.tar"](),
            "data": tar([("f%d" % i, "file", bytes([i]) * (100 * i + 1)) for i in range(8)] +
                        [("big", "file", bytes(random.Random(1).randbytes(70000)))]),
        }
        for name, t in srcs.items():
            tp = os.path.join(d, name + ".tar")
            with open(tp, "wb") as f:
                f.write(t)
            img = os.path.join(d, name + ".img")
            subprocess.run([slimfs, "build", "-q", *extra, "-o", img, tp], check=True)
            with open(img, "rb") as f:
                out.append((name, f.read()))
        # with views, so the views section is not empty
        allow = os.path.join(d, "allow")
        with open(allow, "w") as f:
            f.write("/etc/\n!/etc/hostname\n")
        img = os.path.join(d, "views.img")
        r = subprocess.run([slimfs, "build", "-q", *extra, "-o", img, "--view", "min=" + allow,
                            os.path.join(d, "basic.tar")])
        if r.returncode == 0:
            with open(img, "rb") as f:
                out.append(("views", f.read()))
    return out


def http_plain_input(answers, off=0, length=10, up_to_end=False, from_top=False):
    """fuzz-http-plain's input: flags, offset, length - 1, first answer size, answers."""
    flags = up_to_end | from_top << 1 | (len(answers) > 1) << 2
    head = struct.pack("<BI", flags, off) + (length - 1).to_bytes(3, "little")
    return head + struct.pack("<H", len(answers[0])) + b"".join(answers)


def answer(status=b"206 Partial Content", headers=(), body=b"", version=b"1.1"):
    return (b"HTTP/" + version + b" " + status + b"\r\n" +
            b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)


def ranged(first, body, total=b"*", extra=(), clen=None, version=b"1.1"):
    last = first + len(body) - 1
    return answer(headers=[b"Content-Range: bytes %d-%d/%s" % (first, last, total),
                           b"Content-Length: %d" % (len(body) if clen is None else clen),
                           *extra], body=body, version=version)


def http_plain_seeds():
    body = bytes(range(48, 58))
    close = [b"Connection: close"]
    seeds = {
        "seed-206": ([ranged(100, body, b"1000")], 100),
        "seed-206-star": ([ranged(100, body)], 100),
        "seed-206-close": ([ranged(100, body, b"1000", close)], 100),
        "seed-206-http10": ([ranged(100, body, b"1000", version=b"1.0")], 100),
        "seed-206-http10-keep-alive":
            ([ranged(100, body, b"1000", [b"connection: Keep-Alive"], version=b"1.0")], 100),
        "seed-206-headers": ([ranged(0, body, b"10", [b"Server: nginx", b"ETag: \"x\"",
                                                     b"Accept-Ranges:\tbytes ",
                                                     b"content-type: text/plain"])], 0),
        "seed-206-chunked": ([answer(headers=[b"Content-Range: bytes 0-9/10",
                                              b"Transfer-Encoding: chunked"],
                                     body=b"a\r\n" + body + b"\r\n0\r\n\r\n")], 0),
        "seed-206-extra-bytes": ([ranged(0, body, b"20") + b"HTTP/1.1 206"], 0),
        "seed-206-truncated-body": ([ranged(0, body, b"20")[:-3]], 0),
        "seed-206-truncated-headers": ([ranged(0, body, b"20")[:40]], 0),
        "seed-206-wrong-start": ([ranged(5, body, b"20")], 0),
        "seed-206-beyond-total": ([answer(headers=[b"Content-Range: bytes 0-9/5",
                                                   b"Content-Length: 10"], body=body)], 0),
        "seed-206-bad-range": ([answer(headers=[b"Content-Range: bytes 9-0/10",
                                                b"Content-Length: 10"], body=body)], 0),
        "seed-206-negative": ([answer(headers=[b"Content-Range: bytes -1-9/10",
                                               b"Content-Length: 10"], body=body)], 0),
        "seed-206-length-mismatch": ([ranged(0, body, b"10", clen=9)], 0),
        "seed-206-huge-length": ([ranged(0, body, b"10", clen=10 ** 30)], 0),
        "seed-206-huge-range":
            ([answer(headers=[b"Content-Range: bytes 0-18446744073709551615/*",
                              b"Content-Length: 0"])], 0),
        "seed-200": ([answer(b"200 OK", [b"Content-Length: 10"], body)], 0),
        "seed-416": ([answer(b"416 Range Not Satisfiable",
                             [b"Content-Range: bytes */5", b"Content-Length: 0"])], 100),
        "seed-301": ([answer(b"301 Moved Permanently",
                             [b"Location: http://127.0.0.1:1/g", b"Content-Length: 0"])], 0),
        "seed-302": ([answer(b"302 Found", [b"Location: /g", b"Content-Length: 0"])], 0),
        "seed-100-continue": ([answer(b"100 Continue") + ranged(0, body, b"10")], 0),
        "seed-header-bare-lf": ([ranged(0, body, b"10", [b"X-A: b\nTransfer-Encoding: chunked"])], 0),
        "seed-header-obs-fold": ([ranged(0, body, b"10", [b"Connection: close", b" , x"])], 0),
        "seed-empty": ([b""], 0),
        "seed-long-headers": ([answer(headers=[b"X-Pad: " + b"p" * 17000]) + body], 0),
    }
    for name, (answers, off) in seeds.items():
        write("http-plain", name, http_plain_input(answers, off))
    # up to the end: fewer bytes where the resource ends
    write("http-plain", "seed-up-to-end", http_plain_input(
        [ranged(996, body[:4], b"1000")], 996, 16, up_to_end=True))
    write("http-plain", "seed-up-to-end-star", http_plain_input(
        [ranged(996, body[:4])], 996, 16, up_to_end=True))
    write("http-plain", "seed-offset-top", http_plain_input(
        [ranged(2 ** 64 - 11, body)], 10, from_top=True))
    write("http-plain", "seed-offset-overflow", http_plain_input(
        [ranged(0, body)], 5, from_top=True))
    # a body beyond the first read of the headers (16 KiB)
    big = bytes(range(256)) * 80
    write("http-plain", "seed-206-large-body", http_plain_input(
        [ranged(0, big, b"%d" % len(big))], 0, len(big)))
    # two exchanges on one connection
    write("http-plain", "seed-keep-alive-twice", http_plain_input(
        [ranged(100, body, b"1000"), ranged(100, body[::-1], b"1000")], 100))
    write("http-plain", "seed-close-then-again", http_plain_input(
        [ranged(100, body, b"1000", close), ranged(100, body, b"1000")], 100))
    write("http-plain", "seed-keep-alive-then-eof", http_plain_input(
        [ranged(100, body, b"1000"), b""], 100))
    write("http-plain", "seed-keep-alive-split-body", http_plain_input(
        [ranged(100, body, b"1000")[:-4], ranged(100, body, b"1000")[-4:]], 100))


def main():
    slimfs = sys.argv[1]
    for name, fn in LAYERS.items():
        write("layer", name, fn())
    write("layer", "seed-sparse-gnu.tar", sparse_tar())
    for f in sorted(os.listdir(DATA)):
        p = os.path.join(DATA, f)
        if os.path.isfile(p):
            with open(p, "rb") as fh:
                write("layer", "seed-" + f, fh.read())

    for name, img in images(slimfs, ()):
        isz = struct.unpack_from("<Q", img, 64)[0]
        write("index", "seed-%s-z.idx" % name, img[:isz])
    for name, img in images(slimfs):
        isz = struct.unpack_from("<Q", img, 64)[0]
        data_off = struct.unpack_from("<Q", img, 72)[0]
        write("index", "seed-%s.idx" % name, img[:isz])
        # chunk records and their frames
        sec = 120 + 4 * 16
        coff, ccount = struct.unpack_from("<QQ", img, sec)
        for i in range(min(ccount, 3)):
            rec = img[coff + 64 * i:coff + 64 * (i + 1)]
            off, cs, us = struct.unpack_from("<QII", rec, 48)
            frame = img[data_off + off:data_off + off + cs]
            if cs <= 8192:
                write("chunk", "seed-%s-%d" % (name, i), bytes([0]) + rec + frame)
                write("chunk", "seed-%s-%d-fixed" % (name, i), bytes([7]) + rec + frame)

    write("allowlist", "seed-basic", b"/usr/bin/\n!/usr/bin/perl*\n*.so\n/etc/**/conf\n")
    write("allowlist", "seed-classes",
          b"# comment\n/lib/[a-z]*/\n[!x]?\n\\#literal\n\\!bang\n/a/**\n**/b\n")
    write("allowlist", "seed-include", b"@include runtime-base\n@include no-shell\n!/bin/sh\n")
    write("allowlist", "seed-escapes", b"trailing\\ \n/dir/\n\r\n  indented\n")

    http_plain_seeds()

    rnd = random.Random(42)
    for i in range(6):
        write("roundtrip", "seed-%d" % i, bytes(rnd.randrange(256) for _ in range(64 + 96 * i)))


if __name__ == "__main__":
    main()
