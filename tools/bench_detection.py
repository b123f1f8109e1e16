"""Detection benchmarks (BENCHMARKS.md, Detection section).

* ``detect_invoke_ms``: bare ``interpreter.invoke()`` of the default model (SSDLite int8), median.
* ``detect_step_ms``: the default detector (day mode) on a 320x240 I420 demo frame = preprocess + invoke + decode.
* ``detect_step_ms_night``: the default detector in night mode on the same frame, gray and very dark (the night
  path's worst case: luma span + contrast stretch + the same model).
* ``detect_budget_ms``: the per-frame budget, measured in the same rounds: the previous default's night step
  (BlazePose by day, DeepLabV3 on the stretched luma at night); ``detect_budget_ratio`` = the larger of the two
  steps above / the budget (goal <= 1).
* ``detect_step_ratio``: step / invoke, measured in alternating rounds of the same run (goal <= 1.5).
* ``preprocess_ms``: I420 -> letterboxed, scaled input tensor alone.
* ``mask_1080p_ms``: a slanted 4-point privacy mask (41% of the frame) on a 1080p I420 frame (goal <= 1.0);
  ``mask_1080p_rect_ms`` for a rectangular one.
* ``gate_skip_ratio``: share of frames whose inference the motion gate skipped on a static scene (the demo wall,
  sensor noise, 30 s at 10 fps; goal >= 0.9); ``gate_missed_events``: person events lost with the gate on versus
  off over one loop of the demo scene (goal 0).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np
from doorkeep.tools.bench_util import median_ms


def _demo_frame(width: int = 320, height: int = 240) -> np.ndarray:
    from doorkeep.device.detect.preprocess import rgb_to_i420
    from doorkeep.device.sources.photo_scene import photo_scene

    scene = photo_scene(width, height)
    rgb = scene.background.copy()
    sh, sw = scene.sprite.shape[:2]  # type: ignore[union-attr]
    y0, x0 = (height - sh) // 2, (width - sw) // 2
    rgb[y0 : y0 + sh, x0 : x0 + sw] = scene.sprite[..., :3]  # type: ignore[index]
    return rgb_to_i420(rgb)


def _dark_gray(frame: np.ndarray, height: int) -> np.ndarray:
    """The frame as a very dark grayscale night frame (luma x 0.12 above black, chroma neutral)."""
    out = frame.copy()
    out[:height] = (16 + (frame[:height].astype(np.float32) - 16) * 0.12).astype(np.uint8)
    out[height:] = 128
    return out


def detect_figures(*, rounds: int, per_round: int) -> dict[str, float]:
    import dataclasses

    from doorkeep.device.config import Config
    from doorkeep.device.detect.detector import build_detector
    from doorkeep.device.detect.night_detector import build_night_detector

    cfg = Config()
    det = build_detector(cfg)
    night = build_night_detector(cfg, day=det)
    legacy_cfg = dataclasses.replace(cfg, detect=dataclasses.replace(cfg.detect, model="blazepose"),
                                     night=dataclasses.replace(cfg.night, model="deeplabv3"))
    legacy = build_night_detector(legacy_cfg)
    frame = _demo_frame()
    dark = _dark_gray(frame, 240)
    for d, f in ((det, frame), (night, dark), (legacy, dark)):  # warm up, build the index maps, judge the mode
        d.detect(f)
    assert night.night and legacy.night, "the dark gray bench frame must be judged night"
    inv, step, step_n, budget = [], [], [], []
    for _ in range(rounds):
        inv.append(median_ms(det.interpreter.invoke, per_round))
        step.append(median_ms(lambda: det.detect(frame), per_round))
        step_n.append(median_ms(lambda: night.detect(dark), per_round))
        budget.append(median_ms(lambda: legacy.detect(dark), per_round))
    pre = det._preprocessor(320, 240)
    med = statistics.median
    return {"detect_invoke_ms": round(med(inv), 2), "detect_step_ms": round(med(step), 2),
            "detect_step_ms_night": round(med(step_n), 2), "detect_budget_ms": round(med(budget), 2),
            "detect_budget_ratio": round(med(max(a, b) / c for a, b, c in zip(step, step_n, budget, strict=True)), 3),
            "detect_step_ratio": round(med(s / i for s, i in zip(step, inv, strict=True)), 3),
            "preprocess_ms": round(median_ms(lambda: pre(frame), per_round * 4), 3)}


def mask_figures(*, n: int) -> dict[str, float]:
    from doorkeep.device.frames import i420_shape
    from doorkeep.device.masks import PrivacyMask

    frame = np.full(i420_shape(1920, 1080), 120, np.uint8)
    slanted = PrivacyMask([[(0.1, 0.05), (0.6, 0.1), (0.9, 0.9), (0.2, 0.7)]], width=1920, height=1080)
    rect = PrivacyMask([[(0.0, 0.0), (1.0, 0.0), (1.0, 0.3), (0.0, 0.3)]], width=1920, height=1080)
    return {"mask_1080p_ms": round(median_ms(lambda: slanted(frame), n), 3),
            "mask_1080p_rect_ms": round(median_ms(lambda: rect(frame), n), 3)}


def gate_figures(*, static_s: float) -> dict[str, float]:
    from doorkeep.device.config import Config
    from doorkeep.device.detect.detector import build_detector
    from doorkeep.device.sources.photo_scene import LOOP_S, photo_scene
    from doorkeep.device.sources.synthetic import Scene, write_video
    from doorkeep.tools.scan import scan_video

    cfg = Config()
    det = build_detector(cfg)
    scene = photo_scene(640, 480)
    with tempfile.TemporaryDirectory() as tmp:
        static, demo = Path(tmp) / "static.mp4", Path(tmp) / "demo.mp4"
        write_video(str(static), seconds=static_s, width=640, height=480, fps=10,
                    scene=Scene(background=scene.background), noise=2)
        write_video(str(demo), seconds=LOOP_S, width=640, height=480, fps=10, scene=scene, noise=2)
        _, s = scan_video(static, cfg, detector=det)
        gated, _ = scan_video(demo, cfg, detector=det)
        ungated, _ = scan_video(demo, cfg, detector=det, gate=False)
    return {"gate_skip_ratio": round(s["skipped"] / s["frames"], 3),
            "gate_missed_events": float(max(0, len(ungated) - len(gated)))}


def run(*, quick: bool = False) -> dict[str, float]:
    out: dict[str, float] = {}
    out.update(detect_figures(rounds=3 if quick else 7, per_round=10 if quick else 40))
    out.update(mask_figures(n=50 if quick else 300))
    out.update(gate_figures(static_s=10 if quick else 30))
    return out
