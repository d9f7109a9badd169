"""Sealed entries: every value the service reads back from a shared cache carries a MAC.

An entry is ``MAC \\n header JSON \\n payload``; the MAC (HMAC-SHA256 under the app's
``SECRET_KEY``) binds all three to the entry's key, so a value planted in a shared Redis
by anyone without the key, or moved to another key, is never trusted. The seal proves
where an entry came from, not that it is fresh (app/cache/freshness.py does that).
"""
import hashlib
import hmac
import logging

import orjson

from app import observability
from app.cache.store import Tagged

log = logging.getLogger(__name__)

HEADER_MAX = 4096  # bytes: an entry's MAC and header lines are far shorter


class Seal:
    def __init__(self, secret: bytes):
        self.secret = secret

    def mac(self, *parts) -> str:
        # A JSON array, not a joined string: ("a:b", "c") and ("a", "b:c") must differ,
        # or one caller's credentials could be made to match another's grant.
        message = orjson.dumps([p if p is None or isinstance(p, (int, str, list)) else str(p)
                                for p in parts])
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def close(self, key, header: dict, payload: bytes) -> Tagged:
        """The sealed entry, built tagged for the serializer, so a large payload is
        copied only once."""
        head = orjson.dumps(header)
        return Tagged(b"".join([b"b", self._mac_of(key, head, payload), b"\n", head, b"\n", payload]))

    def open(self, key, value):
        """(header, payload view) of an entry this service sealed, else None (a miss),
        whatever the value's bytes."""
        if value is None:
            return None
        try:
            prefix = bytes(value[:HEADER_MAX])  # MAC and header lines, without copying the payload
            mac_end = prefix.index(b"\n")
            head_end = prefix.index(b"\n", mac_end + 1)
            head, payload = prefix[mac_end + 1:head_end], value[head_end + 1:]
            if not hmac.compare_digest(prefix[:mac_end], self._mac_of(key, head, payload)):
                raise ValueError("its MAC does not match")
            header = orjson.loads(head)
            if not isinstance(header, dict):
                raise ValueError("its header is not an object")
            return header, payload
        except (TypeError, ValueError) as exc:  # not bytes, no lines, not ours, not JSON
            log.warning("cache: ignoring entry %s that this service did not write (%s)", key, exc)
            observability.cache_error("verify")
            return None

    def _mac_of(self, key, head: bytes, payload) -> bytes:
        # Streamed over the bytes as they are (no decoding: a stored value may be any
        # bytes); the header's length binds where the header ends and the payload begins.
        digest = hmac.new(self.secret, orjson.dumps(["entry", key, len(head)]), hashlib.sha256)
        digest.update(head)
        digest.update(payload)
        return digest.hexdigest().encode()
