"""The device's grant check at its edges: the documented clock-skew window to the second, and signed grant bodies
that the owner's tool never builds but another or a buggy signer could (a clip listed twice, an owner key as the
recipient). Written for mutants that survived every other test in the mutation check (tests/mutation_check.py)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import nacl.public
import nacl.utils
import pytest
from doorkeep.device.errors import ReleaseError
from doorkeep.device.vault.grants import Grant, GrantClip, ReplaySet, check_grant, issue_grant
from doorkeep.device.vault.keys import SecretKeys

#: docs/security.md#clock-skew-policy: accepted when issued_at - 300 s <= now < expires_at + 300 s. Written out
#: here, not imported, so the test pins the documented policy rather than whatever the constant says.
SKEW_S = 300
DEVICE = "dk-bounds"
OWNER = SecretKeys.generate("owner")
RECIPIENT = SecretKeys.generate("recipient")
CLIPS = ("clipA", "clipB")
ISSUED = 1_800_000_000
LIFETIME = 86400


def _grant(**kw: object) -> Grant:
    sealed = {c: nacl.public.SealedBox(OWNER.public.box_key).encrypt(nacl.utils.random(32)) for c in CLIPS}
    return issue_grant(OWNER, device_id=DEVICE, sealed_keys=sealed, recipient=RECIPIENT.public, recipient_name="R",
                       purpose="p", requester="q", issued_at=ISSUED, lifetime_s=LIFETIME, **kw)  # type: ignore[arg-type]


def _check(data: bytes, now: float) -> Grant:
    with tempfile.TemporaryDirectory() as d:
        return check_grant(data, owner=OWNER.public, device_id=DEVICE, existing=CLIPS,
                           replay=ReplaySet(Path(d) / "used"), now=now)


def _reason(data: bytes, now: float) -> str:
    with pytest.raises(ReleaseError) as ei:
        _check(data, now)
    return ei.value.reason


def test_the_skew_window_holds_to_the_second() -> None:
    data = _grant().to_bytes()
    first, end = ISSUED - SKEW_S, ISSUED + LIFETIME + SKEW_S  # accepted for first <= now < end
    assert _reason(data, first - 1) == "not_yet_valid"
    _check(data, first)
    _check(data, end - 0.001)
    assert _reason(data, end) == "expired"
    assert _reason(data, end + 1) == "expired"


def test_a_clip_listed_twice_is_refused_even_when_signed() -> None:
    g = _grant()
    twice = dataclasses.replace(g, clips=(*g.clips, GrantClip(g.clips[0].clip_id, g.clips[1].sealed_key)))
    assert _reason(twice.signed(OWNER).to_bytes(), ISSUED) == "malformed"


def test_an_owner_key_as_recipient_is_refused_even_when_signed() -> None:
    g = _grant()
    owner_as_recipient = dataclasses.replace(g, recipient=dataclasses.replace(OWNER.public, role="owner"))
    assert _reason(owner_as_recipient.signed(OWNER).to_bytes(), ISSUED) == "malformed"
