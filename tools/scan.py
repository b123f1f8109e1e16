"""``doorkeep scan`` core: replay a video file through the device's detection path as fast as possible."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from doorkeep.device.errors import CaptureError


def lores_frames(path: Path, *, width: int, height: int) -> Iterator[tuple[float, np.ndarray]]:
    """Decode ``path`` with PyAV, scaled to ``width`` x ``height`` I420, yielding ``(t_seconds, frame)``.

    One preallocated frame array is reused: consume it before asking for the next one.
    """
    import av
    from doorkeep.device.frames import chroma_planes, i420_shape

    try:
        container = av.open(str(path))
    except (OSError, av.error.FFmpegError) as exc:
        raise CaptureError(f"cannot open video {path}: {exc}") from exc
    out = np.empty(i420_shape(width, height), np.uint8)
    u, v = chroma_planes(out, width, height)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else 0.0
        rate = float(stream.average_rate or 30)
        for i, vf in enumerate(container.decode(stream)):
            t = vf.pts * tb if vf.pts is not None and tb else i / rate
            s = vf.reformat(width=width, height=height, format="yuv420p")
            for dst, plane in ((out[:height], s.planes[0]), (u, s.planes[1]), (v, s.planes[2])):
                h, w = dst.shape
                np.copyto(dst, np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[:h, :w])
            yield t, out


def video_duration(path: Path) -> float | None:
    """Length of a video file in seconds, when its container says (for progress only)."""
    import av

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            if s.duration is not None and s.time_base:
                return float(s.duration * s.time_base)
            return c.duration / 1e6 if c.duration else None
    except (OSError, IndexError, av.error.FFmpegError):
        return None  # lores_frames reports the real problem


def scan_video(path: Path, config: Any, *, detector: Any, gate: bool = True,
               progress: Callable[[float, float | None], None] | None = None) -> tuple[list[dict], dict]:  # type: ignore[type-arg]
    """Events (as JSON-ready dicts) and a summary for ``path`` run through mask, gate, detector and events.

    ``progress(seconds_done, seconds_total)`` is called per frame (total ``None`` when the file does not say).
    """
    from doorkeep.device.detect.pipeline import DetectionPipeline

    # Every source delivers lores frames at the configured lores size, whatever the video's size: the same size,
    # mask and gate as the device.
    size = (config.capture.lores_width, config.capture.lores_height)
    pipe = DetectionPipeline.from_config(config, detector=detector, size=size, gate=gate)
    events: list[dict] = []  # type: ignore[type-arg]
    open_: dict[str, dict] = {}  # type: ignore[type-arg]
    modes: list[dict] = []  # type: ignore[type-arg]  # each switch of the judged mode: {"mode", "t_s"}
    night_inferences = 0
    t = 0.0
    night = getattr(detector, "mode", None)
    if night is not None:  # smoothing and dwell run on the footage's time, not on how fast we replay it
        night.clock = lambda: t
    mode = "day"
    total = video_duration(path) if progress is not None else None
    for t, frame in lores_frames(path, width=size[0], height=size[1]):
        if progress is not None:
            progress(t, total)
        transitions = pipe.step(frame, t)
        if pipe.last is not None:  # an inference ran: the detector judged this frame's mode
            mode = getattr(detector, "last_mode", "day")
            night_inferences += mode == "night"
            if not modes or modes[-1]["mode"] != mode:
                modes.append({"mode": mode, "t_s": round(t, 3)})
        for ev in transitions:
            if ev.phase == "start":
                open_[ev.event_id] = {"event_id": ev.event_id, "start_s": round(ev.t_start, 3), "end_s": None,
                                      "score": round(ev.score, 3), "zone": ev.zone, "mode": mode}
            else:
                rec = open_.pop(ev.event_id)
                rec.update(end_s=round(ev.t_end if ev.t_end is not None else ev.t, 3), score=round(ev.score, 3))
                events.append(rec)
    if progress is not None:
        progress(total or t, total or t)
    events.extend(open_.values())  # still open at the end of the file: end_s stays null
    c = pipe.counts
    summary = {"frames": c.frames, "inferences": c.inferences, "skipped": c.skipped, "events": len(events),
               "duration_s": round(t, 3), "night_inferences": night_inferences, "modes": modes}
    return sorted(events, key=lambda e: e["start_s"]), summary
