"""The night side of detection: what runs on a frame when :class:`~doorkeep.device.night.NightMode` says night.

The default (``night.model = ""``, docs/detection.md has the measurements): the day detector (SSDLite, a general
person detector that holds on grayscale) runs at night too; a frame so dark that its luma spans fewer than
``night.stretch_below`` levels (1st..99th percentile) is first contrast-stretched (those percentiles map to black
and white through a 256-entry table, into a preallocated gray I420 frame). On the dev split this found 14 of 15
very dark person images instead of 9, and stretching brighter (only noisy) frames lost people, hence the bound.

The option ``night.model = "deeplabv3"`` (doorkeep's earlier night path, kept): DeepLabV3 person segmentation
(PASCAL VOC, person = class 15) on the stretched luma instead — person regions whose mean person probability is at
least ``seg_threshold`` and whose area is at least ``seg_min_area`` of the frame become detections (score = that
mean probability); with ``night.pose_first`` the day detector runs first and the segmentation only when it found
nobody.

In day mode the day detector runs on the frame untouched, so colour results are exactly the day detector's.
:class:`NightDetector` implements the :class:`~doorkeep.device.detections.Detector` seam and reports
``last_mode`` (``"day"``/``"night"``) and ``max_score`` for ``doorkeep eval``/``scan``.

Example::

    det = build_night_detector(config)                # wraps build_detector(config)
    people = det.detect(frame)                         # frame: I420 uint8, size from its shape
    det.last_mode                                      # "night" on a dark grayscale frame
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import NightSection
from ..detections import Detection
from ..errors import ModelError
from ..frames import i420_shape
from ..night import NIGHT, NightMode
from .models import ModelManifest, all_manifests, ensure_model
from .preprocess import Letterbox, Preprocessor
from .runtime import Interpreter, open_interpreter

#: The segmentation output is bilinearly upsampled from a 33x33 map: every 4th pixel loses nothing that matters.
SEG_STRIDE = 4
#: Columns of person pixels closer than this many (subsampled) cells belong to one region.
SEG_GAP = 2


class ScoredDetector(Protocol):
    max_score: float

    def detect(self, frame: np.ndarray) -> list[Detection]: ...


class LumaStretch:
    """Contrast-stretches the Y plane of an I420 frame into a preallocated gray I420 frame (U = V = 128).

    The percentiles come from a histogram of every ``step``-th luma sample; the mapping is a 256-entry table onto
    the limited-range luma 16..235 the preprocessor expects.
    """

    def __init__(self, *, width: int, height: int, low: float = 1.0, high: float = 99.0, step: int = 4) -> None:
        self.width, self.height = width, height
        self.low, self.high, self.step = low / 100.0, high / 100.0, step
        self.out = np.full(i420_shape(width, height), 128, np.uint8)
        self._y = self.out[:height]
        self._lut = np.empty(256, np.uint8)
        self._ramp = np.arange(256, dtype=np.float32)
        self._f = np.empty(256, np.float32)

    def span(self, frame: np.ndarray) -> tuple[int, int]:
        """The luma levels at the low and high percentiles (from every ``step``-th sample)."""
        sample = frame[: self.height : self.step, :: self.step]
        cdf = np.bincount(sample.ravel(), minlength=256).cumsum()
        n = cdf[-1]
        return int(np.searchsorted(cdf, self.low * n)), int(np.searchsorted(cdf, self.high * n))

    def __call__(self, frame: np.ndarray, span: tuple[int, int] | None = None) -> np.ndarray:
        y = frame[: self.height]
        lo, hi = span or self.span(frame)
        if hi <= lo:  # a flat frame: nothing to stretch
            lo, hi = 0, 255
        np.subtract(self._ramp, lo, out=self._f)
        np.multiply(self._f, (235.0 - 16.0) / (hi - lo), out=self._f)
        np.add(self._f, 16.0, out=self._f)
        np.clip(self._f, 16.0, 235.0, out=self._f)
        np.copyto(self._lut, self._f, casting="unsafe")
        np.take(self._lut, y, out=self._y)
        return self.out


class SegmentationPersons:
    """A person-segmentation model (manifest decoder ``segmentation``) as a detector of person regions.

    Person pixels are those where the person class has the highest logit (on a grid of every ``SEG_STRIDE``-th
    output pixel inside the letterbox). Columns holding person pixels are split into regions at gaps; each region's
    box spans its person pixels, its score is their mean person probability (softmax over the classes).
    ``max_score`` is the best region score of the last frame (0 when none).
    """

    def __init__(self, manifest: ModelManifest, model_path: Path, *, threshold: float | None = None,
                 min_area: float = 0.002, threads: int = 2, runtime: str = "auto") -> None:
        if manifest.decoder != "segmentation":
            raise ModelError(f"model {manifest.name}: decoder {manifest.decoder!r} is not a segmentation model")
        self.manifest = manifest
        self.threshold = manifest.default_threshold if threshold is None else float(threshold)
        self.min_area = float(min_area)
        self.interpreter: Interpreter = open_interpreter(model_path, runtime=runtime, threads=threads)
        shapes = self.interpreter.output_shapes
        if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][-1] <= manifest.person_class:
            raise ModelError(f"model {manifest.name}: segmentation expects one [1,H,W,classes] output, got {shapes}")
        if self.interpreter.input_shape != manifest.input.shape:
            raise ModelError(f"model {manifest.name}: the file's input is {self.interpreter.input_shape}, "
                             f"the manifest says {manifest.input.shape}")
        self._out_hw = shapes[0][1:3]
        self._pre: Preprocessor | None = None
        self.max_score = 0.0

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Person regions of ``frame`` (I420; its size comes from the array's shape)."""
        h, w = frame.shape[0] * 2 // 3, frame.shape[1]
        pre = self._pre = Preprocessor.reuse(self._pre, self.manifest.input, width=w, height=h)
        it = self.interpreter
        it.set_input(pre(frame))
        it.invoke()
        return self.decode(it.output(0), pre.letterbox)

    def decode(self, logits: np.ndarray, lb: Letterbox) -> list[Detection]:
        """Raw ``[1,H,W,C]`` logits -> person regions in frame coordinates."""
        oh, ow = self._out_hw
        r0, r1 = int(lb.y0 * oh), int(np.ceil((lb.y0 + lb.h) * oh))
        c0, c1 = int(lb.x0 * ow), int(np.ceil((lb.x0 + lb.w) * ow))
        grid = logits[0, r0:r1:SEG_STRIDE, c0:c1:SEG_STRIDE, :]
        rel = grid - grid[..., self.manifest.person_class : self.manifest.person_class + 1]
        person = rel.max(axis=-1) <= 0.0
        self.max_score = 0.0
        if not person.any():
            return []
        prob = 1.0 / np.exp(rel).sum(axis=-1)
        gh, gw = person.shape
        cols = np.flatnonzero(person.any(axis=0))
        splits = np.flatnonzero(np.diff(cols) > SEG_GAP) + 1
        found: list[Detection] = []
        for run in np.split(cols, splits):
            a, b = int(run[0]), int(run[-1]) + 1
            m = person[:, a:b]
            count = int(m.sum())
            score = float(prob[:, a:b][m].mean())
            area = count / (gh * gw)
            if area < self.min_area:
                continue
            self.max_score = max(self.max_score, score)
            if score < self.threshold:
                continue
            rows = np.flatnonzero(m.any(axis=1))
            found.append(Detection(score=score, x0=a / gw, y0=float(rows[0]) / gh,
                                   x1=b / gw, y1=float(rows[-1] + 1) / gh))
        found.sort(key=lambda d: -d.score)
        return found


class NightDetector:
    """Day detector in day mode; at night the day detector on the (if very dark) stretched luma, or, with a
    ``segmenter``, segmentation of the stretched luma (after the day detector if ``pose_first``).

    ``mode`` decides per frame (the frame's chroma and luma, the camera's lux and exposure through
    ``mode.on_metadata``). ``last_mode`` and ``max_score`` describe the last frame.
    """

    def __init__(self, day: ScoredDetector, *, mode: NightMode, segmenter: SegmentationPersons | None,
                 config: NightSection | None = None, feed_mode: bool = True) -> None:
        self.day = day
        self.mode = mode
        #: False when something else feeds ``mode`` every frame (the device does, so the IR outputs follow the
        #: light even while the motion gate keeps the detector idle); then detect() only reads the mode.
        self.feed_mode = feed_mode
        self.segmenter = segmenter
        self.config = config or mode.config
        self._stretch: LumaStretch | None = None
        self.last_mode = mode.mode
        self.max_score = 0.0

    @property
    def threshold(self) -> float:
        """The day detector's threshold (what ``doorkeep eval`` reports)."""
        return float(getattr(self.day, "threshold", 0.5))

    @property
    def runtime(self) -> str:
        return str(getattr(self.day, "runtime", ""))

    def reset(self) -> None:
        """Forget the mode history: the next frame decides the mode by itself (between unrelated still images)."""
        self.mode.reset()
        self.last_mode = self.mode.mode

    def _stretcher(self, width: int, height: int) -> LumaStretch:
        st = self._stretch
        if st is None or st.width != width or st.height != height:
            st = self._stretch = LumaStretch(width=width, height=height, low=self.config.stretch_low,
                                             high=self.config.stretch_high)
        return st

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """People in ``frame`` (I420; its size comes from the array's shape) by the mode's detector."""
        h, w = frame.shape[0] * 2 // 3, frame.shape[1]
        night = self.mode.update(frame) if self.feed_mode else self.mode.night
        self.last_mode = self.mode.mode
        if not night:
            found = self.day.detect(frame)
            self.max_score = float(self.day.max_score)
            return found
        st = self._stretcher(w, h)
        if self.segmenter is None:
            lo, hi = st.span(frame)
            dark = hi - lo < self.config.stretch_below
            found = self.day.detect(st(frame, (lo, hi)) if dark else frame)
            self.max_score = float(self.day.max_score)
            return found
        if self.config.pose_first:
            found = self.day.detect(frame)
            self.max_score = float(self.day.max_score)
            if found:
                return found
        else:
            self.max_score = 0.0
        found = self.segmenter.detect(st(frame))
        self.max_score = max(self.max_score, self.segmenter.max_score)
        return found

    @property
    def night(self) -> bool:
        return self.last_mode == NIGHT


def build_night_detector(config: Any, *, day: ScoredDetector | None = None, mode: NightMode | None = None,
                         fetch: bool = True, feed_mode: bool = True) -> NightDetector:
    """The configured detector with night mode: ``config.night`` around the day detector of ``config.detect``.

    ``day`` defaults to :func:`~doorkeep.device.detect.detector.build_detector` ``(config)``; ``mode`` to a new
    :class:`NightMode` (pass one shared with the source's ``on_metadata`` hook and the IR outputs). The night
    model (``night.model``, default ``deeplabv3``) is pinned and fetched like the default model.

    Raises:
        ModelError: unknown night model, or it is not cached and ``fetch`` is false, or its hash differs.
    """
    n: NightSection = config.night
    if day is None:
        from .detector import build_detector

        day = build_detector(config, fetch=fetch)
    segmenter = None
    if n.model:
        manifests = all_manifests([Path(p) for p in config.detect.manifests])
        if n.model not in manifests:
            raise ModelError(f"night.model = {n.model!r}: no such model (known: {', '.join(sorted(manifests))})")
        man = manifests[n.model]
        path = ensure_model(man, state_dir=config.state_dir, fetch=fetch)
        segmenter = SegmentationPersons(man, path, threshold=n.seg_threshold, min_area=n.seg_min_area,
                                        threads=config.detect.threads, runtime=config.detect.runtime)
    return NightDetector(day, mode=mode or NightMode(n), segmenter=segmenter, config=n, feed_mode=feed_mode)
