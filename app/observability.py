"""Observability: Prometheus metrics at ``GET /metrics`` and one JSON access-log line per request.

The rest of the service reports through small calls into this module (the MLflow
transport for its requests, the cache for Redis errors, lookups and single-flight
waits); nothing else imports prometheus_client.

Metrics are process globals, as prometheus_client keeps them. Under gunicorn with
several workers each worker would count on its own and a scrape would see whichever
worker answered; with ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn.conf.py sets and
prepares it) every worker writes its values to files there and ``/metrics`` adds up
all of them (prometheus_client's multiprocess mode).

Labels are closed sets, never values a caller chose: the URL rule (not the path), a
known HTTP method, the MLflow endpoint's path template (run ids travel as query
parameters, never in it). No label, and no field of the access log, ever holds a
password, an Authorization header, a query string or a body.
"""
import functools
import logging
import os
import re
import sys
import time
import uuid
from datetime import datetime, timezone

import orjson
import requests
from flask import Response, g, has_request_context, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

from app.mlflow import errors as mlflow_errors

log = logging.getLogger(__name__)
access_log = logging.getLogger("mlflow_logs.access")

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CACHE_STATES = frozenset({"HIT", "MISS", "PARTIAL"})
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
ENDPOINT = re.compile(r"/[A-Za-z0-9/._-]{1,120}")
PATH_MAX = 256

HTTP_REQUESTS = Counter(
    "mlflow_logs_http_requests_total", "Requests answered, by route (URL rule), method and status",
    ["route", "method", "status"])
HTTP_SECONDS = Histogram(
    "mlflow_logs_http_request_duration_seconds",
    "Time from the request's arrival to its response being handed to the server",
    ["route", "method", "status"], buckets=SECONDS)
CACHE_RESPONSES = Counter(
    "mlflow_logs_cache_responses_total", "/mlflow/runs answers by their X-Cache header",
    ["outcome"])
CACHE_LOOKUPS = Counter(
    "mlflow_logs_cache_lookups_total",
    "Cache lookups: kind run (a finished run's entry), listing (a query's runs), grant",
    ["kind", "result"])
CACHE_ERRORS = Counter(
    "mlflow_logs_cache_errors_total",
    "Cache backend (Redis) operations that failed, and entries refused as not ours",
    ["operation"])
MLFLOW_REQUESTS = Counter(
    "mlflow_logs_mlflow_requests_total",
    "HTTP requests to MLflow (each retry counts), by endpoint and MLflow's status "
    "(or timeout / tls_error / too_large / unreachable)", ["endpoint", "status"])
MLFLOW_SECONDS = Histogram(
    "mlflow_logs_mlflow_request_duration_seconds", "Latency of HTTP requests to MLflow",
    ["endpoint"], buckets=SECONDS)
SINGLE_FLIGHT_WAITS = Histogram(
    "mlflow_logs_single_flight_wait_seconds",
    "Waits for another request fetching the same finished run; outcome cached (its result "
    "was read), fetch (it gave up: fetched here) or timeout (http_timeout spent)",
    ["outcome"], buckets=SECONDS)

LIVE_TAILS = Counter(
    "mlflow_logs_live_tail_total",
    "Live runs answered: hit (from a fresh tail), refreshed (this request refreshed it), "
    "stale (from the previous tail while another request refreshed it), timeout (the same, "
    "waited for the refresh in vain) or fallback (no tail: asked of MLflow for this request)",
    ["result"])
LIVE_READS = Counter(
    "mlflow_logs_live_reads_total",
    "Tail refreshes' reads of a metric: range (bulk-interval calls, 100 runs each), offset and "
    "whole (per run and metric), skipped (latest entry unchanged: the call saved)", ["kind"])
LIVE_POINTS = Counter("mlflow_logs_live_points_total", "Points fetched into live tails")


# --- hooks for the rest of the service -------------------------------------

def observe_mlflow(endpoint: str, send, *args, **kwargs):
    """``send(*args, **kwargs)`` (one HTTP request to MLflow), counted and timed."""
    label = endpoint if ENDPOINT.fullmatch(endpoint) else "other"
    started = time.perf_counter()
    status = "unreachable"
    try:
        response = send(*args, **kwargs)
        status = str(response.status_code)
        return response
    except (requests.exceptions.Timeout, mlflow_errors.DeadlineSpent):
        status = "timeout"
        raise
    except (requests.exceptions.SSLError, mlflow_errors.TlsFailure):
        status = "tls_error"
        raise
    except mlflow_errors.Oversized:
        status = "too_large"
        raise
    finally:
        MLFLOW_SECONDS.labels(label).observe(time.perf_counter() - started)
        MLFLOW_REQUESTS.labels(label, status).inc()


def cache_error(operation: str):
    CACHE_ERRORS.labels(operation).inc()


def live_tail(result: str, runs: int = 1):
    if runs:
        LIVE_TAILS.labels(result).inc(runs)


def live_refresh(reads: dict, points: int):
    LIVE_TAILS.labels("refreshed").inc(reads.get("runs", 0))
    for kind in ("range", "offset", "whole", "skipped"):
        if reads.get(kind):
            LIVE_READS.labels(kind).inc(reads[kind])
    LIVE_POINTS.inc(points)


def cache_lookups(kind: str, hits: int = 0, misses: int = 0):
    if hits:
        CACHE_LOOKUPS.labels(kind, "hit").inc(hits)
    if misses:
        CACHE_LOOKUPS.labels(kind, "miss").inc(misses)


def single_flight_wait(wait):
    """Decorates the service's wait for a run another request is fetching."""
    @functools.wraps(wait)
    def timed(*args, **kwargs):
        started, outcome = time.perf_counter(), "timeout"
        try:
            found = wait(*args, **kwargs)
            outcome = "fetch" if found is None else "cached"
            return found
        finally:
            SINGLE_FLIGHT_WAITS.labels(outcome).observe(time.perf_counter() - started)
    return timed


# --- the app side: /metrics, request ids, the access log --------------------

def init_app(app):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
    _add_request_id_to_log_records()
    if app.config["ACCESS_LOG"]:
        _access_log_to_stdout()
    # First of the app's before-request functions (a request refused by another one,
    # a rate limiter say, is still timed and logged) and last of the after-request ones.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request_funcs.setdefault(None, []).insert(0, _finish)
    if app.config["METRICS_ENABLED"]:
        app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])


def metrics():
    """Prometheus text (or OpenMetrics, if the scraper asks for it); in multiprocess
    mode, the sum over all workers, alive or dead."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    return Response(encode(registry), headers={"Content-Type": content_type})


def current_request_id() -> str:
    return g.get("request_id", "-") if has_request_context() else "-"


def _start():
    g.request_started = time.perf_counter()
    g.request_id = _request_id(request.headers.get("X-Request-ID"))


def _request_id(offered) -> str:
    """The proxy's id when it is a plain token, else a new one: the id is echoed in a
    header and written to logs, so it must not carry anything else."""
    if offered and REQUEST_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


def _finish(response):
    if "request_id" not in g:  # refused before _start ran
        _start()
    response.headers["X-Request-ID"] = g.request_id
    try:
        _record(response)
    except Exception:  # observability must never turn an answer into an error
        log.exception("could not record metrics or the access log for this request")
    return response


def _record(response):
    seconds = time.perf_counter() - g.request_started
    route = request.url_rule.rule if request.url_rule else None
    method = request.method if request.method in METHODS else "other"
    status = str(response.status_code)
    HTTP_REQUESTS.labels(route or "unmatched", method, status).inc()
    HTTP_SECONDS.labels(route or "unmatched", method, status).observe(seconds)
    cache = response.headers.get("X-Cache")
    if cache:
        CACHE_RESPONSES.labels(cache if cache in CACHE_STATES else "other").inc()
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(orjson.dumps({
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "request_id": g.request_id,
            "method": method,
            "route": route,
            "path": request.path[:PATH_MAX],  # never the query string
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2),
            "bytes": response.content_length,
            "cache": cache,
            # The request's MLflow call counter (app/context.py), if it asked MLflow.
            "mlflow_calls": g.mlflow_calls.count if "mlflow_calls" in g else 0,
            "client": request.remote_addr,  # after ProxyFix
        }).decode())


def _access_log_to_stdout():
    """One JSON object per line on stdout, without a prefix, for log shippers."""
    if any(getattr(h, "_mlflow_logs_access", False) for h in access_log.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._mlflow_logs_access = True
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id`` (``-`` outside a request) for the log format."""

    def filter(self, record):
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


def _add_request_id_to_log_records():
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
