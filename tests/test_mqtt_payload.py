"""The signed event payload: exact test vectors from docs/mqtt.md, the 256-byte bound, and every refusal."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import nacl.signing
import pytest
from doorkeep.device.errors import PayloadError
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.payload import (
    DOMAIN,
    MAX_BYTES,
    encode,
    payload_event_id,
    verify,
)
from doorkeep.device.publish.topics import SPECS
from hypothesis import given, settings
from hypothesis import strategies as st

DOC = Path(__file__).resolve().parents[1] / "docs" / "mqtt.md"
IDENT = DeviceIdentity(nacl.signing.SigningKey(bytes(range(32))))
OTHER = DeviceIdentity(nacl.signing.SigningKey(bytes([9]) * 32))

VECTOR_EVENTS = {
    1: Event("01JDX3Q2S8", "person", "start", 1764370000.123, 1764370000.123, None, 0.87, "porch", True),
    2: Event("01JDX3Q2S8", "person", "end", 1764370012.5, 1764370000.123, 1764370012.5, 0.91, "porch", True),
    3: Event("bell-0001", "doorbell", "press", 1764370005.0, 1764370005.0),
}


def doc_vectors() -> dict[int, bytes]:
    text = DOC.read_text()
    found = re.findall(r"<!-- vector:(\d+) -->\n```\n(.*?)\n```", text)
    return {int(n): body.encode() for n, body in found}


def test_doc_states_the_key() -> None:
    text = DOC.read_text()
    assert IDENT.public_bytes.hex() in text and IDENT.device_id in text


@pytest.mark.parametrize("n", sorted(VECTOR_EVENTS))
def test_vectors_match_docs_exactly(n: int) -> None:
    expected = doc_vectors()[n]
    assert encode(VECTOR_EVENTS[n], IDENT) == expected
    ev = verify(expected, IDENT.public_bytes)
    src = VECTOR_EVENTS[n]
    assert (ev.event_id, ev.kind, ev.phase, ev.zone, ev.clip) == (src.event_id, src.kind, src.phase, src.zone,
                                                                   src.clip)
    assert ev.t_start == pytest.approx(src.t_start, abs=1e-3)
    assert ev.score == pytest.approx(src.score, abs=0.005)


def test_every_topic_documented() -> None:
    text = DOC.read_text()
    for spec in SPECS:
        row = re.search(rf"^\| {spec.name} \|.*$", text, re.MULTILINE)
        assert row, f"topic {spec.name} is not in docs/mqtt.md"
        assert str(spec.max_bytes) in row.group(0) and str(spec.qos) in row.group(0)


def test_worst_case_fits_and_no_imagery_fields() -> None:
    ev = Event("x" * 24, "person", "end", 1764370000.0, 1764270000.0, 1764370000.0, 1.0, "z" * 20, True)
    p = encode(ev, IDENT)
    assert len(p) <= MAX_BYTES
    assert set(json.loads(p)) <= {"v", "d", "i", "k", "p", "t", "du", "s", "z", "c", "sig"}


def _resign(fields: dict, ident: DeviceIdentity = IDENT) -> bytes:
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    sig = base64.urlsafe_b64encode(ident.sign(DOMAIN + body)).rstrip(b"=")
    return body[:-1] + b',"sig":"' + sig + b'"}'


def _reason(payload: bytes, key: bytes = IDENT.public_bytes) -> str:
    with pytest.raises(PayloadError) as exc:
        verify(payload, key)
    return exc.value.reason  # type: ignore[attr-defined]


GOOD = doc_vectors()[1]


def test_tampered_byte_is_refused() -> None:
    assert _reason(GOOD.replace(b'"s":87', b'"s":97')) == "bad-signature"
    assert _reason(GOOD.replace(b"porch", b"patio")) == "bad-signature"


def test_forged_by_another_key_is_refused() -> None:
    forged = encode(VECTOR_EVENTS[1], OTHER)
    assert _reason(forged) in ("bad-signature", "wrong-device")
    # the forger even claims our device id: still refused
    fields = json.loads(GOOD)
    del fields["sig"]
    assert _reason(_resign(fields, OTHER)) == "bad-signature"


def test_unsigned_refused() -> None:
    fields = json.loads(GOOD)
    del fields["sig"]
    assert _reason(json.dumps(fields).encode()) == "unsigned"


def test_signature_not_last_is_malformed() -> None:
    fields = json.loads(GOOD)
    assert _reason(json.dumps(fields, sort_keys=True).encode()) == "malformed"


def test_too_big_refused() -> None:
    assert _reason(GOOD[:-2] + b" " * 300 + GOOD[-2:]) == "too-big"


def test_wrong_version_refused() -> None:
    fields = json.loads(GOOD)
    del fields["sig"]
    fields["v"] = 2
    assert _reason(_resign(fields)) == "wrong-version"


def test_wrong_device_refused() -> None:
    fields = json.loads(GOOD)
    del fields["sig"]
    fields["d"] = OTHER.device_id
    assert _reason(_resign(fields)) == "wrong-device"


def test_extra_field_refused_even_if_signed() -> None:
    fields = json.loads(GOOD)
    del fields["sig"]
    fields["box"] = [1, 2, 3, 4]
    assert _reason(_resign(fields)) == "malformed"


def test_non_canonical_body_refused() -> None:
    fields = json.loads(GOOD)
    del fields["sig"]
    body = json.dumps(fields, sort_keys=True, separators=(", ", ":")).encode()
    sig = base64.urlsafe_b64encode(IDENT.sign(DOMAIN + body)).rstrip(b"=")
    assert _reason(body[:-1] + b',"sig":"' + sig + b'"}') == "not-canonical"


def test_not_bytes_refused() -> None:
    with pytest.raises(PayloadError):
        verify("text", IDENT.public_bytes)  # type: ignore[arg-type]


def test_unencodable_events_refused() -> None:
    with pytest.raises(PayloadError):
        encode(Event("a", "person", "press", 1.0, 1.0), IDENT)
    with pytest.raises(PayloadError):
        encode(Event("a", "person", "start", 1.0, 1.0, zone="a" * 21), IDENT)
    with pytest.raises(PayloadError):
        encode(Event("a", "person", "start", 1.0, 1.0, score=1.5), IDENT)


def test_long_event_ids_are_digested_stably() -> None:
    long_id = "person-event-0123456789abcdef-0123456789abcdef"
    assert payload_event_id(long_id) == payload_event_id(long_id)
    assert len(payload_event_id(long_id)) <= 24 and payload_event_id("short-id") == "short-id"


@settings(max_examples=200, deadline=None)
@given(
    event_id=st.text(min_size=1, max_size=60),
    kind_phase=st.sampled_from([("person", "start"), ("person", "end"), ("doorbell", "press")]),
    t=st.floats(min_value=0, max_value=4e9),
    dur=st.floats(min_value=0, max_value=1e7),
    score=st.floats(min_value=0, max_value=1),
    zone=st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_characters='"\\'), min_size=1, max_size=5)
                   .filter(str.isprintable)),
    clip=st.booleans(),
)
def test_roundtrip_any_event(event_id, kind_phase, t, dur, score, zone, clip) -> None:
    kind, phase = kind_phase
    t_end = t + dur if phase == "end" else None
    ev = Event(event_id, kind, phase, t_end if t_end is not None else t, t, t_end, score, zone, clip)
    p = encode(ev, IDENT)
    assert len(p) <= MAX_BYTES
    got = verify(p, IDENT.public_bytes)
    assert got.event_id == payload_event_id(event_id) and got.phase == phase and got.zone == zone
    assert got.t_start == pytest.approx(t, abs=2e-3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_verifies(data: bytes) -> None:
    with pytest.raises(PayloadError):
        verify(data, IDENT.public_bytes)


def test_fit_zone_makes_any_name_encodable() -> None:
    from doorkeep.device.publish.payload import fit_zone

    assert fit_zone("porch") == "porch" and fit_zone(None) is None
    assert fit_zone("Front porch by the garage door") == "Front porch by the g"
    long_utf8 = fit_zone('Vorgarten “Süd” "x" ümlaut')
    assert long_utf8 is not None and len(long_utf8.encode()) <= 20 and '"' not in long_utf8
    encode(Event("a", "person", "start", 1.0, 1.0, zone=long_utf8), IDENT)
