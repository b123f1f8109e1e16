"""The person event state machine and zones (pure: time comes in with every call)."""

from __future__ import annotations

import itertools

import pytest
from doorkeep.device.detections import Detection
from doorkeep.device.errors import EventError
from doorkeep.device.person_events import PersonTracker
from doorkeep.device.zones import Zone, zone_of

P = Detection(score=0.8, x0=0.4, y0=0.2, x1=0.6, y1=0.9)  # a person standing at the door
TINY = Detection(score=0.9, x0=0.0, y0=0.0, x1=0.05, y1=0.05)


def _ids():
    c = itertools.count()
    return lambda: f"id{next(c)}"


def run(tracker, frames):
    out = []
    for t, dets in frames:
        out += tracker.update(t, dets)
    return out


def test_k_of_n_start_then_end_after_timeout():
    tr = PersonTracker(k=2, n=3, end_after_s=4.0, new_id=_ids())
    evs = run(tr, [(0.0, []), (1.0, [P]), (2.0, []), (3.0, [P]), (4.0, [P]), (5.0, []), (6.0, None),
                   (7.9, []), (8.0, None)])
    assert [(e.phase, e.t) for e in evs] == [("start", 3.0), ("end", 8.0)]
    start, end = evs
    assert start.t_start == 1.0 and start.event_id == end.event_id == "id0"
    assert end.t_end == 4.0 and end.score == pytest.approx(0.8) and start.kind == "person"


def test_a_single_noisy_hit_starts_nothing():
    tr = PersonTracker(k=2, n=3, end_after_s=1.0)
    assert run(tr, [(0, [P]), (1, []), (2, []), (3, [P]), (4, []), (5, [])]) == []


def test_event_ends_by_time_even_when_no_inference_runs():
    tr = PersonTracker(k=1, n=1, end_after_s=2.0)
    evs = run(tr, [(0.0, [P]), (1.0, None), (2.5, None)])
    assert [e.phase for e in evs] == ["start", "end"]


def test_min_box_area_ignores_tiny_boxes():
    tr = PersonTracker(k=1, n=1, min_box_area=0.01)
    assert run(tr, [(0, [TINY]), (1, [TINY])]) == []


def test_zones_name_the_event_and_can_be_required():
    porch = Zone("porch", ((0.3, 0.5), (0.7, 0.5), (0.7, 1.0), (0.3, 1.0)))
    street = Zone("street", ((0.0, 0.0), (1.0, 0.0), (1.0, 0.3), (0.0, 0.3)))
    assert zone_of(P, [street, porch]) == "porch"  # foot point (0.5, 0.9)
    assert zone_of(P, [street, porch], "centre") == "porch"  # centre (0.5, 0.55)
    assert zone_of(P, [street]) is None
    far = Detection(score=0.9, x0=0.0, y0=0.0, x1=0.2, y1=0.25)
    tr = PersonTracker(k=1, n=1, zones=[street, porch], require_zone=True, new_id=_ids())
    assert run(tr, [(0, [far])])[0].zone == "street"
    tr = PersonTracker(k=1, n=1, zones=[porch], require_zone=True)
    assert run(tr, [(0, [far]), (1, [far])]) == []
    assert run(tr, [(2, [P])])[0].zone == "porch"


def test_ids_are_unique_across_events():
    tr = PersonTracker(k=1, n=1, end_after_s=1.0)
    evs = run(tr, [(0, [P]), (2, []), (3, [P]), (5, [])])
    starts = [e for e in evs if e.phase == "start"]
    assert len(starts) == 2 and starts[0].event_id != starts[1].event_id and len(starts[0].event_id) == 16


def test_bad_parameters_are_refused():
    with pytest.raises(EventError):
        PersonTracker(k=4, n=3)
    with pytest.raises(EventError, match="zones"):
        PersonTracker(require_zone=True)
    with pytest.raises(EventError, match="outside"):
        Zone("x", ((0, 0), (2, 0), (1, 1)))


def test_clock_stepped_back_is_held_not_fatal():
    tr = PersonTracker(k=1, n=1, end_after_s=2.0)
    assert [e.phase for e in tr.update(100.0, [P])] == ["start"]
    assert tr.update(50.0, [P]) == []  # NTP stepped the clock back: held at 100.0
    (end,) = tr.update(103.0, [])
    assert end.phase == "end" and end.t_start == 100.0 and end.t_end == 100.0 and end.t >= end.t_end


def test_from_config():
    from doorkeep.device.config import Config

    cfg = Config.from_dict({"events": {"k": 1, "n": 2, "require_zone": True},
                            "zones": [{"name": "porch", "polygon": [[0.3, 0.5], [0.7, 0.5], [0.7, 1], [0.3, 1]]}]})
    tr = PersonTracker.from_config(cfg)
    assert (tr.k, tr.n, tr.require_zone, tr.zones[0].name) == (1, 2, True, "porch")
