"""A deterministic scene source for tests, benchmarks and the demo: a still background and a moving sprite.

The scene is pluggable: a :class:`Scene` is a background RGB image, an optional RGBA sprite and a path of
``(t, cx, cy)`` waypoints (seconds; sprite centre in normalised frame coordinates; positions off the frame hide the
sprite). :func:`default_scene` draws a front door and a figure procedurally (no extra dependencies); the detection
area builds scenes from real photos (photo_scene.py) and passes them in.

Everything is precomputed at start — the background and sprite in I420 at both sizes, the sprite masks, the
position of every frame of one path period — so a frame costs a background copy, a masked sprite copy and the
encode. Main frames are encoded with libx264 (see :mod:`.encode`); lores frames are drawn straight into the ring.

Example::

    src = SyntheticSource(width=1280, height=720, fps=30, duration_s=10, realtime=False)
    src.attach(ring=FrameRing(width=320, height=240), packet_sinks=[preroll])
    src.start(); src.wait()
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..frames import chroma_planes, i420_shape
from .base import MainFilter, MetadataHook, Pacer, ThreadedSource
from .encode import H264Encoder

Waypoint = tuple[float, float, float]


@dataclass(frozen=True)
class Scene:
    """What the synthetic source shows. ``background``: (H, W, 3) uint8 RGB; ``sprite``: (h, w, 4) uint8 RGBA sized
    for the background's resolution (or None); ``path``: ``(t, cx, cy)`` waypoints, linearly interpolated and
    repeated with period ``path[-1][0]``."""

    background: np.ndarray
    sprite: np.ndarray | None = None
    path: Sequence[Waypoint] = ((0.0, -1.0, -1.0),)


def rgb_to_i420(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Convert (and scale) an RGB image to an I420 array of ``width`` x ``height``."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[..., :3]), format="rgb24")
    out = frame.reformat(width=width, height=height, format="yuv420p")
    arr = np.empty(i420_shape(width, height), dtype=np.uint8)
    u, v = chroma_planes(arr, width, height)
    for dst, plane, (h, w) in ((arr[:height], out.planes[0], (height, width)), (u, out.planes[1], u.shape),
                               (v, out.planes[2], v.shape)):
        np.copyto(dst, np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)[:h, :w])
    return arr


def default_scene(width: int = 1280, height: int = 720, *, seed: int = 7) -> Scene:
    """A procedural front door (wall, door, step, textured noise) and a figure walking up to it and away."""
    rng = np.random.default_rng(seed)
    yy, _xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.empty((height, width, 3), dtype=np.float32)
    bg[...] = (150, 140, 125)
    bg += (yy / height * 30)[..., None]  # light falls off towards the top
    dx0, dx1, dy0, dy1 = int(width * 0.42), int(width * 0.58), int(height * 0.18), int(height * 0.82)
    bg[dy0:dy1, dx0:dx1] = (90, 50, 35)  # door
    bg[int(height * 0.82):int(height * 0.88), int(width * 0.35):int(width * 0.65)] = (120, 120, 120)  # step
    bg[int(height * 0.88):] = (70, 90, 60)  # lawn
    bg[int(height * 0.48):int(height * 0.52), int(width * 0.55):int(width * 0.565)] = (200, 180, 60)  # handle
    bg += rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)  # texture, deterministic
    background = np.clip(bg, 0, 255).astype(np.uint8)

    sh, sw = int(height * 0.45) // 2 * 2, int(height * 0.18) // 2 * 2
    sy, sx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    head = (sx - sw / 2) ** 2 + (sy - sh * 0.1) ** 2 <= (sw * 0.22) ** 2
    body = (np.abs(sx - sw / 2) <= sw * 0.38) & (sy >= sh * 0.2) & (sy <= sh * 0.62)
    legs = ((np.abs(sx - sw * 0.35) <= sw * 0.1) | (np.abs(sx - sw * 0.65) <= sw * 0.1)) & (sy > sh * 0.62)
    sprite = np.zeros((sh, sw, 4), dtype=np.uint8)
    sprite[head] = (225, 180, 150, 255)
    sprite[body] = (40, 70, 160, 255)
    sprite[legs] = (30, 30, 40, 255)
    # Off frame for 2 s, walk to the door (4 s), wait (3 s), walk away (4 s), off frame.
    path = ((0.0, -0.5, 0.62), (2.0, -0.1, 0.62), (6.0, 0.5, 0.6), (9.0, 0.5, 0.6), (13.0, 1.1, 0.62),
            (15.0, 1.5, 0.62))
    return Scene(background=background, sprite=sprite, path=path)


class _Layer:
    """The scene prepared for one output size: I420 background(s), sprite planes and masks, per-frame positions."""

    def __init__(self, scene: Scene, width: int, height: int, *, fps: float, noise: int, seed: int) -> None:
        self.width, self.height = width, height
        bg = rgb_to_i420(scene.background, width, height)
        if noise:
            rng = np.random.default_rng(seed)
            self.backgrounds = [np.clip(bg.astype(np.int16) + rng.integers(-noise, noise + 1, bg.shape), 0, 255)
                                .astype(np.uint8) for _ in range(4)]
        else:
            self.backgrounds = [bg]
        self.sprite: list[tuple[np.ndarray, np.ndarray]] | None = None
        bh, bw = scene.background.shape[:2]
        if scene.sprite is not None:
            sh = max(2, round(scene.sprite.shape[0] * height / bh) // 2 * 2)
            sw = max(2, round(scene.sprite.shape[1] * width / bw) // 2 * 2)
            spr = rgb_to_i420(scene.sprite[..., :3], sw, sh)
            alpha = _resize_nearest(scene.sprite[..., 3], sw, sh) >= 128
            su, sv = chroma_planes(spr, sw, sh)
            calpha = alpha[::2, ::2]
            self.sprite = [(spr[:sh], alpha), (su, calpha), (sv, calpha)]
            self.positions = _positions(scene.path, fps, width, height, sw, sh)

    def draw(self, out: np.ndarray, index: int) -> None:
        """Draw frame ``index`` into the I420 array ``out``."""
        np.copyto(out, self.backgrounds[index % len(self.backgrounds)])
        if self.sprite is None:
            return
        x, y = self.positions[index % len(self.positions)]
        u, v = chroma_planes(out, self.width, self.height)
        for plane, (pix, mask), div in ((out[: self.height], self.sprite[0], 1), (u, self.sprite[1], 2),
                                        (v, self.sprite[2], 2)):
            px, py = x // div, y // div
            ph, pw = plane.shape
            sh, sw = pix.shape
            x0, y0, x1, y1 = max(px, 0), max(py, 0), min(px + sw, pw), min(py + sh, ph)
            if x0 >= x1 or y0 >= y1:
                return
            sl = (slice(y0 - py, y1 - py), slice(x0 - px, x1 - px))
            np.copyto(plane[y0:y1, x0:x1], pix[sl], where=mask[sl])


def _resize_nearest(a: np.ndarray, width: int, height: int) -> np.ndarray:
    ys = (np.arange(height) * a.shape[0] // height).clip(0, a.shape[0] - 1)
    xs = (np.arange(width) * a.shape[1] // width).clip(0, a.shape[1] - 1)
    out: np.ndarray = a[ys][:, xs]
    return out


def _positions(path: Sequence[Waypoint], fps: float, width: int, height: int, sw: int, sh: int) -> np.ndarray:
    """Even top-left pixel position of the sprite for every frame of one path period."""
    pts = np.asarray(path, dtype=np.float64).reshape(-1, 3)
    period = float(pts[-1, 0])
    n = max(1, round(period * fps))
    t = np.arange(n) / fps
    cx = np.interp(t, pts[:, 0], pts[:, 1]) * width - sw / 2
    cy = np.interp(t, pts[:, 0], pts[:, 2]) * height - sh / 2
    return (np.stack([cx, cy], axis=1) // 2 * 2).astype(np.int64)


class SyntheticSource(ThreadedSource):
    """Deterministic scene at ``width`` x ``height`` (main, H.264) and ``lores_width`` x ``lores_height`` (ring).

    Args:
        scene: what to show (default: :func:`default_scene` at the main size).
        fps: frame rate; frame ``i`` shows the scene at ``t = i / fps`` regardless of pacing.
        duration_s: stop by itself after this long (None: run until stopped).
        realtime: pace at ``fps`` (True) or run as fast as possible (False).
        gop: keyframe interval in frames.
        noise: +- amplitude of per-pixel sensor noise (4 precomputed noise patterns).
        encode: False skips the H.264 main stream (lores only; for gate/ring benchmarks).
        main_filters, on_metadata: see :class:`FrameSource`.
    """

    def __init__(self, *, width: int = 1280, height: int = 720, lores_width: int = 320, lores_height: int = 240,
                 fps: float = 30.0, scene: Scene | None = None, duration_s: float | None = None,
                 realtime: bool = True, gop: int = 30, noise: int = 0, seed: int = 7, encode: bool = True,
                 main_filters: Sequence[MainFilter] = (), on_metadata: MetadataHook | None = None) -> None:
        super().__init__(main_filters=main_filters, on_metadata=on_metadata)
        i420_shape(width, height), i420_shape(lores_width, lores_height)  # validate sizes early
        self.main_size = (width, height)
        self.lores_size = (lores_width, lores_height)
        self.fps = fps
        self.scene = scene
        self.duration_s = duration_s
        self.realtime = realtime
        self.gop = gop
        self.noise = noise
        self.seed = seed
        self.encode = encode
        self._main_layer: _Layer | None = None
        self._lores_layer: _Layer | None = None

    def _prepare(self) -> None:
        if self._main_layer is None:
            scene = self.scene or default_scene(*self.main_size)
            kw: dict[str, Any] = {"fps": self.fps, "noise": self.noise, "seed": self.seed}
            self._main_layer = _Layer(scene, *self.main_size, **kw)
            self._lores_layer = _Layer(scene, *self.lores_size, **kw)

    def _run(self) -> None:
        main_l, lores_l = self._main_layer, self._lores_layer
        assert main_l is not None and lores_l is not None
        w, h = self.main_size
        main = np.empty(i420_shape(w, h), dtype=np.uint8)
        enc = H264Encoder(width=w, height=h, fps=self.fps, gop=self.gop) if self.encode else None
        pacer = Pacer(self.fps)
        total = None if self.duration_s is None else round(self.duration_s * self.fps)
        i = 0
        t0 = time.monotonic()
        while not self._stop_event.is_set() and (total is None or i < total):
            t_capture = pacer.wait(self._stop_event) if self.realtime else time.monotonic()
            if self._stop_event.is_set():
                break
            t_wall = time.time()
            if self.ring is not None:
                lores_l.draw(self.ring.begin_write(), i)
                self.ring.commit(t_capture, t_wall)
            if enc is not None:
                main_l.draw(main, i)
                self._filter_main(main)
                for p in enc.encode(main, pts=round(i * 1e6 / self.fps), t_capture=t_capture, t_wall=t_wall):
                    self._emit_packet(p)
            self.frames += 1
            self.drops = pacer.late
            self.max_lag = pacer.max_lag
            i += 1
        if enc is not None:
            for p in enc.flush():
                self._emit_packet(p)
        del t0


def write_video(path: str, *, seconds: float, width: int = 640, height: int = 480, fps: int = 30,
                codec: str = "libx264", gop: int = 30, scene: Scene | None = None, noise: int = 0) -> int:
    """Write the scene to a video file (MP4/MKV by extension) with PyAV; returns the frames written.

    For tests and soak runs that need a real file source. ``codec``: ``libx264`` (H.264) or e.g. ``mpeg4``.
    """
    import av

    layer = _Layer(scene or default_scene(width, height), width, height, fps=fps, noise=noise, seed=7)
    frame = np.empty(i420_shape(width, height), dtype=np.uint8)
    n = round(seconds * fps)
    with av.open(path, "w") as out:
        st: Any = out.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.codec_context.gop_size = gop
        if codec == "libx264":
            st.options = {"preset": "ultrafast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i in range(n):
            layer.draw(frame, i)
            vf = av.VideoFrame.from_ndarray(frame, format="yuv420p")
            vf.pts = i
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return n
