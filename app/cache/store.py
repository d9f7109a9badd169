"""The cache's backend as the service uses it: a few operations, each failure-proof.

flask-caching builds the backend from the settings (Redis, Sentinel, Cluster, or an
in-process SimpleCache) and keeps its connection. For Redis this module then talks to
that connection itself, because the service needs what cachelib's API lacks: a lock
that is taken *with* its expiry in one command (``SET NX PX``, through redis-py's
``Lock``; cachelib's ``add`` is SETNX then EXPIRE, and a reply lost in between leaves
a lock that never expires), multi-key reads that are legal in a cluster, and a size
bound on what one value may take.

Rules every caller can rely on:

* No key is ever written without a TTL.
* A backend that cannot be reached (connection refused, socket timeout, cluster
  down) is skipped for ``retry_after`` seconds: a dead or slow Redis adds at most one
  socket timeout now and then, and answers come from MLflow meanwhile.
* A backend that answers with an error (a full Redis refusing writes with OOM, a
  value it cannot hold) makes that one call a miss; reads go on.
* Values are JSON or bytes, tagged (never pickle): a value the service cannot read,
  whatever its bytes, is a miss.
"""
import logging
import threading
import time

import orjson
import redis
from cachelib.serializers import BaseSerializer

from app import observability
from app.cache.locks import Locks

log = logging.getLogger(__name__)

REDIS_KINDS = ("RedisCache", "RedisSentinelCache", "RedisClusterCache")


class Tagged:
    """Bytes that already start with the serializer's raw-bytes tag: stored as they
    are, where tagging them would copy a payload of megabytes once more."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


class JsonSerializer(BaseSerializer):
    """Values are JSON or raw bytes, tagged; anything else read back is a miss."""

    def dumps(self, value, protocol=None) -> bytes:
        if isinstance(value, Tagged):
            return value.data
        if isinstance(value, bytes):
            return b"b" + value
        return b"j" + orjson.dumps(value)

    def loads(self, raw):
        if raw is None:
            return None
        if raw[:1] == b"b":
            return memoryview(raw)[1:]  # histories can be megabytes: no copy
        if raw[:1] == b"j":
            try:
                return orjson.loads(raw[1:])
            except ValueError:
                pass
        log.warning("cache: ignoring a value that this service did not write")
        return None


class Store(Locks):
    """The backend's operations used by the run cache. Every method returns its
    ``default`` instead of raising when the backend fails."""

    def __init__(self, backend, kind: str, *, retry_after: float = 5.0, max_value: int = 0):
        self.backend, self.kind = backend, kind
        self.retry_after = retry_after
        self.max_value = max_value  # bytes one value may take (0: no bound)
        self._down_until = 0.0
        self._guard = threading.Lock()
        self._locks = {}  # in-process backends only: key -> (token, expires at)
        self.serializer = getattr(backend, "serializer", None) or JsonSerializer()
        self.redis = backend._write_client if kind in REDIS_KINDS else None
        self._reader = backend._read_client if kind in REDIS_KINDS else None
        self.prefix = backend._get_prefix() if kind in REDIS_KINDS else ""
        self.cluster = kind == "RedisClusterCache"

    # --- failure handling ------------------------------------------------

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def _call(self, what, action, default=None):
        if self.down:
            return default
        try:
            return action()
        except (redis.exceptions.ResponseError, redis.exceptions.LockError) as exc:
            # Redis answered: this call failed (a full Redis refusing writes, a lock that
            # expired before its release), the connection is fine and the next call may
            # well succeed.
            self._failed(what, exc, back_off=False)
        except Exception as exc:  # unreachable, socket timeout, cluster down ...
            self._failed(what, exc, back_off=True)
        return default

    def _failed(self, what, exc, *, back_off):
        if back_off:
            with self._guard:
                self._down_until = time.monotonic() + self.retry_after
        observability.cache_error(what)
        log.warning("cache: %s failed (%s: %s); %s", what, type(exc).__name__, exc,
                    "answering from MLflow" if back_off else "treated as a miss")

    def probe(self) -> bool:
        """Whether the backend answers now. While a failure's back-off lasts this does no
        I/O (a probe polled every second must not undo the back-off)."""
        if self.down:
            return False
        return bool(self.set_many({"probe": 1}, 10)) and self.get_many(["probe"]) == [1]

    # --- values ----------------------------------------------------------

    def get_many(self, keys, default=...) -> list:
        """The values of ``keys`` (None where missing or unreadable); ``default`` instead
        of the list when the backend fails (by default, all None)."""
        keys = list(keys)
        if not keys:
            return []
        if default is ...:
            default = [None] * len(keys)
        if self.redis is None:
            return self._call("get", lambda: [self.backend.get(k) for k in keys], default)

        def read():
            names = [self.prefix + key for key in keys]
            # MGET must stay within one slot on a cluster; mget_nonatomic groups by slot.
            raws = self._reader.mget_nonatomic(names) if self.cluster else self._reader.mget(names)
            return [self.serializer.loads(raw) for raw in raws]
        return self._call("get", read, default)

    def set_many(self, values: dict, ttl: float) -> bool:
        """Store each value with this TTL (seconds, > 0); values over ``max_value`` bytes
        are left out. True if the backend took them all."""
        if ttl <= 0:
            raise ValueError("every key the service writes has a TTL")
        encoded = {key: self.serializer.dumps(value) for key, value in values.items()}
        too_big = [key for key, raw in encoded.items() if self.max_value and len(raw) > self.max_value]
        for key in too_big:
            log.info("cache: not storing %s (%d bytes > CACHE_MAX_ENTRY_MB)", key, len(encoded.pop(key)))
        if not encoded:
            return not too_big
        if self.redis is None:  # SimpleCache serializes by itself; whole seconds
            seconds = max(1, round(ttl))
            return self._call("set", lambda: all(self.backend.set(k, values[k], seconds)
                                                 for k in encoded), False) and not too_big

        def write():
            pipe = self.redis.pipeline(transaction=False)
            for key, raw in encoded.items():
                pipe.set(self.prefix + key, raw, px=max(1, int(ttl * 1000)))
            return all(pipe.execute())
        return bool(self._call("set", write, False)) and not too_big

    def delete_many(self, keys):
        keys = list(keys)
        if not keys:
            return
        if self.redis is None:
            self._call("delete", lambda: [self.backend.delete(k) for k in keys])
            return

        def delete():
            pipe = self.redis.pipeline(transaction=False)  # one DEL per key: slots may differ
            for key in keys:
                pipe.delete(self.prefix + key)
            pipe.execute()
        self._call("delete", delete)

    def touch_many(self, keys, ttl: float):
        """Give ``keys`` (those that still exist) a new TTL of ``ttl`` seconds."""
        keys = list(keys)
        if not keys:
            return
        if self.redis is None:  # SimpleCache: read and write back
            def touch():
                for key in keys:
                    value = self.backend.get(key)
                    if value is not None:
                        self.backend.set(key, value, max(1, round(ttl)))
            self._call("touch", touch)
            return

        def touch():
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.pexpire(self.prefix + key, max(1, int(ttl * 1000)))
            pipe.execute()
        self._call("touch", touch)
