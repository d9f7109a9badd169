"""The dashboard page with a lot: 20 charts x 10 live runs of 100,000 steps each, in headless
Chromium. Time to first draw, time from a poll's answer to the charts updated, long tasks
while live runs update, and the page's JS heap.

    .venv/bin/python bench/bench_dashboard_page.py [--polls 5] [--width 1920]

The page is served by our service (gunicorn, from the tests' harness); its API calls are
answered by the browser itself (Playwright ``page.route``) with answers of the service's
shape, as the service would send them for that view: the first load with ``max_points`` =
the page's chart width (so each history is ``max_points`` points, whatever the run's
length), each poll with 10 new points per history (``since_cursor: true``). So this
measures the page's side (parse, merge, draw, update), not MLflow or the cache, whose costs
for such views bench_runs.py and bench_viewers.py measure. The page must ask the whole view
in one request (checked), and never one per chart.
"""
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    BenchError, bench_parser, parse_bench_args, run_bench, step, write_json)
from tests.support.browser import chromium  # noqa: E402
from tests.support.gunicorn import gunicorn  # noqa: E402

RUNS = [f"{i:032x}" for i in range(1, 11)]
METRICS = [f"metric_{k:02d}" for k in range(20)]
STEPS = 100_000
NEW_POINTS = 10  # per history per poll
BASE_MS = 1_700_000_000_000


def history(metric, points, start, end, seed):
    rng = random.Random(repr(seed))
    steps = [start + (end - start) * i // points for i in range(points)]
    return {"metric_name": metric, "total_points": end, "min_value": 0.0, "max_value": 1.05,
            "last_value": 0.04, "downsampled": end - start > points,
            "history": [{"step": s, "value": math.exp(-s / 30_000) + rng.random() * 0.05,
                         "timestamp": BASE_MS + s * 100} for s in steps]}


class StandIn:
    """The API's answers for the view, made in the browser's route handler."""

    def __init__(self):
        self.views, self.polls = [], 0

    def answer(self, route):
        request = route.request
        url = urlparse(request.url)
        if url.path.endswith("/mlflow/experiments"):
            body = {"success": True, "total_experiments": 1,
                    "experiments": [{"experiment_id": "1", "name": "big"}]}
        elif request.method == "POST":  # the run picker's listing
            body = {"success": True, "runs": [self.run(r, []) for r in RUNS]}
        else:
            body = self.histories(parse_qs(url.query))
        route.fulfill(status=200, body=json.dumps(body),
                      headers={"Content-Type": "application/json", "ETag": f'"{self.polls}"'})

    def run(self, run_id, histories, since_cursor=False):
        return {"run_id": run_id, "run_name": "run-" + run_id[-2:], "status": "RUNNING",
                "since_cursor": since_cursor, "duration_seconds": None, "start_time": BASE_MS,
                "end_time": None, "user_id": "bench", "parameters": {"lr": "0.1"},
                "metrics_summary": {m: 0.1 for m in METRICS}, "metrics_history": histories}

    def histories(self, query):
        if "cursor" not in query:  # the loads of a view (polls are counted apart)
            self.views.append(query)
        width = int(query["max_points"][0])
        polling = "cursor" in query
        self.polls += polling
        start = STEPS + NEW_POINTS * (self.polls - 1)
        runs = []
        for run_id in query["run_ids"]:
            made = [history(m, NEW_POINTS, start, start + NEW_POINTS, (run_id, m, start))
                    if polling else history(m, width, 0, STEPS, (run_id, m))
                    for m in query["metric_keys"]]
            runs.append(self.run(run_id, made, polling))
        return {"success": True, "runs": runs, "total_runs": len(runs),
                "cursor": f"c{self.polls}"}


def measure(page, base, stand_in, polls):
    view = (f"#/e=1&runs={','.join(RUNS)}&metrics={','.join(METRICS)}&x=step&log=0&poll=2")
    page.goto(base)
    page.fill("#profile", "bench")  # a profile: no password in the page
    page.click("#connect-button")
    page.evaluate("window.dashboard.ready()")
    page.goto("about:blank")
    stand_in.views.clear()
    page.goto(base + view)  # the tab holds the connection: the view loads at once
    page.evaluate("window.dashboard.ready()")
    state = page.evaluate("window.dashboard.state()")
    if len(state["charts"]) != len(METRICS):
        raise BenchError(f"{len(state['charts'])} charts drawn, not {len(METRICS)}: "
                         f"{state['error']}")
    timing = page.evaluate("""() => {
        const r = performance.getEntriesByType('resource').find(e => e.name.includes('run_ids'));
        const mark = name => performance.getEntriesByName(name).at(-1).startTime;
        return {drawn: mark('dashboard:drawn'), loaded: mark('dashboard:loaded'),
                asked: r.startTime, answered: r.responseEnd, bytes: r.decodedBodySize}; }""")
    first = {"first_draw_ms": round(timing["drawn"]),
             "histories_asked_at_ms": round(timing["asked"]),
             "histories_answered_at_ms": round(timing["answered"]),
             "draw_after_answer_ms": round(timing["drawn"] - timing["answered"]),
             "parse_ms": round(timing["loaded"] - timing["answered"]),
             "draw_ms": round(timing["drawn"] - timing["loaded"]),
             "answer_mb": round(timing["bytes"] / 1e6, 2),
             "points_drawn": sum(len(r["steps"]) for c in state["charts"].values()
                                 for r in c["runs"].values()),
             "max_points": next(iter(state["charts"].values()))["maxPoints"],
             "requests_for_first_load": len(stand_in.views)}
    page.evaluate("""() => { window.__long = []; new PerformanceObserver(list => {
        for (const e of list.getEntries()) window.__long.push(e.duration); })
        .observe({type: 'longtask'}); }""")
    updates = []
    for _ in range(polls):
        with page.expect_response(lambda r: "cursor=" in r.url):
            pass
        started = time.perf_counter()
        page.evaluate("window.dashboard.ready()")
        updates.append((time.perf_counter() - started) * 1000)
    long_tasks = page.evaluate("window.__long")
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    heap = cdp.send("Runtime.getHeapUsage")  # backingStorageSize: typed arrays' buffers
    state = page.evaluate("window.dashboard.state()")
    return {**first,
            "polls": state["polls"], "last_poll": state["lastPoll"],
            "update_after_answer_ms": [round(u) for u in updates],
            "update_median_ms": round(statistics.median(updates)),
            "long_tasks_while_polling": len(long_tasks),
            "longest_task_ms": round(max(long_tasks or [0])),
            "js_heap_mb": round(metrics["JSHeapUsedSize"] / 1e6, 1),
            "array_buffers_mb": round(heap.get("backingStorageSize", 0) / 1e6, 1),
            "dom_nodes": int(metrics["Nodes"])}


def run(args, stack):
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dash-")))
    step("starting the service (gunicorn, one worker) to serve the page")
    service = stack.enter_context(gunicorn(work, None, workers=1, env=args.service_env))
    step("starting Chromium")
    browser = stack.enter_context(chromium())
    context = browser.new_context(viewport={"width": args.width, "height": 1080})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    stand_in = StandIn()
    page.route("**/mlflow/**", stand_in.answer)
    step(f"20 charts x 10 runs of {STEPS:,} steps, {args.polls} polls")
    result = measure(page, service.base + "/dashboard/", stand_in, args.polls)
    if errors:
        raise BenchError(f"page errors: {errors}")
    return {"width": args.width, "load_average": os.getloadavg()[0], **result}


def print_report(result):
    print(f"\nfirst draw {result['first_draw_ms']} ms after navigation "
          f"({result['draw_after_answer_ms']} ms after the {result['answer_mb']} MB answer: "
          f"{result['parse_ms']} ms to read it, {result['draw_ms']} ms to draw; "
          f"{result['points_drawn']:,} points at max_points {result['max_points']}, "
          f"{result['requests_for_first_load']} request)")
    print(f"poll updates: {result['update_after_answer_ms']} ms from answer to redrawn "
          f"(median {result['update_median_ms']}); {result['long_tasks_while_polling']} long "
          f"tasks, longest {result['longest_task_ms']} ms")
    print(f"JS heap {result['js_heap_mb']} MB (+ {result['array_buffers_mb']} MB of array "
          f"buffers), {result['dom_nodes']} DOM nodes "
          f"(load average {result['load_average']:.1f})")


def main():
    parser = bench_parser(__doc__, "bench_dashboard_page")
    parser.add_argument("--polls", type=int, default=5, help="live polls to time")
    parser.add_argument("--width", type=int, default=1920, help="browser window width")
    args = parse_bench_args(parser)
    result = run_bench(run, args)
    print_report(result)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
