"""MAX_RESPONSE_POINTS: the metric points one answer may carry."""
from app import errors


class PointBudget:
    """Counted as runs come in (cached runs from their cache header, fetched runs before
    they are encoded), so an answer too large to build is refused before the worker
    holds its JSON."""

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
