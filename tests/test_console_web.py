"""The console's web security and session rules, over HTTP (Starlette's TestClient; no browser, no broker):
locked pages redirect, the cookie is HttpOnly + SameSite=Strict, state changes need this origin and the CSRF token,
foreign Host headers are refused, every response carries the strict CSP, nothing is loaded from the network,
wrong passphrases are throttled, idle locks the key and wipes what listeners hold; forged events never show."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import nacl.signing
import pytest
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.payload import encode
from doorkeep.device.vault import keys
from doorkeep.tools.console.feed import MqttFeed
from doorkeep.tools.console.session import Locked, OwnerSession, UnlockThrottled
from doorkeep.tools.console.timeline import LiveState

# The web stack is imported inside the tests: the tflite-runtime venv collects this module without it.

PASS = b"correct horse"
HOST = "testserver"
CONSOLE_DIR = Path(__file__).resolve().parent.parent / "tools" / "console"


@pytest.fixture(scope="module")
def owner_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("owner") / "owner.key"
    keys.SecretKeys.generate("owner").save(path, PASS, limits=keys.MIN)
    return path


@pytest.fixture
def device() -> DeviceIdentity:
    return DeviceIdentity(nacl.signing.SigningKey(bytes([9]) * 32))


def TestClient(*args, **kw):  # starlette's class, imported late
    from starlette.testclient import TestClient as Client

    return Client(*args, **kw)


@pytest.fixture
def app(owner_key: Path, device: DeviceIdentity):
    from doorkeep.tools.console.web import Console, build_app

    session = OwnerSession(owner_key, idle_s=600)
    c = Console(session, LiveState(device.device_id), device.public_bytes, device_name="Front door", broker="x:1")
    return build_app(c, hosts={HOST}), c


def unlocked(app) -> TestClient:
    client = TestClient(app[0], follow_redirects=False)
    r = client.post("/unlock", data={"passphrase": PASS.decode()}, headers={"origin": f"http://{HOST}"})
    assert r.status_code == 303 and r.headers["location"] == "/timeline"
    return client


def test_a_locked_console_redirects_every_page_to_unlock(app) -> None:
    client = TestClient(app[0], follow_redirects=False)
    for page in ("/timeline", "/device"):
        r = client.get(page)
        assert r.status_code == 303 and r.headers["location"] == "/unlock", page
    assert client.get("/api/stream").status_code == 401
    assert client.get("/unlock").status_code == 200


def test_unlock_sets_an_httponly_samesite_strict_session_cookie(app) -> None:
    client = TestClient(app[0], follow_redirects=False)
    r = client.post("/unlock", data={"passphrase": PASS.decode()}, headers={"origin": f"http://{HOST}"})
    cookie = r.headers["set-cookie"]
    assert "dk_console=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert client.get("/timeline").status_code == 200


def test_the_owner_public_key_is_offered_for_recipients_and_only_while_unlocked(app, owner_key: Path) -> None:
    locked = TestClient(app[0], follow_redirects=False).get("/owner.key.pub")
    assert locked.status_code == 303 and locked.headers["location"] == "/unlock"
    client = unlocked(app)
    r = client.get("/owner.key.pub")
    assert r.status_code == 200 and 'filename="owner.key.pub"' in r.headers["content-disposition"]
    pub = keys.PublicKeys.from_json(r.json(), what="owner key")
    assert pub == keys.SecretKeys.load(owner_key, PASS, role="owner").public
    assert "secret" not in r.text.lower() and len(r.content) < 400
    assert 'href="/owner.key.pub"' in client.get("/requests").text


def test_state_changes_need_the_csrf_token_and_this_origin(app) -> None:
    client = unlocked(app)
    assert client.post("/lock", data={}).status_code == 403
    assert client.post("/lock", data={"csrf": "guess"}).status_code == 403
    csrf = app[1].session.csrf(client.cookies.get("dk_console"))
    foreign = client.post("/lock", data={"csrf": csrf}, headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403 and app[1].session.unlocked
    r = client.post("/lock", data={"csrf": csrf}, headers={"origin": f"http://{HOST}"})
    assert r.status_code == 303 and not app[1].session.unlocked
    assert client.get("/timeline").status_code == 303


def test_a_foreign_host_header_is_refused(app) -> None:
    client = TestClient(app[0], base_url="http://attacker.example", follow_redirects=False)
    assert client.get("/unlock").status_code == 421


def test_every_response_carries_the_strict_headers(app) -> None:
    from doorkeep.tools.console.web import CSP

    client = unlocked(app)
    for path in ("/unlock", "/timeline", "/static/console.css"):
        h = client.get(path).headers
        assert h["content-security-policy"] == CSP
        assert h["x-frame-options"] == "DENY" and h["cache-control"] == "no-store"


def test_no_template_or_static_file_loads_anything_from_the_network() -> None:
    files = [*CONSOLE_DIR.glob("templates/*.html"), *CONSOLE_DIR.glob("static/*")]
    assert files
    remote = re.compile(r"""(?:src|href|url\()\s*=?\s*["']?(?:https?:)?//""", re.I)
    for f in files:
        text = f.read_text(errors="replace")
        assert not remote.search(text), f"{f.name} references a remote resource"
        assert "<script>" not in text.replace(" ", ""), f"{f.name}: inline script (the CSP forbids it)"
        assert "style=" not in text, f"{f.name}: inline style (the CSP forbids it)"


def test_wrong_passphrases_are_throttled(owner_key: Path) -> None:
    now = [100.0]
    s = OwnerSession(owner_key, clock=lambda: now[0])
    with pytest.raises(keys.PassphraseError):
        s.unlock(b"nope")
    with pytest.raises(UnlockThrottled):
        s.unlock(PASS)  # even the right one waits out the delay
    now[0] += 0.6
    with pytest.raises(keys.PassphraseError):
        s.unlock(b"nope again")
    now[0] += 0.6
    with pytest.raises(UnlockThrottled):
        s.unlock(PASS)  # the delay doubled
    now[0] += 0.5
    assert s.unlock(PASS)


def test_idle_locks_the_key_and_tells_listeners(owner_key: Path) -> None:
    s = OwnerSession(owner_key, idle_s=0.3)
    reasons: list[str] = []
    s.on_lock(reasons.append)
    s.start()
    try:
        token = s.unlock(PASS)
        assert s.keys(token).role == "owner"
        deadline = time.monotonic() + 10
        while s.unlocked and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not s.unlocked and reasons and "idle" in reasons[0]
        with pytest.raises(Locked):
            s.keys(token)
    finally:
        s.close()


def test_a_new_unlock_ends_the_previous_session(owner_key: Path) -> None:
    s = OwnerSession(owner_key)
    first = s.unlock(PASS)
    second = s.unlock(PASS)
    assert not s.valid(first) and s.valid(second)


def test_forged_and_tampered_events_are_counted_and_never_shown(device: DeviceIdentity) -> None:
    from doorkeep.device.config import MqttSection

    state = LiveState(device.device_id)
    feed = MqttFeed(MqttSection(host="127.0.0.1", port=1), device_key=device.public_bytes, state=state)
    t = time.time()
    good = encode(Event("ev1", "person", "start", t, t, None, 0.9, "porch", True), device)
    forger = DeviceIdentity(nacl.signing.SigningKey(bytes([8]) * 32))
    forged = encode(Event("ev2", "person", "start", t, t, None, 0.9, "porch", True), forger)
    tampered = good.replace(b'"s":90', b'"s":91')
    for payload in (forged, tampered, good):
        feed._on_event(feed.topics.event, payload)
    assert [v.event_id for v in state.visits()] == ["ev1"]
    assert state.health.rejected == 2


def test_settings_edit_the_applied_configuration_and_keep_what_the_page_does_not_show() -> None:
    from doorkeep.device.config import Config
    from doorkeep.tools.console.pages_settings import edited_table, page_values

    applied = {"mqtt": {"host": "hub.local", "port": 8883}, "night": {"mode": "day"},
               "masks": [{"name": "old", "polygon": [[0, 0], [0.1, 0], [0.1, 0.1]]}]}
    body = {**page_values(applied), "masks": [{"name": "neighbour", "polygon": [[0.8, 0], [1, 0], [1, 1], [0.8, 1]]}]}
    new = edited_table(applied, body)
    assert new["mqtt"] == applied["mqtt"] and new["night"] == applied["night"]
    assert [m["name"] for m in new["masks"]] == ["neighbour"]
    assert "detect" not in new and "vault" not in new  # unchanged values are not written
    assert Config.from_dict(new).masks[0].polygon[1] == (1.0, 0.0)
    tighter = edited_table(applied, {**body, "threshold": 0.7, "max_gb": 2})
    assert tighter["detect"] == {"threshold": 0.7} and tighter["vault"] == {"max_bytes": 2_000_000_000}


def test_settings_know_when_they_remove_a_privacy_mask_as_the_device_does() -> None:
    from doorkeep.tools.console.pages_settings import edited_table, page_values, removes_masks

    applied = {"masks": [{"name": "hedge", "polygon": [[0, 0], [0.1, 0], [0.1, 0.1]]}]}
    kept = edited_table(applied, {**page_values(applied), "masks": [
        *applied["masks"], {"name": "street", "polygon": [[0.5, 0.5], [1, 0.5], [1, 1]]}]})
    assert removes_masks(applied, kept) == []
    gone = edited_table(applied, {**page_values(applied), "masks": []})
    assert removes_masks(applied, gone) == ["hedge"]
    assert "allow-removal" in (CONSOLE_DIR / "templates" / "settings.html").read_text()


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doorkeep.tools.cli", "console", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_console_command_refuses_bad_input_in_one_line(tmp_path: Path, owner_key: Path, device) -> None:
    from doorkeep.provisioning.owner_state import DeviceBook

    r = _cli("--key", str(tmp_path / "nope.key"), "--broker", "127.0.0.1")
    assert r.returncode == 2 and r.stderr.startswith("doorkeep: --key") and "Traceback" not in r.stderr
    r = _cli("--key", str(owner_key), "--broker", "127.0.0.1", "--book", str(tmp_path / "empty.json"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "paired" in r.stderr
    book = DeviceBook(tmp_path / "devices.json")
    book.pin(device.device_id, device.public_bytes)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        r = _cli("--key", str(owner_key), "--broker", "127.0.0.1", "--book", str(book.path),
                 "--port", str(taken.getsockname()[1]))
    assert r.returncode == 1 and r.stderr.startswith("doorkeep: cannot listen on 127.0.0.1:")
    assert "Traceback" not in r.stderr


def test_the_furthest_audit_head_is_kept_between_runs_and_a_rollback_is_flagged(tmp_path: Path, device) -> None:
    from doorkeep.device.config import MqttSection
    from doorkeep.device.publish.heartbeat import heartbeat_payload

    heads = tmp_path / "console-heads.json"
    settings = MqttSection(host="127.0.0.1", port=1)
    first = MqttFeed(settings, device_key=device.public_bytes, state=LiveState(device.device_id), heads=heads)
    first._on_stats("t", heartbeat_payload({}, identity=device, audit_head=(12, "ab" * 32)))
    assert heads.exists() and (heads.stat().st_mode & 0o777) == 0o600
    later = MqttFeed(settings, device_key=device.public_bytes, state=LiveState(device.device_id), heads=heads)
    assert later.heartbeats.seen is not None and later.heartbeats.seen.records == 12
    later._on_stats("t", heartbeat_payload({}, identity=device, audit_head=(5, "cd" * 32)))  # rolled back
    assert "went back" in later.state.health.audit_warning
    assert later.heartbeats.seen.records == 12  # the rollback does not lower what was seen


def test_the_clip_list_is_fetched_again_after_a_visit_with_a_clip_ends_or_the_doorbell_rang(device) -> None:
    from doorkeep.device.config import MqttSection
    from doorkeep.device.publish.payload import VerifiedEvent
    from doorkeep.tools.console.link import DeviceLink

    state = LiveState(device.device_id)
    link = DeviceLink(MqttSection(host="127.0.0.1", port=1), device_key=device.public_bytes, state=state)
    pokes: list[str] = []
    link.refresher.poke = lambda delay=None: pokes.append("poke")  # type: ignore[method-assign]

    def ev(eid: str, kind: str, phase: str, t_end: float | None, clip: bool = True) -> VerifiedEvent:
        return VerifiedEvent(device.device_id, eid, kind, phase, 1.7e9, 1.7e9, t_end, 0.9, None, clip)

    state.add_event(ev("a" * 16, "person", "start", None))
    assert pokes == []  # still at the door: the clip is still recording
    state.add_event(ev("a" * 16, "person", "end", 1.7e9 + 5))
    assert pokes == ["poke"]
    state.add_event(ev("b" * 16, "doorbell", "press", None))
    assert pokes == ["poke", "poke"]  # a press never ends: its clip closes after the post-roll all the same
    state.add_event(ev("c" * 16, "doorbell", "press", None, clip=False))
    assert pokes == ["poke", "poke"]


def test_a_change_between_the_timeline_render_and_its_stream_is_sent_when_the_stream_connects(app, device) -> None:
    from doorkeep.device.publish.payload import VerifiedEvent

    c = app[1]
    client = unlocked(app)
    c.state.add_event(VerifiedEvent(device.device_id, "e" * 16, "person", "end", 1.7e9, 1.7e9 - 7, 1.7e9, 0.9,
                                    None, True))
    page = client.get("/timeline").text
    since = int(re.search(r'data-since="(\d+)"', page).group(1))
    assert since == c.state.version() and "/thumb/" not in page
    # The clip list arrives (the thumbnail) after the page was rendered, before the browser opened the stream.
    c.state.attach_clip("e" * 16, "20261201T120000Z-abcdef12")
    assert c.state.changed_since(since) == ["e" * 16] and c.state.changed_since(c.state.version()) == []
    with client.stream("GET", f"/api/stream?since={since}") as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(4)]
    assert got[2] == "event: visit" and "/thumb/20261201T120000Z-abcdef12.jpg" in got[3], got

