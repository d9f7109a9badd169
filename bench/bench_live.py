"""Live training runs watched by many viewers: MLflow calls per minute, polls, bytes,
latency, 304s and whether every viewer holds exactly MLflow's points (issue 20).

    .venv/bin/python bench/bench_live.py [--viewers 1,5,20] [--users 4] [--seconds 60]
        [--interval 5] [--history 2000] [--query run_ids|experiment]
        [--service-repo PATH] [--service-env NAME=VALUE]

Per phase (one per ``--viewers`` count, each on 2 RUNNING runs of its own): 20 metrics a
run (tests/support/live_training.py: 5 logged every step, 15 every 50 steps), ``--history``
steps logged before, a trainer thread per run logging a step a second through MLflow
while the viewers poll ``GET /mlflow/runs?run_ids=...`` (``--query experiment``: the
phase's experiment, ``experiment_name=...``) every ``--interval`` s for
``--seconds`` (viewer i is MLflow user i mod min(viewers, --users)). Viewers poll with the
cursor when the service's /openapi.json knows ``cursor``, else with ``since_step``
(tests/support/live_viewers.py), so ``--service-repo`` (a checkout of main before issue 20)
measures the before. One poll by viewer 0 comes first, outside the figures (the first
viewer ever). After the trainer stops and LIVE_REFRESH passes, each viewer polls once more
and must hold every series exactly as MlflowClient.get_metric_history returns it.
"""
import collections
import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import urllib3  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from bench.bench_runs import MLFLOW_WORKERS, redis_server  # noqa: E402
from bench.common import bench_parser, parse_bench_args, run_bench, step, write_json  # noqa: E402
from tests.support.gunicorn import gunicorn  # noqa: E402
from tests.support.live_training import FAST, SLOW, Trainer, seed_live_runs  # noqa: E402
from tests.support.live_viewers import (  # noqa: E402
    Viewer, cursor_supported, mismatches, mlflow_truth, poll_stats, watch,
)
from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.processes import GroupWatch  # noqa: E402
from tests.support.proxy import MlflowProxy  # noqa: E402

SERVICE_WORKERS = 2
RUNS = 2  # live runs per phase


def mlflow_work(proxy, start: float, seconds: float, skip: float) -> dict:
    """MLflow calls and answer bytes per minute from ``start + skip`` on (``skip``: the
    viewers' first polls), by endpoint; and over the whole window."""
    def per_minute(since):
        answers = [(line, size) for t, line, size in list(proxy.answers) if t >= since]
        minutes = (start + seconds - since) / 60
        by = collections.Counter(line.split("?")[0].split("/mlflow/")[-1] for line, _ in answers)
        return {"calls_per_minute": round(len(answers) / minutes, 1),
                "bytes_per_minute": round(sum(size for _, size in answers) / minutes),
                "by_endpoint_per_minute": {k: round(v / minutes, 1) for k, v in by.most_common()}}
    return {"window": per_minute(start), "after_first_polls": per_minute(start + skip)}


def live_counters(pool, base: str) -> collections.Counter:
    """The service's mlflow_logs_live_* counters (all workers), by name and labels; none
    before issue 20."""
    from prometheus_client.parser import text_string_to_metric_families

    text = pool.request("GET", f"{base}/metrics", timeout=60).data.decode()
    return collections.Counter({
        sample.name.removeprefix("mlflow_logs_live_") + "".join(
            f"{{{v}}}" for v in sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
        if sample.name.startswith("mlflow_logs_live_") and sample.name.endswith("_total")})


def phase(n: int, experiment: str, run_ids, setup, args) -> dict:
    server, proxy, cache, svc, pool, passwords, cursor = setup
    users = min(n, args.users)
    cache.flushall()
    svc.restart_workers(SERVICE_WORKERS)
    scope = {"run_ids": run_ids} if args.query == "run_ids" else {"experiment_name": experiment}
    fields = {"tracking_uri": proxy.uri, "http_timeout": 300, **scope}
    make = lambda i: Viewer(pool, svc.base, fields, f"viewer-{i % users}",  # noqa: E731
                            passwords[f"viewer-{i % users}"], cursor)
    trainer = Trainer(server.uri, server.admin, run_ids, args.history).start()
    proxy.reset()
    first = make(0).poll()
    fill = {"seconds": round(first.seconds, 2), "status": first.status,
            "mlflow_calls": len(proxy.answers), "bytes": {"gzip": first.wire, "plain": first.plain}}
    step(f"{n} viewers as {users} users ({'cursor' if cursor else 'since_step'}); "
         f"first poll: {fill}")
    proxy.reset()
    log_from = server.log_path.stat().st_size
    workers, load = GroupWatch(server.proc.pid), [os.getloadavg()]
    viewers = [make(i) for i in range(n)]
    steps_before = sum(trainer.steps.values())
    counters = live_counters(pool, svc.base)
    start, seconds = watch(viewers, args.seconds, args.interval)
    work = mlflow_work(proxy, start, seconds, args.interval)
    tail = dict(live_counters(pool, svc.base) - counters)
    refreshes = tail.get("tail_total{refreshed}", 0)
    if refreshes:  # per refresh of the tails: what the history (2,000 or 200,000) changes
        calls = sum(1 for t, _, _ in list(proxy.answers) if t >= start)
        tail["mlflow_calls_per_refresh"] = round(calls / refreshes, 1)
        tail["mlflow_bytes_per_refresh"] = round(
            sum(size for t, _, size in list(proxy.answers) if t >= start) / refreshes)
    steps_in_window = sum(trainer.steps.values()) - steps_before
    stats = poll_stats(viewers, args.seconds)
    load.append(os.getloadavg())
    trainer.stop()
    mlflow_log = server.log_path.read_bytes()[log_from:].decode(errors="replace")
    restarts = {**workers.stop(), "died_in_log": mlflow_log.count(" died")}
    time.sleep(args.live_refresh + 1)  # what was logged last is in the tail's next refresh
    truth = mlflow_truth(MlflowClient(tracking_uri=server.db_uri), run_ids, FAST + SLOW)
    rounds = {}
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        # The final poll; then one more: a final poll answered from the previous tail while
        # another refreshes it may lack what that refresh brings (docs/cache.md's bound),
        # never more, and the next poll must have it
        for name in ("final", "one_more"):
            time.sleep(2 if name == "one_more" else 0)  # the refresh in flight, if any
            polled_at = time.time()
            statuses = collections.Counter(executor.map(lambda v: v.poll().status, viewers))
            wrong, earliest = mismatches(viewers, truth)
            rounds[name] = {"statuses": dict(statuses), "series_differ": len(wrong),
                            "mismatches": wrong[:10], "earliest_missing_logged_s_before":
                            round(polled_at - earliest / 1000, 1) if earliest else None}
        # Nothing logged any more: the next polls are unchanged ones (a 304 is the target)
        idle = collections.Counter(
            f"{p.status}{' nothing new' if p.status == 200 and not p.new else ''}"
            for pair in executor.map(lambda v: (v.poll(), v.poll()), viewers) for p in pair)
    result = {"viewers": n, "users": users, "mode": "cursor" if cursor else "since_step",
              "query": args.query,
              "history": args.history, "seconds": round(seconds, 1), "first_viewer_poll": fill,
              "mlflow": work, "live_tail": tail, **stats, "mlflow_workers": restarts,
              "trainer_steps": {"in_window": steps_in_window, "all": trainer.steps,
                                "errors": len(trainer.errors)},
              "exact": rounds, "idle_polls_after_final": dict(idle),
              "load_average": [[round(x, 1) for x in avg] for avg in load]}
    step(summary_line(result))
    return result


def summary_line(r: dict) -> str:
    w, later, exact = r["mlflow"]["after_first_polls"], r["later_polls"], r["exact"]
    return (f"{r['mode']} {r['viewers']}x{r['users']} ({r['query']}, history {r['history']}): "
            f"MLflow "
            f"{r['mlflow']['window']['calls_per_minute']} calls/min, {w['calls_per_minute']} after "
            f"the first polls {w['by_endpoint_per_minute']}, {w['bytes_per_minute']:,} B/min;"
            f" polls/viewer/min {r['polls_per_viewer_per_minute']}; first polls: bytes/200 "
            f"{r['first_polls']['bytes_per_200']}, latency {r['first_polls']['latency_s']};"
            f" later polls: bytes/200 {later['bytes_per_200']}, latency {later['latency_s']},"
            f" 304s {later['not_modified_304']} of {later['polls']}, 200s with nothing new"
            f" {later['ok_200_nothing_new']}; failed {r['failed']}; 2 idle polls after the final"
            f" one {r['idle_polls_after_final']}; MLflow workers {r['mlflow_workers']};"
            f" trainer steps {r['trainer_steps']['in_window']}; live tail {r['live_tail']};"
            f" series that differ at the final"
            f" poll {exact['final']['series_differ']} (earliest missing point logged"
            f" {exact['final']['earliest_missing_logged_s_before']} s before), after one more"
            f" {exact['one_more']['series_differ']}; load {r['load_average']}")


HEADER = ("| service | viewers × users | MLflow calls/min (window; after the first polls) "
          "| MLflow answer bytes/min (after the first polls) | polls/viewer/min (min–max; wanted 12) | later polls: bytes "
          "plain / gzip, p50 / p95 s | 304s of later polls (200s with nothing new) "
          "| MLflow workers restarted | trainer steps (2 runs, ~120 wanted) | series exact: final poll, one more | load |"
          "\n|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(service: str, r: dict) -> str:
    """One phase as a row of bench/README.md's table."""
    w, later, exact = r["mlflow"], r["later_polls"], r["exact"]
    per_viewer, latency = r["polls_per_viewer_per_minute"], later["latency_s"]
    series = len(FAST + SLOW) * RUNS * r["viewers"]
    restarted = max(r["mlflow_workers"]["new"], r["mlflow_workers"]["died_in_log"])
    return (f"| {service} | {r['viewers']} × {r['users']} | {w['window']['calls_per_minute']}; "
            f"{w['after_first_polls']['calls_per_minute']} "
            f"| {w['after_first_polls']['bytes_per_minute'] / 1e6:.2f} MB "
            f"| {per_viewer['min']}–{per_viewer['max']} "
            f"| {later['bytes_per_200']['plain']:,} / {later['bytes_per_200']['gzip']:,}, "
            f"{latency['p50']:.1f} / {latency['p95']:.1f} "
            f"| {later['not_modified_304']} of {later['polls']} ({later['ok_200_nothing_new']}) "
            f"| {restarted} | {r['trainer_steps']['in_window']} "
            f"| {series - exact['final']['series_differ']}/{series}, "
            f"{series - exact['one_more']['series_differ']}/{series} "
            f"| {r['load_average'][0][0]}–{r['load_average'][1][0]} |")


def run(args, stack) -> dict:
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-live-")))
    server = MlflowServer(work / "mlflow", auth=True, workers=MLFLOW_WORKERS, startup_timeout=300)
    server.data_dir.mkdir()
    step(f"seeding {len(args.viewers)} x {RUNS} live runs x {args.history} steps")
    experiments = [f"live-exp-{i}" for i in range(len(args.viewers))]  # a phase's own
    runs = [seed_live_runs(server.db_uri, name, RUNS, args.history) for name in experiments]
    stack.enter_context(server)
    passwords = {f"viewer-{u}": f"viewer-password-{u}" for u in range(args.users)}
    for user, password in passwords.items():
        server.create_user(user, password)
    proxy = stack.enter_context(MlflowProxy(server.uri))
    cache, redis_url = stack.enter_context(redis_server())
    svc = stack.enter_context(gunicorn(work, redis_url, workers=SERVICE_WORKERS,
                                       env=args.service_env, repo=args.service_repo))
    pool = stack.enter_context(urllib3.PoolManager(maxsize=max(args.viewers)))
    cursor = cursor_supported(pool, svc.base)
    step(f"service from {args.service_repo} at {svc.base} ({'cursor' if cursor else 'since_step'})")
    setup = (server, proxy, cache, svc, pool, passwords, cursor)
    phases = [phase(n, experiments[i], runs[i], setup, args) for i, n in enumerate(args.viewers)]
    return {"service_repo": str(args.service_repo), "interval": args.interval,
            "history": args.history, "phases": phases}


def parse_args():
    parser = bench_parser(__doc__, "bench_live")
    parser.add_argument("--viewers", default="1,5,20",
                        type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--users", type=int, default=4, help="MLflow users (at most)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--history", type=int, default=2000, help="steps logged before")
    parser.add_argument("--query", choices=("run_ids", "experiment"), default="run_ids",
                        help="poll the runs by run_ids (docs/api.md's chart), or their "
                             "experiment's name (a listing shared by every MLflow user)")
    parser.add_argument("--service-repo", type=Path, default=REPO,
                        help="checkout whose app is served (default: this one)")
    args = parse_bench_args(parser)
    args.live_refresh = float(args.service_env.get("LIVE_REFRESH", 5))
    if min(args.viewers) < 1 or args.users < 1 or args.history < 1:
        parser.error("need viewers, users and history >= 1")
    return args


def main():
    args = parse_args()
    results = run_bench(run, args)
    print("\n" + "\n".join(summary_line(r) for r in results["phases"]))
    service = "after" if results["phases"][0]["mode"] == "cursor" else "before"
    print("\n" + "\n".join([HEADER] + [table_row(service, r) for r in results["phases"]]))
    write_json(args.out, results)


if __name__ == "__main__":
    main()
