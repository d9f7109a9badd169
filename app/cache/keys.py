"""Cache keys: where each value of a run lives, whatever way its tracking URI is spelled.

Key names never hold a caller's text as it was sent: URIs and metric keys are digested,
credentials only ever enter a key through a MAC (app/cache/entries.py).
"""
import hashlib
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_uri(uri: str) -> str:
    """Scheme and host lower-cased, default port and trailing slash dropped."""
    parts = urlsplit(uri.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{parts.port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def run_key(uri: str, run_id: str) -> str:
    digest = hashlib.sha256(normalize_uri(uri).encode()).hexdigest()[:32]
    return f"run:{digest}:{run_id}"


def series_key(uri: str, run_id: str, metric_key: str) -> str:
    # Metric keys may hold spaces, slashes, any Unicode: digest them.
    return f"{run_key(uri, run_id)}:series:{hashlib.sha256(metric_key.encode()).hexdigest()[:32]}"


def generation_key(uri: str, run_id: str) -> str:
    return "gen:" + run_key(uri, run_id)[len("run:"):]


def histories_key(uri: str, run_id: str) -> str:
    """Which histories the run's current generation was made from (app/cache/run_cache.py)."""
    return generation_key(uri, run_id) + ":histories"


def caller(target) -> list:
    """What tells callers apart: the MLflow they reach, as whom, and how."""
    return [normalize_uri(target.uri), target.username, target.password, target.verify_tls]


def account(target) -> list:
    """Who a caller is to an MLflow server, however the connection is made: the
    normalized URI, username and password (what a refusal of MLflow's is about)."""
    return [normalize_uri(target.uri), target.username, target.password]


def server(target) -> list:
    """What tells MLflow servers apart, whoever asks: the normalized URI and whether
    its certificate is checked (a listing made without checks never serves a request
    that wants them)."""
    return [normalize_uri(target.uri), target.verify_tls]
