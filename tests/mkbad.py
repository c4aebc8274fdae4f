#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the should-fail-* build fixtures (hostile or broken layers).

    tests/mkbad.py [OUTDIR]      (default: tests/data next to this script)

Every fixture is tiny and byte-for-byte reproducible (mtime 0, uid 0, no
owner names, gzip without a timestamp), so re-running this script leaves
git clean. tests/integration/build-fail.sh lists, for each fixture, the
text its error message must contain (the bad entry's path).
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile


def info(name, typ=tarfile.REGTYPE, size=0, mode=0o644, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.size = size
    ti.mode = mode
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.linkname = linkname
    return ti


def tar_bytes(entries):
    """entries: (name, kind, payload) with kind file/dir/symlink/hardlink."""
    buf = io.BytesIO()
    tf = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
    with tf:
        for name, kind, payload in entries:
            if kind == "file":
                data = payload.encode() if isinstance(payload, str) else payload
                tf.addfile(info(name, size=len(data)), io.BytesIO(data))
            elif kind == "dir":
                tf.addfile(info(name, tarfile.DIRTYPE, mode=0o755))
            elif kind == "symlink":
                tf.addfile(info(name, tarfile.SYMTYPE, mode=0o777, linkname=payload))
            elif kind == "hardlink":
                tf.addfile(info(name, tarfile.LNKTYPE, linkname=payload))
        end = tf.offset
    # the two end-of-archive blocks, without tarfile's padding to 10 KiB
    return buf.getvalue()[:end + 1024]


def gz(data):
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return out.getvalue()


def huge_size_tar():
    """A ustar header claiming a 2 TiB file (base-256 size field)."""
    h = bytearray(512)
    name = b"huge-file"
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    size = 2 << 40
    h[124] = 0x80
    h[125:136] = size.to_bytes(11, "big")
    h[136:148] = b"00000000000\0"
    h[156:157] = b"0"
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h) + bytes(512 * 4)


def oci_bad_digest(d):
    """OCI layout whose layer blob does not hash to its name."""
    blobs = os.path.join(d, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data, name=None):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, name or digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest, len(data)

    good = tar_bytes([("etc/motd", "file", "hello\n")])
    bad = tar_bytes([("etc/motd", "file", "HELLO\n")])
    ldigest, lsize = hashlib.sha256(good).hexdigest(), len(good)
    put(bad, name=ldigest)
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers",
                                 "diff_ids": ["sha256:" + ldigest]}},
                     sort_keys=True).encode()
    cdigest, csize = put(cfg)
    man = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cdigest, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + ldigest, "size": lsize}],
    }, sort_keys=True).encode()
    mdigest, msize = put(man)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": mdigest, "size": msize,
        "platform": {"os": "linux", "architecture": "amd64"}}]}
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True)
    with open(os.path.join(d, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return ldigest


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "data")
    os.makedirs(out, exist_ok=True)

    def write(name, data):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    big = tar_bytes([("truncated-file", "file", bytes(range(256)) * 40)])
    write("should-fail-truncated.tar", big[:512 * 3 + 1000])

    data = gz(tar_bytes([("f%02d" % i, "file", "%s\n" % (chr(97 + i % 26) * 300))
                         for i in range(40)]))
    bad = bytearray(data)
    for i in range(40, len(bad) - 16, 5):
        bad[i] ^= 0x5A
    write("should-fail-corrupt.tar.gz", bytes(bad))

    write("should-fail-dotdot.tar", tar_bytes([("../escape", "file", "x\n")]))
    write("should-fail-dotdot-mid.tar",
          tar_bytes([("a/", "dir", None), ("a/../../escape-mid", "file", "x\n")]))
    write("should-fail-hardlink-missing.tar",
          tar_bytes([("link-to-nothing", "hardlink", "missing-target")]))
    write("should-fail-hardlink-dotdot.tar",
          tar_bytes([("f", "file", "x\n"), ("link-up", "hardlink", "../f")]))
    write("should-fail-symlink-dir.tar",
          tar_bytes([("d", "symlink", "/etc"), ("d/passwd", "file", "root::0:0::/:/bin/sh\n")]))
    write("should-fail-huge-size.tar", huge_size_tar())
    write("should-fail-long-name.tar",
          tar_bytes([("longdir/" + "n" * 256, "file", "x\n")]))
    write("should-fail-whiteout-root.tar",
          tar_bytes([("etc/", "dir", None), (".wh..", "file", "")]))

    oci = os.path.join(out, "should-fail-oci-digest")
    shutil.rmtree(oci, ignore_errors=True)
    oci_bad_digest(oci)


if __name__ == "__main__":
    main()
