"""A chart polling /mlflow/runs the way docs/api.md says a live chart should: keep the
answer's ``cursor``, send it back, append what comes ``since_cursor``, replace what comes
whole. Tests and benches compare what it holds with MLflow's own histories."""


class Chart:
    def __init__(self):
        self.series = {}   # (run_id, metric) -> [(step, timestamp, value)]
        self.cursor = None
        self.status = {}   # run_id -> status as last answered

    def take(self, answer: dict):
        """Fold one 200 answer in."""
        for run in answer["runs"]:
            if not run.get("since_cursor"):
                for key in [k for k in self.series if k[0] == run["run_id"]]:
                    del self.series[key]
            for metric in run["metrics_history"]:
                key = (run["run_id"], metric["metric_name"])
                self.series.setdefault(key, []).extend(
                    (p["step"], p["timestamp"], p["value"]) for p in metric["history"])
            self.status[run["run_id"]] = run["status"]
        self.cursor = answer.get("cursor")

    def points(self, run_id, metric) -> list:
        return sorted(self.series.get((run_id, metric), []))


def mlflow_points(client, run_id, metric) -> list:
    """What MLflow holds of a metric, as ``Chart.points`` lists it."""
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, metric))
