"""Per-client rate limiting of the MLflow routes (flask-limiter), when ``RATE_LIMIT`` is set.

One budget per client address (``request.remote_addr``, which ``ProxyFix`` has already set
to the client's), shared by POST /health, /mlflow/experiments and /mlflow/runs: the routes
that cost MLflow and a worker something. Probes, docs, the spec and metrics are not counted.

Counters live in the cache's Redis (``REDIS_URL``, Sentinel or Cluster), so every worker
and host shares them; without Redis, in each process's memory. When Redis fails, each
process counts in memory until Redis answers again (flask-limiter's in-memory fallback):
a dead Redis never turns requests into 500s.

A /mlflow/runs request counts one per RUNS_PER_UNIT runs it may select (``run_ids``, else
``limit``): a thousand runs cost MLflow and the worker more than ten. Never more than the
smallest limit, so that no request is refused for good.
"""
import math
import time

import limits
from flask import current_app, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from app.cache.settings import limiter_storage
from app.api.errors import error_payload

LIMITED_BLUEPRINTS = {"mlflow"}  # app/api/routes.py
RUNS_ENDPOINT = "mlflow.Runs"
RUNS_PER_UNIT = 100


def init_app(app):
    """Attach a limiter to ``app`` if ``RATE_LIMIT`` is set (else nothing is counted)."""
    config = app.config
    rate = config.get("RATE_LIMIT")
    if not rate:
        return None
    try:
        limits.parse_many(rate)
    except ValueError:
        raise ValueError(f"RATE_LIMIT={rate!r} is not a rate such as '120/minute' "
                         "or '10/second;600/hour'") from None
    uri, options = limiter_storage(config)
    limiter = Limiter(
        get_remote_address,
        app=app,
        application_limits=[ApplicationLimit(rate, exempt_when=_not_limited, cost=_cost(rate),
                                             error_message=_message(rate))],
        storage_uri=uri, storage_options=options,
        # No X-RateLimit-* headers: they cost a storage round trip on every response.
        headers_enabled=False,
        swallow_errors=True, in_memory_fallback_enabled=True,
    )
    app.extensions["rate_limiter"] = limiter
    app.register_error_handler(RateLimitExceeded, too_many_requests)
    return limiter


def too_many_requests(error: RateLimitExceeded):
    """The one error shape, with Retry-After: seconds until this client's window ends."""
    payload, status, headers = error_payload(error)
    window = error.limit.limit.get_expiry()
    try:
        current = current_app.extensions["rate_limiter"].current_limit
        seconds = current.reset_at - time.time() if current else window
    except Exception:  # the storage failed just now: the window length is a safe upper bound
        seconds = window
    headers["Retry-After"] = str(max(1, min(window, int(seconds + 0.999))))
    return payload, status, headers


def _cost(rate):
    """The cost of a request: its units, at most the smallest limit's amount."""
    most = min(item.amount for item in limits.parse_many(rate))
    return lambda: min(most, _units())


def _units() -> int:
    """One per RUNS_PER_UNIT runs a /mlflow/runs request may select; one for any other."""
    if request.endpoint != RUNS_ENDPOINT:
        return 1
    body = _query_fields() if request.method in ("GET", "HEAD") else request.get_json(silent=True)
    if not isinstance(body, dict):
        return 1
    limit, run_ids = body.get("limit"), body.get("run_ids")
    runs = limit if isinstance(limit, int) and not isinstance(limit, bool) else 1
    if isinstance(run_ids, list) and run_ids:
        runs = min(runs, len(run_ids)) if "limit" in body else len(run_ids)
    runs = min(runs, current_app.config["MAX_RUNS_LIMIT"])  # more is refused anyway
    return max(1, math.ceil(runs / RUNS_PER_UNIT))


def _query_fields() -> dict:
    """``limit`` and ``run_ids`` of a GET form, as the body would carry them."""
    fields = {"run_ids": request.args.getlist("run_ids")}
    try:  # as queryforms will read it ("+1000" too); what it refuses is a 422 anyway
        fields["limit"] = int(request.args["limit"])
    except (KeyError, ValueError):
        pass
    return fields


def _not_limited() -> bool:
    # A CORS preflight (OPTIONS) costs nothing and precedes the request that is counted.
    return request.blueprint not in LIMITED_BLUEPRINTS or request.method == "OPTIONS"


def _message(rate):
    return (f"Too many requests from this client: at most {rate} (RATE_LIMIT). "
            "Retry after the number of seconds in the Retry-After header.")
