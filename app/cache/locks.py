"""Single-flight locks in the cache: taken *with* their expiry in one command.

Redis: ``SET NX PX`` through redis-py's ``Lock`` (cachelib's ``add`` is SETNX then
EXPIRE, and a reply lost in between leaves a lock that never expires); released only
by its own token. In-process backends: a dict of tokens with their expiry.
"""
import secrets
import time

NO_LOCK = "no lock"  # what a failed lock call gives: the caller goes ahead, unlocks nothing


class Locks:
    """The lock operations of ``app.cache.store.Store`` (which provides ``redis``,
    ``prefix``, ``_guard``, ``_locks`` and ``_call``)."""

    def lock(self, key, ttl: float):
        """A held lock (pass it to ``unlock``), or None if another request holds ``key``.
        The lock expires by itself after ``ttl`` seconds. When the backend fails the
        caller gets a lock that is no lock (it goes ahead, as without a cache)."""
        ttl = max(1.0, ttl)
        if self.redis is None:
            return self._memory_lock(key, ttl)
        held = self.redis.lock(self.prefix + "lock:" + key, timeout=ttl, blocking=False,
                               thread_local=False)
        acquired = self._call("lock", held.acquire, default=NO_LOCK)
        return NO_LOCK if acquired is NO_LOCK else held if acquired else None

    def unlock(self, held):
        if held is None or held is NO_LOCK:
            return
        if isinstance(held, tuple):
            with self._guard:
                if self._locks.get(held[0], (None,))[0] == held[1]:
                    del self._locks[held[0]]
            return
        # Releases only our own token (redis-py checks it in a script): a lock that
        # expired and was taken by another request is left alone.
        self._call("unlock", held.release)

    def is_locked(self, key) -> bool:
        if self.redis is None:
            with self._guard:
                token = self._locks.get(key)
                return bool(token) and token[1] > time.monotonic()
        return bool(self._call("is_locked", lambda: self.redis.exists(self.prefix + "lock:" + key),
                               default=False))

    def _memory_lock(self, key, ttl):
        now = time.monotonic()
        with self._guard:
            if len(self._locks) > 1000:  # locks of requests that died before unlocking
                self._locks = {k: v for k, v in self._locks.items() if v[1] > now}
            token = self._locks.get(key)
            if token and token[1] > now:
                return None
            self._locks[key] = (secrets.token_hex(8), now + ttl)
            return key, self._locks[key][0]
