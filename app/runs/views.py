"""What a /mlflow/runs query asks to see of each run's histories: which metrics, which
points (since_step / since_timestamp) and how many (max_points). Pure; no I/O."""
from dataclasses import dataclass

from app import history


@dataclass(frozen=True)
class View:
    metric_keys: tuple = None      # None: every metric of the run, sorted by name
    max_points: int = None
    since_step: int = None
    since_timestamp: int = None

    @classmethod
    def of(cls, query: dict) -> "View":
        keys = query.get("metric_keys")
        return cls(tuple(keys) if keys else None, query.get("max_points"),
                   query.get("since_step"), query.get("since_timestamp"))

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

    def summary(self, run) -> dict:
        """metrics_summary: the latest value of each metric shown."""
        latest = {m["key"]: history.finite_or_none(m.get("value"))
                  for m in run.get("data", {}).get("metrics", [])}
        if self.metric_keys is None:
            return latest
        return {key: latest[key] for key in self.metric_keys if key in latest}

    def encode(self, key, series) -> list:
        return history.encode_metric(key, series, max_points=self.max_points,
                                     since_step=self.since_step,
                                     since_timestamp=self.since_timestamp)

    def shown_size(self, series) -> int:
        """How many points ``points(series)`` holds (an upper bound with max_points)."""
        size = history.window(series, self.since_step, self.since_timestamp).size
        return min(size, self.max_points) if self.max_points else size

    def points(self, series) -> history.Series:
        """The points shown, ordered, without the stats (for CSV)."""
        shown = history.window(history.ordered(series), self.since_step, self.since_timestamp)
        return history.downsample(shown, self.max_points) if self.max_points else shown


def run_metric_keys(run) -> list:
    return sorted({m["key"] for m in run.get("data", {}).get("metrics", [])})
