"""The owner's unlocked key and the one browser session allowed to use it.

The owner's secret key file stays encrypted on disk (argon2id + SecretBox, device/vault/keys.py). ``unlock`` opens
it with the passphrase into memory and starts ONE session (a new unlock replaces the old one); ``lock`` — the Lock
button, or ``idle_s`` without a request — drops the keys and the session and tells listeners (the media cache wipes
its plaintext). Failed passphrases are throttled (doubling delay) and unlocks are serialised, so a local process
cannot guess passphrases quickly nor make the console run several 256 MiB argon2id derivations at once.

The session token travels only in an HttpOnly, SameSite=Strict cookie; every state-changing request also carries
the session's CSRF token (a form field or the ``X-CSRF-Token`` header), compared in constant time.

Example::

    session = OwnerSession(Path("~/.config/doorkeep/owner.key"), idle_s=600)
    token = session.unlock(b"passphrase")       # PassphraseError, UnlockThrottled
    session.keys(token)                          # SecretKeys, or Locked
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from doorkeep.device.errors import DoorkeepError
from doorkeep.device.vault.keys import PassphraseError, SecretKeys
from doorkeep.device.worker import Worker

log = logging.getLogger(__name__)

#: Longest wait imposed after repeated wrong passphrases.
MAX_THROTTLE_S = 60.0


class Locked(DoorkeepError):
    """The console is locked (never unlocked, locked by the owner, or idle too long)."""


class UnlockThrottled(DoorkeepError):
    """Too many wrong passphrases: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many wrong passphrases; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass
class _Active:
    token: str
    csrf: str
    keys: SecretKeys
    last_use: float

    def __repr__(self) -> str:
        return "_Active(token redacted, keys redacted)"


class OwnerSession:
    """Unlock/lock of the owner key and the single console session.

    Args:
        key_path: the owner's secret key file (``doorkeep owner keygen``).
        idle_s: lock after this many seconds without a request.
        clock: monotonic clock (tests).
    """

    def __init__(self, key_path: Path, *, idle_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.key_path = Path(key_path)
        self.idle_s = float(idle_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._unlocking = threading.Lock()
        self._active: _Active | None = None
        self._failures = 0
        self._not_before = 0.0
        self._listeners: list[Callable[[str], None]] = []
        self._unlock_listeners: list[Callable[[SecretKeys], None]] = []
        self._idle = _IdleLock(self)
        self.lock_reason = "not unlocked yet"

    def __repr__(self) -> str:
        return f"OwnerSession({self.key_path}, {'unlocked' if self.unlocked else 'locked'})"

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the idle lock (worker thread ``doorkeep-console-idle``)."""
        self._idle.start()

    def close(self) -> None:
        self.lock("console stopped")
        self._idle.stop()

    def idle_left(self) -> float | None:
        """Seconds until the idle lock (``None`` while locked); locks now when it is due."""
        with self._lock:
            active = self._active
            left = None if active is None else active.last_use + self.idle_s - self._clock()
        if left is not None and left <= 0:
            self.lock(f"idle for {self.idle_s:.0f} s")
            return None
        return left

    def on_unlock(self, fn: Callable[[SecretKeys], None]) -> None:
        """Call ``fn(keys)`` after every unlock (open the owner channel there)."""
        self._unlock_listeners.append(fn)

    def on_lock(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(reason)`` whenever the keys are dropped (wipe caches of plaintext there)."""
        self._listeners.append(fn)

    # ------------------------------------------------------------------------------------------ unlock / lock
    @property
    def unlocked(self) -> bool:
        with self._lock:
            return self._active is not None

    def unlock(self, passphrase: bytes) -> str:
        """Open the owner key with ``passphrase``; returns the new session token (the old session ends).

        Raises:
            UnlockThrottled: a wrong passphrase was given too recently.
            PassphraseError: wrong passphrase (the next try is delayed).
            VaultError, FormatError: the key file is missing, unreadable or not an owner key.
        """
        with self._unlocking:
            wait = self._not_before - self._clock()
            if wait > 0:
                raise UnlockThrottled(wait)
            try:
                keys = SecretKeys.load(self.key_path, passphrase, role="owner")
            except PassphraseError:
                self._failures += 1
                self._not_before = self._clock() + min(MAX_THROTTLE_S, 0.5 * 2 ** (self._failures - 1))
                log.warning("console: wrong passphrase (%d in a row)", self._failures)
                raise
            self._failures = 0
            active = _Active(secrets.token_urlsafe(32), secrets.token_urlsafe(32), keys, self._clock())
            with self._lock:
                self._active = active
            self.lock_reason = ""
            log.info("console unlocked")
        for fn in list(self._unlock_listeners):
            try:
                fn(keys)
            except Exception:
                log.exception("console unlock listener failed")
        return active.token

    def lock(self, reason: str = "locked by the owner") -> None:
        """Drop the keys and the session (idempotent); listeners wipe what they decrypted."""
        with self._lock:
            was, self._active = self._active, None
        if was is None:
            return
        self.lock_reason = reason
        log.info("console locked: %s", reason)
        for fn in list(self._listeners):
            try:
                fn(reason)
            except Exception:
                log.exception("console lock listener failed")

    # ------------------------------------------------------------------------------------------ per request
    def _current(self, token: str | None, *, touch: bool = True) -> _Active | None:
        with self._lock:
            a = self._active
            if a is None or not token or not hmac.compare_digest(a.token.encode(), token.encode()):
                return None
            now = self._clock()
            if now - a.last_use <= self.idle_s:
                if touch:
                    a.last_use = now
                return a
        self.lock(f"idle for {self.idle_s:.0f} s")
        return None

    def valid(self, token: str | None, *, touch: bool = True) -> bool:
        """True when ``token`` is the live session's; ``touch`` restarts the idle timer (a page the owner opened
        does, a live stream left open does not — else an open tab would keep the key unlocked forever)."""
        return self._current(token, touch=touch) is not None

    def csrf(self, token: str | None) -> str:
        """The CSRF token of the live session (``Locked`` if ``token`` is not it)."""
        a = self._current(token)
        if a is None:
            raise Locked(self.lock_reason or "locked")
        return a.csrf

    def csrf_ok(self, token: str | None, presented: str | None) -> bool:
        a = self._current(token)
        return a is not None and bool(presented) and hmac.compare_digest(a.csrf.encode(), str(presented).encode())

    def keys(self, token: str | None) -> SecretKeys:
        """The owner's keys for a request of the live session.

        Raises:
            Locked: no live session or not this one.
        """
        a = self._current(token)
        if a is None:
            raise Locked(self.lock_reason or "locked")
        return a.keys

    def owner_keys(self) -> SecretKeys:
        """The keys for work the live session started (background fetches); ``Locked`` when locked."""
        with self._lock:
            if self._active is None:
                raise Locked(self.lock_reason or "locked")
            return self._active.keys


class _IdleLock(Worker):
    """Locks the session once it has been idle for ``idle_s`` (checked at least every second)."""

    def __init__(self, session: OwnerSession) -> None:
        super().__init__("console-idle")
        self.session = session

    def _run(self) -> None:
        while not self.stopping:
            left = self.session.idle_left()
            self.wait(1.0 if left is None else min(max(left, 0.05), 1.0))
