"""The view's metrics of each run as history columns (Series), for views that select,
cut or thin histories and for CSV.

A finished run's metrics are kept complete in the cache, as columns (a miss fetches
them whole and caches them, single flight as for whole runs); a live run's come from its
shared tail (app/runs/live.py), or without one are fetched, with ``since_step`` only the
points after it. With a cursor, a run the caller holds comes as what is new since it
(``totals`` then has its whole histories' stats). Cutting and thinning happen on the way
out (app/runs/views.py).
"""
from app import history
from app.cache.flight import SingleFlight
from app.cache.freshness import fingerprint, terminal
from app.mlflow.histories import fetch_histories
from app.runs.cursor import FINISHED, LIVE, keys_digest
from app.runs.live import LiveHistories


class MetricColumns:
    def __init__(self, ctx, view, tails: LiveHistories = None):
        self.ctx, self.cache, self.view = ctx, ctx.cache, view
        self.tails = tails or LiveHistories(ctx)
        self.generations = {}  # of the runs last looked up: {run_id: token}
        self.live = None       # app/runs/live.LiveRead of the live runs, from their tails
        self.totals = {}       # {run_id: {key: history.tally}}: runs answered since the cursor

    def collect(self, runs):
        """({(run_id, key): Series} for the view's metrics of ``runs``, cache hits)."""
        live = [run for run in runs if not terminal(run)]
        self.live = self.tails.read(live, self.view.keys_of, self._after)
        if self.live is not None:
            runs = [run for run in runs if terminal(run)]
        flight = SingleFlight(self.cache, self.ctx.deadline, refresh=self.ctx.refresh,
                              ident=_id, lock_key=self._lock_key, cached=self._cached,
                              fetch=self._fetch).get(runs)
        found = {(run_id, key): series for run_id, by_key in flight.ready.items()
                 for key, series in by_key.items()}
        self._since_cursor(runs, found)
        if self.live is not None:
            found.update(self.live.series)
            for run in live:
                if self.live.since[_id(run)] is not None:
                    metrics = self.live.states[_id(run)].metrics
                    self.totals[_id(run)] = {key: metrics[key].tally
                                             for key in self.view.keys_of(run)}
        return found, flight.hits

    def _after(self, run_id, state):
        """The sequence number the cursor holds of a live run's tail (same epoch), or None."""
        held = self.view.held(run_id)
        return held[2] if held and held[0] == LIVE and held[1] == state.epoch else None

    def _since_cursor(self, runs, found):
        """Finished runs the cursor holds as they are (their fingerprint): nothing is new."""
        for run in runs:
            held = self.view.held(_id(run))
            if held and held[0] == FINISHED and terminal(run) and held[1] == fingerprint(run):
                keys = self.view.keys_of(run)
                self.totals[_id(run)] = {key: history.tally(found[(_id(run), key)])
                                         for key in keys}
                found.update(((_id(run), key), history.empty()) for key in keys)

    def _lock_key(self, run):
        """One fetch per finished run and set of metrics: viewers of a view wait for one
        another, while a request for other metrics of the run (a dashboard loads a chart,
        so a metric, per request) goes ahead instead of waiting for a fetch it cannot use."""
        if not terminal(run):
            return None
        metrics = keys_digest(self.view.keys_of(run))
        return f"{self.cache.run_key(self.ctx.target.uri, _id(run))}:series:{metrics}"

    def _key(self, run, key):
        return self.cache.series_key(self.ctx.target.uri, _id(run), key)

    def _cached(self, runs):
        """{run_id: {key: Series}} for the runs whose every wanted metric is cached, of
        the run's current generation (so of its fingerprint), and readable."""
        wanted = {_id(run): self.view.keys_of(run) for run in runs}
        self.generations.update(self.cache.generations(self.ctx.target.uri, runs) or {})
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
        finished = [run for run in runs if terminal(run)]
        live = [run for run in runs if not terminal(run)]
        ready = self._histories(finished)
        # Under the run's generation only if what was found agrees with it (else a new one).
        self.generations.update(self.cache.generations_for(
            self.ctx.target.uri, [(run, _digests(ready[_id(run)])) for run in finished],
            renew=self.ctx.refresh))
        for run in finished:
            generation = self.generations[_id(run)]
            for key, series in ready[_id(run)].items():
                self.cache.set_entry(self._key(run, key),
                                     {"fingerprint": fingerprint(run), "generation": generation},
                                     history.to_bytes(series), self.cache.ttl_for(run))
        ready.update(self._histories(live, since_step=self.view.since_step))
        return ready

    def _histories(self, runs, since_step=None):
        wanted = [(_id(run), key) for run in runs for key in self.view.keys_of(run)]
        found = fetch_histories(self.ctx.mlflow, wanted, self.ctx.concurrency,
                                since_step=since_step) if wanted else {}
        return {_id(run): {key: found[(_id(run), key)] for key in self.view.keys_of(run)}
                for run in runs}


def _id(run):
    return run["info"]["run_id"]


def _digests(by_key: dict) -> dict:
    return {key: history.digest(series) for key, series in by_key.items()}
