"""Conditional polls: the Redis bytes one 304 costs, for the whole run's JSON, a view and CSV.

    .venv/bin/python bench/bench_etag304.py [--repeats 20] [--before-repo PATH]

Sets up what bench_runs.py does (experiment ``bench-exp``: 10 finished runs x 20 metrics
x 1,000 steps; a real basic-auth MLflow behind the counting proxy, a private redis-server
of its own, our service under gunicorn). For each answer (``SHAPES``: the newest run's
whole JSON, a view of two metrics thinned to 100 points, one metric as CSV) it fills the
cache with a GET, checks that the next GET is a HIT with the same ETag, then sends
``--repeats`` GETs with ``If-None-Match: <that tag>`` and, around each, reads Redis's
``INFO stats`` (``total_net_output_bytes``: what Redis sent, i.e. what the service read;
``total_commands_processed``), less what the INFO calls themselves cost.

``--before-repo`` also serves another checkout's app (main before the change: ``git
archive <commit> | tar -x -C DIR``) against the same MLflow and Redis, emptied between
the two, and prints the ratios. The service runs with LOCAL_COPIES_MB=0 unless
``--service-env`` says otherwise: a worker without its own copy of the run (every other
worker, or any run over LOCAL_COPY_MAX_MB) reads the run's JSON from Redis, which is the
case a 304 must not pay for. See bench/README.md.
"""
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import urllib3  # noqa: E402

from bench.bench_runs import EXPERIMENT, MLFLOW_WORKERS, redis_server, seed  # noqa: E402
from bench.common import (  # noqa: E402
    REQUEST_TIMEOUT, BenchError, bench_parser, parse_bench_args, run_bench, step, write_json,
)
from tests.support.gunicorn import gunicorn  # noqa: E402
from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.processes import log_tail  # noqa: E402
from tests.support.proxy import MlflowProxy  # noqa: E402

SERVICE_WORKERS = 2
# Listings and grants outlive the bench: each 304 then costs what it costs in steady state
# (not, now and then, a re-listing from MLflow, which writes to Redis rather than reads).
SERVICE_ENV = {"LOCAL_COPIES_MB": "0", "RUN_LIST_TTL": "3600", "AUTH_CACHE_TTL": "3600"}
SHAPES = {  # the newest run of bench-exp (20 metrics x 1,000 points), three ways
    "json": {},
    "view": {"metric_keys": ["metric_00", "metric_01"], "max_points": 100},
    "csv": {"metric_keys": ["metric_00"], "format": "csv"},
}
CODING = "gzip"  # what browsers send; JSON runs over 16 KB also have a stored gzip form


class RedisMeter:
    """What Redis sent and the commands it ran between ``start()`` and ``stop()``, less
    the cost of the INFO calls themselves (measured with nothing in between)."""

    def __init__(self, cache):
        self.cache = cache
        self.overhead = (0, 0)
        self.overhead = min((self._around(lambda: None) for _ in range(5)), key=lambda c: c[0])

    def _stats(self):
        info = self.cache.info("stats")
        return info["total_net_output_bytes"], info["total_commands_processed"]

    def _around(self, action):
        before = self._stats()
        action()
        after = self._stats()
        return (after[0] - before[0] - self.overhead[0], after[1] - before[1] - self.overhead[1])

    def measure(self, action) -> tuple[int, int]:
        """(bytes Redis sent, commands it ran) while ``action()`` ran."""
        return self._around(action)


def get(pool, url, headers, log):
    response = pool.request("GET", url, headers=headers, timeout=REQUEST_TIMEOUT,
                            retries=False, decode_content=True)
    if response.status not in (200, 304):
        raise BenchError(f"GET {url[:200]} answered {response.status}: "
                         f"{response.data[:1000]!r}\n{log_tail(log)}")
    return response


def measure_shape(pool, base, meter, params, headers, args, log) -> dict:
    url = f"{base}/mlflow/runs?{urlencode(params, doseq=True)}"
    first = get(pool, url, headers, log)
    warm = get(pool, url, headers, log)
    tag = first.headers.get("ETag")
    if not tag or warm.headers.get("ETag") != tag or warm.headers.get("X-Cache") != "HIT":
        raise BenchError(f"no stable ETag on a warm poll: {dict(first.headers)} / "
                         f"{dict(warm.headers)}")
    warm_bytes, warm_commands = meter.measure(lambda: get(pool, url, headers, log))
    conditional = dict(headers, **{"If-None-Match": tag})
    samples = []
    for _ in range(args.repeats):
        statuses = []
        samples.append(meter.measure(lambda: statuses.append(get(pool, url, conditional,
                                                                 log).status)))
        if statuses != [304]:
            raise BenchError(f"a conditional GET answered {statuses}, not 304")
    sent = [bytes_ for bytes_, _ in samples]
    return {"answer_bytes": len(first.data), "etag": tag,
            "redis_bytes_per_200": warm_bytes, "redis_commands_per_200": warm_commands,
            "redis_bytes_per_304": statistics.median(sent), "min": min(sent), "max": max(sent),
            "redis_commands_per_304": statistics.median(c for _, c in samples)}


def measure_service(label, repo, work, stack, redis_url, cache, request, args) -> dict:
    step(f"{label}: the service from {repo}")
    cache.flushall()  # nothing of the other service's entries (another SECRET_KEY anyway)
    env = dict(SERVICE_ENV, **args.service_env)
    (work / label).mkdir()
    params, headers = request
    with gunicorn(work / label, redis_url, workers=SERVICE_WORKERS, env=env, repo=repo) as svc:
        pool = stack.enter_context(urllib3.PoolManager())
        meter = RedisMeter(cache)
        results = {}
        for shape, view in SHAPES.items():
            step(f"{label}: {shape}, {args.repeats} conditional GETs")
            results[shape] = measure_shape(pool, svc.base, meter, dict(params, **view),
                                           headers, args, svc.log)
        return {"service_repo": str(repo), "service_env": env, "shapes": results}


def print_report(runs: dict):
    header = ["service", "answer", "answer bytes", "Redis bytes / 200", "Redis bytes / 304",
              "Redis commands / 304"]
    rows = [[label, shape, f"{r['answer_bytes']:,}", f"{r['redis_bytes_per_200']:,}",
             f"{r['redis_bytes_per_304']:,.0f} ({r['min']:,}-{r['max']:,})",
             f"{r['redis_commands_per_304']:g}"]
            for label, run in runs.items() for shape, r in run["shapes"].items()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    if "before" in runs:
        print()
        for shape in SHAPES:
            before = runs["before"]["shapes"][shape]["redis_bytes_per_304"]
            after = runs["after"]["shapes"][shape]["redis_bytes_per_304"]
            print(f"{shape}: Redis bytes per 304 {before:,.0f} -> {after:,.0f} "
                  f"({before / after:,.1f}x fewer)")


def run(args, stack: contextlib.ExitStack) -> dict:
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-etag304-")))
    server = MlflowServer(work / "mlflow", auth=True, workers=MLFLOW_WORKERS, startup_timeout=300)
    server.data_dir.mkdir()
    step(f"seeding {EXPERIMENT} into {server.db_uri}")
    seed(server.db_uri)
    stack.enter_context(server)
    proxy = stack.enter_context(MlflowProxy(server.uri))
    cache, redis_url = stack.enter_context(redis_server())
    params = {"tracking_uri": proxy.uri, "experiment_name": EXPERIMENT, "limit": 1,
              "http_timeout": 300}
    headers = dict(urllib3.make_headers(basic_auth=":".join(server.admin)),
                   **{"Accept-Encoding": CODING})
    services = {"after": REPO} if args.before_repo is None else {"before": args.before_repo,
                                                                  "after": REPO}
    return {label: measure_service(label, repo, work, stack, redis_url, cache,
                                   (params, headers), args)
            for label, repo in services.items()}


def parse_args():
    parser = bench_parser(__doc__, "bench_etag304")
    parser.add_argument("--repeats", type=int, default=20, help="conditional GETs per answer")
    parser.add_argument("--before-repo", type=Path, default=None,
                        help="also serve this checkout's app (main before the change)")
    args = parse_bench_args(parser)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main():
    args = parse_args()
    runs = run_bench(run, args)
    print_report(runs)
    write_json(args.out, runs)


if __name__ == "__main__":
    main()
