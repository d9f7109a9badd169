"""Benchmark POST /mlflow/runs against the naive MlflowClient loop, on loopback only.

    .venv/bin/python bench/bench_runs.py [--repeats N] [--baseline-repeats M]
                                         [--cold-repeats K] [--out bench/out/bench_runs.json]

One run seeds an sqlite MLflow store (experiment ``bench-exp``: 10 finished runs x 20
metrics x 1,000 steps), serves it with a real basic-auth MLflow server behind a counting
proxy, starts a private redis-server and our service under gunicorn, then times:

  baseline  MlflowClient: search_runs, then get_metric_history per run and metric
  cold      POST /mlflow/runs after FLUSHALL (nothing cached)
  warm      the same request again, cache filled
  floor     one MGET of the run values the service cached (``SCAN MATCH *run:*``)

Every authenticated MLflow call costs the server ~0.2-0.4 s of password hashing (the
auth cache stays off), so the number of MLflow requests is what the timings reflect.
See bench/README.md for the targets.
"""
import contextlib
import gzip
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
import urllib3  # noqa: E402

from bench.common import (  # noqa: E402
    REQUEST_TIMEOUT, BenchError, bench_parser, parse_bench_args, run_bench, step, write_json,
)
from tests.support.gunicorn import gunicorn  # noqa: E402
from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.processes import log_tail  # noqa: E402
from tests.support.proxy import MlflowProxy  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.seed import BASE_TIME_MS, LONG_METRIC_BATCH, tracking_client  # noqa: E402

EXPERIMENT = "bench-exp"
RUNS, METRICS, STEPS = 10, 20, 1000
METRIC_KEYS = [f"metric_{i:02d}" for i in range(METRICS)]
MLFLOW_WORKERS = 4  # what `mlflow server` runs by default
SERVICE_WORKERS = 2  # gunicorn workers of our service


# -- setup --------------------------------------------------------------------------


def seed(db_uri: str) -> str:
    """Write bench-exp straight into the sqlite store; return its experiment id."""
    from mlflow.entities import Metric

    client, root = tracking_client(db_uri, None)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=f"{root}/{EXPERIMENT}")
    for r in range(RUNS):
        start = BASE_TIME_MS + r * 3_600_000
        run_id = client.create_run(exp_id, start_time=start, run_name=f"run-{r:02d}").info.run_id
        metrics = [Metric(key, (r + 1) * (k + 1) / (step + 1), start + step, step)
                   for k, key in enumerate(METRIC_KEYS) for step in range(STEPS)]
        for i in range(0, len(metrics), LONG_METRIC_BATCH):
            client.log_batch(run_id, metrics=metrics[i:i + LONG_METRIC_BATCH])
        client.set_terminated(run_id, status="FINISHED", end_time=start + 1_800_000)
    return exp_id


@contextlib.contextmanager
def redis_server():
    """A private redis-server: (a client of it, its URL)."""
    with RedisServer() as server, redis.Redis.from_url(server.url) as client:
        yield client, server.url


# -- measuring ----------------------------------------------------------------------


def measure(label: str, call, repeats: int, proxy: MlflowProxy, before=None) -> dict:
    """Time ``call`` ``repeats`` times; it returns {"bytes": response size, ...extras}."""
    samples = []
    for i in range(repeats):
        if before:
            before()
        proxy.reset()
        t0 = time.perf_counter()
        outcome = call()
        seconds = time.perf_counter() - t0
        # Checked outside the timing: parsing 13 MB of JSON is the client's cost, not ours.
        verify = outcome.pop("verify", None)
        if verify:
            verify()
        sample = {"seconds": seconds, "mlflow_requests": proxy.count(), **outcome}
        extras = "".join(f", {k} {v}" for k, v in outcome.items() if k != "bytes")
        print(f"  {label} #{i + 1}: {seconds:.4f} s, {sample['mlflow_requests']} MLflow "
              f"requests, {sample['bytes']:,} bytes{extras}", flush=True)
        samples.append(sample)
    return summarize(samples)


def summarize(samples: list[dict]) -> dict:
    requests_seen = sorted({s["mlflow_requests"] for s in samples})
    return {
        "median_seconds": statistics.median(s["seconds"] for s in samples),
        "mlflow_requests": requests_seen[-1],  # the worst sample: targets are upper bounds
        "mlflow_requests_seen": requests_seen,
        "bytes": samples[-1]["bytes"],
        "samples": samples,
    }


@contextlib.contextmanager
def mlflow_credentials(username: str, password: str):
    """The env credentials a naive MlflowClient user sets, for the baseline only."""
    os.environ.update(MLFLOW_TRACKING_USERNAME=username, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield
    finally:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key, None)


@contextlib.contextmanager
def counting_response_bytes():
    """Sum the body sizes of the MLflow responses MlflowClient receives."""
    from mlflow.utils import rest_utils

    original, total = rest_utils.http_request, [0]

    def counting(*args, **kwargs):
        response = original(*args, **kwargs)
        total[0] += len(response.content)
        return response

    # call_endpoint (search_runs, get_metric_history) looks http_request up at call time.
    rest_utils.http_request = counting
    try:
        yield total
    finally:
        rest_utils.http_request = original


def naive_client_loop(tracking_uri: str, exp_id: str) -> dict:
    """What clients do without our service; counts the MLflow response bytes."""
    from mlflow.tracking import MlflowClient

    with counting_response_bytes() as received:
        client = MlflowClient(tracking_uri=tracking_uri)
        runs = client.search_runs([exp_id])
        points = sum(len(client.get_metric_history(run.info.run_id, key))
                     for run in runs for key in sorted(run.data.metrics))
    expected = RUNS * METRICS * STEPS
    if len(runs) != RUNS or points != expected:
        raise BenchError(f"baseline read {len(runs)} runs / {points} points, "
                         f"expected {RUNS} / {expected}")
    return {"bytes": received[0]}


def runs_caller(pool: urllib3.PoolManager, base: str, body: dict, log: Path,
                coding: str | None = None):
    # urllib3 reads the 13 MB body in one go; requests' 10 KB iter_content would add
    # ~10 ms of client overhead to every warm sample (measured on loopback).
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if coding:  # timed: the body as sent (bytes on the wire); decoded outside the timing
        headers["Accept-Encoding"] = coding

    def call() -> dict:
        response = pool.request("POST", f"{base}/mlflow/runs", body=payload, headers=headers,
                                timeout=REQUEST_TIMEOUT, retries=False, decode_content=False)
        if response.status != 200:
            raise BenchError(f"POST /mlflow/runs answered {response.status}: "
                             f"{response.data[:2000]!r}\n{log_tail(log)}")
        if response.headers.get("Content-Encoding") != coding:
            raise BenchError(f"asked for {coding}, got {response.headers.get('Content-Encoding')}")
        # The service's own account of whether it asked MLflow (HIT, MISS, ...).
        return {"bytes": len(response.data), "x_cache": response.headers.get("X-Cache"),
                "verify": lambda: check_runs_payload(decoded(response.data, coding))}
    return call


def decoded(body: bytes, coding: str | None) -> bytes:
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "zstd":
        import zstandard
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body),
                                                            read_across_frames=True)
        return reader.read()
    return body


def check_runs_payload(content: bytes):
    """Fail loudly unless the answer holds 10 runs x 20 metrics x 1000 points."""
    runs = json.loads(content)["runs"]
    shape = [(len(run["metrics_history"]),
              sorted({len(m["history"]) for m in run["metrics_history"]}))
             for run in runs]
    if len(runs) != RUNS or any(n != METRICS or points != [STEPS] for n, points in shape):
        raise BenchError(f"expected {RUNS} runs x {METRICS} metrics x {STEPS} points, got "
                         f"{len(runs)} runs with (metrics, {{points}}) = {shape}")


def redis_floor(cache: redis.Redis, repeats: int) -> dict | None:
    """Fetch every cached run value in one MGET: the floor a warm request could reach."""
    keys = sorted(cache.scan_iter(match="*run:*", count=1000))
    if not keys:
        print("  raw Redis floor: the cache stored nothing (no key matches *run:*); skipped")
        return None
    samples = []
    for i in range(repeats):
        t0 = time.perf_counter()
        values = cache.mget(keys)
        seconds = time.perf_counter() - t0
        size = sum(len(v) for v in values if v is not None)
        print(f"  raw Redis floor #{i + 1}: {seconds:.4f} s, {size:,} bytes", flush=True)
        samples.append({"seconds": seconds, "mlflow_requests": 0, "bytes": size})
    missing = sum(v is None for v in values)
    print(f"  raw Redis floor: {len(keys)} keys, {size:,} bytes in total"
          + (f" ({missing} keys are not plain strings: MGET skipped them)" if missing else ""))
    return dict(summarize(samples), keys=len(keys))


# -- report -------------------------------------------------------------------------


ROWS = [("baseline", "baseline (MlflowClient loop)"), ("cold", "cold (service, empty cache)"),
        ("warm", "warm (service, cache filled)"),
        ("warm_gzip", "warm, Accept-Encoding: gzip"), ("warm_zstd", "warm, Accept-Encoding: zstd"),
        ("redis_floor", "raw Redis floor (MGET)")]


def speedups(results: dict) -> dict:
    baseline = results["baseline"]["median_seconds"]
    warm, floor = results["warm"]["median_seconds"], results.get("redis_floor")
    return {
        "cold_vs_baseline": baseline / results["cold"]["median_seconds"],
        "warm_vs_baseline": baseline / warm,
        "warm_over_redis_floor": warm / floor["median_seconds"] if floor else None,
    }


def print_report(results: dict, ratios: dict):
    baseline = results["baseline"]["median_seconds"]
    header = ("approach", "MLflow requests", "median seconds", "ratio vs baseline", "bytes")
    lines = []
    for key, label in ROWS:
        result = results.get(key)
        if result is None:
            continue
        seen = result["mlflow_requests_seen"]
        reqs = str(seen[0]) if len(seen) == 1 else f"{seen[0]}-{seen[-1]}"
        lines.append((label, reqs, f"{result['median_seconds']:.4f}",
                      f"{baseline / result['median_seconds']:,.1f}x faster",
                      f"{result['bytes']:,}"))
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths), *lines]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print()
    print(f"cold speed-up vs baseline: {ratios['cold_vs_baseline']:,.1f}x")
    print(f"warm speed-up vs baseline: {ratios['warm_vs_baseline']:,.1f}x")
    floor = ratios["warm_over_redis_floor"]
    print("warm / raw Redis floor: " + (f"{floor:,.1f}x" if floor else "n/a (cache stored nothing)"))


def write_results(path: Path, args, results: dict, ratios: dict):
    write_json(path, {
        "dataset": {"experiment": EXPERIMENT, "runs": RUNS, "metrics_per_run": METRICS,
                    "steps_per_metric": STEPS},
        "settings": {"repeats": args.repeats, "baseline_repeats": args.baseline_repeats,
                     "cold_repeats": args.cold_repeats, "gunicorn_workers": 2},
        "results": results,
        "speedups": ratios,
    })


# -- main ---------------------------------------------------------------------------


def parse_args():
    parser = bench_parser(__doc__, "bench_runs")
    parser.add_argument("--repeats", type=int, default=20, help="warm requests (default 20)")
    parser.add_argument("--baseline-repeats", type=int, default=1,
                        help="naive client loops, ~1-2 min each (default 1)")
    parser.add_argument("--cold-repeats", type=int, default=3,
                        help="cold requests, each after FLUSHALL (default 3)")
    args = parse_bench_args(parser)
    if min(args.repeats, args.baseline_repeats, args.cold_repeats) < 1:
        parser.error("repeat counts must be at least 1")
    return args


def run(args, stack: contextlib.ExitStack) -> dict:
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-runs-")))
    server = MlflowServer(work / "mlflow", auth=True, workers=MLFLOW_WORKERS)
    server.data_dir.mkdir()

    step(f"seeding {RUNS} runs x {METRICS} metrics x {STEPS} steps into {server.db_uri}")
    t0 = time.monotonic()
    exp_id = seed(server.db_uri)
    step(f"seeded in {time.monotonic() - t0:.1f} s; starting MLflow (basic auth)")
    stack.enter_context(server)
    proxy = stack.enter_context(MlflowProxy(server.uri))
    cache, redis_url = stack.enter_context(redis_server())
    svc = stack.enter_context(gunicorn(work, redis_url, workers=SERVICE_WORKERS,
                                       env=args.service_env))
    base, log = svc.base, svc.log
    step(f"MLflow {server.uri} (proxy {proxy.uri}), Redis {redis_url}, service {base}")

    username, password = server.admin
    results = {}
    step(f"baseline: MlflowClient loop x {args.baseline_repeats}")
    with mlflow_credentials(username, password):
        results["baseline"] = measure(
            "baseline", lambda: naive_client_loop(proxy.uri, exp_id), args.baseline_repeats, proxy)

    pool = stack.enter_context(urllib3.PoolManager())
    body = {"tracking_uri": proxy.uri, "username": username, "password": password,
            "experiment_name": EXPERIMENT, "limit": RUNS, "http_timeout": 300}
    call = runs_caller(pool, base, body, log)
    def empty_caches():  # Redis, and the workers' own copies of runs (new workers)
        cache.flushall()
        svc.restart_workers(SERVICE_WORKERS)

    step(f"cold: POST /mlflow/runs after FLUSHALL and new workers x {args.cold_repeats}")
    results["cold"] = measure("cold", call, args.cold_repeats, proxy, before=empty_caches)
    step(f"warm: POST /mlflow/runs again x {args.repeats}")
    results["warm"] = measure("warm", call, args.repeats, proxy)
    for coding in ("gzip", "zstd"):  # issue 12: bytes on the wire and time, compressed
        step(f"warm, Accept-Encoding: {coding} x {args.repeats}")
        results[f"warm_{coding}"] = measure(f"warm {coding}", runs_caller(
            pool, base, body, log, coding), args.repeats, proxy)
    step(f"raw Redis floor x {args.repeats}")
    floor = redis_floor(cache, args.repeats)
    if floor:
        results["redis_floor"] = floor
    return results


def main():
    args = parse_args()
    results = run_bench(run, args)
    ratios = speedups(results)
    print_report(results, ratios)
    write_results(args.out, args, results, ratios)


if __name__ == "__main__":
    main()
