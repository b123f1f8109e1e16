"""Files out of a Debian package, pinned twice by sha256 (the ``.deb`` and each member), for evaluation sets.

Debian ships real photos and footage (opencv-doc's samples, darknet's data) that no PyPI wheel has. The package is
fetched with ``apt-get download PKG:ARCH=VERSION`` (the ordinary client, Debian's own mirror and signatures), its
sha256 checked, and only the wanted members are streamed out of ``dpkg-deb --fsys-tarfile`` into the cache
(temp file + hash + rename, like the model fetcher). The ``.deb`` itself is not kept: once its members are cached,
no network is needed.

Example::

    item = DebFile(package="opencv-doc", version="4.6.0+dfsg-12", arch="all", deb_sha256="4b12...",
                   path="usr/share/doc/opencv-doc/examples/data/vtest.avi", sha256="45cd...", file_name="vtest.avi")
    [path] = fetch_deb_files([item], cache_dir=Path("~/.cache/doorkeep/evalsets").expanduser())
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from doorkeep.device.detect.fetch import install_atomically, verify_file
from doorkeep.device.errors import ModelError


@dataclass(frozen=True, slots=True)
class DebFile:
    """One member file of a pinned Debian package."""

    package: str
    version: str
    arch: str
    deb_sha256: str
    #: Path inside the package's data archive, without a leading ``./`` or ``/``.
    path: str
    sha256: str
    file_name: str

    @property
    def requirement(self) -> str:
        return f"{self.package}:{self.arch}={self.version}"


def _apt_download(req: str, into: Path) -> Path:
    if shutil.which("apt-get") is None:
        raise ModelError(f"fetching the Debian package {req} needs apt-get (a Debian or Ubuntu machine)")
    proc = subprocess.run(["apt-get", "download", "-q", req], cwd=into, check=False, capture_output=True, text=True)
    debs = sorted(into.glob("*.deb"))
    if proc.returncode != 0 or not debs:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        raise ModelError(f"apt-get download {req} failed (run `apt-get update` first; is that version still on the "
                         f"mirror?): {' | '.join(tail)}")
    return debs[0]


def _extract(deb: Path, items: list[DebFile], cache_dir: Path) -> None:
    wanted = {i.path.lstrip("./"): i for i in items}
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for m in tar:
                item = wanted.pop(m.name.lstrip("./"), None)
                if item is None or not m.isfile():
                    continue
                src = tar.extractfile(m)
                assert src is not None
                install_atomically(src, cache_dir / item.file_name, sha256=item.sha256,
                                   what=f"{item.path} in {deb.name}")
    finally:
        proc.stdout.close()
        proc.wait()
    if wanted:
        raise ModelError(f"{deb.name} has no file(s) {', '.join(sorted(wanted))}")


def fetch_deb_files(items: list[DebFile], *, cache_dir: Path) -> list[Path]:
    """The verified cached copies of ``items`` (each package downloaded at most once), in order.

    Raises:
        HashMismatchError: the ``.deb`` or a member does not hash to its pin (nothing is installed under its name).
        ModelError: apt-get/dpkg-deb are missing, the download failed, or the package lacks a member.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing: dict[tuple[str, str, str, str], list[DebFile]] = {}
    for item in items:
        dest = cache_dir / item.file_name
        if dest.exists():
            verify_file(dest, item.sha256)
        else:
            missing.setdefault((item.package, item.version, item.arch, item.deb_sha256), []).append(item)
    for group in missing.values():
        with tempfile.TemporaryDirectory(prefix="doorkeep-deb-") as tmp:
            deb = _apt_download(group[0].requirement, Path(tmp))
            verify_file(deb, group[0].deb_sha256)
            _extract(deb, group, cache_dir)
    return [cache_dir / i.file_name for i in items]
