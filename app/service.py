"""What each route does, in terms of the MLflow gateway, the run cache and the history maths."""
import time
from dataclasses import dataclass

import orjson

from app import errors, export, history, observability, selection
from app.fetch import fetch_histories
from app.cache import TERMINAL, RunCache, fingerprint
from app.gateway import MlflowGateway
from app.views import View, run_metric_keys


def health(gateway: MlflowGateway, cache: RunCache) -> dict:
    report = {
        "authentication": "basic_auth" if gateway.target.uses_auth else "none",
        "ssl_verification": gateway.target.verify_tls,
        "cache": {"backend": cache.kind, "available": cache.ping()},
    }
    try:
        found = len(gateway.search_experiments())
    except errors.http.HTTPException as exc:
        # /health is a diagnostic: it names the cause instead of failing.
        return dict(report, status="unhealthy", mlflow_accessible=False,
                    experiments_found=None, error=exc.description, error_code=exc.code)
    return dict(report, status="healthy", mlflow_accessible=True, experiments_found=found)


def experiments(gateway: MlflowGateway) -> dict:
    found = [
        {"experiment_id": e["experiment_id"], "name": e["name"],
         "artifact_location": e.get("artifact_location"),
         "lifecycle_stage": e.get("lifecycle_stage", "active")}
        for e in gateway.search_experiments()
    ]
    return {"success": True, "total_experiments": len(found), "experiments": found}


WRITE_SIZE = 1 << 20


@dataclass
class RunsAnswer:
    chunks: object  # the body in pieces: bytes, or views of cached entries; or a generator
    length: int     # None when streamed (CSV)
    cache: str      # HIT (MLflow not asked), MISS (nothing from cache) or PARTIAL
    headers: dict = None

    def __iter__(self):
        """The body for the WSGI server, which writes bytes: a cached run (a view of
        what Redis sent) goes out a megabyte at a time instead of as one more copy."""
        for chunk in self.chunks:
            if isinstance(chunk, memoryview):
                for start in range(0, len(chunk), WRITE_SIZE):
                    yield bytes(chunk[start:start + WRITE_SIZE])
            else:
                yield chunk


def runs(gateway: MlflowGateway, query: dict, cache: RunCache, *, concurrency: int,
         refresh: bool = False, as_csv: bool = False, point_limit: int = None) -> RunsAnswer:
    listing, listed_from_cache = _listing(gateway, query, cache, refresh)
    selected, view = listing["runs"], View.of(query)
    budget = PointBudget(point_limit)
    if as_csv or view.selects:
        # without histories (include_metric_history false) a CSV is its header only
        histories, hits = (RunSeries(gateway, cache, concurrency, refresh, view).collect(selected)
                           if query["include_metric_history"] else (None, 0))
        budget.spend(sum(view.shown_size(series) for series in (histories or {}).values()))
        if as_csv:
            return RunsAnswer(export.csv_chunks(selected, histories, view), None,
                              _cache_state(gateway, listed_from_cache, hits),
                              _csv_headers(listing, view))
        pieces = [run_json(run, histories, view) for run in selected]
    else:
        pieces, hits = RunPieces(gateway, cache, concurrency, refresh, budget).build(
            selected, query["include_metric_history"])
    return _json_answer(listing, pieces, view, _cache_state(gateway, listed_from_cache, hits))


def _json_answer(listing, pieces, view, cache_state) -> RunsAnswer:
    """The contract's envelope around the runs' pre-encoded JSON pieces."""
    experiment = listing["experiment"]
    head = {"success": True, "experiment_name": experiment and experiment["name"],
            "total_runs": len(pieces)}
    tail = {"message": f"Fetched {len(pieces)} run(s) with "
                       f"{sum(n for _, n in pieces)} total metric histories"}
    if view.metric_keys:
        tail["unknown_metric_keys"] = view.unknown_keys(listing["runs"])
    if "errors" in listing:
        tail["run_errors"] = listing["errors"]
    chunks = [orjson.dumps(head)[:-1] + b',"runs":[']
    for i, (piece, _) in enumerate(pieces):
        chunks += [b",", piece] if i else [piece]
    chunks.append(b"]," + orjson.dumps(tail)[1:])
    return RunsAnswer(chunks, sum(len(c) for c in chunks), cache_state)


def _cache_state(gateway, listed_from_cache, hits):
    if gateway.calls == 0:
        return "HIT"
    return "PARTIAL" if listed_from_cache or hits else "MISS"


def _csv_headers(listing, view):
    """What the JSON answer would report beside the rows (ASCII-safe JSON, bounded)."""
    headers = {"Content-Disposition": 'attachment; filename="mlflow-runs.csv"'}
    if view.metric_keys:
        unknown = view.unknown_keys(listing["runs"])
        headers["X-Unknown-Metric-Keys-Count"] = str(len(unknown))
        headers["X-Unknown-Metric-Keys"] = export.header_list(unknown)
    if "errors" in listing:
        headers["X-Run-Errors-Count"] = str(len(listing["errors"]))
        headers["X-Run-Errors"] = export.header_list(
            [{"run_id": e["run_id"], "code": e["code"]} for e in listing["errors"]])
    return headers


def _listing(gateway, query, cache, refresh):
    """The query's runs: from the cache (after an auth check) or from MLflow. When the
    cached list expires under many polls, one of them asks MLflow; the others wait."""
    key = cache.list_key(gateway.target, query)
    if refresh or cache.list_ttl <= 0:
        return _select(gateway, query, cache, key), False
    listing, cached = one_asks(cache, gateway.deadline, key, lambda: cache.get_listing(key),
                               lambda: _select(gateway, query, cache, key), kind="listing")
    if cached:
        for experiment_id in _experiments_of(listing):
            _ensure_grant(gateway, cache, experiment_id)
    return listing, cached


def _select(gateway, query, cache, key):
    listing = selection.select(gateway, query)
    # MLflow just answered these credentials for these experiments (its searches
    # leave out what the caller may not read).
    for experiment_id in _experiments_of(listing):
        cache.record_grant(gateway.target, experiment_id)
    cache.set_listing(key, listing)
    return listing


def _experiments_of(listing):
    ids = {run["info"]["experiment_id"] for run in listing["runs"]}
    if listing["experiment"]:
        ids.add(listing["experiment"]["experiment_id"])
    return sorted(ids)


def _ensure_grant(gateway, cache, experiment_id):
    """MLflow must have accepted these credentials for this experiment recently."""
    def ask():
        gateway.get_experiment(experiment_id)  # 401/403 propagate to the caller
        cache.record_grant(gateway.target, experiment_id)
        return True

    if cache.auth_ttl <= 0:
        ask()
        return
    one_asks(cache, gateway.deadline, cache.grant_key(gateway.target, experiment_id),
             lambda: cache.has_grant(gateway.target, experiment_id) or None, ask, kind="grant")


WAIT_STEP = 0.05  # seconds between looks while another request asks MLflow


def one_asks(cache, deadline, key, look, ask, *, kind):
    """(``look()``, True) if the cache has it, else (``ask()``, False), with one request
    at a time asking for ``key``: the others wait for its answer in the cache (a lock
    there) rather than all asking MLflow at once. A failed ask leaves the others to
    ask for themselves (and get the same error). Counted once per call as a ``kind``
    cache lookup: a hit if the answer came from the cache, however long it waited."""
    found, cached = _look_or_ask(cache, deadline, key, look, ask)
    observability.cache_lookups(kind, hits=int(cached), misses=int(not cached))
    return found, cached


def _look_or_ask(cache, deadline, key, look, ask):
    found = look()
    if found is not None:
        return found, True
    held = cache.lock(key, deadline.remaining())
    if held is not None:
        try:
            found = look()  # stored since we looked
            return (found, True) if found is not None else (ask(), False)
        finally:
            cache.unlock(held)
    found = wait_while_locked(cache, deadline, key, look)
    return (found, True) if found is not None else (ask(), False)


WAIT_SHARE = 0.5  # of what is left of its http_timeout, a request waits for another's ask


def wait_while_locked(cache, deadline, lock, look):
    """What the request holding ``lock`` stored (``look()`` not None), once it has; None
    if it let go without storing anything (its ask failed) or is taking longer than this
    request can wait. The caller then asks MLflow itself: a lock whose holder is stuck
    or gone must never become this request's 504."""
    give_up = time.monotonic() + deadline.remaining() * WAIT_SHARE
    while True:
        found = look()
        if found is not None:
            return found
        if not cache.is_locked(lock):
            return look()  # stored between our look and the unlock
        if time.monotonic() >= give_up:
            return None
        time.sleep(WAIT_STEP)


class SingleFlight:
    """Per-run values (response JSON, or metric columns) of finished runs from the
    cache. A run missing there is fetched by one request, under a lock in the cache,
    while the others asking for it at the same moment wait for its result; runs that
    are not finished are always fetched (they are never cached)."""

    def __init__(self, cache, deadline, *, refresh, lock_key, cached, fetch):
        self.cache, self.deadline, self.refresh = cache, deadline, refresh
        self.lock_key = lock_key  # run -> the lock's key
        self.cached = cached      # runs -> {run_id: value} of those found current
        self.fetch = fetch        # runs -> {run_id: value}, from MLflow (caching finished ones)

    def get(self, runs):
        """({run_id: value} for every run, number of values that came from the cache)."""
        locks = {_id(run): self.lock_key(run) for run in runs if _terminal(run)}
        ready = {} if self.refresh else self.cached([run for run in runs if _id(run) in locks])
        hits = len(ready)
        if not self.refresh:
            observability.cache_lookups("run", hits=hits, misses=len(locks) - hits)
        missing = [run for run in runs if _id(run) not in ready]
        held = {}
        for run in missing:
            if _id(run) in locks:
                held[_id(run)] = self.cache.lock(locks[_id(run)], self.deadline.remaining())
        mine = [run for run in missing if _id(run) not in locks or held[_id(run)] is not None]
        mine_ids = {_id(run) for run in mine}
        try:
            if not self.refresh:  # another request may have stored it since we looked
                late = self.cached([run for run in mine if _id(run) in locks])
                ready.update(late)
                hits += len(late)
            ready.update(self.fetch([run for run in mine if _id(run) not in ready]))
        finally:
            for lock in held.values():
                self.cache.unlock(lock)
        for run in missing:  # the ones another request is fetching right now
            if _id(run) not in mine_ids:
                ready[_id(run)] = self._wait_for(run, locks[_id(run)]) or self.fetch([run])[_id(run)]
        return ready, hits

    @observability.single_flight_wait
    def _wait_for(self, run, lock):
        return wait_while_locked(self.cache, self.deadline, lock,
                                 lambda: self.cached([run]).get(_id(run)))


class PointBudget:
    """MAX_RESPONSE_POINTS: the metric points one answer may carry, counted as runs come in
    (cached runs from their cache header, fetched runs before they are encoded), so an
    answer too large to build is refused before the worker holds its JSON."""

    def __init__(self, limit: int | None):
        self.limit, self.used = limit, 0

    def spend(self, points: int):
        self.used += points
        if self.limit is not None and self.used > self.limit:
            raise errors.InvalidInput(
                f"This answer would carry more than MAX_RESPONSE_POINTS={self.limit} metric "
                f"points (at least {self.used}). Narrow the query: fewer runs (limit, run_id, "
                "run_ids, filter_string), metric_keys, max_points, since_step, or "
                "\"include_metric_history\": false.")


class RunPieces:
    """Each selected run as response JSON bytes: from the cache when it is a finished
    run whose cached copy is current, else built from MLflow (and cached if finished)."""

    def __init__(self, gateway, cache, concurrency, refresh, budget=None):
        self.gateway, self.cache = gateway, cache
        self.concurrency, self.refresh = concurrency, refresh
        self.points = budget or PointBudget(None)
        self.generations = {}  # {run_id: current token, None, or UNKNOWN} of the runs looked up

    def build(self, runs, include_history):
        """[(run JSON bytes, number of histories)] in ``runs`` order, and the cache hits."""
        if not include_history:
            return [run_json(run) for run in runs], 0
        ready, hits = SingleFlight(self.cache, self.gateway.deadline, refresh=self.refresh,
                                   lock_key=self._key, cached=self._cached,
                                   fetch=self._fetch).get(runs)
        return [ready[_id(run)] for run in runs], hits

    def _key(self, run):
        return self.cache.run_key(self.gateway.target.uri, _id(run))

    def _cached(self, runs):
        """This worker's own copies first, then the shared cache (keeping what it sends);
        either only while it is of the run's current generation."""
        prints = {_id(run): fingerprint(run) for run in runs}
        found = self.cache.generations(self.gateway.target.uri, runs)
        self.generations.update(found if found is not None else dict.fromkeys(map(_id, runs), UNKNOWN))
        copies = {_id(run): self._current(self.cache.local.get(self._key(run), prints[_id(run)]), run)
                  for run in runs}
        rest = [run for run in runs if copies[_id(run)] is None]
        found = self.cache.get_entries([self._key(run) for run in rest]) if rest else {}
        for run in rest:
            # The generation holds the fingerprint it was made for: a current entry is of it.
            entry = self._current(found.get(self._key(run)), run)
            if entry:
                self.cache.local.put(self._key(run), *entry, ttl=self.cache.ttl_for(run))
                copies[_id(run)] = entry
        ready = {run_id: entry for run_id, entry in copies.items() if entry}
        self.points.spend(sum(entry[0]["points"] for entry in ready.values()))
        return {run_id: (entry[1], entry[0]["histories"]) for run_id, entry in ready.items()}

    def _current(self, entry, run):
        """``entry`` if it is of the run's current generation, or the cache cannot say
        (Redis down: this worker's copies still serve, by the fingerprint rule)."""
        current = self.generations.get(_id(run))
        if entry is None or current is UNKNOWN:
            return entry
        return entry if current and entry[0].get("generation") == current else None

    def _fetch(self, runs):
        wanted = [(_id(run), key) for run in runs for key in run_metric_keys(run)]
        histories = fetch_histories(self.gateway, wanted, self.concurrency) if wanted else {}
        points = {_id(run): sum(histories[(_id(run), key)].size for key in run_metric_keys(run))
                  for run in runs}
        self.points.spend(sum(points.values()))  # before any of it is encoded as JSON
        ready = {}
        for run in runs:
            piece = run_json(run, histories)
            if _terminal(run):
                current = self.generations.get(_id(run))
                generation = self.cache.generation_for(
                    self.gateway.target.uri, run, None if current is UNKNOWN else current,
                    renew=self.refresh)
                header = {"status": run["info"]["status"], "fingerprint": fingerprint(run),
                          "experiment_id": run["info"]["experiment_id"], "histories": piece[1],
                          "points": points[_id(run)], "generation": generation}
                ttl = self.cache.ttl_for(run)
                self.cache.set_entry(self._key(run), header, piece[0], ttl)
                self.cache.local.put(self._key(run), header, piece[0], ttl=ttl)
            ready[_id(run)] = piece
        return ready


class RunSeries:
    """The view's metrics of each run as Series. A finished run's metrics are kept
    complete in the cache, as columns (a miss fetches them whole and caches them,
    single flight as for whole runs); a live run's are fetched, with ``since_step``
    only the points after it. Cutting and thinning happen on the way out."""

    def __init__(self, gateway, cache, concurrency, refresh, view):
        self.gateway, self.cache = gateway, cache
        self.concurrency, self.refresh, self.view = concurrency, refresh, view
        self.generations = {}  # of the runs last looked up: {run_id: token}

    def collect(self, runs):
        """({(run_id, key): Series} for the view's metrics of ``runs``, cache hits)."""
        ready, hits = SingleFlight(self.cache, self.gateway.deadline, refresh=self.refresh,
                                   lock_key=self._lock, cached=self._cached,
                                   fetch=self._fetch).get(runs)
        return {(run_id, key): series for run_id, by_key in ready.items()
                for key, series in by_key.items()}, hits

    def _lock(self, run):
        return self.cache.run_key(self.gateway.target.uri, _id(run)) + ":series"

    def _key(self, run, key):
        return self.cache.series_key(self.gateway.target.uri, _id(run), key)

    def _cached(self, runs):
        """{run_id: {key: Series}} for the runs whose every wanted metric is cached, of
        the run's current generation (so of its fingerprint), and readable."""
        wanted = {_id(run): self.view.keys_of(run) for run in runs}
        self.generations.update(self.cache.generations(self.gateway.target.uri, runs) or {})
        entries = self.cache.get_entries([self._key(run, key) for run in runs
                                          for key in wanted[_id(run)]])
        found = {}
        for run in runs:
            current = {key: entries.get(self._key(run, key)) for key in wanted[_id(run)]}
            generation = self.generations.get(_id(run))
            if generation and all(entry and entry[0].get("generation") == generation
                                  for entry in current.values()):
                try:
                    found[_id(run)] = {key: history.from_bytes(entry[1])
                                       for key, entry in current.items()}
                except ValueError:  # sealed by us, yet not whole points: a miss
                    continue
        return found

    def _fetch(self, runs):
        """Finished runs' metrics complete (and cached); live runs' since since_step."""
        finished = [run for run in runs if _terminal(run)]
        live = [run for run in runs if not _terminal(run)]
        ready = self._histories(finished)
        uri = self.gateway.target.uri
        for run in finished:
            generation = self.cache.generation_for(uri, run, self.generations.get(_id(run)),
                                                   renew=self.refresh)
            for key, series in ready[_id(run)].items():
                self.cache.set_entry(self._key(run, key),
                                     {"fingerprint": fingerprint(run), "generation": generation},
                                     history.to_bytes(series), self.cache.ttl_for(run))
        ready.update(self._histories(live, since_step=self.view.since_step))
        return ready

    def _histories(self, runs, since_step=None):
        wanted = [(_id(run), key) for run in runs for key in self.view.keys_of(run)]
        found = fetch_histories(self.gateway, wanted, self.concurrency,
                                since_step=since_step) if wanted else {}
        return {_id(run): {key: found[(_id(run), key)] for key in self.view.keys_of(run)}
                for run in runs}


def _id(run):
    return run["info"]["run_id"]


UNKNOWN = object()  # a run's generation when the cache could not be read


def _terminal(run):
    return run["info"].get("status") in TERMINAL


def run_json(run, histories=None, view=View()):
    """(the contract's run object as JSON, its number of histories).

    ``histories`` None means none were asked for. Metric histories are spliced in
    as pre-encoded pieces and everything is joined once: a million-point history
    is never held as Python objects, nor copied more than once.
    """
    head = run_fields(run, view)
    if histories is None:
        return orjson.dumps(dict(head, metrics_history=[])), 0
    keys = view.keys_of(run)
    pieces = [orjson.dumps(head)[:-1], b',"metrics_history":[']
    for i, key in enumerate(keys):
        if i:
            pieces.append(b",")
        # pop: each history's columns are freed once encoded, before the final join.
        pieces += view.encode(key, histories.pop((head["run_id"], key)))
    pieces.append(b"]}")
    return b"".join(pieces), len(keys)


def run_fields(run, view=View()):
    """The contract's run object without ``metrics_history`` (which comes last)."""
    info, data = run["info"], run.get("data", {})
    return {
        "run_id": info["run_id"],
        "run_name": info.get("run_name"),
        "status": info.get("status"),
        "duration_seconds": history.duration_seconds(info.get("start_time"), info.get("end_time")),
        "parameters": {p["key"]: p.get("value", "") for p in data.get("params", [])},
        "metrics_summary": view.summary(run),
    }
