"""The service as it is deployed: gunicorn with gunicorn.conf.py and wsgi:app, on loopback.

The one starter for tests and benchmarks::

    with gunicorn(work_dir, redis_url, workers=2, env={"RATE_LIMIT": "6/hour"}) as svc:
        requests.post(f"{svc.base}/health", json=...)

``redis_url`` None: no Redis settings at all, so each worker caches in-process. The
environment is the caller's without MLflow client settings and cache settings (they would
point the service at some MLflow login or cache the test did not choose), plus a bind on a
free port, a random SECRET_KEY, the worker count, ``threads`` and ``env`` last.
"""
import contextlib
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.processes import Process, children, free_port

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 60.0  # a busy machine boots workers slowly
# Settings that would point the service at some cache other than the one the caller chose.
CACHE_ENV = ("REDIS_URL", "REDIS_SENTINELS", "REDIS_CLUSTER")


@dataclass
class Gunicorn:
    base: str        # http://127.0.0.1:<port>
    log: Path        # gunicorn's log: stderr, and stdout (the JSON access log) unless split
    env: dict        # the environment it runs with
    process: Process

    @property
    def master(self):
        """The master's Popen; its children are the workers."""
        return self.process.proc

    def workers(self) -> list[int]:
        return children(self.master.pid)

    def serving(self, workers: int) -> bool:
        """``workers`` workers forked, and one of them answers the liveness probe (which
        does no I/O and is not rate limited, so waiting spends nothing of a test's budget)."""
        return (len(self.workers()) == workers
                and requests.get(f"{self.base}/healthz", timeout=2).status_code == 200)

    def restart_workers(self, workers: int):
        """New workers (SIGHUP to the master): nothing of the old ones' memory, such as their
        own copies of cached runs, survives. Returns once ``workers`` new ones answer."""
        old = set(self.workers())
        self.master.send_signal(signal.SIGHUP)
        self.process.wait_until(lambda: not set(self.workers()) & old and self.serving(workers),
                                timeout=STARTUP_TIMEOUT, what="serving after SIGHUP")


def service_env(port: int, redis_url: str | None, workers: int, threads: int | None,
                env: dict | None) -> dict:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("MLFLOW_") and k not in CACHE_ENV}
    base.update(GUNICORN_BIND=f"{LOOPBACK}:{port}", SECRET_KEY=secrets.token_hex(32),
                GUNICORN_WORKERS=str(workers))
    if redis_url is not None:
        base["REDIS_URL"] = redis_url
    if threads is not None:
        base["GUNICORN_THREADS"] = str(threads)
    base.update(env or {})
    return base


@contextlib.contextmanager
def gunicorn(work: Path, redis_url: str | None = None, *, workers: int = 2,
             threads: int | None = None, env: dict | None = None,
             access_log: Path | None = None, repo: Path = REPO):
    """Our service under gunicorn, stopped (its whole process group) on the way out; yields
    a ``Gunicorn`` once every worker is up. ``access_log``: stdout (the app's JSON access
    log) to this file alone instead of into ``work/gunicorn.log``. ``repo``: the checkout
    whose app is served (another worktree, for a benchmark's before/after run)."""
    port = free_port()
    # The gunicorn next to the running interpreter: the venv's for the benchmarks, the
    # test run's own for the tests (CI and worktrees may differ).
    cmd = [Path(sys.executable).parent / "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    process = Process(cmd, Path(work) / "gunicorn.log", name="gunicorn", cwd=repo,
                      env=service_env(port, redis_url, workers, threads, env), out_path=access_log)
    svc = Gunicorn(f"http://{LOOPBACK}:{port}", process.log_path, process.env, process)
    process.start()
    try:
        process.wait_until(lambda: svc.serving(workers), timeout=STARTUP_TIMEOUT, what="serving")
        yield svc
    finally:
        process.stop(grace=30)
