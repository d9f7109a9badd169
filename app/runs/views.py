"""What a /mlflow/runs query asks to see of each run's histories: which metrics, which
points (since_step / max_step / since_timestamp) and how many (max_points). Pure; no I/O."""
from dataclasses import dataclass, fields

from app import history
from app.runs.cursor import Cursor, keys_digest


@dataclass(frozen=True)
class View:
    metric_keys: tuple = None      # None: every metric of the run, sorted by name
    max_points: int = None
    since_step: int = None
    since_timestamp: int = None
    max_step: int = None           # with since_step: since_step < step <= max_step
    cursor: Cursor = None          # what the caller holds of each run (app/runs/cursor.py)

    @classmethod
    def of(cls, query: dict) -> "View":
        keys = query.get("metric_keys")
        return cls(tuple(keys) if keys else None, query.get("max_points"),
                   query.get("since_step"), query.get("since_timestamp"), query.get("max_step"),
                   query.get("cursor"))

    def held(self, run_id):
        """(kind, token, seq) of what the cursor says the caller holds of ``run_id``: only if
        it was made for these metric_keys (else the caller gets the run whole)."""
        if self.cursor is None or self.cursor.keys != keys_digest(self.metric_keys):
            return None
        return self.cursor.of(run_id)

    def key_parts(self) -> list:
        """Every field, in order, as JSON-able values: the view's share of an answer's
        ETag (app/runs/etag.py), complete so that no field can be left out of it."""
        return [list(value) if isinstance(value, tuple) else value
                for value in (getattr(self, f.name) for f in fields(self))]

    @property
    def selects(self) -> bool:
        """False for the contract's own view: every point of every metric."""
        return self != View()

    def keys_of(self, run) -> list:
        """The run's metrics this view shows: all, sorted; or the asked ones it has, in
        the order asked."""
        have = run_metric_keys(run)
        if self.metric_keys is None:
            return have
        return [key for key in self.metric_keys if key in set(have)] if have else []

    def unknown_keys(self, runs) -> list:
        """Asked-for metrics that none of ``runs`` has (reported, never silently dropped)."""
        have = {key for run in runs for key in run_metric_keys(run)}
        return [key for key in self.metric_keys or () if key not in have]

    def summary(self, run, histories=None, totals=None) -> dict:
        """metrics_summary: the latest value of each metric shown.

        The listing's latest values and the histories come from different MLflow calls;
        for a live run the histories are read later and may hold newer points. So the
        latest point of the history read for this answer wins wherever there is one
        (``histories``: {(run_id, key): Series}), or of the whole history where only what
        is new since a cursor was read (``totals``: {key: history.tally}); the listing's
        value stands for a metric none was read of (no histories asked, or no point after
        since_step).
        Hence a metric's summary is its history's ``last_value`` whenever the history
        shown is not cut from above (no max_step below the run's last step).
        """
        latest = {m["key"]: history.finite_or_none(m.get("value"))
                  for m in run.get("data", {}).get("metrics", [])}
        shown = latest if self.metric_keys is None else {
            key: latest[key] for key in self.metric_keys if key in latest}
        run_id = run["info"]["run_id"]
        for key in shown:
            series = (histories or {}).get((run_id, key))
            if totals and key in totals:
                shown[key] = totals[key]["last_value"]
            elif series is not None and series.size:
                shown[key] = history.last_value(series)
        return shown

    def encode(self, key, series, totals=None) -> list:
        """The history object of ``series``; with ``totals`` (a history.tally of the whole
        history) ``series`` is only what is new since the cursor."""
        return history.encode_metric(key, series, max_points=self.max_points,
                                     since_step=self.since_step,
                                     since_timestamp=self.since_timestamp, max_step=self.max_step,
                                     totals=totals)

    def shown_size(self, series) -> int:
        """How many points ``points(series)`` holds (an upper bound with max_points)."""
        size = self._window(series).size
        return min(size, self.max_points) if self.max_points else size

    def points(self, series) -> history.Series:
        """The points shown, ordered, without the stats (for CSV)."""
        shown = self._window(history.ordered(series))
        return history.downsample(shown, self.max_points) if self.max_points else shown

    def _window(self, series):
        return history.window(series, self.since_step, self.since_timestamp, self.max_step)


def run_metric_keys(run) -> list:
    return sorted({m["key"] for m in run.get("data", {}).get("metrics", [])})
