"""Frame sources behind one small interface (:class:`~.base.FrameSource`): picamera2, PyAV (file/V4L2), synthetic.

:func:`open_source` builds the one named by the ``[capture]`` config section; each implementation is imported only
when chosen (picamera2 and PyAV are heavy, and picamera2 only exists on a Pi).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import CaptureSection
from ..errors import ConfigError
from .base import FrameSource, MainFilter, MetadataHook

__all__ = ["FrameSource", "open_source"]


def open_source(capture: CaptureSection, *, main_filters: Sequence[MainFilter] = (),
                on_metadata: MetadataHook | None = None) -> FrameSource:
    """Build the source ``capture.source`` names, configured from the section.

    Raises:
        ConfigError: ``capture.path`` missing for ``file``/``v4l2``.
        CaptureError: the file/device/camera cannot be opened.
    """
    c = capture
    common: dict[str, Any] = {"main_filters": main_filters, "on_metadata": on_metadata}
    if c.source == "synthetic":
        from .synthetic import SyntheticSource

        return SyntheticSource(width=c.main_width, height=c.main_height, lores_width=c.lores_width,
                               lores_height=c.lores_height, fps=c.fps, gop=c.gop, realtime=c.realtime, **common)
    if c.source in ("file", "v4l2"):
        if not c.path:
            raise ConfigError("capture.path", c.path, f"required when capture.source = {c.source!r}")
        from .pyav import PyAVSource

        opts = {"video_size": f"{c.main_width}x{c.main_height}", "framerate": f"{c.fps:g}"} if c.source == "v4l2" \
            else None
        return PyAVSource(path=c.path, v4l2=c.source == "v4l2", input_options=opts, realtime=c.realtime,
                          loop=c.loop, gop=c.gop, lores_width=c.lores_width, lores_height=c.lores_height, **common)
    from .picam import PicameraSource

    return PicameraSource(width=c.main_width, height=c.main_height, lores_width=c.lores_width,
                          lores_height=c.lores_height, fps=c.fps, gop=c.gop, **common)
