"""``PersonDetector``: lores I420 frame -> preprocess -> interpreter -> decoder -> person detections.

It implements the :class:`~doorkeep.device.detections.Detector` seam. Everything sized by the frame (index maps,
buffers) is built on the first frame of a given size and reused.

Example::

    det = build_detector(config)            # pinned model from the cache, runtime chosen by config
    people = det.detect(frame)              # frame: I420 (height * 3 / 2, width) uint8
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..detections import Detection
from ..errors import ModelError
from .decoders.blazepose import NUM_ANCHORS, NUM_COORDS, BlazePoseDecoder
from .decoders.ssd_postprocess import (
    OUTPUT_NAMES,
    SsdPostprocessDecoder,
    person_class_from_labels,
)
from .models import ModelManifest, all_manifests, ensure_model
from .preprocess import Preprocessor
from .runtime import Interpreter, int8_is_slow, open_interpreter
from .tiles import merge, tile_grid, to_frame

log = logging.getLogger(__name__)

#: Decoder kinds (manifest ``[decoder] kind``) that PersonDetector can run.
PERSON_DECODERS = ("blazepose", "ssd_postprocess")


class PersonDetector:
    """Finds people in lores I420 frames with a manifest-described TFLite model.

    ``max_score`` is the best person score of the last frame, even below the threshold (for ``doorkeep eval``).
    ``tiles = (cols, rows)`` also runs the model on that grid of overlapping tiles (docs/detection.md, tiling).
    """

    def __init__(self, manifest: ModelManifest, model_path: Path, *, threshold: float | None = None,
                 threads: int = 2, runtime: str = "auto", delegate: str | None = None,
                 tiles: tuple[int, int] = (0, 0)) -> None:
        self.manifest = manifest
        self.tiles = tiles
        if manifest.decoder not in PERSON_DECODERS:
            raise ModelError(f"model {manifest.name}: decoder {manifest.decoder!r} is not a person-box decoder "
                             f"(PersonDetector reads {', '.join(PERSON_DECODERS)})")
        self.threshold = manifest.default_threshold if threshold is None else float(threshold)
        self.interpreter: Interpreter = open_interpreter(model_path, runtime=runtime, threads=threads,
                                                         delegate=delegate)
        self._check_io()
        self._decoder: Any
        if manifest.decoder == "blazepose":
            self._decoder = BlazePoseDecoder(threshold=self.threshold)
        else:
            pc = person_class_from_labels(manifest.labels, default=manifest.person_class) if manifest.labels \
                else manifest.person_class
            self._decoder = SsdPostprocessDecoder(threshold=self.threshold, person_class=pc)
        self._pre: Preprocessor | None = None
        self._tile_pres: list[Preprocessor] = []
        #: Best person score of the last frame, even below the threshold.
        self.max_score = 0.0

    @property
    def runtime(self) -> str:
        return str(self.interpreter.runtime)

    def _check_io(self) -> None:
        m, it = self.manifest, self.interpreter
        if it.input_shape != m.input.shape or it.input_dtype != np.dtype(m.input.dtype):
            raise ModelError(f"model {m.name}: the file's input is {it.input_dtype} {it.input_shape}, "
                             f"the manifest says {m.input.dtype} {m.input.shape}")
        shapes = it.output_shapes
        if m.decoder == "blazepose" and (len(shapes) != 2 or shapes[0][-2:] != (NUM_ANCHORS, NUM_COORDS)):
            raise ModelError(f"model {m.name}: blazepose decoder expects outputs [1,2254,12] and [1,2254,1], "
                             f"got {shapes}")
        if m.decoder == "ssd_postprocess" and (len(shapes) != 4 or sorted(m.output_names) != sorted(OUTPUT_NAMES)):
            raise ModelError(f"model {m.name}: ssd_postprocess needs 4 outputs named {OUTPUT_NAMES} in the manifest "
                             f"([output] names), got {len(shapes)} outputs named {list(m.output_names)}")

    def _preprocessor(self, width: int, height: int) -> Preprocessor:
        self._pre = Preprocessor.reuse(self._pre, self.manifest.input, width=width, height=height)
        if self.tiles[0] > 0 and (not self._tile_pres or self._tile_pres[0].frame_shape != self._pre.frame_shape):
            grid = tile_grid(width, height, cols=self.tiles[0], rows=self.tiles[1])
            self._tile_pres = [Preprocessor.reuse(None, self.manifest.input, width=width, height=height, tile=t)
                               for t in grid]
        return self._pre

    def _run(self, pre: Preprocessor, frame: np.ndarray) -> list[Detection]:
        it = self.interpreter
        it.set_input(pre(frame))
        it.invoke()
        if self.manifest.decoder == "blazepose":
            return self._decoder.decode(it.output(0), it.output(1), pre.letterbox)  # type: ignore[no-any-return]
        return self._decoder.decode(  # type: ignore[no-any-return]
            {n: it.output(i) for i, n in enumerate(self.manifest.output_names)}, pre.letterbox)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """People in ``frame`` (I420, its size read from the array's shape), best first, boxes normalised to the
        frame."""
        h, w = frame.shape[0] * 2 // 3, frame.shape[1]
        pre = self._preprocessor(w, h)
        dets = self._run(pre, frame)
        best = float(self._decoder.max_score)
        if self._tile_pres:
            for tp in self._tile_pres:
                dets += [to_frame(d, tp.tile, w, h) for d in self._run(tp, frame)]
                best = max(best, float(self._decoder.max_score))
            dets = merge(dets)
        self.max_score = best
        return dets


def build_detector(config: Any, *, fetch: bool = True) -> PersonDetector:
    """The configured detector: model by name from the built-in and the owner's manifests, verified by sha256.

    ``config`` is a :class:`~doorkeep.device.config.Config`; uses ``config.detect`` and ``config.state_dir``.
    Fetches the pinned model into the cache if it is missing and ``fetch`` is true.
    """
    d = config.detect
    manifests = all_manifests([Path(p) for p in d.manifests])
    if d.model not in manifests:
        raise ModelError(f"detect.model = {d.model!r}: no such model (known: {', '.join(sorted(manifests))})")
    manifest = manifests[d.model]
    if manifest.float_twin and int8_is_slow(d.runtime):
        # tflite-runtime's x86_64 int8 kernels ran ~100x slower than ai-edge-litert's here (docs/detection.md).
        manifest = manifests[manifest.float_twin]
    path = ensure_model(manifest, state_dir=config.state_dir, fetch=fetch)
    det = PersonDetector(manifest, path, threshold=d.threshold or None, threads=d.threads, runtime=d.runtime,
                         delegate=d.delegate or None, tiles=d.tiles)
    log.info("person detector: %s (%s, sha256 %s…) on %s, %d threads, threshold %.2f%s%s", manifest.name, path,
             manifest.sha256[:12], det.runtime, d.threads, det.threshold,
             f", tiles {d.tiles[0]}x{d.tiles[1]}" if d.tiles[0] else "",
             f", delegate {d.delegate}" if d.delegate else "")
    return det
