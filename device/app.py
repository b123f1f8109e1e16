"""``Doorbell``: the small composition a vendor embeds — source, frame ring, pre-roll, motion gate, loop, stats.

Detection, publishing and the vault attach through keyword seams (``detector``, ``tracker``, ``event_sinks``,
``packet_sinks``, ``lores_filters``, ``main_filters``, ``on_metadata``); nothing here knows MQTT or crypto.

Example::

    from doorkeep.device.app import Doorbell
    from doorkeep.device.config import Config
    from doorkeep.device.loop import stop_on_signals

    bell = Doorbell.from_config(Config.from_toml("/etc/doorkeep.toml"), detector=my_detector, tracker=my_tracker,
                                event_sinks=[my_publisher])
    with stop_on_signals() as stop, bell:
        stop.wait()
    print(bell.stats.snapshot())
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from .config import Config
from .detect.pipeline import DetectionPipeline
from .detections import Detector
from .events import EventSink, Tracker
from .frames import PacketSink
from .gate import MotionGate
from .loop import CaptureLoop, FrameHook
from .preroll import PacketRing
from .rings import FrameFilter, FrameRing
from .sources import open_source
from .sources.base import FrameSource, MainFilter, MetadataHook
from .stats import Stats
from .worker import Worker


class Doorbell:
    """A running doorbell pipeline. Build with :meth:`from_config`; ``start``/``stop`` or use ``with``.

    Attributes: ``config``, ``source``, ``ring`` (lores :class:`FrameRing`), ``preroll`` (:class:`PacketRing`; the
    vault calls ``preroll.flush_into(clip)``), ``pipeline`` (the
    :class:`~doorkeep.device.detect.pipeline.DetectionPipeline` the detect thread runs), ``gate`` (its motion
    gate), ``loop``, ``stats``.
    """

    def __init__(self, *, config: Config, source: FrameSource, ring: FrameRing, preroll: PacketRing,
                 loop: CaptureLoop, stats: Stats) -> None:
        self.config = config
        self.source = source
        self.ring = ring
        self.preroll = preroll
        self.loop = loop
        self.pipeline = loop.pipeline
        self.stats = stats

    @property
    def gate(self) -> MotionGate | None:
        return self.pipeline.gate

    @classmethod
    def from_config(cls, config: Config, *, source: FrameSource | None = None, detector: Detector | None = None,
                    tracker: Tracker | None = None, event_sinks: Sequence[EventSink] = (),
                    packet_sinks: Sequence[PacketSink] = (), lores_filters: Sequence[FrameFilter] = (),
                    main_filters: Sequence[MainFilter] = (), on_metadata: MetadataHook | None = None,
                    on_frame: FrameHook | None = None, stats: Stats | None = None) -> Doorbell:
        """Compose the pipeline from ``config`` (source from ``[capture]`` unless ``source`` is given).

        The detect thread runs ``DetectionPipeline(gate=<from [motion]>, detector=detector, tracker=tracker)``.
        ``main_filters`` are added to the given ``source``'s own; filters built for a frame size must match the
        source's (``source.main_size``/``source.lores_size``). A source opened here is closed again if anything
        after it fails. Raises ``ConfigError``/``CaptureError``.
        """
        if source is None:
            opened = open_source(config.capture, main_filters=main_filters, on_metadata=on_metadata)
            try:
                return cls._compose(config, opened, detector=detector, tracker=tracker, event_sinks=event_sinks,
                                    packet_sinks=packet_sinks, lores_filters=lores_filters, on_frame=on_frame,
                                    stats=stats)
            except BaseException:
                opened.close()
                raise
        source.main_filters.extend(main_filters)
        if on_metadata is not None:
            source.on_metadata = on_metadata
        return cls._compose(config, source, detector=detector, tracker=tracker, event_sinks=event_sinks,
                            packet_sinks=packet_sinks, lores_filters=lores_filters, on_frame=on_frame, stats=stats)

    @classmethod
    def _compose(cls, config: Config, source: FrameSource, *, detector: Detector | None, tracker: Tracker | None,
                 event_sinks: Sequence[EventSink], packet_sinks: Sequence[PacketSink],
                 lores_filters: Sequence[FrameFilter], on_frame: FrameHook | None, stats: Stats | None) -> Doorbell:
        cap = config.capture
        lw, lh = source.lores_size
        ring = FrameRing(width=lw, height=lh, frames=cap.ring_frames, lores_filters=lores_filters)
        preroll = PacketRing(seconds=cap.preroll_s, max_bytes=int(cap.preroll_max_mb * (1 << 20)))
        source.attach(ring=ring, packet_sinks=[preroll, *packet_sinks])
        gate = MotionGate.from_config(config.motion, width=lw, height=lh)
        stats = stats or Stats()
        stats.gauge("preroll_bytes", lambda: preroll.bytes)
        pipeline = DetectionPipeline(gate=gate, detector=detector, tracker=tracker)
        loop = CaptureLoop(source, ring, pipeline, event_sinks=event_sinks, stats=stats, on_frame=on_frame)
        return cls(config=config, source=source, ring=ring, preroll=preroll, loop=loop, stats=stats)

    @property
    def workers(self) -> list[Worker]:
        """The pipeline's supervised threads: the source's (capture) and the loop's (detect, events)."""
        return [*self.source.workers, *self.loop.workers]

    def start(self) -> None:
        """Start the loop and the source."""
        self.loop.start()

    def stop(self) -> None:
        """Stop the source and the workers (idempotent)."""
        self.loop.stop()

    def close(self) -> None:
        """Stop and release the source (idempotent)."""
        self.loop.stop()
        self.source.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
