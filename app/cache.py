"""The run cache: finished runs' histories in Redis (or in-process), and who may read them.

What is stored, all through flask-caching with a JSON serializer (never pickle):

* ``run:<uri digest>:<run id>`` - a finished run as the exact JSON bytes of the
  response's run object, behind a MAC line and a header line (status, experiment,
  fingerprint). TTL ``RUN_CACHE_TTL``: finished runs can still be written to.
* ``run:<uri digest>:<run id>:series:<metric key digest>`` - one metric of a finished
  run, complete, as numpy columns (steps, timestamps, values) for the views that
  select, cut or thin histories (metric_keys, since_step, max_points, CSV). Sealed
  and expiring like the run entries.
* ``list:<MAC of caller and query>`` - which runs a query selected, with their
  metadata. TTL ``RUN_LIST_TTL``; per caller, since MLflow filters searches by
  permission.
* ``grant:<MAC of uri, username, password, experiment>`` - MLflow accepted these
  credentials for this experiment. TTL ``AUTH_CACHE_TTL``. A cached run is served
  only while such a grant exists; no password, nor a plain hash of one, is stored.

MACs use the app's ``SECRET_KEY``, so an entry planted in a shared Redis by anyone
without the key is never trusted. A cache that fails (Redis down, slow, full of
garbage) is a miss: the answer comes from MLflow and a warning is logged.
"""
import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict
from urllib.parse import urlsplit, urlunsplit

import orjson
from cachelib.serializers import BaseSerializer

from app import observability

log = logging.getLogger(__name__)

HEADER_MAX = 4096  # bytes: an entry's MAC and header lines are far shorter
TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
DEFAULT_PORTS = {"http": 80, "https": 443}


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
            except orjson.JSONDecodeError:
                pass
        log.warning("cache: ignoring a value that this service did not write")
        return None


def normalize_uri(uri: str) -> str:
    """Scheme and host lower-cased, default port and trailing slash dropped."""
    parts = urlsplit(uri.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{parts.port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def fingerprint(run: dict) -> str:
    """What must not have changed for a cached copy of ``run`` to still be right."""
    info, data = run["info"], run.get("data", {})
    state = [info.get("status"), info.get("end_time"), info.get("lifecycle_stage"),
             info.get("run_name"),
             sorted((p["key"], p.get("value")) for p in data.get("params", [])),
             sorted((m["key"], str(m.get("value")), m.get("step"), m.get("timestamp"))
                    for m in data.get("metrics", []))]
    return hashlib.blake2b(orjson.dumps(state), digest_size=16).hexdigest()


class LocalCopies:
    """Finished runs' JSON that this worker read or wrote recently, kept in its own memory
    (an LRU bounded in bytes) in front of the shared cache.

    A warm poll then reads no megabytes from Redis and checks no MAC over them: these
    copies never left the process. They are valid by the same rule as Redis entries (the
    run's fingerprint, from a listing at most RUN_LIST_TTL old, must match) and expire
    with them; entries larger than ``max_entry`` are not kept (a million-point run would
    pin its JSON in every worker).
    """

    def __init__(self, max_bytes: int, max_entry: int, ttl: float):
        self.max_bytes, self.max_entry, self.ttl = max_bytes, max_entry, ttl
        self._items = OrderedDict()  # key -> (fingerprint, header, payload, stored at)
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key, fingerprint):
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] != fingerprint or time.monotonic() - item[3] > self.ttl:
                return None
            self._items.move_to_end(key)
            return item[1], item[2]

    def put(self, key, header: dict, payload):
        size = len(payload)
        if size > min(self.max_entry, self.max_bytes):
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes += size - (len(old[2]) if old else 0)
            self._items[key] = (header.get("fingerprint"), header, payload, time.monotonic())
            while self._bytes > self.max_bytes:
                self._bytes -= len(self._items.popitem(last=False)[1][2])


class RunCache:
    """The cache as the service sees it; every method survives a broken backend."""

    def __init__(self, backend, *, secret: bytes, run_ttl: int, list_ttl: int, auth_ttl: int,
                 kind: str, retry_after: float = 5.0, local: LocalCopies = None):
        self.backend = backend
        self.local = local or LocalCopies(0, 0, 0)
        self.secret = secret
        self.run_ttl, self.list_ttl, self.auth_ttl = run_ttl, list_ttl, auth_ttl
        self.kind = kind
        # After a failed call, skip the cache this long: a dead Redis must not add a
        # socket timeout to every call of every request.
        self.retry_after = retry_after
        self._down_until = 0.0
        self._lock = threading.Lock()

    # --- keys ------------------------------------------------------------

    def mac(self, *parts) -> str:
        # A JSON array, not a joined string: ("a:b", "c") and ("a", "b:c") must differ,
        # or one caller's credentials could be made to match another's grant.
        message = orjson.dumps([p if p is None or isinstance(p, (int, str, list)) else str(p)
                                for p in parts])
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    @staticmethod
    def run_key(uri: str, run_id: str) -> str:
        digest = hashlib.sha256(normalize_uri(uri).encode()).hexdigest()[:32]
        return f"run:{digest}:{run_id}"

    @classmethod
    def series_key(cls, uri: str, run_id: str, metric_key: str) -> str:
        # Metric keys may hold spaces, slashes, any Unicode: digest them.
        return f"{cls.run_key(uri, run_id)}:series:{hashlib.sha256(metric_key.encode()).hexdigest()[:32]}"

    def grant_key(self, target, experiment_id) -> str:
        return "grant:" + self.mac(normalize_uri(target.uri), target.username, target.password,
                                   experiment_id)

    def list_key(self, target, query: dict) -> str:
        fields = ("experiment_name", "experiment_id", "run_id", "limit", "include_deleted",
                  "filter_string", "order_by", "run_ids", "run_status")
        return "list:" + self.mac(normalize_uri(target.uri), target.username, target.password,
                                  *(query.get(f) for f in fields))

    # --- backend calls, each one failure-proof -----------------------------

    def _call(self, what, *args, default=None):
        if time.monotonic() < self._down_until:
            return default
        try:
            return getattr(self.backend, what)(*args)
        except Exception as exc:  # redis errors, OSError, a full Redis (OOM) ...
            with self._lock:
                self._down_until = time.monotonic() + self.retry_after
            observability.cache_error(what)
            log.warning("cache: %s failed (%s: %s); answering from MLflow",
                        what, type(exc).__name__, exc)
            return default

    def ping(self) -> bool:
        self._down_until = 0.0
        return bool(self._call("set", "ping", 1, 10)) and self._call("get", "ping") == 1

    # --- grants ----------------------------------------------------------

    def has_grant(self, target, experiment_id) -> bool:
        if self.auth_ttl <= 0:
            return False
        return self._call("get", self.grant_key(target, experiment_id)) == 1

    def record_grant(self, target, experiment_id):
        if self.auth_ttl > 0:
            self._call("set", self.grant_key(target, experiment_id), 1, self.auth_ttl)

    # --- signed entries --------------------------------------------------

    def _seal(self, key, header: dict, payload: bytes) -> Tagged:
        """``MAC \\n header JSON \\n payload``; the MAC binds all three to ``key``.

        Built tagged for the serializer, so a large payload is copied only once.
        """
        head = orjson.dumps(header)
        return Tagged(b"".join([b"b", self._mac_of(key, head, payload), b"\n", head, b"\n", payload]))

    def _open(self, key, value):
        """(header, payload view) of an entry this service sealed, else None (a miss)."""
        if not isinstance(value, memoryview):
            return None
        prefix = bytes(value[:HEADER_MAX])  # MAC and header lines, without copying the payload
        mac_end = prefix.find(b"\n")
        head_end = prefix.find(b"\n", mac_end + 1)
        mac, head, payload = prefix[:mac_end], prefix[mac_end + 1:head_end], value[head_end + 1:]
        if mac_end < 0 or head_end < 0 or not hmac.compare_digest(mac, self._mac_of(key, head, payload)):
            log.warning("cache: ignoring entry %s that this service did not write", key)
            observability.cache_error("verify")
            return None
        return orjson.loads(head), payload

    def _mac_of(self, key, head, payload) -> bytes:
        return self.mac(key, head.decode(), hashlib.sha256(payload).hexdigest()).encode()

    # --- query results ---------------------------------------------------

    def get_listing(self, key):
        if self.list_ttl <= 0:
            return None
        entry = self._open(key, self._call("get", key))
        return orjson.loads(entry[1]) if entry else None

    def set_listing(self, key, listing):
        if self.list_ttl > 0:
            self._call("set", key, self._seal(key, {}, orjson.dumps(listing)), self.list_ttl)

    # --- finished runs ---------------------------------------------------

    def get_entries(self, keys):
        """{key: (header, payload view)} for the keys found intact and sealed by us."""
        if not keys or self.run_ttl <= 0:
            return {}
        values = self._call("get_many", *keys, default=[None] * len(keys))
        entries = {key: self._open(key, value) for key, value in zip(keys, values)}
        return {key: entry for key, entry in entries.items() if entry}

    def set_entry(self, key, header: dict, payload: bytes):
        """A finished run's JSON, or one of its metrics' columns (``history.to_bytes``)."""
        if self.run_ttl > 0:
            self._call("set", key, self._seal(key, header, payload), self.run_ttl)

    # --- single flight ---------------------------------------------------

    def try_lock(self, key, seconds: float) -> bool:
        """True if this request should fetch ``key``; True too when the cache is down."""
        return self._call("add", "lock:" + key, 1, max(1, int(seconds)), default=True)

    def unlock(self, key):
        self._call("delete", "lock:" + key)

    def is_locked(self, key) -> bool:
        return bool(self._call("has", "lock:" + key, default=False))
