"""Load benchmark: many dashboards polling POST /mlflow/runs for finished runs, warm cache.

    .venv/bin/python bench/bench_load.py [--clients 16,32,64] [--seconds 10]
                                         [--max-requests 20000] [--scenarios ...]

Sets up what bench_runs.py does (the same seeded store: experiment ``bench-exp``, 10
finished runs x 20 metrics x 1,000 steps; a real basic-auth MLflow behind a counting
proxy, a private redis-server, our service under gunicorn with 2 workers x 8 threads),
fills the cache with one request per scenario, then for each scenario and client count
lets that many concurrent clients poll the same request for a bounded time and count:

  req/s, p50/p99/max latency (each request timed from send to last byte), failures
  (connection errors, timeouts), non-200 answers, answers that differ from the
  reference answer, the X-Cache headers, and the MLflow requests the proxy saw.

Everything stays on 127.0.0.1. See bench/README.md.
"""
import collections
import contextlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import urllib3  # noqa: E402

from bench.bench_runs import (  # noqa: E402
    EXPERIMENT, METRICS, MLFLOW_WORKERS, RUNS, STEPS, check_runs_payload, redis_server, seed,
)
from bench.common import (  # noqa: E402
    BenchError, bench_parser, parse_bench_args, run_bench, step, write_json,
)
from tests.support.gunicorn import gunicorn  # noqa: E402
from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.processes import log_tail  # noqa: E402
from tests.support.proxy import MlflowProxy  # noqa: E402

CLIENT_TIMEOUT = 60.0  # per request: a hang guard, far above any warm answer
GUNICORN_WORKERS, GUNICORN_THREADS = 2, 8

# name -> (what it asks for, extra request fields)
SCENARIOS = {
    "experiment": ("10 runs x 20 metrics x 1,000 points (the full dashboard poll)",
                   {"experiment_name": EXPERIMENT, "limit": RUNS}),
    "one-run": ("1 run x 20 metrics x 1,000 points",
                {"run_id": None}),  # filled in with the first seeded run
    "summaries": ("10 runs, include_metric_history false (the service's own overhead)",
                  {"experiment_name": EXPERIMENT, "limit": RUNS, "include_metric_history": False}),
}


# -- the load -----------------------------------------------------------------------


class Tally:
    """What every client saw, merged under one lock."""

    def __init__(self, max_requests: int):
        self.lock = threading.Lock()
        self.left = max_requests
        self.latencies: list[float] = []
        self.failures = collections.Counter()   # exception type -> count
        self.statuses = collections.Counter()   # non-200 status -> count
        self.wrong = 0
        self.cache = collections.Counter()      # X-Cache of the 200 answers
        self.bytes = 0

    def take(self) -> bool:
        """One more request allowed?"""
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def client_loop(base: str, payload: bytes, reference: bytes, deadline: float, tally: Tally):
    """One dashboard: polls back to back on its own keep-alive connection."""
    host, port = base.removeprefix("http://").split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=1, retries=False,
                                      timeout=CLIENT_TIMEOUT)
    headers = {"Content-Type": "application/json"}
    try:
        while time.monotonic() < deadline and tally.take():
            t0 = time.perf_counter()
            try:
                response = pool.urlopen("POST", "/mlflow/runs", body=payload, headers=headers)
                data = response.data
            except Exception as exc:  # connection refused/reset, timeout ...
                with tally.lock:
                    tally.failures[type(exc).__name__] += 1
                continue
            seconds = time.perf_counter() - t0
            # Checked outside the timing. Equal bytes is the fast path; the JSON is
            # compared only if the bytes differ (it never should for warm polls).
            right = data == reference or (
                response.status == 200 and json.loads(data) == json.loads(reference))
            with tally.lock:
                tally.latencies.append(seconds)
                tally.bytes += len(data)
                if response.status != 200:
                    tally.statuses[response.status] += 1
                elif not right:
                    tally.wrong += 1
                else:
                    tally.cache[response.headers.get("X-Cache")] += 1
    finally:
        pool.close()


def drive(base: str, payload: bytes, reference: bytes, clients: int, seconds: float,
          max_requests: int) -> dict:
    tally = Tally(max_requests)
    start = time.monotonic()
    threads = [threading.Thread(target=client_loop, daemon=True,
                                args=(base, payload, reference, start + seconds, tally))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A request in flight when time is up may still take up to CLIENT_TIMEOUT.
        thread.join(seconds + CLIENT_TIMEOUT + 5)
    elapsed = time.monotonic() - start
    if any(thread.is_alive() for thread in threads):
        raise BenchError(f"{clients} clients still running {elapsed:.0f} s after the start")
    return summarize(tally, clients, elapsed)


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(tally: Tally, clients: int, elapsed: float) -> dict:
    ordered = sorted(tally.latencies)
    answered = len(ordered)
    return {
        "clients": clients, "seconds": elapsed, "answered": answered,
        "requests_per_second": answered / elapsed,
        "mib_per_second": tally.bytes / elapsed / 2**20,
        "p50_ms": 1000 * percentile(ordered, 0.50) if ordered else None,
        "p99_ms": 1000 * percentile(ordered, 0.99) if ordered else None,
        "max_ms": 1000 * ordered[-1] if ordered else None,
        "failures": sum(tally.failures.values()), "failure_kinds": dict(tally.failures),
        "non_200": sum(tally.statuses.values()), "statuses": dict(tally.statuses),
        "wrong": tally.wrong, "x_cache": dict(tally.cache),
    }


# -- scenarios ----------------------------------------------------------------------


def reference_answer(pool: urllib3.PoolManager, base: str, payload: bytes, check, log: Path):
    """The cold request that fills the cache, then a warm one: the answer every poll must
    equal. Fails unless the warm one came from the cache."""
    answers = []
    for _ in range(2):
        response = pool.request("POST", f"{base}/mlflow/runs", body=payload,
                                headers={"Content-Type": "application/json"},
                                timeout=330, retries=False)
        if response.status != 200:
            raise BenchError(f"POST /mlflow/runs answered {response.status}: "
                             f"{response.data[:2000]!r}\n{log_tail(log)}")
        answers.append(response)
    cold, warm = answers
    check(warm.data)
    if warm.headers.get("X-Cache") != "HIT" or json.loads(warm.data) != json.loads(cold.data):
        raise BenchError(f"the warm answer is X-Cache {warm.headers.get('X-Cache')} "
                         "or differs from the cold one")
    return warm.data


def checker(name: str, run_id: str):
    def check(content: bytes):
        runs = json.loads(content)["runs"]
        if name == "experiment":
            check_runs_payload(content)
        elif name == "one-run":
            if [r["run_id"] for r in runs] != [run_id] or \
                    sorted(len(m["history"]) for m in runs[0]["metrics_history"]) != [STEPS] * METRICS:
                raise BenchError(f"one-run: expected run {run_id} with {METRICS} x {STEPS} points")
        elif len(runs) != RUNS or any(r["metrics_history"] for r in runs):
            raise BenchError(f"summaries: expected {RUNS} runs without histories")
    return check


def log_events(log: Path, start: int) -> dict:
    """What gunicorn's log says happened since ``start`` (a log offset).

    recycled: workers restarted after GUNICORN_MAX_REQUESTS; each restart closes that
      worker's idle keep-alive connections, and a client sending on one just then gets
      a connection error.
    cache_errors: Redis calls that failed or outlasted REDIS_SOCKET_TIMEOUT; the worker
      then leaves the cache alone for CACHE_RETRY_AFTER and asks MLflow instead.
    """
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read()
    return {"worker_recycles": text.count(b"Autorestarting worker"),
            "cache_errors": text.count(b"answering from MLflow")}


def run(args, stack: contextlib.ExitStack) -> dict:
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-load-")))
    server = MlflowServer(work / "mlflow", auth=True, workers=MLFLOW_WORKERS)
    server.data_dir.mkdir()
    step(f"seeding {RUNS} runs x {METRICS} metrics x {STEPS} steps into {server.db_uri}")
    seed(server.db_uri)
    step("starting MLflow (basic auth), the counting proxy, Redis and gunicorn")
    stack.enter_context(server)
    proxy = stack.enter_context(MlflowProxy(server.uri))
    _, redis_url = stack.enter_context(redis_server())
    svc = stack.enter_context(gunicorn(work, redis_url, workers=GUNICORN_WORKERS,
                                       threads=GUNICORN_THREADS, env=args.service_env))
    step(f"MLflow {server.uri} (proxy {proxy.uri}), Redis {redis_url}, service {svc.base}")

    username, password = server.admin
    pool = stack.enter_context(urllib3.PoolManager())
    first_run = server.request("POST", "/api/2.0/mlflow/runs/search", json={
        "experiment_ids": [server.request("GET", "/api/2.0/mlflow/experiments/get-by-name",
                                          params={"experiment_name": EXPERIMENT}
                                          ).json()["experiment"]["experiment_id"]],
        "max_results": 1}).json()["runs"][0]["info"]["run_id"]

    results = {}
    for name in args.scenarios:
        what, fields = SCENARIOS[name]
        fields = {k: first_run if v is None else v for k, v in fields.items()}
        payload = json.dumps({"tracking_uri": proxy.uri, "username": username,
                              "password": password, "http_timeout": 300, **fields}).encode()
        step(f"{name}: {what}; filling the cache")
        reference = reference_answer(pool, svc.base, payload, checker(name, first_run), svc.log)
        rows = []
        for clients in args.clients:
            proxy.reset()
            log_start = svc.log.stat().st_size
            row = drive(svc.base, payload, reference, clients, args.seconds, args.max_requests)
            row.update(mlflow_requests=proxy.count(), response_bytes=len(reference),
                       **log_events(svc.log, log_start))
            print(f"  {clients} clients: {row['answered']} answers in {row['seconds']:.1f} s, "
                  f"{row['requests_per_second']:.1f} req/s, p50 {row['p50_ms']:.1f} ms, "
                  f"p99 {row['p99_ms']:.1f} ms, failures {row['failures']}, non-200 "
                  f"{row['non_200']}, wrong {row['wrong']}, X-Cache {row['x_cache']}, "
                  f"MLflow requests {row['mlflow_requests']}, workers recycled "
                  f"{row['worker_recycles']}, cache errors {row['cache_errors']}", flush=True)
            rows.append(row)
        results[name] = rows
    return results


# -- report -------------------------------------------------------------------------


def print_report(results: dict):
    header = ("scenario", "bytes/answer", "clients", "answers", "req/s", "MiB/s", "p50 ms",
              "p99 ms", "max ms", "failed", "non-200", "wrong", "MLflow requests", "recycled",
              "cache errors")
    lines = []
    for name, rows in results.items():
        for row in rows:
            lines.append((name, f"{row['response_bytes']:,}", str(row["clients"]),
                          str(row["answered"]), f"{row['requests_per_second']:.1f}",
                          f"{row['mib_per_second']:.1f}", f"{row['p50_ms']:.1f}",
                          f"{row['p99_ms']:.1f}", f"{row['max_ms']:.1f}", str(row["failures"]),
                          str(row["non_200"]), str(row["wrong"]), str(row["mlflow_requests"]),
                          str(row["worker_recycles"]), str(row["cache_errors"])))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths), *lines]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def write_results(path: Path, args, results: dict):
    write_json(path, {
        "dataset": {"experiment": EXPERIMENT, "runs": RUNS, "metrics_per_run": METRICS,
                    "steps_per_metric": STEPS},
        "settings": {"clients": args.clients, "seconds": args.seconds,
                     "max_requests": args.max_requests, "gunicorn_workers": GUNICORN_WORKERS,
                     "gunicorn_threads": GUNICORN_THREADS, "service_env": args.service_env},
        "results": results,
    })


def parse_args():
    parser = bench_parser(__doc__, "bench_load")
    parser.add_argument("--clients", default="16,32,64",
                        help="concurrent clients per phase, comma-separated (default 16,32,64)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of each phase (default 10)")
    parser.add_argument("--max-requests", type=int, default=20000,
                        help="at most this many requests per phase (default 20000)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of {', '.join(SCENARIOS)} (default all)")
    args = parse_bench_args(parser)
    try:
        args.clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error("--clients takes numbers, e.g. 16,32,64")
    args.scenarios = args.scenarios.split(",")
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    if min(args.clients) < 1 or args.seconds <= 0 or args.max_requests < 1:
        parser.error("--clients, --seconds and --max-requests must be positive")
    if max(args.clients) > 256 or args.seconds > 300:
        parser.error("bounded on purpose: at most 256 clients and 300 s per phase")
    return args


def main():
    args = parse_args()
    results = run_bench(run, args)
    print_report(results)
    write_results(args.out, args, results)


if __name__ == "__main__":
    main()
