"""The operator's stream: what the running device does, one line per thing that happened.

Event started/ended, clip opened/closed, MQTT connected/lost, day/night switch, retention run, a request or grant
refused or accepted — never a line per frame, and repeated failures rate-limited. These lines go to one logger,
``doorkeep.device.activity`` (:data:`log`), at INFO (WARNING for what needs attention) so an application can show
them without the library's other INFO chatter. A repeated failure is said through
:class:`~doorkeep.device.lograte.FailureLog` on this logger: once, then counted once a minute. The library never
configures logging itself: ``doorkeep run`` shows this logger at its default verbosity; a vendor routes it wherever
their product logs (or leaves it at the root logger's level, WARNING by default, which hides the INFO lines).

Example (a vendor's service)::

    import logging
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger(doorkeep.device.activity.NAME).setLevel(logging.INFO)
"""

from __future__ import annotations

import logging
from typing import Any

NAME = __name__
log = logging.getLogger(NAME)


def event_line(event: Any) -> str | None:
    """The operator's line for one event transition (``device/events.py`` Event), or None."""
    where = f" in zone {event.zone}" if event.zone else ""
    if event.kind == "doorbell":
        return "doorbell pressed"
    if event.phase == "start":
        return f"person event {event.event_id} started{where} (score {event.score:.2f})"
    if event.phase == "end":
        took = (event.t_end or event.t) - event.t_start
        return f"person event {event.event_id} ended after {took:.1f} s{'' if event.clip else ' (no clip)'}"
    return None
