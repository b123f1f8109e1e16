"""The operator's stream: what the running device does, one line per thing that happened.

Event started/ended, clip opened/closed, MQTT connected/lost, day/night switch, retention run, a request or grant
refused or accepted — never a line per frame, and repeated failures rate-limited. These lines go to one logger,
``doorkeep.device.activity`` (:data:`log`), at INFO (WARNING for what needs attention) so an application can show
them without the library's other INFO chatter. The library never configures logging itself: ``doorkeep run``
shows this logger at its default verbosity; a vendor routes it wherever their product logs (or leaves it at the
root logger's level, WARNING by default, which hides the INFO lines).

Example (a vendor's service)::

    import logging
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger(doorkeep.device.activity.NAME).setLevel(logging.INFO)
"""

from __future__ import annotations

import logging

NAME = __name__
log = logging.getLogger(NAME)
