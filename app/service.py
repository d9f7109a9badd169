"""What each route does, in terms of the MLflow gateway, the run cache and the history maths."""
import time
from dataclasses import dataclass

import orjson

from app import errors, history, selection
from app.fetch import fetch_histories
from app.cache import TERMINAL, RunCache, fingerprint
from app.gateway import MlflowGateway


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
    chunks: list  # the response JSON in pieces: bytes, or views of cached entries
    length: int
    cache: str    # HIT (MLflow not asked), MISS (nothing from cache) or PARTIAL

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
         refresh: bool = False, max_points: int | None = None) -> RunsAnswer:
    listing, listed_from_cache = _listing(gateway, query, cache, refresh)
    pieces, hits = RunPieces(gateway, cache, concurrency, refresh, max_points).build(
        listing["runs"], query["include_metric_history"])
    histories = sum(n for _, n in pieces)
    experiment = listing["experiment"]
    head = {"success": True, "experiment_name": experiment and experiment["name"],
            "total_runs": len(pieces)}
    tail = {"message": f"Fetched {len(pieces)} run(s) with {histories} total metric histories"}
    chunks = [orjson.dumps(head)[:-1] + b',"runs":[']
    for i, (piece, _) in enumerate(pieces):
        chunks += [b",", piece] if i else [piece]
    chunks.append(b"]," + orjson.dumps(tail)[1:])
    if gateway.calls == 0:
        state = "HIT"
    else:
        state = "PARTIAL" if listed_from_cache or hits else "MISS"
    return RunsAnswer(chunks, sum(len(c) for c in chunks), state)


def _listing(gateway, query, cache, refresh):
    """The query's runs: from the cache (after an auth check) or from MLflow."""
    key = cache.list_key(gateway.target, query)
    listing = None if refresh else cache.get_listing(key)
    if listing is not None:
        for experiment_id in _experiments_of(listing):
            _ensure_grant(gateway, cache, experiment_id)
        return listing, True
    listing = selection.select(gateway, query)
    # MLflow just answered these credentials for these experiments (its searches
    # leave out what the caller may not read).
    for experiment_id in _experiments_of(listing):
        cache.record_grant(gateway.target, experiment_id)
    cache.set_listing(key, listing)
    return listing, False


def _experiments_of(listing):
    ids = {run["info"]["experiment_id"] for run in listing["runs"]}
    if listing["experiment"]:
        ids.add(listing["experiment"]["experiment_id"])
    return sorted(ids)


def _ensure_grant(gateway, cache, experiment_id):
    """MLflow must have accepted these credentials for this experiment recently."""
    if not cache.has_grant(gateway.target, experiment_id):
        gateway.get_experiment(experiment_id)  # 401/403 propagate to the caller
        cache.record_grant(gateway.target, experiment_id)


class RunPieces:
    """Each selected run as response JSON bytes: from the cache when it is a finished
    run whose cached copy is current, else built from MLflow (and cached if finished)."""

    WAIT_STEP = 0.05

    def __init__(self, gateway, cache, concurrency, refresh, max_points=None):
        self.gateway, self.cache = gateway, cache
        self.concurrency, self.refresh = concurrency, refresh
        self.points = PointBudget(max_points)

    def build(self, runs, include_history):
        """[(run JSON bytes, number of histories)] in ``runs`` order, and the cache hits."""
        if not include_history:
            return [run_json(run) for run in runs], 0
        keys = {_id(run): self.cache.run_key(self.gateway.target.uri, _id(run))
                for run in runs if _terminal(run)}
        ready = {} if self.refresh else self._cached(runs, keys)
        hits = len(ready)
        missing = [run for run in runs if _id(run) not in ready]
        mine = [run for run in missing if _id(run) not in keys
                or self.cache.try_lock(keys[_id(run)], self.gateway.deadline.remaining())]
        mine_ids = {_id(run) for run in mine}
        others = [run for run in missing if _id(run) not in mine_ids]
        try:
            if not self.refresh:  # another request may have stored it since we looked
                late = self._cached([run for run in mine if _id(run) in keys], keys)
                ready.update(late)
                hits += len(late)
            ready.update(self._fetch([run for run in mine if _id(run) not in ready], keys))
        finally:
            for run in mine:
                if _id(run) in keys:
                    self.cache.unlock(keys[_id(run)])
        for run in others:  # another request is fetching these right now
            ready[_id(run)] = self._wait_for(run, keys[_id(run)]) or self._fetch([run], keys)[_id(run)]
        return [ready[_id(run)] for run in runs], hits

    def _cached(self, runs, keys):
        found = self.cache.get_runs([keys[_id(run)] for run in runs if _id(run) in keys])
        ready = {}
        for run in runs:
            entry = found.get(keys.get(_id(run)))
            # An entry written before "points" was recorded is refetched (and rewritten).
            if entry and entry[0].get("fingerprint") == fingerprint(run) and "points" in entry[0]:
                self.points.spend(entry[0]["points"])
                ready[_id(run)] = (entry[1], entry[0]["histories"])
        return ready

    def _fetch(self, runs, keys):
        wanted = [(_id(run), key) for run in runs for key in metric_keys(run)]
        histories = fetch_histories(self.gateway, wanted, self.concurrency)
        points = {_id(run): sum(histories[(_id(run), key)].size for key in metric_keys(run))
                  for run in runs}
        self.points.spend(sum(points.values()))  # before any of it is encoded as JSON
        ready = {}
        for run in runs:
            piece = run_json(run, histories)
            if _id(run) in keys:
                header = {"status": run["info"]["status"], "fingerprint": fingerprint(run),
                          "experiment_id": run["info"]["experiment_id"], "histories": piece[1],
                          "points": points[_id(run)]}
                self.cache.set_run(keys[_id(run)], header, piece[0])
            ready[_id(run)] = piece
        return ready

    def _wait_for(self, run, key):
        while True:
            self.gateway.deadline.check()
            found = self._cached([run], {_id(run): key})
            if found:
                return found[_id(run)]
            if not self.cache.is_locked(key):
                return None
            time.sleep(self.WAIT_STEP)


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
                "experiment_name, filter_string) or \"include_metric_history\": false.")


def _id(run):
    return run["info"]["run_id"]


def _terminal(run):
    return run["info"].get("status") in TERMINAL


def metric_keys(run):
    return sorted({m["key"] for m in run.get("data", {}).get("metrics", [])})


def run_json(run, histories=None):
    """(the contract's run object as JSON, its number of histories).

    ``histories`` None means none were asked for. Metric histories are spliced in
    as pre-encoded pieces and everything is joined once: a million-point history
    is never held as Python objects, nor copied more than once.
    """
    head = run_fields(run)
    if histories is None:
        return orjson.dumps(dict(head, metrics_history=[])), 0
    keys = metric_keys(run)
    pieces = [orjson.dumps(head)[:-1], b',"metrics_history":[']
    for i, key in enumerate(keys):
        if i:
            pieces.append(b",")
        # pop: each history's columns are freed once encoded, before the final join.
        pieces += history.encode_metric(key, histories.pop((head["run_id"], key)))
    pieces.append(b"]}")
    return b"".join(pieces), len(keys)


def run_fields(run):
    """The contract's run object without ``metrics_history`` (which comes last)."""
    info, data = run["info"], run.get("data", {})
    return {
        "run_id": info["run_id"],
        "run_name": info.get("run_name"),
        "status": info.get("status"),
        "duration_seconds": history.duration_seconds(info.get("start_time"), info.get("end_time")),
        "parameters": {p["key"]: p.get("value", "") for p in data.get("params", [])},
        "metrics_summary": {m["key"]: history.finite_or_none(m.get("value"))
                            for m in data.get("metrics", [])},
    }
