"""``doorkeep console``: the owner's local web app (Timeline, Clip, Requests, Settings, Audit, Device).

An owner tool: it runs on the owner's computer or home hub, holds the owner's secret key (unlocked with its
passphrase, in memory only, locked again after idle) and talks to the device over the owner's MQTT broker. The
device runtime never imports it. Modules:

- ``session``: unlock/lock, session cookie, CSRF, idle lock;
- ``timeline``: the verified live state (visits, heartbeat, availability, request inbox) and its listeners;
- ``media``: clip ciphertext → MP4 in memory and JPEG thumbnails (no plaintext on disk);
- ``web``: the Starlette app (security headers, host check, routes) and ``pages_*`` the pages;
- ``server``: uvicorn on a pre-bound loopback socket.
"""
