"""Live training runs: RUNNING runs with a history already logged (written straight into
MLflow's sqlite store before the server starts), then a trainer logging a step a second
through the real server while viewers poll.

The metric mix is a training job's: ``FAST`` metrics logged every step (losses, learning
rate), ``SLOW`` ones every ``VAL_EVERY`` steps (validation). Step ``s`` of a run holds
``keys_at(s)``, each with ``value(run, key, s)``; timestamps are wall-clock ms, one
second apart in the seeded history (as if logged a step a second until now).
"""
import sqlite3
import threading
import time

import requests

from tests.support.seed import Point, db_path, tracking_client, write_metrics_raw

FAST = [f"train/m{k}" for k in range(5)]
SLOW = [f"val/m{k:02d}" for k in range(15)]
VAL_EVERY = 50
LOG_TIMEOUT = 120.0  # one log-batch call: a hang guard


def keys_at(step: int) -> list[str]:
    return FAST + SLOW if step % VAL_EVERY == 0 else FAST


def value(run: int, key: str, step: int) -> float:
    """Deterministic, finite and different per run, metric and step."""
    return (run + 1) * (1 + sum(map(ord, key)) % 97) / (step + 1)


def seed_live_runs(db_uri: str, experiment: str, runs: int, history: int) -> list[str]:
    """``runs`` RUNNING runs in a new ``experiment``, each with steps 0..history-1 of the
    mix logged; their ids. All but each metric's last point go in with one sqlite
    executemany (2,000,000 points in seconds; MLflow's API would take many minutes), the
    last through the store so that the runs' latest entries are MLflow's own."""
    client, root = tracking_client(db_uri, None)
    exp_id = client.create_experiment(experiment, artifact_location=f"{root}/{experiment}")
    start = int(time.time() * 1000) - history * 1000
    run_ids = [client.create_run(exp_id, start_time=start, run_name=f"live-{r}").info.run_id
               for r in range(runs)]
    last_val = (history - 1) // VAL_EVERY * VAL_EVERY
    for r, run_id in enumerate(run_ids):
        rows = ((key, value(r, key, s), start + s * 1000, run_id, s)
                for s in range(history) for key in keys_at(s)
                if s != (history - 1 if key in FAST else last_val))
        with sqlite3.connect(db_path(db_uri)) as db:
            db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                           "VALUES (?, ?, ?, ?, ?, 0)", rows)
        db.close()
        last = {key: [Point(s, value(r, key, s), start + s * 1000)]
                for key, s in [(k, history - 1) for k in FAST] + [(k, last_val) for k in SLOW]}
        write_metrics_raw(db_uri, run_id, last)
    return run_ids


class Trainer:
    """A thread per run logging the next step every ``period`` seconds (one log-batch call
    per step; when MLflow takes longer, the next step follows at once, never a burst to
    catch up), as ``auth`` straight to ``uri`` (not through a counting proxy), until
    ``stop()``. ``steps[run_id]``: steps logged; ``errors``: failed calls (the step is
    tried again)."""

    def __init__(self, uri: str, auth, run_ids: list[str], first_step: int, period=1.0):
        self.uri, self.auth, self.period = uri, auth, period
        self.first_step = first_step
        self.steps = {run_id: 0 for run_id in run_ids}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._train, args=(r, run_id), daemon=True)
                         for r, run_id in enumerate(run_ids)]

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(LOG_TIMEOUT + 10)
        assert not any(t.is_alive() for t in self._threads), "a trainer thread hung"

    def _train(self, r: int, run_id: str):
        session = requests.Session()
        session.auth = self.auth
        step, due = self.first_step, time.monotonic()
        while not self._stop.is_set():
            now = int(time.time() * 1000)
            metrics = [{"key": key, "value": value(r, key, step), "timestamp": now, "step": step}
                       for key in keys_at(step)]
            try:
                session.post(f"{self.uri}/api/2.0/mlflow/runs/log-batch", timeout=LOG_TIMEOUT,
                             json={"run_id": run_id, "metrics": metrics}).raise_for_status()
                self.steps[run_id] += 1
                step += 1
            except requests.RequestException as exc:
                self.errors.append(repr(exc)[:300])
            due = max(due + self.period, time.monotonic())
            self._stop.wait(due - time.monotonic())
