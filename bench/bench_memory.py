"""Memory of POST /mlflow/runs for one run with a 1,000,000-point metric, on loopback only.

    .venv/bin/python bench/bench_memory.py [--points N] [--out bench/out/bench_memory.json]
                                           [--verify] [--tracemalloc]

One run seeds an sqlite MLflow store (experiment ``memory-exp``, one finished run ``big``
with one metric ``loss`` of N points, NaN every 100,000 steps), serves it with a real
basic-auth MLflow server behind a counting proxy, starts our service under gunicorn with
ONE worker caching in-process (no Redis), then sends the same request twice:

  cold    POST /mlflow/runs {run_id: big}: every point fetched from MLflow (25,000 a page)
  cached  the same request again: the run's JSON comes from the worker's in-process cache

and then the dashboard views of issue 5 (bench/README.md):

  plot    {run_id: big, max_points: 1000}: the metric's columns fetched from MLflow and cached
  plot-2  the same again: thinned from the cached columns
  csv     {run_id: big, format: csv}: every point as CSV rows, streamed from the cached columns

For each it records the time, the response size (streamed, never held) and the worker's
VmRSS before, peak RSS (VmHWM) and VmRSS after, from /proc/<worker pid>/status. The target
(bench/README.md): the worker's peak RSS stays within about 4x the response's JSON size.

``--tracemalloc`` then replays both requests in this process (create_app + Flask test client,
straight to the same MLflow server: the proxy's buffers would be traced too) under
tracemalloc, and reports the traced peak and the allocation sites holding the memory
closest to it. ``--verify`` also reads the seeded history back through
MlflowClient (slow: about a minute for 1M points).
"""
import contextlib
import gc
import hashlib
import linecache
import math
import os
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
import requests  # noqa: E402

from bench.common import (  # noqa: E402
    REQUEST_TIMEOUT, BenchError, bench_parser, parse_bench_args, run_bench, step, write_json,
)
from tests.support.gunicorn import gunicorn  # noqa: E402
from tests.support.mlflow_server import MlflowServer  # noqa: E402
from tests.support.processes import children, log_tail  # noqa: E402
from tests.support.proxy import MlflowProxy  # noqa: E402
from tests.support.seed import BASE_TIME_MS, db_path, tracking_client  # noqa: E402

EXPERIMENT, RUN_NAME, METRIC = "memory-exp", "big", "loss"
NAN_EVERY = 100_000       # steps 0, 100000, 200000, ... are NaN
HISTORY_PAGE = 25_000     # MLflow get-history page the service asks for (its default)
HTTP_TIMEOUT = 300
PROFILE_HTTP_TIMEOUT = 3600  # in-process, under tracing
TARGET_PEAK_OVER_JSON = 4.0
PLOT_POINTS = 1000  # max_points of the plot view
MIB = 1 << 20


# -- the data -----------------------------------------------------------------------


def value_at(step_: int) -> float:
    return math.nan if step_ % NAN_EVERY == 0 else 1 / (1 + step_)


def timestamp_at(step_: int) -> int:
    return BASE_TIME_MS + step_


def seed(db_uri: str, points: int) -> str:
    """Write memory-exp/big/loss straight into the sqlite store; return the run id.

    The last point (the latest: highest step) goes through MLflow, which writes the
    run's ``latest_metrics`` row for it; the other points are one bulk insert into
    ``metrics``, stored the way MLflow stores them (NaN as value 0 with is_nan 1).
    """
    client, root = tracking_client(db_uri, None)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=f"{root}/{EXPERIMENT}")
    run_id = client.create_run(exp_id, start_time=BASE_TIME_MS, run_name=RUN_NAME).info.run_id
    last = points - 1
    client.log_metric(run_id, METRIC, value_at(last), timestamp=timestamp_at(last), step=last)
    rows = ((METRIC, 0.0 if math.isnan(v) else v, timestamp_at(s), run_id, s, int(math.isnan(v)))
            for s, v in ((s, value_at(s)) for s in range(last)))
    with contextlib.closing(sqlite3.connect(db_path(db_uri))) as db:
        with db:  # one transaction
            db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
                           " VALUES (?, ?, ?, ?, ?, ?)", rows)
    client.set_terminated(run_id, status="FINISHED", end_time=timestamp_at(last) + 1000)
    return run_id


def check_store(db_uri: str, run_id: str, points: int):
    """Cheap: the row count and the latest_metrics row, straight from sqlite."""
    with contextlib.closing(sqlite3.connect(db_path(db_uri))) as db:
        count, nans, lo, hi = db.execute(
            "SELECT count(*), sum(is_nan), min(step), max(step) FROM metrics"
            " WHERE run_uuid = ? AND key = ?", (run_id, METRIC)).fetchone()
        latest = db.execute("SELECT step, timestamp, value, is_nan FROM latest_metrics"
                            " WHERE run_uuid = ? AND key = ?", (run_id, METRIC)).fetchall()
    expected_nans = len(range(0, points, NAN_EVERY))
    last = points - 1
    want_latest = [(last, timestamp_at(last), 0.0 if math.isnan(value_at(last)) else value_at(last),
                    int(math.isnan(value_at(last))))]
    if (count, nans, lo, hi) != (points, expected_nans, 0, last) or latest != want_latest:
        raise BenchError(f"seeded store holds {count} rows ({nans} NaN, steps {lo}..{hi}), "
                         f"latest_metrics {latest}; expected {points} rows ({expected_nans} NaN, "
                         f"steps 0..{last}), latest_metrics {want_latest}")


def verify_store(db_uri: str, run_id: str, points: int):
    """Slow: MLflow itself reads the whole history back."""
    from mlflow.tracking import MlflowClient

    got = len(MlflowClient(tracking_uri=db_uri).get_metric_history(run_id, METRIC))
    if got != points:
        raise BenchError(f"MlflowClient.get_metric_history returned {got} points, expected {points}")


def app_sources() -> str:
    """A digest of the service's code (app/, config, wsgi, gunicorn settings)."""
    digest = hashlib.sha256()
    for path in [*sorted((REPO / "app").glob("*.py")), REPO / "config.py", REPO / "wsgi.py",
                 REPO / "gunicorn.conf.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# -- the worker's memory ------------------------------------------------------------


def the_worker(master_pid: int, log: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = children(master_pid)
        if len(workers) == 1:
            return workers[0]
        time.sleep(0.2)
    raise BenchError(f"gunicorn master {master_pid} has workers {children(master_pid)}, "
                     f"expected exactly one\n{log_tail(log)}")


def memory(pid: int) -> dict:
    """VmRSS and VmHWM (peak RSS) of ``pid``, in bytes."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(rest.split()[0]) * 1024  # reported in kB
    except FileNotFoundError:
        raise BenchError(f"the gunicorn worker {pid} is gone (killed, out of memory?)") from None
    return fields


class RssSampler:
    """The worker's RSS every ``interval`` s while a request runs (/proc/<pid>/statm)."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.path, self.interval = f"/proc/{pid}/statm", interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.samples = []  # (seconds, rss bytes) whenever it moved 4 MiB from the last one
        self.peak = (0.0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.perf_counter()
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(self.path) as f:
                    rss = int(f.read().split()[1]) * self.page
                now = time.perf_counter() - t0
                if rss > self.peak[1]:
                    self.peak = (now, rss)
                if not self.samples or abs(rss - self.samples[-1][1]) >= 4 * MIB:
                    self.samples.append((now, rss))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next read is this request's peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- one request --------------------------------------------------------------------


def post_runs(session: requests.Session, base: str, body: dict, sink: Path, log: Path) -> dict:
    """POST /mlflow/runs, streaming the answer to ``sink``; time it and count its bytes."""
    t0 = time.perf_counter()
    with session.post(f"{base}/mlflow/runs", json=body, stream=True,
                      timeout=REQUEST_TIMEOUT) as response:
        first_byte = time.perf_counter() - t0  # headers in: the body is about to follow
        if response.status_code != 200:
            raise BenchError(f"POST /mlflow/runs answered {response.status_code}: "
                             f"{response.text[:2000]}\n{log_tail(log)}")
        size = 0
        with open(sink, "wb") as out:
            for chunk in response.iter_content(1 << 20):
                size += len(chunk)
                out.write(chunk)
        seconds = time.perf_counter() - t0
        declared = response.headers.get("Content-Length")
    if declared is not None and int(declared) != size:
        raise BenchError(f"Content-Length {declared} but {size:,} bytes arrived")
    return {"seconds": seconds, "headers_seconds": first_byte, "bytes": size,
            "x_cache": response.headers.get("X-Cache")}


def check_runs_payload(content: bytes, run_id: str, points: int):
    """Fail loudly unless the answer is run ``big`` with all N points of ``loss``, NaN as null."""
    answer = orjson.loads(content)
    runs = answer.get("runs") or []
    if answer.get("total_runs") != 1 or len(runs) != 1 or runs[0].get("run_id") != run_id:
        raise BenchError(f"expected exactly run {run_id}, got total_runs "
                         f"{answer.get('total_runs')} and {[r.get('run_id') for r in runs]}")
    metrics = runs[0]["metrics_history"]
    if [m["metric_name"] for m in metrics] != [METRIC]:
        raise BenchError(f"expected one metric {METRIC!r}, got {[m['metric_name'] for m in metrics]}")
    metric = metrics[0]
    history = metric["history"]
    if metric["total_points"] != points or len(history) != points:
        raise BenchError(f"expected {points:,} points, got total_points {metric['total_points']:,} "
                         f"and {len(history):,} history entries")
    for i, point in enumerate(history):
        want = value_at(i)
        want = None if math.isnan(want) else want
        if point != {"step": i, "value": want, "timestamp": timestamp_at(i)}:
            raise BenchError(f"history[{i}] is {point}, expected step {i}, value {want} "
                             f"(NaN every {NAN_EVERY:,} steps -> null), timestamp {timestamp_at(i)}")


def check_plot_payload(content: bytes, run_id: str, points: int, max_points: int):
    """One history of at most ``max_points`` points, first and last kept, stats over all N."""
    metric = orjson.loads(content)["runs"][0]["metrics_history"][0]
    history = metric["history"]
    if metric["total_points"] != points or not metric["downsampled"] or len(history) > max_points:
        raise BenchError(f"plot view: total_points {metric['total_points']}, downsampled "
                         f"{metric['downsampled']}, {len(history)} points (max {max_points})")
    if history[0]["step"] != 0 or history[-1]["step"] != points - 1 \
            or metric["last_value"] != value_at(points - 1):
        raise BenchError(f"plot view lost its first/last point: {history[0]}, {history[-1]}")


def check_csv_payload(content: bytes, run_id: str, points: int):
    """A header and one row per point, in step order."""
    lines = content.count(b"\n")
    first = content[:200].decode().splitlines()
    if lines != points + 1 or first[0] != "run_id,run_name,metric,step,value,timestamp" \
            or not first[1].startswith(f"{run_id},{RUN_NAME},{METRIC},0,"):
        raise BenchError(f"csv: {lines:,} lines (expected {points + 1:,}), starting {first[:2]}")


def measure(label: str, call, pid: int, proxy: MlflowProxy, sink: Path, check) -> dict:
    gc.collect()  # the previous check's million dicts: let this process be quiet meanwhile
    before = memory(pid)
    isolated = reset_peak(pid)
    proxy.reset()
    with RssSampler(pid) as sampler:
        outcome = call(sink)
    after = memory(pid)
    # Checked outside the timing: parsing the answer is the client's cost, not ours.
    check(sink.read_bytes())
    with open(sink, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    result = {
        **outcome,
        "sha256": digest,
        "mlflow_requests": proxy.count(),
        "history_pages": proxy.count("/metrics/get-history"),
        "rss_before": before["VmRSS"],
        "hwm_before": before["VmHWM"],
        # VmHWM was reset to the RSS before the request: after it, it is this request's peak.
        "request_peak_rss": after["VmHWM"] if isolated else None,
        "hwm_after": max(before["VmHWM"], after["VmHWM"]) if isolated else after["VmHWM"],
        "rss_after": after["VmRSS"],
        # Sampled every 10 ms (may miss the exact peak): when the RSS peaked, and its course.
        "sampled_peak": {"seconds": sampler.peak[0], "rss": sampler.peak[1]},
        "rss_samples": [{"seconds": t, "rss": rss} for t, rss in sampler.samples],
    }
    peak = result["request_peak_rss"]
    print(f"  {label}: {result['seconds']:.2f} s (headers after {result['headers_seconds']:.2f} s), "
          f"{result['bytes']:,} bytes, X-Cache {result['x_cache']}, {result['mlflow_requests']} "
          f"MLflow requests ({result['history_pages']} get-history pages); worker RSS "
          f"{mib(result['rss_before'])} -> {mib(result['rss_after'])} MiB, peak "
          + (f"{mib(peak)} MiB during the request" if peak else f"{mib(result['hwm_after'])} MiB "
             "since the worker started"), flush=True)
    print(f"    RSS sampled every 10 ms: peak {mib(sampler.peak[1])} MiB at {sampler.peak[0]:.2f} s "
          f"of {result['seconds']:.2f} s; its last 2 s (16 MiB steps): "
          + ", ".join(f"{t:.2f} s {mib(rss)}" for t, rss in coarse(sampler.samples, 16 * MIB)
                      if t >= result["seconds"] - 2), flush=True)
    return result


def coarse(samples, step_bytes: int):
    """The samples that moved ``step_bytes`` from the last one kept, and the last one."""
    kept = []
    for i, (t, rss) in enumerate(samples):
        if not kept or abs(rss - kept[-1][1]) >= step_bytes or i == len(samples) - 1:
            kept.append((t, rss))
    return kept


# -- where the memory goes (in-process, tracemalloc) --------------------------------


class PeakWatcher:
    """Where tracemalloc's peak happens, and what is held close to it.

    A hook runs on every Python call/return and C call/return (setprofile) and, inside
    app/ code, on every opcode (settrace), in every thread. It keeps:

    * ``between``: the two consecutive events of one thread between which the traced
      peak last rose, e.g. the c_call and c_return of ``orjson.loads``: the overall peak
      was reached inside that call (or statement, or comprehension);
    * ``snapshot``: a tracemalloc snapshot taken whenever the traced memory passed the
      last snapshot by ``step``: the memory held closest to the peak that a hook could see
      (temporaries living only inside one C call are in the peak figure, not here);
    * ``timeline``: an entry whenever the traced memory moved ``timeline_step`` away from
      the last entry: (seconds, traced memory, traced peak since the last entry, event).
      Its local peaks show each stage's cost, not only the highest one's.
    """

    def __init__(self, step_bytes: int = 4 * MIB, timeline_step: int = 16 * MIB):
        self.step, self.timeline_step = step_bytes, timeline_step
        self.best = 0
        self.snapshot = None
        self.peak = 0
        self.between = None
        self.timeline = []
        self._mark = 0
        self._t0 = time.perf_counter()
        self.app_dir = str(REPO / "app") + os.sep
        self._last = threading.local()
        self._lock = threading.Lock()

    def _event(self, frame, event, arg):
        # ``peak`` is the peak since the last timeline entry (reset_peak below).
        current, peak = tracemalloc.get_traced_memory()
        # Only a called C function is kept from ``arg``: a return value may be megabytes.
        here = (frame.f_code, frame.f_lineno, event, arg if event.startswith("c_") else None)
        if peak > self.peak:
            with self._lock:
                if peak > self.peak:
                    self.peak = peak
                    self.between = (getattr(self._last, "event", None), here, current,
                                    threading.current_thread().name)
        if current > self.best + self.step:
            with self._lock:
                if current > self.best + self.step:
                    self.snapshot, self.best = tracemalloc.take_snapshot(), current
        if abs(current - self._mark) >= self.timeline_step:
            with self._lock:
                current, peak = tracemalloc.get_traced_memory()
                if abs(current - self._mark) >= self.timeline_step:
                    self.timeline.append((time.perf_counter() - self._t0, current, peak, here))
                    self._mark = current
                    tracemalloc.reset_peak()
        self._last.event = here

    def _opcode(self, frame, event, arg):
        self._event(frame, event, arg)
        return self._opcode

    def _call(self, frame, event, arg):
        # settrace's per-frame hook: opcode events inside app/ functions only (setprofile
        # already sees every call and return). Not inside comprehensions: they run an
        # opcode loop per point (hours under a hook) and build nothing but their result,
        # which the next event sees.
        code = frame.f_code
        if code.co_filename.startswith(self.app_dir) and not code.co_name.startswith("<"):
            frame.f_trace_opcodes = True
            return self._opcode
        return None

    @contextlib.contextmanager
    def watching(self):
        # Hooks for the threads started inside the request too (the fetch pool's).
        threading.setprofile(self._event)
        threading.settrace(self._call)
        sys.setprofile(self._event)
        sys.settrace(self._call)
        try:
            yield self
        finally:
            sys.settrace(None)
            sys.setprofile(None)
            threading.settrace(None)
            threading.setprofile(None)

    def describe_timeline(self) -> list[dict]:
        return [{"seconds": t, "traced": current, "peak_since_previous": peak,
                 "at": _event_text(event)} for t, current, peak, event in self.timeline]

    def describe_peak(self) -> dict | None:
        if not self.between:
            return None
        before, after, current, thread = self.between
        return {"peak": self.peak, "traced_at_next_event": current, "thread": thread,
                "after": _event_text(before), "before": _event_text(after)}


def _event_text(event) -> str | None:
    if event is None:
        return None
    code, lineno, kind, arg = event
    text = f"{_short(code.co_filename)}:{lineno} ({code.co_name}) {kind}"
    if arg is not None:
        text += f" {getattr(arg, '__qualname__', None) or getattr(arg, '__name__', arg)}"
    return text + _source(code.co_filename, lineno)


def _source(filename: str, lineno: int) -> str:
    """The line's code, for reading a report after app/ has changed."""
    line = linecache.getline(filename, lineno).strip()
    return f"  `{line[:100]}`" if line else ""


def _short(filename: str) -> str:
    if filename.startswith(str(REPO) + os.sep) and ".venv" not in filename:
        return os.path.relpath(filename, REPO)
    return filename.split("site-packages" + os.sep)[-1].split("lib/python3.11/")[-1]


def top_sites(snapshot, limit: int) -> dict:
    """The snapshot's biggest allocation sites: by the allocating line, and by the app/
    line that led there (a library's allocation charged to the app code calling it)."""
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__),
                                       tracemalloc.Filter(False, __file__)])
    app_dir = str(REPO / "app") + os.sep
    by_line = [{"site": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                "code": _source(s.traceback[0].filename, s.traceback[0].lineno).strip(" `"),
                "bytes": s.size, "blocks": s.count}
               for s in snapshot.statistics("lineno")[:limit]]
    by_app = {}
    for s in snapshot.statistics("traceback"):
        # Frames run from the oldest to the most recent: the innermost app/ frame is ours.
        frame = next((f for f in reversed(s.traceback) if f.filename.startswith(app_dir)),
                     s.traceback[-1])
        site = f"{_short(frame.filename)}:{frame.lineno}"
        entry = by_app.setdefault(site, {"site": site, "bytes": 0, "blocks": 0,
                                         "code": _source(frame.filename, frame.lineno).strip(" `")})
        entry["bytes"] += s.size
        entry["blocks"] += s.count
    by_app = sorted(by_app.values(), key=lambda e: -e["bytes"])[:limit]
    return {"total": sum(s.size for s in snapshot.statistics("filename")),
            "by_line": by_line, "by_app_line": by_app}


def profile_in_process(body: dict, top: int) -> dict:
    # Tracing makes the cold request several times slower than the 300 s the API allows
    # by default; MAX_HTTP_TIMEOUT is read when config.py is imported.
    if "config" not in sys.modules:
        os.environ["MAX_HTTP_TIMEOUT"] = str(PROFILE_HTTP_TIMEOUT)
        body = dict(body, http_timeout=PROFILE_HTTP_TIMEOUT)
    from app import create_app

    # The same settings as the gunicorn worker: no Redis, so an in-process cache.
    app = create_app({"TESTING": True, "REDIS_URL": None, "REDIS_SENTINELS": None,
                      "REDIS_CLUSTER": None, "SECRET_KEY": os.urandom(32).hex(),
                      "CACHE_MAX_ENTRY_MB": 256})
    client = app.test_client()
    client.post("/health", json={"bogus": 1})  # first-request work, outside the tracing
    results = {}
    for label in ("cold", "cached"):
        gc.collect()
        tracemalloc.start(25)
        watcher = PeakWatcher()
        t0 = time.perf_counter()
        with watcher.watching():
            response = client.post("/mlflow/runs", json=body)  # not buffered: streamed below
            size, chunk = 0, None
            digest = hashlib.sha256()
            for chunk in response.iter_encoded():
                size += len(chunk)
                digest.update(chunk)
            response.close()
            status, x_cache = response.status_code, response.headers.get("X-Cache")
            del response, chunk  # what stays held after this is the service's (its cache)
        seconds = time.perf_counter() - t0
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        peak = max(peak, watcher.peak)  # the watcher resets tracemalloc's peak as it goes
        snapshot = watcher.snapshot
        tracemalloc.stop()
        if status != 200:
            raise BenchError(f"in-process {label} POST /mlflow/runs answered "
                             f"{status} after {seconds:.0f} s")
        results[label] = {"seconds_traced": seconds, "bytes": size, "sha256": digest.hexdigest(),
                          "x_cache": x_cache, "traced_peak": peak, "traced_after": current,
                          "peak_reached": watcher.describe_peak(),
                          "timeline": watcher.describe_timeline(),
                          "snapshot_near_peak": top_sites(snapshot, top) if snapshot else None}
        del snapshot, watcher
        print(f"  in-process {label}: {size:,} bytes, X-Cache {results[label]['x_cache']}, "
              f"traced peak {mib(peak)} MiB ({peak / size:.2f}x the JSON), "
              f"{mib(current)} MiB still held after ({seconds:.1f} s under tracing)", flush=True)
    return results


# -- report -------------------------------------------------------------------------


def mib(n) -> str:
    return "n/a" if n is None else f"{n / MIB:,.1f}"


def ratios(results: dict) -> dict:
    cold, cached = results["cold"], results["cached"]
    size = cold["bytes"]
    peak = max(cold["hwm_after"], cached["hwm_after"])  # since the worker started
    before = cold["rss_before"]
    per_request = {
        label: {
            "request_peak_over_json": r["request_peak_rss"] / r["bytes"] if r["request_peak_rss"] else None,
            "request_growth_over_json":
                (r["request_peak_rss"] - r["rss_before"]) / r["bytes"] if r["request_peak_rss"] else None,
        } for label, r in results.items()
    }
    return {
        "json_bytes": size,
        "peak_rss": peak,
        "rss_before_first_request": before,
        "peak_rss_over_json": peak / size,
        "peak_growth_over_json": (peak - before) / size,
        "per_request": per_request,
        "target_peak_over_json": TARGET_PEAK_OVER_JSON,
        "target_met": peak / size <= TARGET_PEAK_OVER_JSON,
    }


def print_report(results: dict, ratio: dict, profile: dict | None):
    header = ("request", "X-Cache", "MLflow req.", "seconds", "response MiB", "RSS before MiB",
              "peak in request MiB", "VmHWM after MiB", "RSS after MiB")
    lines = [(label, r["x_cache"] or "-", f"{r['mlflow_requests']} ({r['history_pages']} pages)",
              f"{r['seconds']:.2f}", mib(r["bytes"]), mib(r["rss_before"]),
              mib(r["request_peak_rss"]), mib(r["hwm_after"]), mib(r["rss_after"]))
             for label, r in results.items()]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths), *lines]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print()
    print(f"response JSON: {ratio['json_bytes']:,} bytes ({mib(ratio['json_bytes'])} MiB); worker RSS "
          f"before the first request {mib(ratio['rss_before_first_request'])} MiB, peak (VmHWM) "
          f"{mib(ratio['peak_rss'])} MiB")
    print(f"peak RSS / response JSON size:                          "
          f"{ratio['peak_rss_over_json']:.2f}x (target <= ~{TARGET_PEAK_OVER_JSON:g}x: "
          f"{'met' if ratio['target_met'] else 'MISSED'})")
    print(f"(peak RSS - RSS before the first request) / JSON size:  "
          f"{ratio['peak_growth_over_json']:.2f}x")
    full, plot = results["cached"], results.get("plot-2")
    if plot:
        print(f"plot view (max_points {PLOT_POINTS}) vs the full history, both from the cache: "
              f"{plot['bytes']:,} vs {full['bytes']:,} bytes ({full['bytes'] / plot['bytes']:,.0f}x "
              f"smaller), {plot['seconds']:.3f} vs {full['seconds']:.3f} s "
              f"({full['seconds'] / plot['seconds']:,.1f}x faster)")
    export = results.get("csv")
    if export and export["request_peak_rss"]:
        print(f"csv export: {export['bytes']:,} bytes streamed in {export['seconds']:.2f} s; worker "
              f"RSS grew {mib(export['request_peak_rss'] - export['rss_before'])} MiB during it "
              f"({(export['request_peak_rss'] - export['rss_before']) / export['bytes']:.2f}x "
              "the CSV size)")
    for label, r in ratio["per_request"].items():
        if label in ("cold", "cached") and r["request_peak_over_json"] is not None:
            print(f"  {label} request alone: peak {r['request_peak_over_json']:.2f}x, "
                  f"growth over its RSS before {r['request_growth_over_json']:.2f}x the JSON size")
    if not profile:
        return
    if "error" in profile:
        print(f"\ntracemalloc profile failed: {profile['error']}")
        return
    for label, p in profile.items():
        sites, where = p["snapshot_near_peak"], p["peak_reached"]
        print(f"\ntracemalloc, in-process {label} request: traced peak {mib(p['traced_peak'])} MiB "
              f"({p['traced_peak'] / p['bytes']:.2f}x the JSON), held after "
              f"{mib(p['traced_after'])} MiB")
        if where:
            print(f"  peak reached in thread {where['thread']} between\n    {where['after']}\n"
                  f"    {where['before']}  (traced there: {mib(where['traced_at_next_event'])} MiB)")
        if p["timeline"]:
            print("  timeline (an entry per 16 MiB move; s under tracing | traced MiB | "
                  "peak since the previous entry MiB | at):")
            for entry in p["timeline"]:
                print(f"    {entry['seconds']:7.1f} {mib(entry['traced']):>7} "
                      f"{mib(entry['peak_since_previous']):>7}  {entry['at']}")
        if not sites:
            continue
        print(f"  closest snapshot to the peak: {mib(sites['total'])} MiB traced")
        for title, key in (("by allocating line", "by_line"),
                           ("by the app/ line that led there", "by_app_line")):
            print(f"  top sites {title}:")
            for site in sites[key]:
                if site["bytes"] >= MIB / 10:  # the long tail is noise
                    print(f"    {mib(site['bytes']):>7} MiB {site['site']:<34} {site['code']}")


def write_results(path: Path, args, seeded: dict, worker: dict, results: dict, ratio: dict,
               profile: dict | None):
    write_json(path, {
        "dataset": {"experiment": EXPERIMENT, "run": RUN_NAME, "metric": METRIC,
                    "points": args.points, "nan_every": NAN_EVERY, **seeded},
        "settings": {"gunicorn_workers": 1, "gunicorn_threads": 2, "cache": "in-process",
                     "http_timeout": HTTP_TIMEOUT, "verify": args.verify,
                     "service_env": args.service_env},
        "worker": worker,
        "results": results,
        "ratios": ratio,
        "tracemalloc": profile,
    })


# -- main ---------------------------------------------------------------------------


def parse_args():
    parser = bench_parser(__doc__, "bench_memory")
    parser.add_argument("--points", type=int, default=1_000_000,
                        help="points of the metric (default 1,000,000)")
    parser.add_argument("--verify", action="store_true",
                        help="also read the seeded history back with MlflowClient (slow)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="then profile both requests in-process under tracemalloc (slow)")
    parser.add_argument("--top", type=int, default=12, help="allocation sites to list (default 12)")
    args = parse_bench_args(parser)
    if args.points < 2:
        parser.error("--points must be at least 2")
    return args


def run(args, stack: contextlib.ExitStack):
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-memory-")))
    server = MlflowServer(work / "mlflow", auth=True)
    server.data_dir.mkdir()

    step(f"seeding {EXPERIMENT}/{RUN_NAME}: metric {METRIC!r} with {args.points:,} points "
         f"into {server.db_uri}")
    t0 = time.monotonic()
    run_id = seed(server.db_uri, args.points)
    seeded = {"run_id": run_id, "seed_seconds": time.monotonic() - t0}
    check_store(server.db_uri, run_id, args.points)
    step(f"seeded in {seeded['seed_seconds']:.1f} s; {args.points:,} rows and latest_metrics checked")
    if args.verify:
        t0 = time.monotonic()
        verify_store(server.db_uri, run_id, args.points)
        step(f"MlflowClient.get_metric_history read {args.points:,} points back "
             f"in {time.monotonic() - t0:.1f} s")

    sources = [app_sources()]  # the service's code, which may change under us
    step(f"starting MLflow (basic auth); service sources {sources[0]}")
    stack.enter_context(server)
    proxy = stack.enter_context(MlflowProxy(server.uri))
    username, password = server.admin
    body = {"tracking_uri": proxy.uri, "username": username, "password": password,
            "run_id": run_id, "http_timeout": HTTP_TIMEOUT}
    check = lambda content: check_runs_payload(content, run_id, args.points)  # noqa: E731

    # The cold requests outlast the default RUN_LIST_TTL (10 s) and AUTH_CACHE_TTL (60 s):
    # keep the listing and the grant, so that the later requests measure the cache and
    # not MLflow's listing and permission calls. The million-point run's JSON (~70 MB) is
    # over the default CACHE_MAX_ENTRY_MB (64): this benchmark measures caching it.
    with gunicorn(work, None, workers=1, threads=2, env={
            "RUN_LIST_TTL": "3600", "AUTH_CACHE_TTL": "3600", "CACHE_MAX_ENTRY_MB": "256",
            **args.service_env}) as svc:
        pid = the_worker(svc.master.pid, svc.log)
        worker = {"pid": pid, "at_start": memory(pid)}
        step(f"MLflow {server.uri} (proxy {proxy.uri}), service {svc.base} (worker pid {pid}, "
             f"RSS {mib(worker['at_start']['VmRSS'])} MiB"
             + (f", extra env {args.service_env})" if args.service_env else ")"))
        session = stack.enter_context(requests.Session())
        session.trust_env = False

        def call(sink, **view):
            return post_runs(session, svc.base, dict(body, **view), sink, svc.log)

        results = {}
        step(f"cold: POST /mlflow/runs (run_id {run_id}), every point from MLflow "
             f"({math.ceil(args.points / HISTORY_PAGE)} get-history pages expected)")
        results["cold"] = measure("cold", call, pid, proxy, work / "cold.json", check)
        step("cached: the same request again, from the worker's in-process cache")
        results["cached"] = measure("cached", call, pid, proxy, work / "cached.json", check)
        plot = {"max_points": PLOT_POINTS}
        check_plot = lambda content: check_plot_payload(content, run_id, args.points,  # noqa: E731
                                                        PLOT_POINTS)
        step(f"plot: max_points {PLOT_POINTS}, the metric's columns from MLflow (then cached)")
        results["plot"] = measure("plot", lambda sink: call(sink, **plot), pid, proxy,
                                  work / "plot.json", check_plot)
        step(f"plot-2: max_points {PLOT_POINTS} again, from the cached columns")
        results["plot-2"] = measure("plot-2", lambda sink: call(sink, **plot), pid, proxy,
                                    work / "plot2.json", check_plot)
        step("csv: format csv, every point, streamed from the cached columns")
        results["csv"] = measure("csv", lambda sink: call(sink, format="csv"), pid, proxy,
                                 work / "export.csv",
                                 lambda content: check_csv_payload(content, run_id, args.points))
        if the_worker(svc.master.pid, svc.log) != pid:
            raise BenchError("the gunicorn worker was replaced during the run\n" + log_tail(svc.log))
    sources.append(app_sources())
    worker["sources"] = sources[0]
    if results["cached"]["history_pages"]:
        print("  warning: the second request fetched history from MLflow: not served from cache")
    if results["cached"]["sha256"] != results["cold"]["sha256"]:
        print("  note: the cached answer is not byte-identical to the cold one")

    profile = None
    if args.tracemalloc:
        step("tracemalloc: the same two requests in this process (create_app + test client)")
        try:
            profile = profile_in_process(dict(body, tracking_uri=server.uri), args.top)
        except BenchError as exc:  # keep the gunicorn results
            print(f"  tracemalloc profile failed: {exc}")
            profile = {"error": str(exc)}
        else:
            if profile["cold"]["sha256"] != results["cold"]["sha256"]:
                print("  note: the in-process answer is not byte-identical to gunicorn's")
    sources.append(app_sources())
    if len(set(sources)) > 1:
        print(f"  warning: app/ changed during the run (sources {' -> '.join(sources)}): "
              "the figures may mix versions")
    return seeded, worker, results, profile


def main():
    args = parse_args()
    seeded, worker, results, profile = run_bench(run, args)
    ratio = ratios(results)
    print_report(results, ratio, profile)
    write_results(args.out, args, seeded, worker, results, ratio, profile)


if __name__ == "__main__":
    main()
