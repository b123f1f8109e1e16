"""Motion-gate benchmarks on a realistic night scene (BENCHMARKS.md, Gate).

The lores frames (320x240 I420, 10 fps) are rendered in memory, as the camera's ISP hands them to the device — not
through an encoder, whose denoising would flatter the gate. Every frame has:

* **sensor noise at night gain**: independent Gaussian noise per pixel and frame, sigma 6 luma levels (3 chroma) —
  pessimistic for a Pi camera's lores stream at analogue gain 8-16, which its ISP downscales and denoises;
* **slow light change**: the exposure drifts +-25 % over 90 s, and a light pool (a porch lamp, a passing car's
  headlights) sweeps across the frame in 20 s;
* **moving foliage**: a bush of high-contrast leaves over 17 % of the frame, swaying up to 4 px with gusts.

Figures:

* ``gate_skip_ratio_noisy``: share of frames the gate skips on 120 s of that scene with nobody in it (after the
  first 10 s; goal >= 0.9).
* ``gate_missed_events_noisy``: on 8 appearances of the demo's real person (walk in, stand, walk out) in the same
  scene, the appearances that produce a person event with the gate off but not with it on, counted per appearance
  (goal 0). ``gate_events_noisy`` is how many appearances produced an event with the gate off.
"""

from __future__ import annotations

import math

import numpy as np

W, H, FPS = 320, 240, 10.0
NOISE_Y, NOISE_C = 6.0, 3.0
EMPTY_S, LEARN_S = 120.0, 10.0
APPEARANCES, GAP_S = 8, 12.0


class NightScene:
    """Renders the noisy night scene frame by frame into a preallocated I420 buffer (deterministic per seed)."""

    def __init__(self, *, person: bool, seed: int = 11, noise: bool = True, light: bool = True,
                 foliage: bool = True) -> None:
        from doorkeep.device.frames import chroma_planes, i420_shape
        from doorkeep.device.sources.photo_scene import photo_scene
        from doorkeep.device.sources.synthetic import Scene, _Layer

        scene = photo_scene(W, H)
        if person:  # the demo's walk (1.5-10.5 s of each 16 s loop) then GAP_S of empty scene
            period = scene.path[-1][0] + GAP_S
            scene = Scene(scene.background, scene.sprite, (*scene.path, (period, 1.6, 0.55)))
            self.period: float | None = period
        else:
            scene = Scene(scene.background)
            self.period = None
        self.layer = _Layer(scene, W, H, fps=FPS, noise=0, seed=seed)
        self.noise, self.light, self.foliage = noise, light, foliage
        self.rng = np.random.default_rng(seed)
        self.frame = np.empty(i420_shape(W, H), np.uint8)
        self.u, self.v = chroma_planes(self.frame, W, H)
        self._y = np.empty((H, W), np.float32)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        self._xx, self._yy = xx, yy
        # the bush: leaves as random bright and dark ellipses on a dark green base, left 25 %, lower 70 %
        bw, bh = W // 4 + 16, int(H * 0.7)
        leaves = np.full((bh, bw), 45.0, np.float32)
        ly, lx = np.mgrid[0:bh, 0:bw].astype(np.float32)
        for _ in range(140):
            cx, cy, r = self.rng.uniform(0, bw), self.rng.uniform(0, bh), self.rng.uniform(3, 9)
            leaves[((lx - cx) / r) ** 2 + ((ly - cy) / (0.6 * r)) ** 2 <= 1] = self.rng.uniform(15, 110)
        self._leaves = leaves
        self._bush_mask = np.zeros((H, W), bool)
        self._bush_mask[H - bh:, : W // 4] = True
        self._bush_box = (H - bh, W // 4)

    def visible(self, t: float) -> bool:
        """Whether the person is in view at ``t``."""
        if self.period is None:
            return False
        from doorkeep.device.sources.photo_scene import PERSON_VISIBLE_S

        return PERSON_VISIBLE_S[0] <= t % self.period <= PERSON_VISIBLE_S[1]

    def render(self, i: int) -> np.ndarray:
        t = i / FPS
        self.layer.draw(self.frame, i)
        y = self._y
        np.copyto(y, self.frame[:H], casting="unsafe")
        # bush in front of the wall, swaying (sum of two sines + a gust every ~25 s)
        sway = 2.5 * math.sin(2 * math.pi * t / 1.7) + 1.5 * math.sin(2 * math.pi * t / 0.9 + 1.0)
        sway *= 1.0 + 0.6 * max(0.0, math.sin(2 * math.pi * t / 25.0)) ** 4
        top, right = self._bush_box
        if self.foliage:
            y[top:, :right] = np.roll(self._leaves, round(sway), axis=1)[:, 8 : 8 + right]
        # slow light: exposure drift and a sweeping light pool
        gain = 0.55 * (1.0 + (0.25 * math.sin(2 * math.pi * t / 90.0) if self.light else 0.0))
        y *= gain
        if self.light:
            cx = (t % 20.0) / 20.0 * 1.6 - 0.3
            y += 35.0 * np.exp(-(((self._xx / W - cx) / 0.25) ** 2 + ((self._yy / H - 0.6) / 0.5) ** 2))
        if self.noise:
            y += self.rng.normal(0.0, NOISE_Y, y.shape).astype(np.float32)
        np.clip(y, 0, 255, out=y)
        np.copyto(self.frame[:H], y, casting="unsafe")
        for c in (self.u, self.v):
            n = self.rng.normal(0.0, NOISE_C if self.noise else 0.0, c.shape)
            np.copyto(c, np.clip(c + n, 0, 255), casting="unsafe")
        return self.frame


def skip_ratio(*, seconds: float = EMPTY_S, learn_s: float = LEARN_S, **parts: bool) -> float:
    """Share of frames the configured gate skips on the empty noisy scene (after ``learn_s``); ``parts`` switch
    the scene's noise, light and foliage off for diagnosis."""
    from doorkeep.device.config import MotionSection
    from doorkeep.device.gate import MotionGate

    scene = NightScene(person=False, **parts)
    gate = MotionGate.from_config(MotionSection(), width=W, height=H)
    counted = skipped = 0
    for i in range(round(seconds * FPS)):
        t = i / FPS
        open_ = gate.update(scene.render(i), t)
        if t >= learn_s:
            counted += 1
            skipped += not open_
    return skipped / counted


def missed_events(*, appearances: int = APPEARANCES) -> dict[str, float]:
    """Appearances with a person event without the gate but none with it (per appearance)."""
    from doorkeep.device.config import Config
    from doorkeep.device.detect.night_detector import build_night_detector
    from doorkeep.device.detect.pipeline import DetectionPipeline

    cfg = Config()
    det = build_night_detector(cfg)
    period = NightScene(person=True).period
    assert period is not None
    n = round(appearances * period * FPS)
    hit: dict[bool, set[int]] = {True: set(), False: set()}
    for gated in (True, False):
        pipe = DetectionPipeline.from_config(cfg, detector=det, gate=gated)
        scene = NightScene(person=True)  # the same frames, noise included, for both runs
        mode = getattr(det, "mode", None)
        for i in range(n):
            t = i / FPS
            if mode is not None:
                mode.clock = lambda t=t: t
            for ev in pipe.step(scene.render(i).copy(), t):
                if ev.phase == "start":
                    hit[gated].add(int(t // period))
    return {"gate_missed_events_noisy": float(len(hit[False] - hit[True])),
            "gate_events_noisy": float(len(hit[False])), "gate_appearances_noisy": float(appearances)}


def run(*, quick: bool = False) -> dict[str, float]:
    out = {"gate_skip_ratio_noisy": round(skip_ratio(seconds=40.0 if quick else EMPTY_S), 3)}
    out.update(missed_events(appearances=2 if quick else APPEARANCES))
    return out
