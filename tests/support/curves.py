"""Training-like curves to look at on the dashboard: an experiment of runs with a few
metrics each (a decaying loss, a rising accuracy, a schedule), the same numbers whether
logged through MLflow's API (tests: ``log_curves``) or written straight into its sqlite
store (the bench's millions of points: ``seed_curves``).

Run r, metric k, step s: ``curve(r, k, s)``, timestamp ``BASE_TIME_MS + r * 3_600_000 + s *
1000``. Deterministic: no randomness but a fixed hash-like wiggle.
"""
import math
import sqlite3
import uuid

from tests.support.seed import BASE_TIME_MS, LONG_METRIC_BATCH, db_path

SHAPES = ("loss", "accuracy", "learning_rate")


def curve(run: int, metric: int, step: int, steps: int) -> float:
    """A training-looking value: noisy decay, noisy rise, or a cosine schedule."""
    x = step / max(steps - 1, 1)
    wiggle = math.sin(step * 12.9898 + run * 78.233 + metric * 3.7) * 0.5
    shape = SHAPES[metric % len(SHAPES)]
    if shape == "loss":
        return (2.5 - 0.3 * run) * math.exp(-4 * x / (1 + 0.2 * run)) + 0.05 + 0.04 * wiggle
    if shape == "accuracy":
        return min(1.0, 0.1 + (0.8 + 0.03 * run) * (1 - math.exp(-5 * x)) + 0.02 * wiggle)
    return 1e-3 * (1 + run) * 0.5 * (1 + math.cos(math.pi * x))


def timestamp(run: int, step: int) -> int:
    return BASE_TIME_MS + run * 3_600_000 + step * 1000


def log_curves(client, experiment_id: str, metric_keys, steps: int, runs: int,
               status: str = "FINISHED") -> list[str]:
    """``runs`` runs ``run-0`` ... with ``curve`` points for ``metric_keys`` at steps
    0..steps-1, through ``client`` (an MlflowClient), a parameter each; their ids."""
    from mlflow.entities import Metric

    run_ids = []
    for r in range(runs):
        run_id = client.create_run(experiment_id, start_time=timestamp(r, 0),
                                   run_name=f"run-{r}").info.run_id
        points = [Metric(key, curve(r, k, s, steps), timestamp(r, s), s)
                  for k, key in enumerate(metric_keys) for s in range(steps)]
        for start in range(0, len(points), LONG_METRIC_BATCH):
            client.log_batch(run_id, metrics=points[start:start + LONG_METRIC_BATCH])
        client.log_param(run_id, "lr", f"{1e-3 * (1 + r):g}")
        if status != "RUNNING":
            client.set_terminated(run_id, status=status, end_time=timestamp(r, steps))
        run_ids.append(run_id)
    return run_ids


def seed_curves(db_uri: str, experiment_name: str, metric_keys, steps: int,
                runs: int) -> tuple[str, list[str]]:
    """The same as ``log_curves`` (FINISHED runs) straight into MLflow's sqlite store,
    before any server serves it: one executemany per run and metric instead of a
    ``log_batch`` per 1,000 points. Returns (experiment id, run ids)."""
    from mlflow.entities import RunStatus
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = str(db_path(db_uri).parent / "artifacts")
    store = SqlAlchemyStore(db_uri, root)
    experiment_id = store.create_experiment(experiment_name, f"{root}/{experiment_name}")
    run_ids = []
    for r in range(runs):
        run = store.create_run(experiment_id, user_id="admin", start_time=timestamp(r, 0),
                               tags=[], run_name=f"run-{r}")
        run_ids.append(run.info.run_id)
        store.update_run_info(run.info.run_id, RunStatus.FINISHED, timestamp(r, steps),
                              f"run-{r}")
    store.engine.dispose()
    with sqlite3.connect(db_path(db_uri)) as db:
        for r, run_id in enumerate(run_ids):
            db.execute("INSERT INTO params (key, value, run_uuid) VALUES ('lr', ?, ?)",
                       (f"{1e-3 * (1 + r):g}", run_id))
            for k, key in enumerate(metric_keys):
                db.executemany(
                    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                    "VALUES (?, ?, ?, ?, ?, 0)",
                    ((key, curve(r, k, s, steps), timestamp(r, s), run_id, s)
                     for s in range(steps)))
                last = steps - 1
                db.execute("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, "
                           "run_uuid) VALUES (?, ?, ?, ?, 0, ?)",
                           (key, curve(r, k, last, steps), timestamp(r, last), last, run_id))
    db.close()
    return experiment_id, run_ids


def unique(name: str) -> str:
    """An experiment name no other test or run of the tests uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"
