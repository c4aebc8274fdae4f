#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Make container images from layer directories, and the tree they should give.

  mkoci.py oci OUTDIR --ref NAME [CONFIG] LAYER[:gzip|:zstd|:none]...
      OCI image layout: oci-layout, index.json (ref name annotation), manifest,
      config, layer blobs named by their sha256 with the matching media types.
  mkoci.py docker OUT.tar --ref NAME[:TAG] [--style classic|oci] [CONFIG] LAYER...
      docker-save tarball: classic (manifest.json, <config>.json, repositories,
      <id>/layer.tar always uncompressed) or the docker >= 25 style (an OCI
      layout plus manifest.json; layers compressed as asked).
  mkoci.py merge OUTDIR LAYER...
      apply the layers by hand, in order, into OUTDIR: .wh.NAME deletes NAME of
      the layers below, .wh..wh..opq hides everything below in its directory,
      the last layer's entry for a path wins (metadata included).
  mkoci.py split SRCDIR OUTPREFIX N
      split a tree into N layer directories OUTPREFIX1..N whose merge is SRCDIR:
      each non-directory goes to one layer (hardlink groups together), each
      layer carries the directories above its entries with their metadata.

CONFIG: --entrypoint JSON --cmd JSON --env K=V (repeatable) --workdir DIR --user U.
A LAYER is a directory; whiteouts in it are plain files named .wh.NAME. A layer
may also be an existing uncompressed .tar file. Layer tars are made by GNU tar
(pax, xattrs, numeric owners, nanosecond times, sorted); layers alternate
between './name' and 'name' member paths unless --paths says otherwise.
The same inputs give byte-identical outputs.
"""

import argparse
import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
WH = b".wh."
OPQ = b".wh..wh..opq"
CREATED = "2024-01-02T03:04:05Z"


def die(msg):
    print(f"mkoci: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- layer tars

def tar_layer(layer, style):
    """Uncompressed tar bytes of a layer directory (or an existing .tar)."""
    if os.path.isfile(layer):
        with open(layer, "rb") as f:
            return f.read()
    if not os.path.isdir(layer):
        die(f"{layer}: not a directory or tar file")
    cmd = ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--format=pax",
           "--sort=name", "--pax-option=delete=atime,delete=ctime", "-C", layer, "-cf", "-"]
    if style == "dot":
        cmd += ["."]
    else:
        names = sorted(os.listdir(os.fsencode(layer)))
        if not names:
            return bytes(10240)  # an empty archive: just the end blocks
        cmd += ["--"] + [os.fsdecode(n) for n in names]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        die(f"tar of {layer} failed: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout


def compress(data, comp):
    if comp == "none":
        return data
    if comp == "gzip":
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as g:
            g.write(data)
        return buf.getvalue()
    if comp == "zstd":
        r = subprocess.run(["zstd", "-q", "-c", "-3", "--no-check"], input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            die(f"zstd failed: {r.stderr.decode(errors='replace').strip()}")
        return r.stdout
    die(f"unknown compression '{comp}' (gzip, zstd or none)")


def parse_layer(spec, default_comp):
    for comp in MT_LAYER:
        if spec.endswith(":" + comp):
            return spec[: -len(comp) - 1], comp
    return spec, default_comp


def sha(data):
    return hashlib.sha256(data).hexdigest()


def jdump(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Image:
    """Layers and config, serialized the ways the subcommands want."""

    def __init__(self, a, default_comp):
        self.layers = []  # (uncompressed tar, compressed blob, comp)
        for i, spec in enumerate(a.layers):
            path, comp = parse_layer(spec, default_comp)
            style = a.paths if a.paths != "mixed" else ("dot" if i % 2 == 0 else "bare")
            raw = tar_layer(path, style)
            self.layers.append((raw, compress(raw, comp), comp))
        cfg = {}
        if a.entrypoint is not None:
            cfg["Entrypoint"] = json.loads(a.entrypoint)
        if a.cmd is not None:
            cfg["Cmd"] = json.loads(a.cmd)
        cfg["Env"] = a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        if a.workdir is not None:
            cfg["WorkingDir"] = a.workdir
        if a.user is not None:
            cfg["User"] = a.user
        self.config = jdump({
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(r) for r, _, _ in self.layers]},
            "history": [{"created": CREATED, "created_by": f"mkoci.py layer {i}"}
                        for i in range(len(self.layers))],
        })
        self.manifest = jdump({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": "sha256:" + sha(self.config),
                       "size": len(self.config)},
            "layers": [{"mediaType": MT_LAYER[c], "digest": "sha256:" + sha(b), "size": len(b)}
                       for _, b, c in self.layers],
        })
        self.ref = a.ref

    def blobs(self):
        yield self.config
        yield self.manifest
        for _, b, _ in self.layers:
            yield b

    def oci_files(self, ref_annotation):
        """(path, bytes) of an OCI image layout."""
        files = [("oci-layout", jdump({"imageLayoutVersion": "1.0.0"}))]
        desc = {"mediaType": MT_MANIFEST, "digest": "sha256:" + sha(self.manifest),
                "size": len(self.manifest)}
        if ref_annotation:
            desc["annotations"] = {"org.opencontainers.image.ref.name": ref_annotation}
        files.append(("index.json", jdump({"schemaVersion": 2, "mediaType": MT_INDEX,
                                           "manifests": [desc]})))
        seen = set()
        for b in self.blobs():
            h = sha(b)
            if h not in seen:
                seen.add(h)
                files.append(("blobs/sha256/" + h, b))
        return files


def write_tree(root, files):
    for path, data in files:
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)


def write_tar(out, files):
    dirs = set()
    with tarfile.open(out + ".tmp", "w", format=tarfile.PAX_FORMAT) as t:
        for path, data in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
                    t.addfile(ti)
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            t.addfile(ti, io.BytesIO(data))
    os.replace(out + ".tmp", out)


def cmd_oci(a):
    img = Image(a, "gzip")
    if os.path.exists(a.out) and os.listdir(a.out):
        die(f"{a.out}: exists and is not empty")
    write_tree(a.out, img.oci_files(a.ref))


def cmd_docker(a):
    img = Image(a, "none")
    repo, _, tag = a.ref.rpartition(":") if ":" in a.ref.split("/")[-1] else (a.ref, "", "latest")
    repotag = f"{repo}:{tag}"
    if a.style == "oci":
        files = img.oci_files(repotag)
        files.append(("manifest.json", jdump([{
            "Config": "blobs/sha256/" + sha(img.config),
            "RepoTags": [repotag],
            "Layers": ["blobs/sha256/" + sha(b) for _, b, _ in img.layers]}])))
    else:
        cfg_hex = sha(img.config)
        files = [(cfg_hex + ".json", img.config)]
        layer_paths = []
        parent = None
        for i, (raw, _, _) in enumerate(img.layers):
            # Classic docker save: uncompressed layer.tar per layer directory.
            lid = sha(((parent or "") + "\n" + sha(raw)).encode())
            meta = {"id": lid, "created": CREATED}
            if parent:
                meta["parent"] = parent
            files += [(f"{lid}/VERSION", b"1.0"), (f"{lid}/json", jdump(meta)),
                      (f"{lid}/layer.tar", raw)]
            layer_paths.append(f"{lid}/layer.tar")
            parent = lid
        files.append(("manifest.json", jdump([{"Config": cfg_hex + ".json",
                                               "RepoTags": [repotag], "Layers": layer_paths}])))
        files.append(("repositories", jdump({repo: {tag: parent}})))
    write_tar(a.out, files)


# ----------------------------------------------------------- copying entries

def copy_data(src, dst):
    """Copy a regular file's bytes keeping its holes."""
    fi = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = os.fstat(fi).st_size
            pos = 0
            while pos < size:
                try:
                    data = os.lseek(fi, pos, os.SEEK_DATA)
                    end = os.lseek(fi, data, os.SEEK_HOLE)
                except OSError as e:
                    if e.errno == errno.ENXIO:
                        break
                    data, end = pos, size
                while data < end:
                    buf = os.pread(fi, min(1 << 20, end - data), data)
                    if not buf:
                        die(f"{src}: unexpected end of file")
                    os.pwrite(fo, buf, data)
                    data += len(buf)
                pos = end
            os.ftruncate(fo, size)
        finally:
            os.close(fo)
    finally:
        os.close(fi)


def copy_meta(src, dst, st):
    """Make dst's owner, mode, xattrs and times exactly src's."""
    lnk = stat.S_ISLNK(st.st_mode)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not lnk:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    try:
        want = {n: os.getxattr(src, n, follow_symlinks=False)
                for n in os.listxattr(src, follow_symlinks=False)}
        for n in os.listxattr(dst, follow_symlinks=False):
            if n not in want:
                os.removexattr(dst, n, follow_symlinks=False)
        for n, v in sorted(want.items()):
            os.setxattr(dst, n, v, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP) or want:
            raise
    os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_entry(src, dst, st, links):
    """Create dst as a copy of the non-directory src; links maps (dev, ino) of
    sources with several links to their first copy, so hardlinks stay links."""
    key = (st.st_dev, st.st_ino)
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in links:
        os.link(links[key], dst)
        return
    m = st.st_mode
    if stat.S_ISREG(m):
        copy_data(src, dst)
    elif stat.S_ISLNK(m):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISCHR(m) or stat.S_ISBLK(m) or stat.S_ISFIFO(m):
        os.mknod(dst, stat.S_IFMT(m) | 0o600, st.st_rdev)
    elif stat.S_ISSOCK(m):
        return  # tar has no sockets
    else:
        die(f"{src}: unknown file type {m:o}")
    copy_meta(src, dst, st)
    if stat.S_ISREG(m) and st.st_nlink > 1:
        links[key] = dst


def remove(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# ----------------------------------------------------------------- merge

def cmd_merge(a):
    out = os.fsencode(a.out)
    os.makedirs(out, exist_ok=True)
    if os.listdir(out):
        die(f"{a.out}: not empty")
    dirmeta = {}  # output dir -> (layer dir, stat) of the last layer that had it

    def apply(ldir, odir, links):
        names = sorted(os.listdir(ldir))
        # Whiteouts hide the layers below only, so they go first.
        if OPQ in names:
            for n in os.listdir(odir):
                remove(os.path.join(odir, n))
        for n in names:
            if n.startswith(WH) and n != OPQ:
                remove(os.path.join(odir, n[len(WH):]))
        for n in names:
            if n.startswith(WH):
                continue
            lp, op = os.path.join(ldir, n), os.path.join(odir, n)
            st = os.lstat(lp)
            if stat.S_ISDIR(st.st_mode):
                try:
                    ost = os.lstat(op)
                    if not stat.S_ISDIR(ost.st_mode):
                        os.unlink(op)
                        raise FileNotFoundError
                except FileNotFoundError:
                    os.mkdir(op, 0o700)
                dirmeta[op] = (lp, st)
                apply(lp, op, links)
            else:
                remove(op)
                copy_entry(lp, op, st, links)

    for spec in a.layers:
        layer = os.fsencode(parse_layer(spec, "none")[0])
        if not os.path.isdir(layer):
            die(f"{os.fsdecode(layer)}: merge takes layer directories")
        dirmeta[out] = (layer, os.lstat(layer))
        apply(layer, out, {})
    for d in sorted(dirmeta, key=lambda p: -p.count(b"/")):
        if os.path.isdir(d) and not os.path.islink(d):
            copy_meta(dirmeta[d][0], d, dirmeta[d][1])


# ----------------------------------------------------------------- split

def cmd_split(a):
    src = os.fsencode(a.src)
    n = a.n
    entries = []  # (rel, stat) of everything below src, sorted

    def walk(rel):
        full = os.path.join(src, rel) if rel else src
        for name in sorted(os.listdir(full)):
            r = os.path.join(rel, name) if rel else name
            st = os.lstat(os.path.join(src, r))
            entries.append((r, st))
            if stat.S_ISDIR(st.st_mode):
                walk(r)

    walk(b"")
    first = {}  # (dev, ino) -> first path, so a hardlink group shares a layer
    for r, st in entries:
        if not stat.S_ISDIR(st.st_mode):
            first.setdefault((st.st_dev, st.st_ino), r)

    def layer_of(r, st):
        key = r if stat.S_ISDIR(st.st_mode) else first[(st.st_dev, st.st_ino)]
        return hashlib.sha256(key).digest()[0] % n

    outs = [os.fsencode(f"{a.prefix}{i + 1}") for i in range(n)]
    for o in outs:
        os.makedirs(o, exist_ok=True)
        if os.listdir(o):
            die(f"{os.fsdecode(o)}: not empty")
    made = [dict() for _ in range(n)]  # layer -> {rel dir: stat} created there
    links = [dict() for _ in range(n)]
    bydir = {r: st for r, st in entries if stat.S_ISDIR(st.st_mode)}

    def ensure_dirs(i, rel):
        parts = rel.split(b"/")
        for k in range(1, len(parts) + 1):
            d = b"/".join(parts[:k])
            if d not in made[i]:
                os.mkdir(os.path.join(outs[i], d), 0o700)
                made[i][d] = bydir[d]

    for r, st in entries:
        i = layer_of(r, st)
        if stat.S_ISDIR(st.st_mode):
            ensure_dirs(i, r)
        else:
            parent = os.path.dirname(r)
            if parent:
                ensure_dirs(i, parent)
            copy_entry(os.path.join(src, r), os.path.join(outs[i], r), st, links[i])
    root_st = os.lstat(src)
    for i in range(n):
        for d in sorted(made[i], key=lambda p: -p.count(b"/")):
            copy_meta(os.path.join(src, d), os.path.join(outs[i], d), made[i][d])
        copy_meta(src, outs[i], root_st)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description="make OCI layouts, docker-save tars and "
                                 "expected merged trees from layer directories",
                                 epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="action", required=True)

    def config_args(p):
        p.add_argument("--ref", required=True)
        p.add_argument("--entrypoint", help="JSON array")
        p.add_argument("--cmd", help="JSON array")
        p.add_argument("--env", action="append", help="K=V, repeatable")
        p.add_argument("--workdir")
        p.add_argument("--user")
        p.add_argument("--paths", choices=["dot", "bare", "mixed"], default="mixed",
                       help="member paths './x' (dot), 'x' (bare) or alternating (mixed)")
        p.add_argument("layers", nargs="+", metavar="LAYER")

    p = sub.add_parser("oci")
    p.add_argument("out")
    config_args(p)
    p = sub.add_parser("docker")
    p.add_argument("out")
    p.add_argument("--style", choices=["classic", "oci"], default="classic")
    config_args(p)
    p = sub.add_parser("merge")
    p.add_argument("out")
    p.add_argument("layers", nargs="+", metavar="LAYER")
    p = sub.add_parser("split")
    p.add_argument("src")
    p.add_argument("prefix")
    p.add_argument("n", type=int)
    a = ap.parse_args()
    if a.action == "split" and a.n < 1:
        die("split: N must be at least 1")
    try:
        {"oci": cmd_oci, "docker": cmd_docker, "merge": cmd_merge, "split": cmd_split}[a.action](a)
    except OSError as e:
        die(f"{e.filename!r}: {e.strerror}")


if __name__ == "__main__":
    main()
