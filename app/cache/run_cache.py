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
* ``gen:<uri digest>:<run id>:histories`` - which histories the generation's entries
  were made from: its token and {metric key: ``history.digest``} of each metric fetched
  under it. A fetch that finds another history (such a late point) makes a new
  generation, so no two views of one generation answer different points. Read and
  written by fetches only: a warm poll reads the small ``gen:`` record alone.
* ``list:<MAC of caller and query>`` - which runs a query selected, with their
  metadata. TTL ``RUN_LIST_TTL``; per caller, since MLflow filters searches by
  permission.
* ``grant:<MAC of uri, username, password, TLS verification, experiment>`` - MLflow
  accepted these credentials for this experiment, over a connection made this way (a
  grant obtained without certificate checks says nothing about a request that wants
  them). TTL ``AUTH_CACHE_TTL``. A cached run is served only while such a grant exists.
* ``epoch:<MAC of uri, username, password>`` - the caller's epoch, which a grant's value
  must equal: a refusal of MLflow's deletes it, dropping every grant of the caller at
  once (app/cache/listings.py). TTL ``10 x AUTH_CACHE_TTL``.
* ``lock:<key>`` - single flight: one request asks MLflow, the others wait (locks
  expire by themselves; see ``app.store``).

MACs use the app's ``SECRET_KEY``, so an entry planted in a shared Redis by anyone
without the key is never trusted. A cache that fails (Redis down, slow, full, or full
of garbage) is a miss: the answer comes from MLflow and a warning is logged.
"""
import logging
import secrets
import time

from app.cache import keys
from app.cache.copies import LocalCopies
from app.cache.entries import Seal
from app.cache.freshness import agrees, fingerprint
from app.cache.listings import Listings
from app.cache.store import Store
from app.cache.tails import Tails

log = logging.getLogger(__name__)


class RunCache(Listings, Tails):
    """The cache as the service sees it; every method survives a broken backend."""

    def __init__(self, store: Store, *, secret: bytes, run_ttl: int, list_ttl: int, auth_ttl: int,
                 kind: str = None, local: LocalCopies = None, recent_ttl: int = None,
                 recent_window: int = 0):
        self.store = store
        self.local = local or LocalCopies(0, 0, 0)
        self.seal = Seal(secret)
        self.run_ttl, self.list_ttl, self.auth_ttl = run_ttl, list_ttl, auth_ttl
        self.recent_ttl = run_ttl if recent_ttl is None else min(recent_ttl, run_ttl)
        self.recent_window = recent_window
        self.kind = kind or store.kind

    # --- keys ------------------------------------------------------------

    run_key = staticmethod(keys.run_key)
    series_key = staticmethod(keys.series_key)
    generation_key = staticmethod(keys.generation_key)
    histories_key = staticmethod(keys.histories_key)

    # --- health ----------------------------------------------------------

    def ping(self) -> bool:
        return self.store.probe()

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
        return {run["info"]["run_id"]: _token(record, run) for run, record in zip(runs, found)}

    def generations_for(self, uri, fetched, *, renew: bool) -> dict:
        """{run_id: generation its entries are written under} for finished runs just
        fetched, ``fetched`` being [(run, {metric key: history.digest of what was found})].

        A run keeps its current generation while the fetch ``agrees`` with the histories
        the generation was made from (it learns the metrics it did not know yet); else, on
        ``renew`` or with none, it gets a new one, which retires every copy of the run,
        here and in every worker. So within a generation every view answers the same
        points. Read in one round trip when the fetch is done (not before: another fetch
        may have made a generation meanwhile); only a fetch reads the histories record,
        never a warm poll."""
        if self.run_ttl <= 0 or not fetched:  # nothing is cached, nothing to retire
            return {run["info"]["run_id"]: secrets.token_hex(8) for run, _ in fetched}
        names = [(self.generation_key(uri, run["info"]["run_id"]),
                  self.histories_key(uri, run["info"]["run_id"])) for run, _ in fetched]
        found = ([None] * 2 * len(names) if renew  # a refresh makes new ones whatever is there
                 else self.store.get_many([name for pair in names for name in pair]))
        tokens, writes = {}, {}  # writes: {ttl: {key: value}}
        for (run, histories), pair, record, known in zip(fetched, names, found[::2], found[1::2]):
            tokens[run["info"]["run_id"]], values = _generation(run, histories, pair, record, known)
            writes.setdefault(self.ttl_for(run), {}).update(values)
        for ttl, values in writes.items():
            if values:
                self.store.set_many(values, ttl)
        return tokens

    def get_entries(self, keys):
        """{key: (header, payload view)} for the keys found intact and sealed by us."""
        if not keys or self.run_ttl <= 0:
            return {}
        entries = {key: self.seal.open(key, value) for key, value in zip(keys, self.store.get_many(keys))}
        return {key: entry for key, entry in entries.items() if entry}

    def set_entry(self, key, header: dict, payload: bytes, ttl: int = None):
        """A finished run's JSON, or one of its metrics' columns (``history.to_bytes``)."""
        if self.run_ttl > 0:
            self.store.set_many({key: self.seal.close(key, header, payload)}, ttl or self.run_ttl)

    # --- single flight ---------------------------------------------------

    def lock(self, key, seconds: float):
        """A held lock for fetching ``key`` (None: another request holds it); one that
        is no lock when the cache is down, so the caller goes ahead."""
        return self.store.lock(key, seconds)

    def unlock(self, held):
        self.store.unlock(held)

    def is_locked(self, key) -> bool:
        return self.store.is_locked(key)


def _generation(run, histories: dict, names, record, known) -> tuple:
    """(generation, {key: value} to write) for a run fetched with ``histories``, given its
    ``gen:`` and histories records (``names``: their keys) as they are now."""
    current = _token(record, run)
    known = _histories(known, current)
    # Without its histories (a record evicted, or made by an older release) a generation
    # cannot tell whether its entries agree with this fetch: it is replaced.
    if current and known is not None and agrees(known, histories):
        if histories.keys() <= known.keys():
            return current, {}
        return current, {names[1]: {"token": current, "histories": {**known, **histories}}}
    token = secrets.token_hex(8)
    return token, {names[0]: {"fingerprint": fingerprint(run), "token": token},
                   names[1]: {"token": token, "histories": histories}}


def _token(record, run) -> str | None:
    """The generation a ``gen:`` record names, if it was made for the run as it is now."""
    if isinstance(record, dict) and record.get("fingerprint") == fingerprint(run):
        return record.get("token")
    return None


def _histories(record, token) -> dict | None:
    """{metric key: digest} of the metrics fetched under the generation ``token``; None
    if the record is missing or of another generation."""
    if token and isinstance(record, dict) and record.get("token") == token \
            and isinstance(record.get("histories"), dict):
        return record["histories"]
    return None
