"""Many viewers of one experiment: MLflow calls per minute, by the number of MLflow users.

    .venv/bin/python bench/bench_viewers.py [--viewers 20] [--users 4] [--interval 5]
                                            [--seconds 60] [--service-repo PATH]

Sets up what bench_runs.py does (experiment ``bench-exp``: 10 finished runs x 20 metrics
x 1,000 steps; a real basic-auth MLflow behind the counting proxy, a private redis-server,
our service under gunicorn with 2 workers, its default RUN_LIST_TTL and AUTH_CACHE_TTL),
creates ``--users`` MLflow users (READ by default), fills the cache with one poll per
user, then lets ``--viewers`` simulated viewers (viewer i is user i mod users) poll
POST /mlflow/runs {experiment_name: bench-exp, limit: 10} every ``--interval`` seconds,
staggered, for ``--seconds``. It counts the MLflow calls the proxy saw during that time
(by endpoint), checks every answer (200, 10 runs), and reads Redis's MEMORY USAGE of the
cached runs and listings.

``--service-repo`` serves another checkout's app (a git worktree of main before a change)
with this script's harness: the before/after figures of bench/README.md.
Target (issue 12): at most 6 + 1 per user MLflow calls a minute, whatever the viewers.
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

from bench.bench_runs import EXPERIMENT, MLFLOW_WORKERS, RUNS, redis_server, seed  # noqa: E402
from bench.common import (  # noqa: E402
    BenchError, bench_parser, parse_bench_args, run_bench, step, write_json,
)
from tests.support.gunicorn import gunicorn  # noqa: E402
from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.processes import log_tail  # noqa: E402
from tests.support.proxy import MlflowProxy  # noqa: E402

SERVICE_WORKERS = 2
CLIENT_TIMEOUT = 120.0  # per poll: a hang guard
EXPECTED_HEAD = b'{"success":true,"experiment_name":"%s","total_runs":%d,' % (EXPERIMENT.encode(), RUNS)


def poll_once(pool, base, payload, log) -> str:
    """One poll; its X-Cache. Fails loudly on anything but 200 with every run."""
    # A connection per poll: five seconds apart, a kept-alive one may be closed by
    # gunicorn (its keepalive) just as the next poll is sent (not retried: a POST).
    response = pool.request("POST", f"{base}/mlflow/runs", body=payload,
                            headers={"Content-Type": "application/json", "Connection": "close"},
                            timeout=CLIENT_TIMEOUT, retries=False)
    if response.status != 200:
        raise BenchError(f"POST /mlflow/runs answered {response.status}: "
                         f"{response.data[:1000]!r}\n{log_tail(log)}")
    # The head of the envelope only: parsing 13 MB per poll would load the machine.
    if not response.data.startswith(EXPECTED_HEAD):
        raise BenchError(f"an answer without the {RUNS} runs: {response.data[:200]!r}")
    return response.headers.get("X-Cache")


def viewers(pool, base, payloads, args, log) -> dict:
    """``args.viewers`` threads, each polling every ``args.interval`` s for ``args.seconds``."""
    caches, failures, lock = collections.Counter(), [], threading.Lock()
    start = time.monotonic() + 0.5
    end = start + args.seconds

    def viewer(i):
        due = start + i * args.interval / args.viewers  # staggered, as real viewers are
        while due < end:
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                state = poll_once(pool, base, payloads[i % args.users], log)
                with lock:
                    caches[state] += 1
            except Exception as exc:  # noqa: BLE001  reported, and the run fails below
                with lock:
                    failures.append(repr(exc)[:500])
            due += args.interval

    threads = [threading.Thread(target=viewer, args=(i,)) for i in range(args.viewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Failed polls are reported, not fatal: the calls they made still count.
    return {"polls": sum(caches.values()) + len(failures), "x_cache": dict(caches),
            "failed_polls": len(failures), "first_failure": failures[0][:300] if failures else None,
            "seconds": round(time.monotonic() - start, 1)}


def redis_memory(cache) -> dict:
    """MEMORY USAGE of the cached runs' JSON entries and of the listings (the allocator's
    size classes: a few bytes more or less may not show), and their values' exact
    length (STRLEN)."""
    def usage(pattern, keep=lambda key: True):
        keys = [key for key in cache.scan_iter(match=pattern) if keep(key)]
        sizes = [cache.memory_usage(key, samples=0) or 0 for key in keys]
        lengths = [cache.strlen(key) for key in keys]
        return {"keys": len(keys), "bytes": sum(sizes),
                "per_key": round(sum(sizes) / len(keys)) if keys else None,
                "value_bytes_per_key": round(sum(lengths) / len(keys)) if keys else None}
    return {"run_json": usage("*run:*", lambda key: b":series:" not in key),
            "listings": usage("*list:*")}


def run(args, stack: contextlib.ExitStack) -> dict:
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-viewers-")))
    # A busy machine (other jobs) can take minutes to start MLflow's 4 workers.
    server = MlflowServer(work / "mlflow", auth=True, workers=MLFLOW_WORKERS, startup_timeout=300)
    server.data_dir.mkdir()
    step(f"seeding {EXPERIMENT} into {server.db_uri}")
    seed(server.db_uri)
    stack.enter_context(server)
    users = {f"viewer-{u}": f"viewer-password-{u}" for u in range(args.users)}
    for user, password in users.items():
        server.create_user(user, password)
    proxy = stack.enter_context(MlflowProxy(server.uri))
    cache, redis_url = stack.enter_context(redis_server())
    svc = stack.enter_context(gunicorn(work, redis_url, workers=SERVICE_WORKERS,
                                       env=args.service_env, repo=args.service_repo))
    step(f"service from {args.service_repo} at {svc.base}; MLflow {server.uri} (proxy {proxy.uri})")
    payloads = [json.dumps({"tracking_uri": proxy.uri, "username": user, "password": password,
                            "experiment_name": EXPERIMENT, "limit": RUNS,
                            "http_timeout": 300}).encode() for user, password in users.items()]
    pool = stack.enter_context(urllib3.PoolManager(maxsize=args.viewers))
    step(f"filling the cache: one poll per user ({args.users})")
    for payload in payloads:
        for attempt in range(3):  # a busy machine's MLflow may drop a call; not what is measured
            try:
                poll_once(pool, svc.base, payload, svc.log)
                break
            except BenchError as exc:
                if attempt == 2:
                    raise
                step(f"fill poll failed, again: {str(exc)[:200]}")
    fill_calls = proxy.count()
    proxy.reset()
    step(f"{args.viewers} viewers as {args.users} users, every {args.interval:g} s "
         f"for {args.seconds:g} s")
    seen = viewers(pool, svc.base, payloads, args, svc.log)
    calls = list(proxy.paths)
    by_endpoint = collections.Counter(path.split("?")[0] for path in calls)
    per_minute = len(calls) * 60 / seen["seconds"]
    return {"service_repo": str(args.service_repo), "viewers": args.viewers, "users": args.users,
            "interval": args.interval, "fill_calls": fill_calls, **seen,
            "mlflow_calls": len(calls), "mlflow_calls_per_minute": round(per_minute, 1),
            "target_per_minute": 6 + args.users, "by_endpoint": dict(by_endpoint),
            "redis_memory": redis_memory(cache)}


def parse_args():
    parser = bench_parser(__doc__, "bench_viewers")
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--service-repo", type=Path, default=REPO,
                        help="checkout whose app is served (default: this one)")
    args = parse_bench_args(parser)
    if min(args.viewers, args.users) < 1 or args.users > args.viewers:
        parser.error("need 1 <= users <= viewers")
    return args


def main():
    args = parse_args()
    results = run_bench(run, args)
    print(json.dumps(results, indent=2))
    print(f"MLflow calls per minute: {results['mlflow_calls_per_minute']} "
          f"(target <= {results['target_per_minute']}: 6 + 1 per user)")
    write_json(args.out, results)


if __name__ == "__main__":
    main()
