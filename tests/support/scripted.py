"""A scripted MLflow and an in-memory cache, for fast unit tests of the service's rules
(single flight, listings, selection) without servers.

``ScriptedApi`` plays ``app.mlflow.api.MlflowApi`` in process (``fake_mlflow.py`` plays
an MLflow *server* instead): it answers from the experiments
and runs it is given, raises ``Rejected`` as MLflow would, and records every call.
It understands the one filter the service writes itself (``attributes.run_id IN (...)``),
so the real selection code runs against it; a caller's own filter is refused unless a
test scripts it. The proof that the service talks to the real MLflow correctly is in the
integration tests; this is for the logic around it.
"""
import re
import threading
from types import SimpleNamespace

from cachelib import SimpleCache

from app.cache.copies import LocalCopies
from app.cache.run_cache import RunCache
from app.cache.store import JsonSerializer, Store
from app.mlflow.errors import Rejected
from app.mlflow.target import MlflowTarget
from app.mlflow.transport import CallCounter, Deadline
from app.runs.budget import PointBudget

RUN_IDS_IN = re.compile(r"attributes\.run_id IN \(([^)]*)\)")


def run(run_id, experiment_id="1", status="FINISHED", start=0, metrics=(), deleted=False):
    """A run as MLflow's runs/get and runs/search answer it."""
    return {"info": {"run_id": run_id, "experiment_id": experiment_id, "status": status,
                     "start_time": start, "end_time": start + 1 if status != "RUNNING" else None,
                     "lifecycle_stage": "deleted" if deleted else "active",
                     "run_name": f"name-{run_id}"},
            "data": {"params": [], "metrics": [{"key": k, "value": 1.0, "step": 0,
                                                "timestamp": 0} for k in metrics]}}


class ScriptedApi:
    def __init__(self, experiments=(), runs=(), target=None):
        self.target = target or MlflowTarget("http://mlflow.test", "alice", "pw")
        self.experiments = {e["experiment_id"]: e for e in experiments}
        self.runs = {r["info"]["run_id"]: r for r in runs}
        self.calls = []
        self.refuse = {}  # endpoint name -> (status, error_code): every call to it is Rejected
        # Experiments this caller may not read, as a basic-auth MLflow treats them: 403 when
        # asked for, left out of run searches.
        self.forbidden = set()
        # endpoint name -> what happens meanwhile (another request's doing) when it is called
        self.during = {}
        self._lock = threading.Lock()

    def _called(self, name, *args):
        with self._lock:
            self.calls.append((name, *args))
        if name in self.during:
            self.during[name]()
        if name in self.refuse:
            status, code = self.refuse[name]
            raise Rejected(self.target, status, code, f"refused by the script ({code})", name)

    def _check(self, experiment_id):
        if experiment_id in self.forbidden:
            raise Rejected(self.target, 403, "PERMISSION_DENIED", "Permission denied", "get")

    def _missing(self, what):
        return Rejected(self.target, 404, "RESOURCE_DOES_NOT_EXIST", f"No {what}", "get")

    def search_experiments(self, view_type="ACTIVE_ONLY"):
        self._called("search_experiments", view_type)
        return [e for e in self.experiments.values()
                if view_type == "ALL" or e.get("lifecycle_stage", "active") == "active"]

    def get_experiment(self, experiment_id):
        self._called("get_experiment", experiment_id)
        if experiment_id not in self.experiments:
            raise self._missing(f"experiment {experiment_id}")
        self._check(experiment_id)
        return self.experiments[experiment_id]

    def get_experiment_by_name(self, name):
        self._called("get_experiment_by_name", name)
        for experiment in self.experiments.values():
            if experiment["name"] == name:
                self._check(experiment["experiment_id"])
                return experiment
        raise self._missing(f"experiment named {name}")

    def get_run(self, run_id):
        self._called("get_run", run_id)
        if run_id not in self.runs:
            raise self._missing(f"run {run_id}")
        self._check(self.runs[run_id]["info"]["experiment_id"])
        return self.runs[run_id]

    def search_runs(self, experiment_ids, limit, view_type="ACTIVE_ONLY", *, filter_string=None,
                    order_by=None):
        self._called("search_runs", tuple(experiment_ids), limit, filter_string)
        found = [r for r in self.runs.values() if r["info"]["experiment_id"] in experiment_ids
                 and r["info"]["experiment_id"] not in self.forbidden
                 and (view_type == "ALL" or r["info"]["lifecycle_stage"] == "active")]
        rest = filter_string or ""
        wanted = RUN_IDS_IN.search(rest)
        if wanted:
            ids = {i.strip().strip("'") for i in wanted.group(1).split(",")}
            found = [r for r in found if r["info"]["run_id"] in ids]
            rest = RUN_IDS_IN.sub("", rest).replace(" and ", "", 1).strip()
        if rest:
            raise Rejected(self.target, 400, "INVALID_PARAMETER_VALUE",
                           f"the script does not know the filter {rest!r}", "runs/search")
        found.sort(key=lambda r: r["info"]["start_time"], reverse=True)
        return found[:limit]


def memory_cache(**ttls) -> RunCache:
    """A RunCache over an in-process store (locks included), as without Redis."""
    settings = dict(run_ttl=60, list_ttl=60, auth_ttl=60) | ttls
    backend = SimpleCache()
    backend.serializer = JsonSerializer()  # as flask-caching configures it (never pickle)
    return RunCache(Store(backend, "SimpleCache"), secret=b"test", local=LocalCopies(0, 0, 0),
                    **settings)


def context(mlflow, cache=None, *, seconds=5.0, refresh=False, concurrency=4, points=None,
            live_refresh=5.0):
    """What ``app.context.open_context`` makes for a request, around a scripted MLflow."""
    return SimpleNamespace(target=mlflow.target, deadline=Deadline(seconds), mlflow=mlflow,
                           cache=cache or memory_cache(), calls=CallCounter(),
                           budget=PointBudget(points), concurrency=concurrency, refresh=refresh,
                           asked_mlflow=bool(mlflow.calls), live_refresh=live_refresh)


class ScriptedLive(ScriptedApi):
    """``ScriptedApi`` whose runs have metric histories that grow (``log``), answered as
    MLflow 3.17 answers them: get-history in (timestamp, step, value) order with offset
    page tokens, bulk-interval by step range (at most 2,500 points a run, else sampled),
    and each run's latest entry per metric (the greatest step, timestamp, value) in
    runs/search. For the unit tests of a live tail's refresh (app/runs/increments.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.points = {}  # (run_id, key) -> [(step, timestamp, value)] in logging order

    def log(self, run_id, key, step, value, timestamp):
        self.points.setdefault((run_id, key), []).append((step, timestamp, value))
        latest = max(self.points[(run_id, key)])
        metrics = self.runs[run_id]["data"]["metrics"]
        metrics[:] = [m for m in metrics if m["key"] != key] + [
            {"key": key, "step": latest[0], "timestamp": latest[1], "value": latest[2]}]

    def _series(self, points):
        from app import history
        import numpy as np
        return history.Series(np.array([p[0] for p in points], dtype=np.int64),
                              np.array([p[1] for p in points], dtype=np.int64),
                              np.array([p[2] for p in points], dtype=np.float64))

    def _by_time(self, run_id, key):
        return sorted(self.points.get((run_id, key), []), key=lambda p: (p[1], p[0], p[2]))

    def get_metric_history(self, run_id, key):
        self._called("get_metric_history", run_id, key)
        return self._series(self._by_time(run_id, key))

    def get_metric_history_bulk(self, run_ids, key):
        self._called("get_metric_history_bulk", tuple(run_ids), key)
        return ({run_id: self._series(self._by_time(run_id, key)) for run_id in run_ids},
                set(run_ids))

    def get_metric_history_from(self, run_id, key, offset):
        self._called("get_metric_history_from", run_id, key, offset)
        return self._series(self._by_time(run_id, key)[offset:])

    def get_metric_history_since(self, run_ids, key, since_step):
        self._called("get_metric_history_since", tuple(run_ids), key, since_step)
        found = {run_id: sorted(p for p in self.points.get((run_id, key), [])
                                if p[0] > since_step) for run_id in run_ids}
        return ({run_id: self._series(points[:2500]) for run_id, points in found.items()},
                {run_id for run_id, points in found.items() if len(points) < 2500})
