"""doorkeep's configuration: one TOML file read into typed, frozen dataclasses.

Every field has a documented default (docs/config.md), so an empty file is a valid configuration. Anything refused
raises :class:`ConfigError` naming the key path (``detect.threshold``), the value and why. Unknown keys are refused
too: a typo must not silently fall back to a default. The same checks run when a section is built in code.

Sections are added by each area of the runtime; the rules and the generic loader are in ``config_fields.py``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_fields import (  # noqa: F401  (re-exported: the names sections and callers use)
    DEVICE_NAME_MAX_CHARS,
    ZONE_NAME_MAX_BYTES,
    Check,
    Section,
    check,
    device_name,
    even_positive,
    field_value,
    in_range,
    load_section,
    one_of,
    polygon,
    zone_name,
)
from .errors import ConfigError

# ---------------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DeviceSection(Section):
    #: Shown in Home Assistant: 1..64 printable characters.
    name: str = check(device_name, default="Front door")
    #: Keys, outbox, vault and audit log live here. The systemd unit sets it to /var/lib/doorkeep.
    state_dir: Path = Path("~/.local/state/doorkeep")


@dataclass(frozen=True)
class CaptureSection(Section):
    #: ``synthetic`` (built-in demo scene), ``file`` (a video file via PyAV), ``v4l2`` (a webcam via PyAV) or
    #: ``picamera2`` (the Pi camera).
    source: str = check(one_of("synthetic", "file", "v4l2", "picamera2"), default="synthetic")
    #: Video file or V4L2 device path for ``file``/``v4l2``.
    path: str = ""
    #: ``file`` source: pace frames at the file's frame rate (True) or run as fast as possible (False).
    realtime: bool = True
    #: ``file`` source: start again at the end.
    loop: bool = False
    main_width: int = check(even_positive, default=1920)
    main_height: int = check(even_positive, default=1080)
    lores_width: int = check(even_positive, default=320)
    lores_height: int = check(even_positive, default=240)
    fps: float = check(in_range(1, 120), default=30.0)
    #: Lores frames kept in the frame ring (latest-wins; readers that fall behind see drops counted).
    ring_frames: int = check(in_range(2, 1024), default=8)
    #: Seconds of encoded video kept before an event (pre-roll).
    preroll_s: float = check(in_range(0, 60), default=5.0)
    #: Hard memory bound of the pre-roll in MiB (whole GOPs are dropped to stay under it).
    preroll_max_mb: float = check(in_range(1, 512), default=32.0)
    #: H.264 keyframe interval in frames for sources that encode (bounds pre-roll granularity).
    gop: int = check(in_range(1, 600), default=30)


@dataclass(frozen=True)
class ButtonSection(Section):
    #: BCM GPIO pin of the doorbell push button (to ground, internal pull-up); -1: no GPIO button.
    pin: int = check(in_range(-1, 63), default=-1)
    #: Contact debounce in seconds (gpiozero ``bounce_time``).
    bounce_s: float = check(in_range(0.001, 1.0), default=0.05)
    #: Presses closer together than this ring once.
    holdoff_s: float = check(in_range(0.0, 60.0), default=1.0)


@dataclass(frozen=True)
class MotionSection(Section):
    #: Per-pixel luma change (0..255) that counts as changed; above sensor noise.
    pixel_threshold: int = check(in_range(1, 255), default=20)
    #: Share of (downscaled) pixels that must change for a frame to count as motion.
    min_changed: float = check(in_range(0.0, 1.0), default=0.003)
    #: Compare every ``step``-th pixel in each direction (4 → 1/16 of the pixels).
    step: int = check(in_range(1, 16), default=2)
    #: Keep running inference for this long after the last motion (people can stand still at a door).
    hold_s: float = check(in_range(0, 600), default=3.0)
    #: Time constant (seconds) of the learned background; a still object fades into it after a few of these.
    background_s: float = check(in_range(0.05, 600), default=2.0)


@dataclass(frozen=True)
class DetectSection(Section):
    """[detect] — the person detector (docs/detection.md)."""

    #: Model by manifest name: a built-in one (``doorkeep models list``) or one from ``manifests``. ``ssdlite``
    #: (the default, day and night) runs its fp16 twin on tflite-runtime under x86_64, whose int8 kernels are slow.
    model: str = "ssdlite"
    #: Person score (0..1) at or above which a detection counts; 0 = the model's own default (ssdlite: 0.62, chosen
    #: on the evaluation set's dev split; blazepose: 0.5).
    threshold: float = check(in_range(0.0, 0.99), default=0.0)
    #: Also run the model on a grid of overlapping tiles, ``[columns, rows]`` (``[0, 0]``: off). Finds smaller, far
    #: people at one extra inference per tile (docs/detection.md: measured, not the default).
    tiles: tuple[int, int] = check(lambda v: None if len(v) == 2 and all(0 <= int(x) <= 4 for x in v)
                                   and (v[0] == 0) == (v[1] == 0) else "must be [columns, rows], each 1..4, or [0, 0]",
                                   default=(0, 0))
    #: Interpreter threads.
    threads: int = check(in_range(1, 16), default=2)
    #: ``auto`` (ai-edge-litert, else tflite-runtime), ``litert`` or ``tflite``.
    runtime: str = check(one_of("auto", "litert", "tflite"), default="auto")
    #: TFLite delegate library (e.g. ``libedgetpu.so.1`` for a Coral Edge TPU; needs tflite-runtime). ``""``: none.
    delegate: str = ""
    #: The owner's own model manifest files (TOML; see docs/detection.md).
    manifests: tuple[Path, ...] = ()


@dataclass(frozen=True)
class EventsSection(Section):
    """[events] — the person event state machine (docs/detection.md)."""

    #: An event starts when a person is detected on ``k`` of the last ``n`` inferences ...
    k: int = check(in_range(1, 100), default=2)
    n: int = check(in_range(1, 100), default=3)
    #: ... and ends after this many seconds without a person.
    end_after_s: float = check(in_range(0.1, 3600), default=4.0)
    #: An event lasts at most this long; a person still there continues in a new event (a poster of a person must
    #: not hold one event, and its clip, open for ever).
    max_event_s: float = check(in_range(1, 86400), default=300.0)
    #: Smallest person box (share of the frame area) that counts.
    min_box_area: float = check(in_range(0.0, 1.0), default=0.01)
    #: Only people inside one of the [[zones]] count.
    require_zone: bool = False
    #: Point of the box tested against zones: ``foot`` (bottom centre: where the person stands) or ``centre``.
    zone_point: str = check(one_of("foot", "centre"), default="foot")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k > self.n:
            raise ConfigError("events.k", self.k, f"must be <= events.n ({self.n})")


@dataclass(frozen=True)
class ZoneSection(Section):
    """One [[zones]] entry: a named polygon, points normalised to the frame (0..1, origin top left)."""

    #: Carried in every signed event (whose 256-byte bound leaves 20 bytes for it): letters (any script), digits,
    #: space, _ and -, at most 20 bytes of UTF-8 ("Vordertür" is 10).
    name: str = check(zone_name)
    polygon: tuple[tuple[float, float], ...] = check(polygon, default=())


@dataclass(frozen=True)
class MaskSection(Section):
    """One [[masks]] entry: a privacy mask, blacked out before detection and before encoding."""

    name: str
    polygon: tuple[tuple[float, float], ...] = check(polygon, default=())


@dataclass(frozen=True)
class NightSection(Section):
    """[night] — day/night mode from the frame's chroma and the camera's lux, and the night detector (docs/night.md)."""

    #: ``auto`` (decide from the evidence), or pin ``day`` / ``night``.
    mode: str = check(one_of("auto", "day", "night"), default="auto")
    #: Evidence that decides: ``auto`` (lux once the camera reports it, else chroma), ``chroma`` or ``lux``.
    source: str = check(one_of("auto", "chroma", "lux"), default="auto")
    #: Chroma deviation from neutral (mean |U-128|, |V-128|, 0..127) below which the frame counts as grayscale.
    chroma_enter: float = check(in_range(0, 127), default=2.0)
    #: ... and above which it counts as colour again (hysteresis band between the two).
    chroma_leave: float = check(in_range(0, 127), default=5.0)
    #: Sample every ``chroma_step``-th chroma row and column (8 → 1/64 of the chroma samples).
    chroma_step: int = check(in_range(1, 64), default=8)
    #: Mean luma of the frame (16 = black .. 235 = white) below which a flat-chroma frame counts as night ...
    luma_enter: float = check(in_range(0, 255), default=70.0)
    #: ... and above which it is day again (a daylit gray wall is flat but bright).
    luma_leave: float = check(in_range(0, 255), default=95.0)
    #: libcamera ``Lux`` below which it is night ...
    lux_enter: float = check(in_range(0, 100000), default=5.0)
    #: ... and above which it is day again.
    lux_leave: float = check(in_range(0, 100000), default=15.0)
    #: libcamera ``ExposureTime`` (ms) x ``AnalogueGain`` above which it is night (the camera at its limits) ...
    exposure_enter: float = check(in_range(0, 100000), default=200.0)
    #: ... and below which it is day again.
    exposure_leave: float = check(in_range(0, 100000), default=80.0)
    #: Time constant (s) of the moving average over the measure (0 = none).
    smooth_s: float = check(in_range(0, 600), default=2.0)
    #: Minimum time (s) in a mode before it may switch again.
    dwell_s: float = check(in_range(0, 3600), default=30.0)
    #: Second model run in night mode instead of the day detector, by manifest name (``"deeplabv3"``: doorkeep's
    #: earlier night path); ``""`` (default): the day detector at night too, on the stretched luma when very dark.
    model: str = ""
    #: At night, a frame whose luma spans fewer than this many levels (``stretch_low``..``stretch_high``
    #: percentiles) is contrast-stretched before the day detector (0 = never).
    stretch_below: float = check(in_range(0, 256), default=40.0)
    #: Night mode runs the night model alone (False: ~1.5x the day step), or BlazePose first and the night model only
    #: when BlazePose found nobody (True: BlazePose's boxes when it sees someone, but up to ~2.9x the day step).
    pose_first: bool = False
    #: Night model: mean person probability over a person region that counts as a person.
    seg_threshold: float = check(in_range(0.01, 0.99), default=0.58)
    #: Night model: smallest person region, as a share of the frame, that counts.
    seg_min_area: float = check(in_range(0.0, 1.0), default=0.002)
    #: Contrast stretch of the luma in night mode: these luma percentiles map to black and white.
    stretch_low: float = check(in_range(0, 50), default=1.0)
    stretch_high: float = check(in_range(50, 100), default=99.0)
    #: BCM GPIO pin of an IR illuminator switched on in night mode (-1 = none; needs the ``pi`` extra).
    ir_led_pin: int = check(in_range(-1, 63), default=-1)
    #: BCM GPIO pin driving an IR-cut filter: active (filter in) in day mode (-1 = none).
    ir_cut_pin: int = check(in_range(-1, 63), default=-1)
    #: The IR-cut pin is active-high (True) or active-low (False).
    ir_cut_active_high: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chroma_leave <= self.chroma_enter:
            raise ConfigError("night.chroma_leave", self.chroma_leave, "must be above night.chroma_enter")
        if self.lux_leave <= self.lux_enter:
            raise ConfigError("night.lux_leave", self.lux_leave, "must be above night.lux_enter")
        if self.luma_leave <= self.luma_enter:
            raise ConfigError("night.luma_leave", self.luma_leave, "must be above night.luma_enter")
        if self.exposure_leave >= self.exposure_enter:
            raise ConfigError("night.exposure_leave", self.exposure_leave, "must be below night.exposure_enter")


@dataclass(frozen=True)
class VaultSection(Section):
    """[vault] — encrypted clip storage, retention and releases (docs/security.md, docs/formats.md)."""

    #: Record clips at all (needs a paired owner: without ``owner.pub`` nothing is recorded).
    enabled: bool = True
    #: Clip directory; empty = ``<state_dir>/vault``.
    dir: str = ""
    #: Pinned owner public key file; empty = ``<state_dir>/owner.pub`` (written by pairing).
    owner_key: str = ""
    #: Seconds recorded after the last overlapping person event ends.
    postroll_s: float = check(in_range(0, 300), default=5.0)
    #: Plaintext bytes per encrypted chunk (a chunk also ends at every keyframe).
    chunk_bytes: int = check(in_range(4096, 16 << 20), default=256 * 1024)
    #: fsync every chunk (crash loses at most the open chunk); false trades that for fewer SD-card writes.
    fsync_chunks: bool = True
    #: Delete (shred) clips older than this.
    max_age_days: float = check(in_range(0.001, 3650), default=30.0)
    #: Shred oldest clips while the vault is larger than this.
    max_bytes: int = check(in_range(1 << 20, 1 << 50), default=8 << 30)
    #: Packets buffered between the capture thread and the clip writer; overflow is dropped and counted.
    queue_packets: int = check(in_range(16, 100_000), default=2048)
    #: The audit log starts a new segment (with a signed checkpoint) when the active one would pass this size.
    audit_segment_bytes: int = check(in_range(64 << 10, 1 << 30), default=1 << 20)
    #: Drop the oldest audit segments (audited) while the log is larger than this; 0 keeps every segment.
    audit_max_bytes: int = check(in_range(0, 1 << 40), default=64 << 20)
    #: A clip is at most this long and this large; a longer recording continues in a new clip linked to it in
    #: the manifest (``prev_clip``), cut at a keyframe so every part decodes on its own.
    max_clip_s: float = check(in_range(5, 86400), default=600.0)
    max_clip_mb: float = check(in_range(1, 65536), default=512.0)
    #: Seconds between retention passes (age and size limits hold even when nothing is being recorded).
    retention_interval_s: float = check(in_range(1, 86400), default=60.0)
    #: Longest wait between retries after a storage fault (EIO, EACCES, EROFS, ...): recording resumes by itself
    #: within this long once the fault clears.
    max_retry_s: float = check(in_range(1, 3600), default=60.0)
    #: A wall-clock step larger than this (seconds; a spoofed time server, a Pi without RTC booting) is not counted
    #: in the age of clips recorded before it: retention by age never shreds because of it (audited ``clock_jump``).
    max_clock_jump_s: float = check(in_range(60, 366 * 86400), default=86400.0)
    #: MiB held back in ``<state_dir>/space.reserve`` so the audit log and the outbox can still write on a full
    #: disk (released at once when they meet ENOSPC, taken back once retention has made room). 0 disables it.
    reserve_mb: float = check(in_range(0, 1024), default=8.0)

    @property
    def reserve_bytes(self) -> int:
        return int(self.reserve_mb * (1 << 20))


@dataclass(frozen=True)
class MqttSection(Section):
    """[mqtt] — the broker the device publishes signed events to (docs/mqtt.md, docs/config.md)."""

    #: Publish events over MQTT at all.
    enabled: bool = True
    host: str = "localhost"
    port: int = check(in_range(1, 65535), default=1883)
    #: Use TLS. Implied when ``ca`` is set; without ``ca`` the system CA store is used.
    tls: bool = False
    #: CA certificate (PEM) that signed the broker's certificate.
    ca: str = ""
    #: Client certificate and key (PEM) for mutual TLS.
    cert: str = ""
    key: str = ""
    username: str = ""
    #: Prefer ``password_file`` (a file holding only the password) over putting the password here.
    password: str = field(default="", repr=False)
    password_file: str = ""
    #: MQTT client id; empty = the device id.
    client_id: str = ""
    keepalive: int = check(in_range(5, 3600), default=30)
    #: ``3.1.1`` (default) or ``5``.
    protocol: str = check(one_of("3.1.1", "5"), default="3.1.1")
    #: Reconnect backoff: first retry after ``reconnect_min_s``, doubling up to ``reconnect_max_s``.
    reconnect_min_s: int = check(in_range(1, 3600), default=1)
    reconnect_max_s: int = check(in_range(1, 3600), default=60)
    #: Announce the device to Home Assistant (device discovery) under this prefix.
    discovery: bool = True
    discovery_prefix: str = check(lambda v: None if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v) else
                                  "must be one MQTT topic level: 1..64 of A-Z a-z 0-9 _ -", default="homeassistant")
    #: Durable outbox bound (rows; about 400 bytes each). When full the oldest row is dropped and counted.
    outbox_max: int = check(in_range(10, 1_000_000), default=10_000)
    #: Messages in flight at once (awaiting PUBACK); ordered on the one connection.
    inflight: int = check(in_range(1, 100), default=16)
    #: Seconds between retained stats heartbeats.
    heartbeat_s: float = check(in_range(1, 86400), default=60.0)


@dataclass(frozen=True)
class ChannelSection(Section):
    """[channel] — what the device accepts over MQTT: owner commands and footage requests (docs/formats.md)."""

    #: Owner commands and footage requests must be issued within this many seconds of the device clock (both ways).
    max_skew_s: float = check(in_range(30, 86400), default=600.0)
    #: Owner commands: sustained rate per second and burst (a fetch asks for up to 4 MiB per command).
    command_rate: float = check(in_range(0.1, 1000), default=20.0)
    command_burst: int = check(in_range(1, 10_000), default=60)
    #: Footage requests per requester key: sustained per hour and burst (a new key starts with a full burst).
    request_per_key_per_hour: float = check(in_range(0.01, 10_000), default=6.0)
    request_per_key_burst: int = check(in_range(1, 1000), default=3)
    #: Footage requests from all requesters together: sustained per hour and burst.
    request_per_hour: float = check(in_range(0.01, 100_000), default=120.0)
    request_burst: int = check(in_range(1, 10_000), default=20)
    #: Refused messages are audited as one counted record per this many seconds (never one per message).
    refusal_audit_s: float = check(in_range(1, 86400), default=60.0)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None


@dataclass(frozen=True)
class Config(Section):
    """The whole configuration. Each field is one TOML table."""

    device: DeviceSection = field(default_factory=DeviceSection)
    capture: CaptureSection = field(default_factory=CaptureSection)
    motion: MotionSection = field(default_factory=MotionSection)
    button: ButtonSection = field(default_factory=ButtonSection)
    night: NightSection = field(default_factory=NightSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    vault: VaultSection = field(default_factory=VaultSection)
    channel: ChannelSection = field(default_factory=ChannelSection)
    detect: DetectSection = field(default_factory=DetectSection)
    events: EventsSection = field(default_factory=EventsSection)
    zones: tuple[ZoneSection, ...] = ()
    masks: tuple[MaskSection, ...] = ()

    @property
    def state_dir(self) -> Path:
        return self.device.state_dir.expanduser()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        return load_section(cls, data)  # type: ignore[no-any-return]

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        """Read a TOML file. Raises :class:`ConfigError` naming the key path on any bad value."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(str(p), "", "no such config file")
        return cls.from_dict(_load_toml(p))

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)
