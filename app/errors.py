"""One JSON error shape for every failure, and the errors the service raises.

Every error body is::

    {"success": false, "code": 404, "status": "Not Found",
     "message": "...", "detail": "...", "errors": {...}}

``detail`` repeats ``message`` for clients written against the original
FastAPI service, which put its error text there. ``errors`` is present for
validation failures and maps each offending field to its messages.
"""
import logging

import marshmallow as ma
from flask import current_app
from werkzeug import exceptions as http

from app.mlflow import errors as mlflow
from app.mlflow.wording import as_user

log = logging.getLogger(__name__)


class ErrorSchema(ma.Schema):
    success = ma.fields.Boolean(metadata={"description": "Always false"})
    code = ma.fields.Integer(metadata={"description": "HTTP status code"})
    status = ma.fields.String(metadata={"description": "HTTP status name"})
    message = ma.fields.String(metadata={"description": "What went wrong, for a person"})
    detail = ma.fields.String(metadata={"description": "Same as message (compatibility)"})
    errors = ma.fields.Dict(metadata={"description": "Invalid fields and their messages"})


# The statuses the service answers with, by meaning.
InvalidInput = http.UnprocessableEntity        # 422
BadRequest = http.BadRequest                   # 400 body that is not JSON
UnsupportedMediaType = http.UnsupportedMediaType  # 415 body that is not JSON
Unauthorized = http.Unauthorized               # 401 MLflow rejected the credentials
Forbidden = http.Forbidden                     # 403 MLflow denied access
NotFound = http.NotFound                       # 404 experiment / run
UpstreamError = http.BadGateway                # 502 TLS, unreachable, MLflow error
UpstreamTimeout = http.GatewayTimeout          # 504 http_timeout spent
ServiceUnavailable = http.ServiceUnavailable   # 503 GET /readyz: the cache does not answer


def invalid_fields(messages: dict) -> http.UnprocessableEntity:
    """A 422 that names its fields, like a schema validation error does."""
    error = InvalidInput()
    error.data = {"errors": messages}
    return error


def for_mlflow(exc: mlflow.MlflowError) -> http.HTTPException:
    """The service's answer to a failed MLflow call: the one mapping, at the edge."""
    if isinstance(exc, mlflow.DeadlineSpent):
        return UpstreamTimeout(exc.message)
    if not isinstance(exc, mlflow.Rejected):  # unreachable, TLS, not MLflow's answer
        return UpstreamError(exc.message)
    said = f": {exc.said}" if exc.said else "."  # MLflow's auth itself answers these in text
    if exc.status == 401:
        return Unauthorized(f"MLflow rejected the credentials{as_user(exc.target)}{said}")
    if exc.status == 403:
        return Forbidden(f"MLflow denied access{as_user(exc.target)}{said}")
    if exc.not_found:
        return NotFound(exc.said)
    if exc.said:
        return UpstreamError(f"{exc.target.label} answered {exc.status} to {exc.endpoint}: "
                             f"{exc.said}")
    return UpstreamError(f"{exc.target.label} answered {exc.status} to {exc.endpoint} "
                         f"with {mlflow.NOT_AN_MLFLOW_ERROR}.")


def refused(exc: mlflow.MlflowError):
    """What a failed MLflow call of a request means for the cache: MLflow refusing these
    credentials (401, 403) drops every grant they hold, at once, so that no cached answer
    is served to them until MLflow says yes again (docs/cache.md, the auth guarantee)."""
    if isinstance(exc, mlflow.Rejected) and exc.status in (401, 403):
        current_app.extensions["run_cache"].drop_grants(exc.target)


def register_errorhandlers(app):
    """MLflow's failures in the one error shape (flask-smorest's ``Api`` answers every
    HTTPException the same way: app/extensions.py), once ``refused`` has seen them."""
    def answer(exc):
        refused(exc)
        return error_payload(for_mlflow(exc))
    app.register_error_handler(mlflow.MlflowError, answer)


def error_payload(error: http.HTTPException):
    """Build the JSON body and status for any HTTPException."""
    data = getattr(error, "data", None) or {}
    if isinstance(error, http.InternalServerError):
        # Never leak a traceback or an exception text that may hold request data.
        message = "Internal server error; the service log has the details."
    else:
        message = data.get("message") or error.description
    payload = {
        "success": False,
        "code": error.code,
        "status": error.name,
        "message": message,
        "detail": message,
    }
    errors = data.get("errors") or data.get("messages")
    if errors:
        payload["errors"] = _flatten_locations(errors)
        payload["message"] = payload["detail"] = _describe(payload["errors"])
    # Keep the exception's own headers (Allow on a 405, Retry-After ...) but not its HTML type.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    return payload, error.code, headers


def _flatten_locations(errors):
    """webargs nests errors under their location ("json"); callers only send JSON."""
    if set(errors) <= {"json", "query", "form", "headers", "files", "cookies"}:
        flat = {}
        for by_field in errors.values():
            flat.update(by_field if isinstance(by_field, dict) else {"_schema": by_field})
        return flat
    return errors


def _describe(errors):
    parts = []
    for field, messages in errors.items():
        if isinstance(messages, dict):  # nested field or list index
            messages = [f"{k}: {v}" for k, v in messages.items()]
        text = " ".join(str(m).rstrip(".") for m in messages)
        parts.append(text if field == "_schema" else f"{field}: {text}")
    return "Invalid request: " + "; ".join(parts)
