"""``PersonDetector``: lores I420 frame -> preprocess -> interpreter -> decoder -> person detections.

It implements the :class:`~doorkeep.device.detections.Detector` seam. Everything sized by the frame (index maps,
buffers) is built on the first frame of a given size and reused.

Example::

    det = build_detector(config)            # pinned model from the cache, runtime chosen by config
    people = det.detect(frame, width=320, height=240)
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
from .runtime import Interpreter, open_interpreter

log = logging.getLogger(__name__)

#: Decoder kinds (manifest ``[decoder] kind``) that PersonDetector can run.
PERSON_DECODERS = ("blazepose", "ssd_postprocess")


class PersonDetector:
    """Finds people in lores I420 frames with a manifest-described TFLite model.

    ``max_score`` is the best person score of the last frame, even below the threshold (for ``doorkeep eval``).
    """

    def __init__(self, manifest: ModelManifest, model_path: Path, *, threshold: float | None = None,
                 threads: int = 2, runtime: str = "auto", delegate: str | None = None) -> None:
        self.manifest = manifest
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
        return self._pre

    def detect(self, frame: np.ndarray, *, width: int, height: int) -> list[Detection]:
        """People in ``frame`` (I420, ``width`` x ``height``), best first, boxes normalised to the frame."""
        pre = self._preprocessor(width, height)
        it = self.interpreter
        it.set_input(pre(frame))
        it.invoke()
        dets: list[Detection]
        if self.manifest.decoder == "blazepose":
            dets = self._decoder.decode(it.output(0), it.output(1), pre.letterbox)
        else:
            dets = self._decoder.decode({n: it.output(i) for i, n in enumerate(self.manifest.output_names)},
                                        pre.letterbox)
        self.max_score = float(self._decoder.max_score)
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
    path = ensure_model(manifest, state_dir=config.state_dir, fetch=fetch)
    det = PersonDetector(manifest, path, threshold=d.threshold, threads=d.threads, runtime=d.runtime,
                         delegate=d.delegate or None)
    log.info("person detector: %s (%s, sha256 %s…) on %s, %d threads%s", manifest.name, path,
             manifest.sha256[:12], det.runtime, d.threads, f", delegate {d.delegate}" if d.delegate else "")
    return det
