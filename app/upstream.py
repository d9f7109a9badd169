"""What MLflow's answers and failures mean, in the gateway's words for the caller."""
import json

import orjson


def parse_json(content: bytes):
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        # MLflow writes NaN/Infinity as bare tokens, which only the stdlib accepts.
        return json.loads(content)


def retry_after(response, default: float) -> float:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return default


def as_user(target) -> str:
    if not target.uses_auth:
        return " (no username/password were sent)"
    return f" of user '{target.username or ''}'"


def error_code(response):
    try:
        return parse_json(response.content).get("error_code")
    except (ValueError, AttributeError):
        return None


def mlflow_message(response) -> str:
    try:
        data = parse_json(response.content)
        return str(data.get("message") or data.get("error_code") or data)[:500]
    except (ValueError, AttributeError):
        text = response.text.strip()
        return (text[:200] or response.reason or "no body")


def root_cause(exc: BaseException) -> str:
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__
    return str(exc) or type(exc).__name__


def tls_message(uri: str, exc) -> str:
    cause = root_cause(exc)
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "CERTIFICATE_VERIFY_FAILED" in cause:
        return (f"TLS certificate of {uri} could not be verified (SSL: CERTIFICATE_VERIFY_FAILED: "
                f"{cause}). For a self-signed certificate, send \"insecure_tls\": true.")
    return f"TLS handshake with {uri} failed: {cause}"
