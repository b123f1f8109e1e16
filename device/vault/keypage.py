"""One locked memory page per open clip, holding its key and its secretstream state.

While a clip is open the device holds the clip key and the stream state (everything needed to encrypt — and, for
someone who reads them, to decrypt — that clip). They live in one page of their own that is ``sodium_mlock``-ed:
the kernel never swaps it out and leaves it out of core dumps (libsodium adds ``MADV_DONTDUMP``). Closing the clip
``sodium_munlock``-s it, which zeroes the page before unlocking.

PyNaCl exposes no mlock in its Python API (``nacl.bindings`` has neither ``sodium_mlock`` nor ``sodium_malloc``),
so these two libsodium calls go through PyNaCl's own cffi binding of the library it ships (``nacl._sodium.lib``),
like the key generation and stream calls in :mod:`.clips`. That is calling libsodium, not writing a primitive.

The page is a whole page inside a larger cffi allocation, so no other object shares it: mlock does not nest, and
unlocking a page shared with another clip's key would silently unlock that key too.
"""

from __future__ import annotations

import logging
import mmap
from typing import Any

from nacl._sodium import ffi, lib

log = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE
KEY_BYTES = 32
STATE_BYTES = int(lib.crypto_secretstream_xchacha20poly1305_statebytes())
_warned = False


class KeyPage:
    """A private, locked page: :attr:`key` (32 bytes) then :attr:`state` (the secretstream state), as cffi
    pointers for libsodium. :attr:`locked` is False when the kernel refused the lock (``RLIMIT_MEMLOCK``): the
    clip is still recorded, the page just may be swapped; a warning says so once per process."""

    def __init__(self) -> None:
        self._raw = ffi.new("unsigned char[]", 2 * PAGE)  # zeroed; holds one whole aligned page
        addr = int(ffi.cast("uintptr_t", self._raw))
        self.page: Any = self._raw + (-addr) % PAGE
        self.key: Any = self.page
        self.state: Any = self.page + KEY_BYTES
        self.locked = lib.sodium_mlock(self.page, PAGE) == 0
        if not self.locked:
            _warn_once()

    def wipe(self) -> None:
        """Zero the page and unlock it (idempotent)."""
        if self.locked:
            lib.sodium_munlock(self.page, PAGE)  # zeroes, then munlock
            self.locked = False
        else:
            lib.sodium_memzero(self.page, PAGE)

    def __repr__(self) -> str:
        return f"KeyPage(locked={self.locked}, contents redacted)"

    __str__ = __repr__


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("cannot lock clip keys in memory (RLIMIT_MEMLOCK); they may be swapped out "
                    "(raise LimitMEMLOCK or run with the doorkeep systemd unit)")
