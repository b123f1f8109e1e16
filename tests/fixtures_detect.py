"""Fixtures for the pinned model and real photos (see [detection]).

``model_path`` is the real pinned BlazePose model, fetched once through doorkeep's own fetcher (pip download of
mediapipe==0.10.21, sha256-checked) into the user cache; never a stub. The photos are real photographs bundled in
the scikit-image, matplotlib and scikit-learn wheels (only bundled files: nothing downloaded by pooch).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import numpy as np
import pytest

#: Photos with people in them: (package, file).
PERSON_PHOTOS = {
    "astronaut": ("skimage", "astronaut.png"),
    "camera": ("skimage", "camera.png"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
}
#: Photos without people (models.md); all bundled in the installed wheels.
NO_PERSON_PHOTOS = {
    **{n: ("skimage", f) for n, f in (
        ("chelsea", "chelsea.png"), ("coffee", "coffee.png"), ("rocket", "rocket.jpg"),
        ("motorcycle_left", "motorcycle_left.png"), ("hubble_deep_field", "hubble_deep_field.jpg"),
        ("clock_motion", "clock_motion.png"), ("coins", "coins.png"), ("horse", "horse.png"), ("color", "color.png"),
        ("retina", "retina.jpg"), ("brick", "brick.png"), ("grass", "grass.png"), ("gravel", "gravel.png"),
        ("moon", "moon.png"), ("ihc", "ihc.png"))},
    "minduka": ("matplotlib", "Minduka_Present_Blue_Pack.png"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
}


def photo_path(package: str, file: str) -> Path:
    """Path of a photo bundled inside an installed package."""
    if package == "skimage":
        return Path(str(importlib.resources.files("skimage.data").joinpath(file)))
    if package == "matplotlib":
        import matplotlib.cbook

        return Path(matplotlib.cbook.get_sample_data(file, asfileobj=False))
    if package == "sklearn":
        import sklearn.datasets

        return Path(os.path.dirname(sklearn.datasets.__file__)) / "images" / file
    raise ValueError(package)


def load_photo(package: str, file: str) -> np.ndarray:
    """An RGB uint8 array of a bundled photo."""
    from PIL import Image

    with Image.open(photo_path(package, file)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="session")
def model_manifest():
    from doorkeep.device.detect.models import builtin_manifests

    return builtin_manifests()["blazepose"]


@pytest.fixture(scope="session")
def model_path(model_manifest) -> Path:
    """The real pinned model file (fetched and verified by doorkeep's fetcher on first use)."""
    from doorkeep.device.detect.models import ensure_model

    return ensure_model(model_manifest)


@pytest.fixture(scope="session")
def person_detector(model_manifest, model_path):
    """One PersonDetector on the real model with the default threshold (whichever runtime loads)."""
    from doorkeep.device.detect.detector import PersonDetector

    return PersonDetector(model_manifest, model_path, threads=2)


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """A folder of all the real photos plus labels.csv (file,person), as ``doorkeep eval`` reads it."""
    import shutil

    d = tmp_path_factory.mktemp("photos")
    rows = ["file,person"]
    for label, photos in ((1, PERSON_PHOTOS), (0, NO_PERSON_PHOTOS)):
        for name, (pkg, file) in photos.items():
            src = photo_path(pkg, file)
            dst = f"{name}{src.suffix}"
            shutil.copyfile(src, d / dst)
            rows.append(f"{dst},{label}")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return d


@pytest.fixture(scope="session")
def person_photos() -> dict[str, np.ndarray]:
    """Real photos with people, by name, as RGB uint8 arrays."""
    return {n: load_photo(*src) for n, src in PERSON_PHOTOS.items()}


@pytest.fixture(scope="session")
def no_person_photos() -> dict[str, np.ndarray]:
    """Real photos without people, by name, as RGB uint8 arrays."""
    return {n: load_photo(*src) for n, src in NO_PERSON_PHOTOS.items()}
