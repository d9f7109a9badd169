"""MLflow's own floor for a cold /mlflow/runs, with no service in between.

    .venv/bin/python bench/bench_mlflow_floor.py [--repeats 3]

Same store and server as bench_runs.py (10 runs x 20 metrics x 1,000 steps, basic-auth
MLflow with 4 workers). Straight to MLflow with a bare requests.Session, it times
(1) the cold request's call plan: get-experiment-by-name, runs/search, then the 20
get-history-bulk calls (one per metric, all 10 runs each) 4 and 8 at a time, and
(2) the sequential per-run loop: 200 get-history calls. The ratio (2)/(1) is the most any
client can gain over the per-run loop with MLflow's API on this machine: what is left
is MLflow's own CPU (password hashing and metric rows per call), whoever asks.
"""
import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from bench.bench_runs import EXPERIMENT, MLFLOW_WORKERS, seed  # noqa: E402
from bench.common import step  # noqa: E402
from tests.support.mlflow_server import MlflowServer  # noqa: E402


def session(server) -> requests.Session:
    s = requests.Session()
    s.auth, s.trust_env = server.admin, False
    s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))
    return s


def cold_plan(s, uri, concurrency):
    """The service's cold call plan; returns (seconds, run ids, metric keys)."""
    api = uri + "/api/2.0/mlflow"
    t0 = time.perf_counter()
    experiment = s.get(f"{api}/experiments/get-by-name",
                       params={"experiment_name": EXPERIMENT}).json()["experiment"]
    runs = s.post(f"{api}/runs/search", json={"experiment_ids": [experiment["experiment_id"]],
                                              "max_results": 10}).json()["runs"]
    ids = [run["info"]["run_id"] for run in runs]
    keys = sorted({m["key"] for m in runs[0]["data"]["metrics"]})

    def bulk(key):
        response = s.get(f"{uri}/ajax-api/2.0/mlflow/metrics/get-history-bulk",
                         params={"run_id": ids, "metric_key": key, "max_results": 25000})
        response.raise_for_status()
        return len(response.json()["metrics"])

    with ThreadPoolExecutor(concurrency) as pool:
        points = sum(pool.map(bulk, keys))
    if points != len(ids) * len(keys) * 1000:
        raise SystemExit(f"expected {len(ids) * len(keys) * 1000} points, got {points}")
    return time.perf_counter() - t0, ids, keys


def per_run_loop(s, uri, ids, keys):
    t0 = time.perf_counter()
    for run_id in ids:
        for key in keys:
            s.get(f"{uri}/api/2.0/mlflow/metrics/get-history",
                  params={"run_id": run_id, "metric_key": key, "max_results": 25000}
                  ).raise_for_status()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as work:
        server = MlflowServer(Path(work) / "mlflow", auth=True, workers=MLFLOW_WORKERS)
        server.data_dir.mkdir()
        step("seeding bench-exp (as bench_runs.py)")
        seed(server.db_uri)
        with server:
            s = session(server)
            plans = {}
            for concurrency in (4, 8):
                times = [cold_plan(s, server.uri, concurrency)[0] for _ in range(args.repeats)]
                plans[concurrency] = statistics.median(times)
                step(f"cold plan, {concurrency} bulk calls at a time: median {plans[concurrency]:.2f} s "
                     f"({', '.join(f'{t:.2f}' for t in times)})")
            _, ids, keys = cold_plan(s, server.uri, 4)
            loop = per_run_loop(s, server.uri, ids, keys)
            step(f"per-run loop (200 get-history calls, sequential): {loop:.2f} s")
    best = min(plans.values())
    print(f"\nMLflow's floor for the cold call plan: {best:.2f} s; per-run loop {loop:.2f} s; "
          f"the most any client can gain: {loop / best:.1f}x")


if __name__ == "__main__":
    main()
