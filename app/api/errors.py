"""One JSON error shape for every failure: its schema, the body built from any
HTTPException, and the handler that answers MLflow's failures in it.

Every error body is::

    {"success": false, "code": 404, "status": "Not Found",
     "message": "...", "detail": "...", "errors": {...}}

``detail`` repeats ``message`` for clients written against the original
FastAPI service, which put its error text there. ``errors`` is present for
validation failures and maps each offending field to its messages.
"""
import marshmallow as ma
from werkzeug import exceptions as http

from app.errors import for_mlflow, refused
from app.mlflow import errors as mlflow


class ErrorSchema(ma.Schema):
    success = ma.fields.Boolean(metadata={"description": "Always false"})
    code = ma.fields.Integer(metadata={"description": "HTTP status code"})
    status = ma.fields.String(metadata={"description": "HTTP status name"})
    message = ma.fields.String(metadata={"description": "What went wrong, for a person"})
    detail = ma.fields.String(metadata={"description": "Same as message (compatibility)"})
    errors = ma.fields.Dict(metadata={"description": "Invalid fields and their messages"})


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
