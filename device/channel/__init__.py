"""The owner channel and the request inbox: everything the device receives over MQTT and answers.

- ``protocol.py``: the owner-signed command and device-signed reply formats (docs/formats.md#owner-channel);
- ``limits.py``: freshness + replay window, token buckets and the aggregated refusal audit record;
- ``inbox.py``: the one inbound worker (off the MQTT network thread) for owner commands, owner documents and
  footage requests;
- ``commands.py``: what each owner command does; ``transfer.py``: chunked, windowed, resumable byte streams;
- ``snapshots.py``: JPEG snapshots of the (privacy-masked) lores frame, sealed to the owner and signed.
"""
