"""Lores I420 frame -> model input tensor (RGB, letterboxed, scaled to the model's value range), no per-frame
allocation.

Everything that depends only on the frame and input sizes is computed once in :class:`Preprocessor`: the letterbox
placement, the bilinear source indices and weights of every output row and column in the Y plane and the
(half-size) chroma planes, and the colour matrix with the value-range scaling folded in. Per frame it is a few
``np.take`` gathers into preallocated buffers plus a handful of in-place ufuncs writing straight into the input
tensor's channels.

Colour: BT.601 limited range ("TV" levels), what libx264/PyAV's ``yuv420p`` and the Pi's video pipeline produce;
:func:`rgb_to_i420` is its inverse, used for evaluation images and the demo scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FrameError, InvalidArgument
from ..frames import i420_shape

#: BT.601 limited range, YCbCr -> RGB on (Y-16, U-128, V-128).
_YUV2RGB = np.array([[1.164383, 0.0, 1.596027],
                     [1.164383, -0.391762, -0.812968],
                     [1.164383, 2.017232, 0.0]], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where the frame's content sits inside the model input, in normalised input coordinates."""

    x0: float = 0.0
    y0: float = 0.0
    w: float = 1.0
    h: float = 1.0


def letterbox_for(width: int, height: int, in_w: int, in_h: int, *,
                  letterbox: bool = True) -> tuple[int, int, int, int]:
    """Content rectangle ``(x0, y0, w, h)`` in input pixels for a ``width`` x ``height`` frame."""
    if not letterbox:
        return 0, 0, in_w, in_h
    scale = min(in_w / width, in_h / height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return (in_w - w) // 2, (in_h - h) // 2, w, h


class _BilinearPlane:
    """Separable bilinear resampling of one ``src_h`` x ``src_w`` uint8 plane into a preallocated float32 array.

    Index and weight vectors are computed once; per call: two row gathers, a blend, two column gathers, a blend.
    (Bilinear, not nearest: on the real photos nearest-neighbour aliasing moved no-person scores by up to 0.3.)
    """

    def __init__(self, src_w: int, src_h: int, out_w: int, out_h: int,
                 crop: tuple[int, int, int, int] | None = None) -> None:
        def axis(off: int, n_src: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            pos = np.clip((np.arange(n_out) + 0.5) * n_src / n_out - 0.5, 0, n_src - 1)
            i0 = np.floor(pos).astype(np.intp)
            i1 = np.minimum(i0 + 1, n_src - 1)
            return i0 + off, i1 + off, (pos - i0).astype(np.float32)

        # ``crop`` (x0, y0, w, h) resamples only that rectangle of the plane (a tile); the indices simply point into it.
        cx, cy, cw, ch = crop or (0, 0, src_w, src_h)
        self.shape = (src_h, src_w)
        self._r0, self._r1, fy = axis(cy, ch, out_h)
        self._c0, self._c1, self._fx = axis(cx, cw, out_w)
        self._fy = fy[:, None]
        self._gy = (1.0 - fy)[:, None]
        self._rows0 = np.empty((out_h, src_w), np.uint8)
        self._rows1 = np.empty((out_h, src_w), np.uint8)
        self._f0 = np.empty((out_h, src_w), np.float32)
        self._f1 = np.empty((out_h, src_w), np.float32)
        self._c1buf = np.empty((out_h, out_w), np.float32)
        self.out = np.empty((out_h, out_w), np.float32)

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        np.take(plane, self._r0, axis=0, out=self._rows0)
        np.take(plane, self._r1, axis=0, out=self._rows1)
        f0, f1 = self._f0, self._f1
        np.multiply(self._rows0, self._gy, out=f0)
        np.multiply(self._rows1, self._fy, out=f1)
        np.add(f0, f1, out=f0)
        np.take(f0, self._c0, axis=1, out=self.out)
        np.take(f0, self._c1, axis=1, out=self._c1buf)
        np.subtract(self._c1buf, self.out, out=self._c1buf)
        np.multiply(self._c1buf, self._fx, out=self._c1buf)
        np.add(self.out, self._c1buf, out=self.out)
        return self.out


class Preprocessor:
    """Writes a ``width`` x ``height`` I420 frame into a preallocated ``(1, in_h, in_w, 3)`` input buffer.

    Example::

        pre = Preprocessor(width=320, height=240, in_w=224, in_h=224, value_range=(-1.0, 1.0))
        tensor = pre(frame)        # the same array every call
        pre.letterbox              # where the frame sits in the input (normalised), for the decoder
    """

    def __init__(self, *, width: int, height: int, in_w: int, in_h: int, value_range: tuple[float, float],
                 dtype: str = "float32", letterbox: bool = True, tile: tuple[int, int, int, int] | None = None) -> None:
        self.frame_shape = i420_shape(width, height)
        self.width, self.height = width, height
        #: The rectangle of the frame this preprocessor feeds the model (x0, y0, w, h; even numbers), the whole frame
        #: by default; a tile is treated exactly like a smaller frame (its own letterbox).
        self.tile = tile or (0, 0, width, height)
        tx, ty, tw, th = self.tile
        if tx % 2 or ty % 2 or tw % 2 or th % 2 or tx + tw > width or ty + th > height or tw <= 0 or th <= 0:
            raise InvalidArgument(f"tile {self.tile} must be even-aligned and inside the {width}x{height} frame")
        x0, y0, w, h = letterbox_for(tw, th, in_w, in_h, letterbox=letterbox)
        self.letterbox = Letterbox(x0=x0 / in_w, y0=y0 / in_h, w=w / in_w, h=h / in_h)
        self._y = _BilinearPlane(width, height, w, h, crop=self.tile)
        half = (tx // 2, ty // 2, tw // 2, th // 2)
        self._u = _BilinearPlane(width // 2, height // 2, w, h, crop=half)
        self._v = _BilinearPlane(width // 2, height // 2, w, h, crop=half)
        self._y_len = width * height
        self._c_len = (width // 2) * (height // 2)
        lo, hi = value_range
        gain = (hi - lo) / 255.0
        self._lo, self._hi = np.float32(lo), np.float32(hi)
        self._m = (_YUV2RGB * gain).astype(np.float32)
        # Offsets so that channel = m0*Y + m1*U + m2*V + off, on raw (resampled) Y, U, V.
        self._off = (lo - (_YUV2RGB @ np.array([16.0, 128.0, 128.0])) * gain).astype(np.float32)
        self._tmp = np.empty((h, w), np.float32)
        self.dtype = np.dtype(dtype)
        # Letterbox padding is black (the range's low end): measured on the real photos, mid-grey padding turned
        # two no-person photos (chelsea, horse) into false alarms; black gave none (docs/detection.md).
        self._work = np.full((1, in_h, in_w, 3), lo, np.float32)
        self._content = self._work[0, y0 : y0 + h, x0 : x0 + w, :]
        self.output = self._work if self.dtype == np.float32 else np.zeros((1, in_h, in_w, 3), self.dtype)
        if self.dtype != np.float32:
            np.copyto(self.output, self._work, casting="unsafe")

    @classmethod
    def reuse(cls, current: Preprocessor | None, spec: Any, *, width: int, height: int,
              tile: tuple[int, int, int, int] | None = None) -> Preprocessor:
        """``current`` if it fits a ``width`` x ``height`` frame (and ``tile``), else a new one for ``spec`` (a
        manifest's :class:`~doorkeep.device.detect.models.InputSpec`). Detectors keep one and call this per frame."""
        if current is not None and current.width == width and current.height == height \
                and current.tile == (tile or (0, 0, width, height)):
            return current
        return cls(width=width, height=height, in_w=spec.width, in_h=spec.height, value_range=spec.value_range,
                   dtype=spec.dtype, letterbox=spec.letterbox, tile=tile)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise FrameError(f"expected a uint8 I420 frame of shape {self.frame_shape}, "
                             f"got {frame.dtype} {frame.shape}")
        flat = frame.reshape(-1)
        yl, cl = self._y_len, self._c_len
        yf = self._y(frame[: self.height])
        uf = self._u(flat[yl : yl + cl].reshape(self._u.shape))
        vf = self._v(flat[yl + cl : yl + 2 * cl].reshape(self._v.shape))
        m, off, tmp = self._m, self._off, self._tmp
        for k in range(3):
            ch = self._content[..., k]
            np.multiply(yf, m[k, 0], out=ch)
            if m[k, 1]:
                np.multiply(uf, m[k, 1], out=tmp)
                np.add(ch, tmp, out=ch)
            if m[k, 2]:
                np.multiply(vf, m[k, 2], out=tmp)
                np.add(ch, tmp, out=ch)
            np.add(ch, off[k], out=ch)
        np.clip(self._content, self._lo, self._hi, out=self._content)
        if self.output is not self._work:
            np.copyto(self.output, self._work, casting="unsafe")
        return self.output


def rgb_to_i420(rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 -> I420 ``(H*3/2, W)`` uint8, BT.601 limited range (chroma 2x2 averaged)."""
    h, w = rgb.shape[:2]
    if out is None:
        out = np.empty(i420_shape(w, h), np.uint8)
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    out[:h] = np.clip(np.rint(y), 0, 255)
    q = (h // 2) * (w // 2)
    flat = out.reshape(-1)
    for i, c in enumerate((u, v)):
        sub = c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        flat[w * h + i * q : w * h + (i + 1) * q] = np.clip(np.rint(sub), 0, 255).ravel()
    return out


def i420_to_rgb(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """I420 -> RGB ``(H, W, 3)`` uint8 (for tools and tests; not on the hot path)."""
    y = frame[:height].astype(np.float32) - 16.0
    q = (height // 2) * (width // 2)
    flat = frame.reshape(-1)
    u = flat[width * height : width * height + q].reshape(height // 2, width // 2).astype(np.float32) - 128.0
    v = flat[width * height + q : width * height + 2 * q].reshape(height // 2, width // 2).astype(np.float32) - 128.0
    u = u.repeat(2, axis=0).repeat(2, axis=1)
    v = v.repeat(2, axis=0).repeat(2, axis=1)
    rgb = np.stack([y, u, v], axis=-1) @ _YUV2RGB.T.astype(np.float32)
    out: np.ndarray = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out
