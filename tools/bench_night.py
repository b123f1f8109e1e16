"""Night benchmarks (BENCHMARKS.md, Night section).

* ``night_step_ms``: :class:`NightDetector.detect` with the default configuration on a 320x240 dark grayscale
  frame with nobody in it: day/night check + the night path (luma span, stretch if very dark, the model), median.
* ``night_step_person_ms``: the same on a grayscale frame with a person.
* ``night_day_step_ms``: the day detector's step on the colour frame, measured in the same rounds;
  ``night_step_ratio`` = night_step / day step (goal <= 3).
* ``night_step_pose_first_ms`` / ``night_step_pose_first_ratio``: with ``night.model = "deeplabv3"`` and
  ``night.pose_first`` (the day model, then DeepLabV3 because it found nobody: the cascade's worst case).
* ``night_mode_check_ms``: the per-frame day/night decision (:meth:`NightMode.update`: subsampled chroma deviation
  + hysteresis), median (goal <= 0.05).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np
from doorkeep.tools.bench_util import median_ms

W, H = 320, 240


def _frames() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour frame with a person, the same in dark grayscale, and the dark grayscale empty scene (the demo's
    photos; luma x 0.3 above black, so that the frame itself says night)."""
    from doorkeep.device.detect.preprocess import rgb_to_i420
    from doorkeep.device.sources.photo_scene import photo_scene

    scene = photo_scene(W, H)
    rgb = scene.background.copy()
    sprite = scene.sprite
    assert sprite is not None
    sh, sw = sprite.shape[:2]
    y0, x0 = (H - sh) // 2, (W - sw) // 2
    rgb[y0 : y0 + sh, x0 : x0 + sw] = sprite[..., :3]
    colour = rgb_to_i420(rgb)
    gray = colour.copy()
    empty = rgb_to_i420(scene.background)
    for f in (gray, empty):
        f[:H] = (16 + (f[:H].astype(np.float32) - 16) * 0.3).astype(np.uint8)
        f[H:] = 128
    return colour, gray, empty


def run(*, quick: bool = False) -> dict[str, float]:
    import dataclasses

    from doorkeep.device.config import Config
    from doorkeep.device.detect.detector import build_detector
    from doorkeep.device.detect.night_detector import (
        NightDetector,
        build_night_detector,
    )
    from doorkeep.device.night import NightMode

    cfg = Config()
    day = build_detector(cfg)
    det = build_night_detector(cfg, day=day)
    pf_cfg = dataclasses.replace(cfg.night, pose_first=True, model="deeplabv3")
    segmenter = build_night_detector(dataclasses.replace(cfg, night=pf_cfg), day=day).segmenter
    pose_first = NightDetector(day, mode=NightMode(pf_cfg), segmenter=segmenter, config=pf_cfg)
    colour, gray, empty = _frames()
    rounds, per = (2, 10) if quick else (5, 40)
    for d in (det, pose_first):  # warm up every path and build the index maps
        for f in (colour, gray, empty):
            d.reset()
            d.detect(f)

    def on(d: NightDetector, frame: np.ndarray) -> Callable[[], object]:
        d.reset()
        return lambda: d.detect(frame)

    day_ms, night_ms, person_ms, pf_ms = [], [], [], []
    for _ in range(rounds):
        day_ms.append(median_ms(lambda: day.detect(colour), per))
        night_ms.append(median_ms(on(det, empty), per))
        person_ms.append(median_ms(on(det, gray), per))
        pf_ms.append(median_ms(on(pose_first, empty), per))
    assert det.night and pose_first.night, "the grayscale bench frames must be judged night"
    check = NightMode(cfg.night)
    check_ms = median_ms(lambda: check.update(empty), 200 if quick else 5000)
    return {
        "night_step_ms": round(statistics.median(night_ms), 2),
        "night_step_person_ms": round(statistics.median(person_ms), 2),
        "night_day_step_ms": round(statistics.median(day_ms), 2),
        "night_step_ratio": round(statistics.median(n / d for n, d in zip(night_ms, day_ms, strict=True)), 2),
        "night_step_pose_first_ms": round(statistics.median(pf_ms), 2),
        "night_step_pose_first_ratio": round(statistics.median(n / d for n, d in zip(pf_ms, day_ms, strict=True)), 2),
        "night_mode_check_ms": round(check_ms, 4),
    }
