"""Each worker's own copies of finished runs it served recently, in front of the shared cache."""
import threading
import time
from collections import OrderedDict


class LocalCopies:
    """Finished runs' JSON that this worker read or wrote recently, kept in its own memory
    (an LRU bounded in bytes) in front of the shared cache.

    A warm poll then reads no megabytes from Redis and checks no MAC over them: these
    copies never left the process. They are valid by the same rules as Redis entries
    (the run's fingerprint, from a listing at most RUN_LIST_TTL old, must match, and so
    must the run's generation in the shared cache, which a refresh anywhere replaces)
    and expire with them; entries larger than ``max_entry`` are not kept (a
    million-point run would pin its JSON in every worker).
    """

    def __init__(self, max_bytes: int, max_entry: int, ttl: float):
        self.max_bytes, self.max_entry, self.ttl = max_bytes, max_entry, ttl
        self._items = OrderedDict()  # key -> (fingerprint, header, payload, expires at)
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key, fingerprint):
        """(header, payload) of the copy of ``key`` if it is of this fingerprint and fresh."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] != fingerprint or time.monotonic() > item[3]:
                return None
            self._items.move_to_end(key)
            return item[1], item[2]

    def put(self, key, header: dict, payload, ttl: float = None):
        size = len(payload)
        if size > min(self.max_entry, self.max_bytes):
            return
        expires = time.monotonic() + (self.ttl if ttl is None else min(ttl, self.ttl))
        with self._lock:
            self._drop(key)
            self._bytes += size
            self._items[key] = (header.get("fingerprint"), header, payload, expires)
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def discard(self, key):
        with self._lock:
            self._drop(key)

    def _drop(self, key):
        old = self._items.pop(key, None)
        if old:
            self._bytes -= len(old[2])
