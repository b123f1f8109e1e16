"""Shared fixtures. Each area keeps its fixtures in a fixtures_*.py module beside this file."""

from fixtures_broker import *  # noqa: F403  (real mosquitto on loopback)
from fixtures_browser import *  # noqa: F403  (Debian chromium for the owner console)
from fixtures_detect import *  # noqa: F403  (the pinned model, real photos)
from fixtures_fs import *  # noqa: F403  (small real tmpfs mounts for disk-full tests)
