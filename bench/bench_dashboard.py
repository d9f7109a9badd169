"""The dashboard page with a lot to show (issue 21, "fast with a lot"), in headless Chromium.

    .venv/bin/python bench/bench_dashboard.py [--runs 10] [--metrics 20] [--points 100000]
        [--live-runs 2] [--updates 5] [--warm-repeats 3] [--store DIR]

Seeds an sqlite MLflow store straight (tests/support/curves.py: ``--runs`` runs x
``--metrics`` metrics x ``--points`` points, ``--live-runs`` of the runs left RUNNING;
``--store DIR`` keeps the seeded store there for the next run, which copies it), serves it
with a real basic-auth MLflow (4 workers), a private redis-server and our service under
gunicorn (2 workers, LIVE_REFRESH 1), and opens /dashboard/ in Debian's Chromium with the
view in the URL (every run, every metric, a poll every second). It measures:

  cold   from pressing Connect to every chart drawn with every run: nothing cached (when
         the page shows an error, which and after how long; then the requests that failed
         are asked again, one after the other, to fill the cache, and that is timed)
  warm   the same in a new browser context (no browser cache), the service's cache filled
  live   one point per metric logged to each live run: from the poll's request to every
         chart holding them (and from the logging, which includes waiting for the poll)
  heap   the page's JS heap after the load and after the live updates (CDP, after a GC)

and the longest task of the page's main thread during each (PerformanceObserver
'longtask': how long the page stopped answering input). See bench/README.md.
"""
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_runs import redis_server  # noqa: E402
from bench.common import (  # noqa: E402
    BenchError, bench_parser, parse_bench_args, run_bench, step, write_json,
)
from tests.support.browser import chromium  # noqa: E402
from tests.support.curves import seed_curves, timestamp  # noqa: E402
from tests.support.dashboard import DashboardPage  # noqa: E402
from tests.support.gunicorn import gunicorn  # noqa: E402
from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.seed import DB_NAME, db_path  # noqa: E402

EXPERIMENT = "dashboard-bench"
MLFLOW_WORKERS = 4
SERVICE_WORKERS = 2
VIEWPORT = {"width": 1600, "height": 1000}
WAIT_MS = 1_800_000  # a cold load of 20 million points from MLflow takes minutes
LONG_TASKS = """
window.__longTasks = [];
try {
  new PerformanceObserver(list => { for (const t of list.getEntries())
    window.__longTasks.push([t.startTime, t.duration]); })
    .observe({type: 'longtask', buffered: true});
} catch (e) {}
"""


def metric_keys(n: int) -> list[str]:
    return [f"metric_{i:02d}" for i in range(n)]


def shape(args) -> str:
    return f"{args.runs}x{args.metrics}x{args.points}"


def seeded_store(args, data_dir: Path) -> tuple[str, list[str]]:
    """The store in ``data_dir``: copied from ``--store`` when it holds this shape, else
    seeded (and kept in ``--store`` for the next run). The live runs set RUNNING."""
    import sqlite3

    kept = args.store / shape(args) if args.store else None
    if kept and (kept / "ids.txt").exists():
        step(f"copying the seeded store from {kept}")
        shutil.copy(kept / DB_NAME, data_dir / DB_NAME)
        experiment_id, *run_ids = (kept / "ids.txt").read_text().split()
    else:
        step(f"seeding {shape(args)} points (runs x metrics x points) into {data_dir}")
        t0 = time.monotonic()
        experiment_id, run_ids = seed_curves(f"sqlite:///{data_dir / DB_NAME}", EXPERIMENT,
                                             metric_keys(args.metrics), args.points, args.runs)
        step(f"seeded in {time.monotonic() - t0:.0f} s")
        if kept:
            kept.mkdir(parents=True, exist_ok=True)
            shutil.copy(data_dir / DB_NAME, kept / DB_NAME)
            (kept / "ids.txt").write_text(" ".join([experiment_id, *run_ids]))
    with sqlite3.connect(db_path(f"sqlite:///{data_dir / DB_NAME}")) as db:
        db.executemany("UPDATE runs SET status = 'RUNNING', end_time = NULL WHERE run_uuid = ?",
                       [(r,) for r in run_ids[:args.live_runs]])
    db.close()
    return experiment_id, run_ids


def view_hash(experiment_id, run_ids, args) -> str:
    return (f"#/e={experiment_id}&runs={','.join(run_ids)}"
            f"&metrics={','.join(metric_keys(args.metrics))}&x=step&log=0&poll={args.poll}")


def all_drawn(page: DashboardPage, runs: int, metrics: int) -> tuple[float, str | None]:
    """Wait until every chart holds every run, or the page shows an error; the page's
    clock (epoch ms) then, and the error."""
    handle = page.page.wait_for_function(
        """([runs, metrics]) => { try {
             const s = window.dashboard.state(), charts = Object.values(s.charts);
             const now = performance.timeOrigin + performance.now();
             if (s.error) return [now, s.error];
             const full = charts.length === metrics && charts.every(c =>
               Object.keys(c.runs).length === runs &&
               Object.values(c.runs).every(l => l.steps.length > 0));
             return full ? [now, null] : false;
           } catch (e) { return false; } }""", arg=[runs, metrics], polling=50, timeout=WAIT_MS)
    return tuple(handle.json_value())


def painted(page: DashboardPage):
    """Two animation frames: what the charts hold is on screen."""
    page.page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                       "requestAnimationFrame(r)))")


def heap(page: DashboardPage, cdp) -> dict:
    """The page's JS heap after a garbage collection (CDP Performance.getMetrics)."""
    cdp.send("HeapProfiler.collectGarbage")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {"js_heap_used_mb": metrics["JSHeapUsedSize"] / 2**20,
            "js_heap_total_mb": metrics["JSHeapTotalSize"] / 2**20,
            "dom_nodes": int(metrics["Nodes"])}


def longest_task(page: DashboardPage, since_ms: float = 0.0) -> float:
    """The longest main-thread task (ms) that started after ``since_ms`` (page clock)."""
    tasks = page.page.evaluate("() => window.__longTasks")
    return max([duration for start, duration in tasks if start >= since_ms], default=0.0)


def open_view(browser, base, fragment, admin, args, shots, name) -> tuple:
    """A new context; the page with the view's URL; Connect pressed and timed to every
    chart drawn (or to the error the page shows). (page, cdp, seconds, error)."""
    page = DashboardPage(browser.new_context(viewport=VIEWPORT), base, shots,
                         limit_network=False, name=name)
    page.context.set_default_timeout(WAIT_MS)
    page.page.add_init_script(LONG_TASKS)
    cdp = page.context.new_cdp_session(page.page)
    cdp.send("Performance.enable")
    page.open(fragment)
    page.page.fill("#tracking-uri", admin["uri"])
    page.page.fill("#username", admin["user"])
    page.page.fill("#password", admin["password"])
    started = page.page.evaluate("() => performance.timeOrigin + performance.now()")
    page.page.click("#connect-button")
    drawn_at, error = all_drawn(page, args.runs, args.metrics)
    page.ready()
    painted(page)
    page.screenshot("error" if error else "drawn")
    return page, cdp, (drawn_at - started) / 1000, error


def fill_cache(page: DashboardPage, admin: dict) -> dict:
    """The page's first-load requests that failed, asked again one after the other with
    the service's longest http_timeout (MAX_HTTP_TIMEOUT, 300 s): the cache filled for
    the warm loads, and how long the service took to read what was missing."""
    import requests

    from tests.support.calls import basic

    failed = [e for e in page.exchanges("/mlflow/runs")
              if e.method == "GET" and e.status != 200 and "cursor" not in e.query]
    auth = {"Authorization": basic(admin["user"], admin["password"])}
    t0, answers = time.monotonic(), []
    for exchange in failed:
        params = [(k, v) for k, vs in exchange.query.items() for v in vs if k != "http_timeout"]
        response = requests.get(exchange.url.split("?")[0], headers=auth, timeout=400,
                                params=params + [("http_timeout", 300)])
        if response.status_code != 200:
            raise BenchError(f"asked again: {response.status_code} {response.text[:300]}")
        answers.append(len(response.content))
    return {"seconds": time.monotonic() - t0, "requests": len(answers), "status": 200,
            "bytes": sum(answers), "failed_first": [e.status for e in failed]}


def drawn_points(state: dict) -> int:
    return sum(len(line["steps"]) for chart in state["charts"].values()
               for line in chart["runs"].values())


def live_update(page, writer, live_ids, args, n: int) -> dict:
    """One point per metric logged to each live run; timed to every chart holding them."""
    from mlflow.entities import Metric

    new_step = args.points + n
    since = page.mark()
    logged = time.time() * 1000
    for run_index, run_id in enumerate(live_ids):
        writer.log_batch(run_id, metrics=[
            Metric(key, 0.5, timestamp(run_index, new_step), new_step)
            for key in metric_keys(args.metrics)])
    handle = page.page.wait_for_function(
        """([ids, step]) => { try {
             const charts = Object.values(window.dashboard.state().charts);
             const there = charts.every(c => ids.every(id =>
               c.runs[id].steps[c.runs[id].steps.length - 1] === step));
             return there ? performance.timeOrigin + performance.now() : false;
           } catch (e) { return false; } }""", arg=[live_ids, new_step], polling=50,
        timeout=WAIT_MS)
    drawn_at = handle.json_value()
    polls = [e for e in page.exchanges("/mlflow/runs", since=since)
             if e.status == 200 and e.query.get("cursor")
             and e.request.timing["startTime"] <= drawn_at]
    if not polls:
        raise BenchError("the new points were drawn without a poll with the cursor")
    bringing = polls[-1]
    timing = bringing.request.timing  # ms: startTime since the epoch, the rest since it
    answered_at = timing["startTime"] + timing["responseEnd"]
    return {"from_poll_s": (drawn_at - timing["startTime"]) / 1000,
            "answer_s": timing["responseEnd"] / 1000,
            "page_s": (drawn_at - answered_at) / 1000,
            "from_logging_s": (drawn_at - logged) / 1000,
            "poll_bytes": bringing.body_bytes,
            "requests": len(page.exchanges(since=since))}


def run(args, stack: contextlib.ExitStack) -> dict:
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dashboard-")))
    server = MlflowServer(work / "mlflow", auth=True, workers=MLFLOW_WORKERS)
    server.data_dir.mkdir()
    experiment_id, run_ids = seeded_store(args, server.data_dir)
    stack.enter_context(server)
    _, redis_url = stack.enter_context(redis_server())
    env = {"LIVE_REFRESH": str(args.live_refresh), **args.service_env}
    svc = stack.enter_context(gunicorn(work, redis_url, workers=SERVICE_WORKERS, env=env))
    browser = stack.enter_context(chromium())
    shots = args.out.parent / "dashboard-shots"
    shots.mkdir(parents=True, exist_ok=True)
    admin = {"uri": server.uri, "user": server.admin[0], "password": server.admin[1]}
    fragment = view_hash(experiment_id, run_ids, args)
    step(f"MLflow {server.uri}, Redis {redis_url}, service {svc.base}")
    results = {}

    step("cold: nothing cached")
    page, cdp, seconds, error = open_view(browser, svc.base, fragment, admin, args, shots,
                                          "cold")
    results["cold"] = {"seconds": seconds, "error": error, "longest_task_ms": longest_task(page),
                       "points_drawn": drawn_points(page.state()), **heap(page, cdp)}
    step(f"  cold: {seconds:.2f} s, {results['cold']}")
    if error:
        step("  the page's first load failed: its failed requests asked again")
        results["cold_fill"] = fill_cache(page, admin)
        step(f"  {results['cold_fill']}")
    page.close()

    samples = []
    for i in range(args.warm_repeats):
        page, cdp, seconds, error = open_view(browser, svc.base, fragment, admin, args, shots,
                                              f"warm-{i + 1}")
        if error:
            raise BenchError(f"the page showed an error with the cache filled: {error}")
        samples.append({"seconds": seconds, "longest_task_ms": longest_task(page),
                         "points_drawn": drawn_points(page.state()), **heap(page, cdp)})
        step(f"  warm #{i + 1}: {samples[-1]}")
        if i + 1 < args.warm_repeats:
            page.close()
    results["warm"] = {"median_seconds": statistics.median(s["seconds"] for s in samples),
                       "samples": samples}

    if args.live_runs:
        from mlflow.tracking import MlflowClient
        import os
        os.environ.update(MLFLOW_TRACKING_USERNAME=admin["user"],
                          MLFLOW_TRACKING_PASSWORD=admin["password"])
        writer = MlflowClient(tracking_uri=server.uri)
        page.wait_for("s => s.polling")
        started = page.page.evaluate("() => performance.now()")
        updates = []
        for n in range(args.updates):
            updates.append(live_update(page, writer, run_ids[:args.live_runs], args, n))
            step(f"  live update #{n + 1}: {updates[-1]}")
        painted(page)
        page.screenshot("live")
        results["live"] = {
            "median_from_poll_s": statistics.median(u["from_poll_s"] for u in updates),
            "median_from_logging_s": statistics.median(u["from_logging_s"] for u in updates),
            "median_answer_s": statistics.median(u["answer_s"] for u in updates),
            "median_page_s": statistics.median(u["page_s"] for u in updates),
            "longest_task_ms": longest_task(page, started),
            "updates": updates, **heap(page, cdp)}
    page.close()
    print_report(results, args)
    write_json(args.out, {"dataset": {"runs": args.runs, "metrics": args.metrics,
                                      "points": args.points, "live_runs": args.live_runs},
                          "settings": {"viewport": VIEWPORT, "poll": args.poll,
                                       "live_refresh": args.live_refresh,
                                       "service_env": args.service_env},
                          "results": results})
    return results


def print_report(results: dict, args):
    print(f"\n{args.runs} runs x {args.metrics} metrics x {args.points:,} points "
          f"({args.live_runs} live), viewport {VIEWPORT['width']}x{VIEWPORT['height']}")
    cold, warm = results["cold"], results["warm"]
    if cold["error"]:
        fill = results["cold_fill"]
        print(f"first draw, cold cache: the page showed {cold['error']!r} after "
              f"{cold['seconds']:.2f} s; its failed requests asked again took "
              f"{fill['seconds']:.1f} s ({fill['requests']} requests, {fill['bytes']:,} "
              f"bytes): the service reading the view from MLflow")
    else:
        print(f"first draw of all {args.metrics} charts, cold cache: {cold['seconds']:.2f} s "
              f"(longest task {cold['longest_task_ms']:.0f} ms, {cold['points_drawn']:,} "
              f"points drawn, JS heap {cold['js_heap_used_mb']:.1f} MiB)")
    last = warm["samples"][-1]
    print(f"first draw, warm cache: median {warm['median_seconds']:.2f} s of "
          f"{[round(s['seconds'], 2) for s in warm['samples']]} (longest task "
          f"{last['longest_task_ms']:.0f} ms, JS heap {last['js_heap_used_mb']:.1f} MiB)")
    live = results.get("live")
    if live:
        print(f"live update ({args.live_runs} runs x {args.metrics} metrics, one point each): "
              f"median {live['median_from_poll_s']:.3f} s from the poll's request to drawn "
              f"(the answer {live['median_answer_s']:.3f} s, then the page "
              f"{live['median_page_s']:.3f} s), "
              f"{live['median_from_logging_s']:.2f} s from the logging; longest task "
              f"{live['longest_task_ms']:.0f} ms; JS heap after {live['js_heap_used_mb']:.1f} MiB")


def parse_args():
    parser = bench_parser(__doc__, "bench_dashboard")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--points", type=int, default=100_000, help="per run and metric")
    parser.add_argument("--live-runs", type=int, default=2, help="of the runs, left RUNNING")
    parser.add_argument("--updates", type=int, default=5, help="live updates timed")
    parser.add_argument("--warm-repeats", type=int, default=3)
    parser.add_argument("--poll", type=float, default=1, help="the page's poll period (s)")
    parser.add_argument("--live-refresh", type=float, default=1, help="the service's LIVE_REFRESH")
    parser.add_argument("--store", type=Path, help="keep (and reuse) the seeded store here")
    args = parse_bench_args(parser)
    if not 0 <= args.live_runs <= args.runs or min(args.runs, args.metrics, args.points) < 1:
        parser.error("--runs, --metrics, --points at least 1; --live-runs at most --runs")
    return args


if __name__ == "__main__":
    run_bench(run, parse_args())
