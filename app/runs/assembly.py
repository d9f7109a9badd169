"""A /mlflow/runs answer assembled: the listing, then each run's histories from the
cache or from MLflow, then the encoding.

Two paths, by what the view asks for: the contract's own view (every point of every
metric) is served as whole runs' JSON, cached per finished run (``WholeRuns``); a view
that selects (metric_keys, since_*, max_points) or a CSV export reads each metric's
columns, cached per finished run and metric (app/runs/columns.py), and cuts them on the
way out.
"""
from app import history
from app.cache.flight import SingleFlight
from app.cache.freshness import fingerprint, terminal
from app.mlflow.histories import fetch_histories
from app.runs import encoding, export
from app.runs.etag import etag_of, held
from app.runs.columns import MetricColumns
from app.runs.compressed import CompressedForms
from app.runs.cursor import answer_cursor
from app.runs.live import LiveHistories
from app.runs.listing import listing
from app.runs.query import RunsQuery
from app.runs.views import run_metric_keys


def runs(ctx, query: RunsQuery, *, as_csv: bool = False, coding: str = None,
         if_none_match=None) -> encoding.RunsAnswer:
    """The answer to ``query``; ``coding`` (gzip, zstd) is the content coding the answer
    will be sent in, if any: finished runs then come with their stored compressed form.
    ``if_none_match`` (a GET's or HEAD's, werkzeug's ETags): when it holds the answer as
    the cache knows it, the answer is a 304's, decided before any entry is read."""
    found, listed_from_cache = listing(ctx, query.selection)
    tails = LiveHistories(ctx)
    if if_none_match:
        tag = held(if_none_match, _current_etag(ctx, query, found, as_csv, tails))
        if tag:
            headers = encoding.csv_headers(found, query.view) if as_csv else None
            return encoding.not_modified(tag, _cache_state(ctx, listed_from_cache, 0), headers)
    selected, view = found["runs"], query.view
    if as_csv or view.selects:
        # without histories (include_metric_history false) a CSV is its header only
        columns = MetricColumns(ctx, view, tails)
        histories, hits = (columns.collect(selected)
                           if query.include_metric_history else (None, 0))
        ctx.budget.spend(sum(view.shown_size(series) for series in (histories or {}).values()))
        state = _cache_state(ctx, listed_from_cache, hits)
        etag = etag_of(query, found, columns.generations, as_csv=as_csv,
                       live=columns.live and columns.live.states)
        if as_csv:
            return encoding.RunsAnswer(export.csv_chunks(selected, histories, view), None,
                                       state, encoding.csv_headers(found, view), etag)
        pieces = [encoding.run_json(run, histories, view, columns.totals.get(_id(run)))
                  for run in selected]
        live = columns.live
    else:
        whole = WholeRuns(ctx, tails)
        pieces, hits = whole.build(selected, query.include_metric_history)
        state = _cache_state(ctx, listed_from_cache, hits)
        etag = etag_of(query, found, whole.generations, as_csv=False,
                       live=whole.live and whole.live.states)
        # A stored compressed form is of the run's JSON alone: not with this query's tags.
        if coding and query.include_metric_history and not query.selection.include_tags:
            pieces = CompressedForms(ctx, coding).wrap(selected, pieces, whole.generations)
        live = whole.live
    if query.selection.include_tags:
        pieces = [(encoding.with_tags(piece, run), n) for (piece, n), run in zip(pieces, selected)]
    next_cursor = answer_cursor(view, selected, live) if query.include_metric_history else None
    return encoding.json_answer(found, pieces, view, state, etag, next_cursor)


def _current_etag(ctx, query, found, as_csv, tails):
    """The answer's ETag from the listing, the finished runs' generations (small ``gen:``
    keys) and the live runs' tail states alone: no entry, column, compressed form or
    tail chunk is read. None when it has none: on a refresh (it makes new generations),
    or while the cache cannot say a run's generation or tail."""
    runs = found["runs"]
    if ctx.refresh:
        return None
    if not query.include_metric_history:  # a tag without histories: app/runs/etag.py
        return etag_of(query, found, {}, as_csv=as_csv)
    keys_of = query.view.keys_of if as_csv or query.view.selects else run_metric_keys
    live = [run for run in runs if not terminal(run)]
    states = tails.states(live, keys_of) if live else {}
    generations = ctx.cache.generations(ctx.target.uri, [run for run in runs if terminal(run)])
    return etag_of(query, found, generations or {}, as_csv=as_csv, live=states)


def _cache_state(ctx, listed_from_cache, hits):
    """HIT (MLflow not asked), MISS (nothing from the cache) or PARTIAL."""
    if not ctx.asked_mlflow:
        return "HIT"
    return "PARTIAL" if listed_from_cache or hits else "MISS"


UNKNOWN = object()  # a run's generation when the cache could not be read
# The run JSON's format, in each entry's header: an entry of another format (made by an
# older release, without start_time, end_time, experiment_id, user_id) is a miss.
RUN_FORMAT = 2


class WholeRuns:
    """Each selected run as response JSON bytes: from the cache when it is a finished
    run whose cached copy is current, else built from MLflow (and cached if finished)."""

    def __init__(self, ctx, tails: LiveHistories = None):
        self.ctx, self.cache = ctx, ctx.cache
        self.tails = tails or LiveHistories(ctx)
        self.generations = {}  # {run_id: current token, None, or UNKNOWN} of the runs looked up
        self.live = None       # app/runs/live.LiveRead of the live runs, from their tails

    def build(self, runs, include_history):
        """[(run JSON bytes, number of histories)] in ``runs`` order, and the cache hits."""
        if not include_history:
            return [encoding.run_json(run) for run in runs], 0
        live = [run for run in runs if not terminal(run)]
        self.live = self.tails.read(live, run_metric_keys)
        ready = {}
        if self.live is not None:
            self.ctx.budget.spend(sum(points.size for points in self.live.series.values()))
            ready = {_id(run): encoding.run_json(run, self.live.series) for run in live}
        flight = SingleFlight(self.cache, self.ctx.deadline, refresh=self.ctx.refresh,
                              ident=_id, lock_key=self._lock_key, cached=self._cached,
                              fetch=self._fetch).get([run for run in runs if _id(run) not in ready])
        ready.update(flight.ready)
        return [ready[_id(run)] for run in runs], flight.hits

    def _key(self, run):
        return self.cache.run_key(self.ctx.target.uri, _id(run))

    def _lock_key(self, run):
        return self._key(run) if terminal(run) else None

    def _cached(self, runs):
        """This worker's own copies first, then the shared cache (keeping what it sends);
        either only while it is of the run's current generation."""
        prints = {_id(run): fingerprint(run) for run in runs}
        found = self.cache.generations(self.ctx.target.uri, runs)
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
        self.ctx.budget.spend(sum(entry[0]["points"] for entry in ready.values()))
        return {run_id: (entry[1], entry[0]["histories"]) for run_id, entry in ready.items()}

    def _current(self, entry, run):
        """``entry`` if it is of the run's current generation, or the cache cannot say
        (Redis down: this worker's copies still serve, by the fingerprint rule)."""
        current = self.generations.get(_id(run))
        if entry is None or entry[0].get("format") != RUN_FORMAT:
            return None
        if current is UNKNOWN:
            return entry
        return entry if current and entry[0].get("generation") == current else None

    def _fetch(self, runs):
        wanted = [(_id(run), key) for run in runs for key in run_metric_keys(run)]
        histories = (fetch_histories(self.ctx.mlflow, wanted, self.ctx.concurrency)
                     if wanted else {})
        points = {_id(run): sum(histories[(_id(run), key)].size for key in run_metric_keys(run))
                  for run in runs}
        self.ctx.budget.spend(sum(points.values()))  # before any of it is encoded as JSON
        # Under the run's generation only if what was found agrees with it (else a new one).
        found = [(run, {key: history.digest(histories[(_id(run), key)])
                        for key in run_metric_keys(run)}) for run in runs if terminal(run)]
        self.generations.update(self.cache.generations_for(self.ctx.target.uri, found,
                                                           renew=self.ctx.refresh))
        ready = {}
        for run in runs:
            piece = encoding.run_json(run, histories)
            if terminal(run):
                self._store(run, piece, points[_id(run)])
            ready[_id(run)] = piece
        return ready

    def _store(self, run, piece, points):
        generation = self.generations[_id(run)]
        header = {"status": run["info"]["status"], "fingerprint": fingerprint(run),
                  "experiment_id": run["info"]["experiment_id"], "histories": piece[1],
                  "points": points, "generation": generation, "format": RUN_FORMAT}
        ttl = self.cache.ttl_for(run)
        self.cache.set_entry(self._key(run), header, piece[0], ttl)
        self.cache.local.put(self._key(run), header, piece[0], ttl=ttl)


def _id(run):
    return run["info"]["run_id"]
