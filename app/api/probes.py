"""Probes for the reverse proxy and the orchestrator: GET /healthz and GET /readyz.

Neither calls MLflow (whose health is per caller: POST /health), and neither is rate
limited. They are not in the OpenAPI spec: they are for machines, and docs/operating.md
documents them.
"""
from flask import Blueprint, current_app

from app import errors

blp = Blueprint("probes", __name__)


@blp.get("/healthz")
def healthz():
    """Liveness: the process answers. No I/O, so a slow Redis cannot get workers killed."""
    return {"status": "ok"}


@blp.get("/readyz")
def readyz():
    """Readiness: the cache's Redis answers, when one is configured."""
    cache = current_app.extensions["run_cache"]
    if cache.kind != "SimpleCache" and not cache.ping():
        raise errors.ServiceUnavailable(
            f"The cache ({cache.kind}) does not answer; the service log has the error.")
    return {"status": "ok", "cache": cache.kind}
