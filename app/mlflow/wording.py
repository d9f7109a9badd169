"""What MLflow's answers and failures mean, in the service's words for the caller.

Only MLflow's own error message is ever passed on. Any other body (a proxy's HTML page,
another service's JSON or traceback, a banner of something that is not HTTP) may hold
anything, secrets included, and is described in our words, never quoted.
"""
import http.client
import json
import re
import socket
import ssl

import orjson
import requests

from app.mlflow.errors import NotMlflow, Oversized, Rejected, TlsFailure, Unreachable

MESSAGE_MAX = 500          # characters of MLflow's message passed on
MLFLOW_ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,99}")  # RESOURCE_DOES_NOT_EXIST ...


def parse_json(content: bytes):
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        # MLflow writes NaN/Infinity as bare tokens, which only the stdlib accepts.
        try:
            return json.loads(content)
        except RecursionError:  # nested too deep: not an answer we can read
            raise ValueError("JSON nested too deeply") from None


def retry_after(response, default: float) -> float:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return default


def as_user(target) -> str:
    if target.profile:
        return f" of profile {target.profile!r}"
    if not target.uses_auth:
        return " (no username/password were sent)"
    return f" of user '{target.username or ''}'"


def _mlflow_error(response) -> dict | None:
    """MLflow's error object ({"error_code": "UPPER_CASE", "message": "..."}), or None
    for any other body. A bare {"message": ...} is not enough: many other services
    answer that way."""
    try:
        data = parse_json(response.content)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    code, message = data.get("error_code"), data.get("message")
    if not isinstance(code, str) or not MLFLOW_ERROR_CODE.fullmatch(code):
        return None
    if message is not None and not isinstance(message, str):
        return None
    return {"error_code": code, "message": message}


def error_code(response):
    found = _mlflow_error(response)
    return found and found["error_code"]


def mlflow_message(response) -> str | None:
    """MLflow's own message (or error code), cut to MESSAGE_MAX; None for any other body."""
    found = _mlflow_error(response)
    if found is None:
        return None
    text = (found["message"] or "").strip() or found["error_code"]
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX] + "…"


def rejected(target, answer) -> Rejected:
    """MLflow's non-200 answer (app/mlflow/answers.py), with MLflow's own words if it gave any."""
    return Rejected(target, answer.status_code, error_code(answer), mlflow_message(answer),
                    answer.endpoint)


def shape_error(target, endpoint, what) -> NotMlflow:
    """A 200 whose JSON is not what MLflow answers to ``endpoint``."""
    return NotMlflow(target, f"{target.label} answered 200 to {endpoint} with a body that "
                             f"is not MLflow's: {what}.")


def undecodable(target, endpoint, why) -> NotMlflow:
    """A body in a content coding the service did not ask for (only gzip), or bad gzip."""
    return NotMlflow(target, f"{target.label} answered {endpoint} with a body that could not "
                             f"be decoded: {why}.")


# --- the operator's limits on what MLflow may send (app/mlflow/answers.py) -------------------

def too_large(target, endpoint, max_bytes, pages: int) -> Oversized:
    over = f" over {pages} pages" if pages > 1 else ""
    return Oversized(target, f"{target.label} answered {endpoint} with more than "
                             f"MLFLOW_MAX_ANSWER_MB={max_bytes / 2**20:g} MB{over}; the operator "
                             "can raise the limit.")


def too_many_pages(target, endpoint, max_pages) -> Oversized:
    return Oversized(target, f"{target.label} answered {endpoint} with more than "
                             f"MLFLOW_MAX_PAGES={max_pages} pages (or more items than that many "
                             "full pages); the operator can raise the limit.")


def not_json_error(target) -> NotMlflow:
    hint = ("ask the operator to check the profile" if target.profile
            else "is tracking_uri the MLflow server's base URL?")
    return NotMlflow(target, f"{target.label} answered 200 with a body that is not JSON; {hint}")


# --- failures below HTTP: our own wording per kind, never the exception's text ----------------

def _chain(exc):
    """``exc`` and what caused it: __cause__/__context__, and the exceptions requests and
    urllib3 keep in ``args`` and ``reason``."""
    seen, pending = [], [exc]
    while pending and len(seen) < 32:
        item = pending.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        pending += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return seen


# (exception type, what happened), first match wins: the more specific kinds first.
FAILURE_KINDS = [
    (requests.exceptions.InvalidURL, "tracking_uri is not an address the service can connect to"),
    (socket.gaierror, "its host name could not be resolved"),
    (ConnectionRefusedError, "the connection was refused"),
    (ConnectionResetError, "the connection was reset"),
    (http.client.RemoteDisconnected, "it closed the connection without answering"),
    (http.client.HTTPException, "it did not answer in HTTP"),
    (requests.exceptions.ChunkedEncodingError, "its answer was cut short"),
    (requests.exceptions.ContentDecodingError, "its answer could not be decoded"),
    (ConnectionAbortedError, "the connection was closed"),
    (BrokenPipeError, "the connection was closed"),
]
ERRNO_KINDS = {113: "there is no route to its host", 101: "its network is unreachable"}


def failure_kind(exc) -> str:
    chain = _chain(exc)
    for kind, words in FAILURE_KINDS:
        if any(isinstance(item, kind) for item in chain):
            return words
    for item in chain:
        if isinstance(item, OSError) and item.errno in ERRNO_KINDS:
            return ERRNO_KINDS[item.errno]
    return "the connection failed"


# A connection the server reset or closed (RemoteDisconnected is a ConnectionResetError).
DROPPED = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def dropped(exc) -> bool:
    """Did the server reset or close the connection (rather than refuse it, or answer
    something that is not HTTP)?"""
    return any(isinstance(item, DROPPED) for item in _chain(exc))


def connection_error(target, exc, kind=Unreachable) -> Unreachable:
    return kind(target, f"Cannot reach {target.label}: {failure_kind(exc)}.")


def tls_error(target, exc) -> TlsFailure:
    """A 502 naming the TLS failure in our OpenSSL's words (its reason code and verify
    message, never the server's), with the advice for a self-signed certificate."""
    chain = _chain(exc)
    verify = next((item for item in chain if isinstance(item, ssl.SSLCertVerificationError)), None)
    if verify is not None or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        # OpenSSL's reason may name the host ("Hostname mismatch ... for 'mlflow.internal'").
        why = (f": {verify.verify_message}" if verify is not None and verify.verify_message
               and not target.profile else "")
        advice = ("the operator can set \"insecure_tls\": true in the profile" if target.profile
                  else "send \"insecure_tls\": true")
        return TlsFailure(
            target, f"TLS certificate of {target.label} could not be verified (SSL: "
            f"CERTIFICATE_VERIFY_FAILED{why}). For a self-signed certificate, {advice}.")
    reason = next((item.reason for item in chain
                   if isinstance(item, ssl.SSLError) and isinstance(item.reason, str)), None)
    return TlsFailure(target, f"TLS handshake with {target.label} failed"
                      + (f" (SSL: {reason})." if reason else "."))
