"""The [night] evaluation-set manifest and builder: parsing, pinning, deterministic variants (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from doorkeep.device.detect.fetch import HashMismatchError
from doorkeep.device.errors import ModelError
from doorkeep.tools.evalset import (
    Variant,
    load_evalset,
    make_variant,
    parse_evalset,
    photo_files,
    split_name,
)


def test_builtin_night_set_is_complete_and_labelled() -> None:
    es = load_evalset("night")
    assert es.name == "night"
    assert {v.name for v in es.variants} == {"color", "gray", "dark", "verydark", "noisy"}
    people = [p for p in es.photos if p.person]
    assert len(people) >= 7 and len(es.photos) - len(people) >= 20
    for p in es.photos:
        assert len(p.source.sha256) == 64 and p.license and p.content and p.source.version


def test_variants_are_deterministic_gray_and_scaled() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    gray = make_variant(rgb, Variant("gray", "gray"), seed_key="a")
    assert gray.shape == rgb.shape and np.array_equal(gray[..., 0], gray[..., 2])
    dark = make_variant(rgb, Variant("dark", "gray", gain=0.3), seed_key="a")
    assert dark.max() <= round(255 * 0.3)
    noisy = Variant("noisy", "gray", gain=0.5, noise_sigma=10)
    a = make_variant(rgb, noisy, seed_key="night/bus/noisy")
    assert np.array_equal(a, make_variant(rgb, noisy, seed_key="night/bus/noisy"))
    assert not np.array_equal(a, make_variant(rgb, noisy, seed_key="night/zidane/noisy"))
    assert make_variant(rgb, Variant("color", "original"), seed_key="a") is rgb


def test_split_name() -> None:
    assert split_name("group_table__verydark.png") == ("group_table", "verydark")
    assert split_name("plain.png") == ("plain", "")


def _manifest(**photo: object) -> dict:
    base = {"id": "x", "person": 1, "package": "scikit-image", "version": "0.0.0", "path": "skimage/data/x.png",
            "sha256": "0" * 64, "license": "CC0", "content": "a person"}
    base.update(photo)
    return {"format": 1, "name": "t", "variant": [{"name": "gray", "kind": "gray"}], "photo": [base]}


@pytest.mark.parametrize(("change", "why"), [
    ({"person": 2}, "person must be 0 or 1"),
    ({"sha256": "abc"}, "64 hex digits"),
])
def test_bad_photo_entries_are_refused(change: dict, why: str) -> None:
    with pytest.raises(ModelError, match=why):
        parse_evalset(_manifest(**change), origin="t.toml")


def test_missing_key_and_bad_variant_are_refused() -> None:
    m = _manifest()
    del m["photo"][0]["license"]
    with pytest.raises(ModelError, match="missing key 'license'"):
        parse_evalset(m, origin="t.toml")
    m = _manifest()
    m["variant"][0]["kind"] = "sepia"
    with pytest.raises(ModelError, match="kind = 'sepia'"):
        parse_evalset(m, origin="t.toml")
    with pytest.raises(ModelError, match="format"):
        parse_evalset({**_manifest(), "format": 9}, origin="t.toml")


def test_a_cached_photo_with_the_wrong_hash_is_refused(tmp_path) -> None:
    """Not the installed version -> the cache is consulted; a tampered cached file never reaches the set."""
    es = parse_evalset(_manifest(), origin="t.toml")
    (tmp_path / es.photos[0].source.file_name).write_bytes(b"not the photo")
    with pytest.raises(HashMismatchError):
        photo_files(es.photos, cache_dir=tmp_path)
