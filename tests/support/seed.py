"""The seed data of the tests' MLflow stores, written straight into MLflow's sqlite backend.

Seed data (written by :func:`seed_store` directly into the sqlite backend, before any
server starts). Every metric point is a ``Point(step, value, timestamp_ms)``; timestamps
are ``BASE_TIME_MS + i * 1000`` for the i-th logged point of a metric unless stated.

experiment ``shared-exp``
  ``finished``  FINISHED, start BASE_TIME_MS, end BASE_TIME_MS + 3_600_000 (3600.0 s),
                params ``PARAMS``; metrics ``FINISHED_METRICS`` (train_loss, val/acc,
                "metric with space", métrica_ñ, nan_metric, dup_step, out_of_order)
  ``running``   RUNNING, no end time; ``train_loss`` = ``RUNNING_TRAIN_LOSS`` (10 points)
  ``empty``     FINISHED, no metrics, no params
  ``deleted``   FINISHED then deleted (lifecycle_stage deleted); ``train_loss`` 1 point
  ``long``      FINISHED; ``long_metric`` at step s: value s / 1000, timestamp BASE_TIME_MS + s,
                s in 0..LONG_METRIC_POINTS-1 (more than one 25k get-history page)
  ``failed``    FAILED; ``train_loss`` = ``FAILED_TRAIN_LOSS`` (5 points)
experiment ``secret-exp``: run ``secret`` FINISHED, ``train_loss`` = ``SECRET_TRAIN_LOSS``
experiment ``deleted-exp``: deleted, no runs
experiment ``cap-exp``: runs ``cap-a``, ``cap-b``, ``cap-c`` (FINISHED), each with metric ``m``
  of CAP_RUN_POINTS points (30,000 together: over the bulk endpoint's 25,000 cap) and
  ``val/acc`` of 3 points

The sqlite store cannot hold infinities: +/-Inf come back from MLflow as
+/-sys.float_info.max (see ``NAN_METRIC_AS_STORED``); NaN round-trips as NaN.
MLflow returns a metric's history ordered by (timestamp, step, value), i.e. in logging
order here.
"""
import math
import sys
from pathlib import Path
from typing import NamedTuple

class Point(NamedTuple):
    step: int
    value: float
    timestamp: int


BASE_TIME_MS = 1_700_000_000_000
FINISHED_DURATION_S = 3600.0
PARAMS = {"learning_rate": "0.001", "batch_size": "16"}


def _points(step_values, base=BASE_TIME_MS):
    return [Point(s, v, base + i * 1000) for i, (s, v) in enumerate(step_values)]


TRAIN_LOSS = _points((s, 1 / (s + 1)) for s in range(100))
NAN_METRIC_STEPS_VALUES = [
    (0, 1.0), (1, math.nan), (2, 2.0), (3, math.inf), (4, 3.0), (5, -math.inf), (6, 4.0)
]
NAN_METRIC = _points(NAN_METRIC_STEPS_VALUES)
NAN_METRIC_AS_STORED = [
    p._replace(value=math.copysign(sys.float_info.max, p.value)) if math.isinf(p.value) else p
    for p in NAN_METRIC
]
DUP_STEP = _points([(0, 1.0), (1, 10.0), (1, 11.0), (1, 12.0), (2, 20.0)])
OUT_OF_ORDER_STEPS = [5, 3, 9, 1, 7]
OUT_OF_ORDER = _points((s, s * 10.0) for s in OUT_OF_ORDER_STEPS)
FINISHED_METRICS = {
    "train_loss": TRAIN_LOSS,
    "val/acc": _points((s, s / 10) for s in range(10)),
    "metric with space": _points((s, s * 2.0) for s in range(5)),
    "métrica_ñ": _points([(0, 0.5), (1, 0.25), (2, 0.125)]),
    "nan_metric": NAN_METRIC,
    "dup_step": DUP_STEP,
    "out_of_order": OUT_OF_ORDER,
}
RUNNING_TRAIN_LOSS = _points((s, 1 / (s + 1)) for s in range(10))
DELETED_TRAIN_LOSS = _points([(0, 0.5)])
FAILED_TRAIN_LOSS = _points((s, 1 / (s + 1)) for s in range(5))
SECRET_TRAIN_LOSS = _points((s, 1 / (s + 1)) for s in range(3))
LONG_METRIC_POINTS = 26_234
# Three runs whose metric "m" together exceeds the bulk endpoint's 25,000-point cap.
CAP_RUN_POINTS = 10_000
CAP_RUNS = {name: [Point(s, offset + s / 1000, BASE_TIME_MS + s) for s in range(CAP_RUN_POINTS)]
            for name, offset in (("cap-a", 0.0), ("cap-b", 100.0), ("cap-c", 200.0))}
LONG_METRIC_BATCH = 1000  # MLflow's log_batch limit on metrics per call

DB_NAME = "mlflow.db"


def db_path(db_uri: str) -> Path:
    assert db_uri.startswith("sqlite:///"), db_uri
    return Path(db_uri[len("sqlite:///"):])


def tracking_client(db_uri: str, artifact_root: str | None):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    # Creating the store first runs the migrations and creates the Default experiment with
    # our artifact root; MlflowClient alone would use ./mlruns relative to the cwd.
    root = artifact_root or str(db_path(db_uri).parent / "artifacts")
    SqlAlchemyStore(db_uri, root).engine.dispose()
    return MlflowClient(tracking_uri=db_uri), root


def seed_store(db_uri: str, artifact_root: str | None = None) -> dict:
    """Write the data described in the module docstring; return the ids it got."""
    from mlflow.entities import Metric

    client, root = tracking_client(db_uri, artifact_root)
    exps = {"Default": "0"}
    for name in ("shared-exp", "secret-exp", "deleted-exp"):
        exps[name] = client.create_experiment(name, artifact_location=f"{root}/{name}")
    client.delete_experiment(exps["deleted-exp"])

    runs = {}

    def run(exp, name, status, metrics=None, params=None, end=BASE_TIME_MS + 3_600_000):
        run_id = client.create_run(exps[exp], start_time=BASE_TIME_MS, run_name=name).info.run_id
        entities = [
            Metric(key, p.value, p.timestamp, p.step)
            for key, points in (metrics or {}).items()
            for p in points
        ]
        for i in range(0, len(entities), LONG_METRIC_BATCH):
            client.log_batch(run_id, metrics=entities[i : i + LONG_METRIC_BATCH])
        for key, value in (params or {}).items():
            client.log_param(run_id, key, value)
        if status != "RUNNING":
            client.set_terminated(run_id, status=status, end_time=end)
        runs[name] = run_id

    run("shared-exp", "finished", "FINISHED", FINISHED_METRICS, PARAMS)
    run("shared-exp", "running", "RUNNING", {"train_loss": RUNNING_TRAIN_LOSS})
    run("shared-exp", "empty", "FINISHED")
    run("shared-exp", "deleted", "FINISHED", {"train_loss": DELETED_TRAIN_LOSS})
    client.delete_run(runs["deleted"])
    long_points = [Point(s, s / 1000, BASE_TIME_MS + s) for s in range(LONG_METRIC_POINTS)]
    run("shared-exp", "long", "FINISHED", {"long_metric": long_points})
    run("shared-exp", "failed", "FAILED", {"train_loss": FAILED_TRAIN_LOSS})
    run("secret-exp", "secret", "FINISHED", {"train_loss": SECRET_TRAIN_LOSS})
    exps["cap-exp"] = client.create_experiment("cap-exp", artifact_location=f"{root}/cap-exp")
    for name, points in CAP_RUNS.items():
        run("cap-exp", name, "FINISHED", {"m": points, "val/acc": points[:3]})
    return {"experiments": exps, "runs": runs}


def seed_many_experiments(db_uri: str, n: int) -> None:
    """Create experiments ``bulk-exp-0000`` .. ``bulk-exp-<n-1>`` in one transaction."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment

    root = str(db_path(db_uri).parent / "artifacts")
    store = _store(db_uri)
    # ~5 ms per create_experiment call adds up; a bulk insert takes well under a second.
    with store.ManagedSessionMaker(read_only=False) as session:
        session.add_all(
            SqlExperiment(
                name=f"bulk-exp-{i:04d}",
                artifact_location=f"{root}/bulk-exp-{i:04d}",
                lifecycle_stage="active",
                creation_time=BASE_TIME_MS + i,
                last_update_time=BASE_TIME_MS + i,
            )
            for i in range(n)
        )
    store.engine.dispose()


def _store(db_uri: str):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(db_uri, str(db_path(db_uri).parent / "artifacts"))


def write_metrics_raw(db_uri: str, run_id: str, metrics: dict) -> None:
    """Write ``{key: [Point]}`` straight into a run's rows, past MLflow's key validation
    (which today refuses keys such as ``@sum``; older servers and other stores hold them)."""
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    store = _store(db_uri)
    rows = [SqlMetric(run_uuid=run_id, key=key, value=p.value, timestamp=p.timestamp,
                      step=p.step, is_nan=False)
            for key, points in metrics.items() for p in points]
    with store.ManagedSessionMaker(read_only=False) as session:
        session.add_all(rows)
        store._update_latest_metrics_if_necessary(rows, session)
    store.engine.dispose()


MANY_RUNS_METRIC = "m"  # each run of seed_many_runs has m = i at steps 0, 1, 2


def seed_many_runs(db_uri: str, experiment_name: str, n: int) -> tuple[str, list[str]]:
    """A new experiment with ``n`` FINISHED runs ``many-0000`` ..., written in one
    transaction (MLflow's API takes ~0.3 s per call with basic auth). Run i starts at
    BASE_TIME_MS + i and has metric ``m`` = Point(s, i + s / 10, BASE_TIME_MS + s) for s in
    0..2. Returns (experiment id, run ids in the order of i)."""
    import uuid

    from mlflow.store.tracking.dbmodels.models import (SqlExperiment, SqlLatestMetric,
                                                       SqlMetric, SqlRun, SqlTag)

    store = _store(db_uri)
    root = str(db_path(db_uri).parent / "artifacts")
    run_ids = [uuid.uuid4().hex for _ in range(n)]
    with store.ManagedSessionMaker(read_only=False) as session:
        experiment = SqlExperiment(name=experiment_name, lifecycle_stage="active",
                                   artifact_location=f"{root}/{experiment_name}",
                                   creation_time=BASE_TIME_MS, last_update_time=BASE_TIME_MS)
        session.add(experiment)
        session.flush()
        rows = []
        for i, run_id in enumerate(run_ids):
            name = f"many-{i:04d}"
            rows.append(SqlRun(run_uuid=run_id, name=name, experiment_id=experiment.experiment_id,
                               status="FINISHED", start_time=BASE_TIME_MS + i,
                               end_time=BASE_TIME_MS + i + 1000, lifecycle_stage="active",
                               source_type="LOCAL", source_name="", entry_point_name="",
                               user_id="admin", source_version="",
                               artifact_uri=f"{root}/{experiment_name}/{run_id}"))
            rows.append(SqlTag(run_uuid=run_id, key="mlflow.runName", value=name))
            points = [Point(s, i + s / 10, BASE_TIME_MS + s) for s in range(3)]
            rows += [SqlMetric(run_uuid=run_id, key=MANY_RUNS_METRIC, value=p.value,
                               timestamp=p.timestamp, step=p.step, is_nan=False)
                     for p in points]
            rows.append(SqlLatestMetric(run_uuid=run_id, key=MANY_RUNS_METRIC,
                                        value=points[-1].value, timestamp=points[-1].timestamp,
                                        step=points[-1].step, is_nan=False))
        session.add_all(rows)
        experiment_id = str(experiment.experiment_id)
    store.engine.dispose()
    return experiment_id, run_ids


def seed_big_run(db_uri: str, points: int, name: str = "big") -> str:
    """A FINISHED run in the Default experiment with one metric ``big`` of ``points``
    points (200,000 make a ~13 MB JSON answer); its run id. The points go in with one
    sqlite executemany (MLflow's ORM takes ~50 s for 200,000 on a busy machine), the last
    one through the store so that the run's latest value is set."""
    import sqlite3

    from mlflow.entities import RunStatus

    store = _store(db_uri)
    run_id = store.create_run("0", user_id="admin", start_time=BASE_TIME_MS, tags=[],
                              run_name=name).info.run_id
    store.update_run_info(run_id, RunStatus.FINISHED, BASE_TIME_MS + points, name)
    store.engine.dispose()
    series = [Point(s, s / 7, BASE_TIME_MS + s) for s in range(points)]
    with sqlite3.connect(db_path(db_uri)) as db:
        db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                       "VALUES ('big', ?, ?, ?, ?, 0)",
                       [(p.value, p.timestamp, run_id, p.step) for p in series[:-1]])
    db.close()
    write_metrics_raw(db_uri, run_id, {"big": series[-1:]})
    return run_id
