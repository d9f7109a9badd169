"""Helpers shared by the benchmarks: loopback-only environment, process groups, gunicorn.

Scripts put the repo root on ``sys.path`` and ``from bench.common import ...``.
"""
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import requests

from tests.support.mlflow_server import free_port

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 330  # above the http_timeout (300 s) the service is given
# Settings that would point the service at some cache other than the one a benchmark chose.
CACHE_ENV = ("REDIS_URL", "REDIS_SENTINELS", "REDIS_CLUSTER")


class BenchError(RuntimeError):
    pass


def isolate_environment():
    """Keep every byte on loopback: no HTTP proxies, no MLflow telemetry."""
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = f"{LOOPBACK},localhost"
    # The MLflow server launcher drops MLFLOW_* variables, not DO_NOT_TRACK.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"


def step(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def stop_group(proc: subprocess.Popen):
    """Stop a process started with start_new_session=True, and all of its group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    # Children (gunicorn workers) may outlive the leader: sweep the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def process_group(cmd, log_path: Path, **popen):
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        stop_group(proc)


def wait_until(ready, proc: subprocess.Popen, log_path: Path, what: str):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with code {proc.returncode}\n{tail(log_path)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.2)
    raise BenchError(f"{what} not ready after {STARTUP_TIMEOUT:g} s\n{tail(log_path)}")


def tail(path: Path, chars: int = 4000) -> str:
    return f"--- {path} (tail) ---\n" + path.read_text(errors="replace")[-chars:]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a gunicorn master's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def restart_workers(svc: "Service", workers: int):
    """New gunicorn workers (SIGHUP to the master): nothing of the old ones' memory, such
    as their own copies of cached runs, survives. Returns once ``workers`` new ones answer."""
    old = set(children(svc.master.pid))
    svc.master.send_signal(signal.SIGHUP)

    def ready():
        now = set(children(svc.master.pid))
        return (len(now) == workers and not now & old and requests.post(
            f"{svc.base}/health", json={"bogus": 1}, timeout=2).status_code == 422)
    wait_until(ready, svc.master, svc.log, "gunicorn workers after SIGHUP")


class Service(NamedTuple):
    base: str                # http://127.0.0.1:<port>
    log: Path                # gunicorn's log (access log included)
    master: subprocess.Popen  # the gunicorn master; its children are the workers


@contextlib.contextmanager
def service(work: Path, redis_url: str | None, *, workers: int = 2, threads: int | None = None,
            extra_env: dict[str, str] | None = None, repo: Path = REPO):
    """Our service under gunicorn; yields a ``Service``.

    ``redis_url`` None: no Redis settings at all, so each worker caches in-process.
    ``threads`` None: gunicorn.conf.py's default. ``extra_env`` is applied last.
    ``repo``: the checkout whose app is served (another worktree: a before/after run).
    """
    port = free_port()
    log = work / "gunicorn.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MLFLOW_") and k not in CACHE_ENV}
    env.update(GUNICORN_BIND=f"{LOOPBACK}:{port}", SECRET_KEY=secrets.token_hex(32),
               GUNICORN_WORKERS=str(workers))
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    if threads is not None:
        env["GUNICORN_THREADS"] = str(threads)
    env.update(extra_env or {})
    # The gunicorn next to the running interpreter: .venv's for the benchmarks, the
    # test run's own for tests that reuse this (CI and worktrees may differ).
    cmd = [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"]
    base = f"http://{LOOPBACK}:{port}"
    with process_group(cmd, log, cwd=repo, env=env) as proc:
        # A bogus body is answered 422 without calling MLflow: the app is up.
        def ready():
            return requests.post(f"{base}/health", json={"bogus": 1}, timeout=2).status_code == 422
        wait_until(ready, proc, log, "gunicorn")
        yield Service(base, log, proc)


def run_bench(run, args):
    """``run(args, stack)`` with everything it starts stopped at the end, on a failure,
    on Ctrl-C or on SIGTERM; exits with a message on the last three."""
    isolate_environment()
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every process we started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with contextlib.ExitStack() as stack:
            outcome = run(args, stack)
            step("stopping")
            return outcome
    except BenchError as exc:
        sys.exit(f"benchmark failed: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped")


def add_service_env_option(parser):
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for gunicorn, for experiments (repeatable), "
                             "e.g. MLFLOW_CONCURRENCY=16")


def parse_service_env(parser, args):
    """--service-env NAME=VALUE ... -> a dict, in place."""
    try:
        args.service_env = dict(item.split("=", 1) for item in args.service_env)
    except ValueError:
        parser.error("--service-env takes NAME=VALUE")
