"""The run cache: finished runs' histories in Redis (or in-process), and who may read them.

What is stored, through ``app.store`` (JSON or tagged bytes, never pickle), every key
with a TTL:

* ``run:<uri digest>:<run id>`` - a finished run as the exact JSON bytes of the
  response's run object, behind a MAC line and a header line (status, experiment,
  fingerprint, generation).
* ``run:<uri digest>:<run id>:series:<metric key digest>`` - one metric of a finished
  run, complete, as numpy columns (steps, timestamps, values) for the views that
  select, cut or thin histories (metric_keys, since_step, max_points, CSV).
* ``gen:<uri digest>:<run id>`` - the run's current *generation*: the fingerprint it
  was cached under and a random token. Every entry of the run (JSON, columns, and the
  workers' own copies) carries the token and is served only while it is the current
  one, so a refresh, or a refetch that finds the run changed, retires every copy at
  once by writing a new generation. Entries live as long as their generation:
  ``RUN_CACHE_TTL``, or ``RECENT_RUN_CACHE_TTL`` for runs that ended less than
  ``RECENT_RUN_WINDOW`` ago (points logged to a finished run below its latest step
  change nothing MLflow's run metadata shows, so this bounds how long they go unseen).
* ``list:<MAC of caller and query>`` - which runs a query selected, with their
  metadata. TTL ``RUN_LIST_TTL``; per caller, since MLflow filters searches by
  permission.
* ``grant:<MAC of uri, username, password, TLS verification, experiment>`` - MLflow
  accepted these credentials for this experiment, over a connection made this way (a
  grant obtained without certificate checks says nothing about a request that wants
  them). TTL ``AUTH_CACHE_TTL``. A cached run is served only while such a grant exists.
* ``lock:<key>`` - single flight: one request asks MLflow, the others wait (locks
  expire by themselves; see ``app.store``).

MACs use the app's ``SECRET_KEY``, so an entry planted in a shared Redis by anyone
without the key is never trusted. A cache that fails (Redis down, slow, full, or full
of garbage) is a miss: the answer comes from MLflow and a warning is logged.
"""
import hashlib
import hmac
import logging
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

import orjson

from app import observability
from app.copies import LocalCopies
from app.store import JsonSerializer, Store, Tagged  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

HEADER_MAX = 4096  # bytes: an entry's MAC and header lines are far shorter
TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})
DEFAULT_PORTS = {"http": 80, "https": 443}


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


class RunCache:
    """The cache as the service sees it; every method survives a broken backend."""

    def __init__(self, store: Store, *, secret: bytes, run_ttl: int, list_ttl: int, auth_ttl: int,
                 kind: str = None, local: LocalCopies = None, recent_ttl: int = None,
                 recent_window: int = 0):
        self.store = store
        self.local = local or LocalCopies(0, 0, 0)
        self.secret = secret
        self.run_ttl, self.list_ttl, self.auth_ttl = run_ttl, list_ttl, auth_ttl
        self.recent_ttl = run_ttl if recent_ttl is None else min(recent_ttl, run_ttl)
        self.recent_window = recent_window
        self.kind = kind or store.kind

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

    @classmethod
    def generation_key(cls, uri: str, run_id: str) -> str:
        return "gen:" + cls.run_key(uri, run_id)[len("run:"):]

    def _caller(self, target) -> list:
        return [normalize_uri(target.uri), target.username, target.password, target.verify_tls]

    def grant_key(self, target, experiment_id) -> str:
        return "grant:" + self.mac(*self._caller(target), experiment_id)

    def list_key(self, target, query: dict) -> str:
        fields = ("experiment_name", "experiment_id", "run_id", "limit", "include_deleted",
                  "filter_string", "order_by", "run_ids", "run_status")
        return "list:" + self.mac(*self._caller(target), *(query.get(f) for f in fields))

    # --- health ----------------------------------------------------------

    def ping(self) -> bool:
        return self.store.probe()

    # --- grants ----------------------------------------------------------

    def has_grant(self, target, experiment_id) -> bool:
        if self.auth_ttl <= 0:
            return False
        return self.store.get_many([self.grant_key(target, experiment_id)]) == [1]

    def record_grant(self, target, experiment_id):
        if self.auth_ttl > 0:
            self.store.set_many({self.grant_key(target, experiment_id): 1}, self.auth_ttl)

    # --- signed entries --------------------------------------------------

    def _seal(self, key, header: dict, payload: bytes) -> Tagged:
        """``MAC \\n header JSON \\n payload``; the MAC binds all three to ``key``.

        Built tagged for the serializer, so a large payload is copied only once.
        """
        head = orjson.dumps(header)
        return Tagged(b"".join([b"b", self._mac_of(key, head, payload), b"\n", head, b"\n", payload]))

    def _open(self, key, value):
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

    # --- query results ---------------------------------------------------

    def get_listing(self, key):
        if self.list_ttl <= 0:
            return None
        entry = self._open(key, self.store.get_many([key])[0])
        return orjson.loads(entry[1]) if entry else None

    def set_listing(self, key, listing):
        if self.list_ttl > 0:
            self.store.set_many({key: self._seal(key, {}, orjson.dumps(listing))}, self.list_ttl)

    # --- finished runs ---------------------------------------------------

    def ttl_for(self, run) -> int:
        """RUN_CACHE_TTL, or RECENT_RUN_CACHE_TTL for a run that ended recently."""
        ended = run["info"].get("end_time")
        if ended is not None and time.time() - int(ended) / 1000 < self.recent_window:
            return self.recent_ttl
        return self.run_ttl

    def generations(self, uri, runs) -> dict | None:
        """{run_id: current generation token or None} for finished ``runs``; None when
        the cache cannot say (it failed): the workers' copies then stand on their own."""
        if self.run_ttl <= 0 or not runs:
            return {}
        keys = [self.generation_key(uri, run["info"]["run_id"]) for run in runs]
        found = self.store.get_many(keys, default=None)
        if found is None:
            return None
        prints = {run["info"]["run_id"]: fingerprint(run) for run in runs}
        return {run_id: value.get("token") if isinstance(value, dict)
                and value.get("fingerprint") == prints[run_id] else None
                for run_id, value in zip(prints, found)}

    def generation_for(self, uri, run, current: str | None, *, renew: bool) -> str:
        """The generation a fetched run's entries are written under: ``current`` (read
        before the fetch) unless ``renew`` or there is none; a new one retires every
        copy of the run, here and in every worker."""
        if current and not renew:
            return current
        token = secrets.token_hex(8)
        if self.run_ttl <= 0:  # nothing is cached, nothing to retire
            return token
        self.store.set_many({self.generation_key(uri, run["info"]["run_id"]):
                             {"fingerprint": fingerprint(run), "token": token}}, self.ttl_for(run))
        return token

    def get_entries(self, keys):
        """{key: (header, payload view)} for the keys found intact and sealed by us."""
        if not keys or self.run_ttl <= 0:
            return {}
        entries = {key: self._open(key, value) for key, value in zip(keys, self.store.get_many(keys))}
        return {key: entry for key, entry in entries.items() if entry}

    def set_entry(self, key, header: dict, payload: bytes, ttl: int = None):
        """A finished run's JSON, or one of its metrics' columns (``history.to_bytes``)."""
        if self.run_ttl > 0:
            self.store.set_many({key: self._seal(key, header, payload)}, ttl or self.run_ttl)

    # --- single flight ---------------------------------------------------

    def lock(self, key, seconds: float):
        """A held lock for fetching ``key`` (None: another request holds it); one that
        is no lock when the cache is down, so the caller goes ahead."""
        return self.store.lock(key, seconds)

    def unlock(self, held):
        self.store.unlock(held)

    def is_locked(self, key) -> bool:
        return self.store.is_locked(key)
