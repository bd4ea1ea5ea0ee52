#!/usr/bin/env python3
"""Writes the hand-made seed inputs (tars, manifests, catalogue lines) into
fuzz/corpus/. Re-run from fuzz/: `python3 seeds/make_seeds.py`."""
import io, json, os, shutil, tarfile, glob

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")
ROOT = os.path.join(HERE, "..", "..")

def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)

# --- BunnyFiles and Containerfiles from the test fixtures and examples.
for p in glob.glob(os.path.join(ROOT, "tests/fixtures/bunnyfiles/**/*.bunnyfile"), recursive=True) + \
         glob.glob(os.path.join(ROOT, "examples/*/BunnyFile")):
    rel = os.path.relpath(p, ROOT).replace("/", "_")
    shutil.copy(p, os.path.join(CORPUS, "bunnyfile", rel))
for p in glob.glob(os.path.join(ROOT, "tests/fixtures/**/Containerfile"), recursive=True):
    rel = os.path.relpath(p, ROOT).replace("/", "_")
    shutil.copy(p, os.path.join(CORPUS, "containerfile", rel))

# --- Tars, benign and hostile.
def tar(items, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for it in items:
            kind, name = it[0], it[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if kind == "file":
                data = it[2] if len(it) > 2 else b"hello\n"
                ti.size = len(data)
                ti.mode = it[3] if len(it) > 3 else 0o644
                t.addfile(ti, io.BytesIO(data))
                continue
            if kind == "dir":
                ti.type = tarfile.DIRTYPE; ti.mode = it[2] if len(it) > 2 else 0o755
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE; ti.linkname = it[2]
            elif kind == "link":
                ti.type = tarfile.LNKTYPE; ti.linkname = it[2]
            elif kind == "chr":
                ti.type = tarfile.CHRTYPE
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            t.addfile(ti)
    # Drop tarfile's record padding: two zero blocks end an archive, and
    # small seeds keep libFuzzer's max_len (and the corpus) small.
    data = buf.getvalue().rstrip(b"\0")
    data += b"\0" * (-len(data) % 512)
    return data + b"\0" * 1024

tars = {
    "simple": [("dir", "etc/"), ("file", "etc/hosts"), ("file", "bin/sh", b"\x7fELF", 0o755)],
    "dotslash": [("dir", "./"), ("dir", "./usr/"), ("file", "./usr/x")],
    "absolute": [("file", "/etc/passwd", b"root::0:0::/:/bin/sh\n")],
    "dotdot": [("file", "../escape")],
    "dotdot-deep": [("dir", "a/"), ("file", "a/../../escape")],
    "symlink-parent": [("sym", "evil", "/tmp"), ("file", "evil/escape")],
    "symlink-parent-rel": [("sym", "evil", ".."), ("file", "evil/escape")],
    "symlink-then-file": [("sym", "x", "../escape"), ("file", "x")],
    "symlink-dir-then-dir": [("sym", "d", ".."), ("dir", "d/"), ("file", "d/f")],
    "hardlink-outside": [("link", "pw", "/etc/passwd")],
    "hardlink-dotdot": [("link", "pw", "../x")],
    "hardlink-symlink": [("sym", "s", "/etc/passwd"), ("link", "h", "s")],
    "hardlink-ok": [("file", "a"), ("link", "b", "a")],
    "whiteout": [("dir", "d/"), ("file", "d/f"), ("file", "d/.wh.f"), ("file", ".wh.d")],
    "whiteout-dotdot": [("file", ".wh..."), ("file", "d/.wh..")],
    "opaque": [("dir", "d/"), ("file", "d/f"), ("file", "d/.wh..wh..opq"), ("file", "d/g")],
    "device": [("chr", "dev/null")],
    "fifo": [("fifo", "p")],
    "dir-file-swap": [("dir", "x/"), ("file", "x/y"), ("file", "x"), ("dir", "x/")],
    "setuid": [("file", "su", b"", 0o6755), ("dir", "locked/", 0o000), ("file", "locked/f")],
    "longname": [("file", "d/" + "n" * 200)],
}
for name, items in tars.items():
    put("unpack", name + ".tar", tar(items))
put("unpack", "pax-longname.tar", tar([("file", "p/" + "q" * 300), ("sym", "l" * 150, "../" * 80)], tarfile.PAX_FORMAT))
put("unpack", "truncated.tar", tar(tars["simple"])[:700])
put("unpack", "empty.tar", b"\0" * 1024)

# --- Manifests and indexes.
d = "sha256:" + "a" * 64
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": 123},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "b" * 64, "size": 9,
                "annotations": {"com.urunc.unikernel.type": "linux"}}],
    "annotations": {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"}}
put("manifest", "oci-manifest.json", json.dumps(manifest))
docker = dict(manifest, mediaType="application/vnd.docker.distribution.manifest.v2+json")
put("manifest", "docker-manifest.json", json.dumps(docker))
put("manifest", "manifest-no-mediatype.json", json.dumps({k: v for k, v in manifest.items() if k != "mediaType"}))
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 500,
     "platform": {"architecture": "amd64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "c" * 64, "size": 500,
     "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "e" * 64, "size": 500,
     "platform": {"architecture": "amd64", "os": "qemu"}}]}
put("manifest", "oci-index.json", json.dumps(index))
put("manifest", "docker-list.json", json.dumps(dict(index, mediaType="application/vnd.docker.distribution.manifest.list.v2+json")))
put("manifest", "index-sniffed.json", json.dumps({"schemaVersion": 2, "manifests": [{"digest": "x"}]}))
put("manifest", "bad-digest.json", json.dumps(dict(manifest, config=dict(manifest["config"], digest="md5:zz"))))
put("manifest", "negative-size.json", json.dumps(dict(manifest, config=dict(manifest["config"], size=-1))))

# --- packagesite.yaml lines.
def line(name, version, deps=(), path=None, sum_="1$" + "f" * 64):
    p = path or f"All/{name}-{version}.pkg"
    return json.dumps({"name": name, "origin": "misc/" + name, "version": version, "sum": sum_,
        "path": p, "repopath": p, "pkgsize": 10, "abi": "FreeBSD:14:*",
        "deps": {n: {"origin": "misc/" + n, "version": "1"} for n in deps}})
put("catalogue", "basic.yaml", "\n".join([line("iperf3", "3.17", ["libx"]), line("libx", "1")]) + "\n")
put("catalogue", "cycle.yaml", "\n".join([line("a", "1", ["b"]), line("b", "1", ["a"])]) + "\n\n")
put("catalogue", "missing-dep.yaml", line("a", "1", ["nope"]) + "\n")
put("catalogue", "escape.yaml", line("a", "1", path="../../etc/passwd") + "\n")
put("catalogue", "no-sum.yaml", line("a", "1", sum_=None) + "\n")
put("catalogue", "not-json.yaml", "name: a\n")

# --- A few more Containerfile shapes (escapes, heredoc-ish, odd quoting).
put("containerfile", "escape-directive", "# escape=`\nFROM scratch\nCOPY a `\n  /b\nCMD echo hi\n")
put("containerfile", "multi-stage", "ARG A=1\nFROM busybox AS build\nRUN echo ${A:-x} > /o\nFROM scratch\nCOPY --from=build /o /o\nENV K=v K2=\"a b\"\nEXPOSE 80/tcp\nUSER 1000:1000\nVOLUME [\"/data\"]\nSTOPSIGNAL SIGTERM\nHEALTHCHECK NONE\nSHELL [\"/bin/sh\",\"-c\"]\nONBUILD RUN x\nADD --chmod=755 a /a\n")
put("containerfile", "json-broken", "FROM scratch\nCMD [\"a\", \nENTRYPOINT [\"\\u00e9\"]\nLABEL a=\"unterminated\n")
put("containerfile", "heredoc", "FROM scratch\nRUN <<EOF\necho hi\nEOF\nCOPY <<x /f\ncontent\nx\n")
