"""``MLFLOW_PROFILES``: named MLflow servers with their credentials, set by the operator,
so a browser dashboard sends ``"profile": "prod"`` and never holds a password."""
import json
import re

from app.mlflow.target import MlflowTarget
from app.uris import uri_problem

# Names of operator-configured connection profiles.
PROFILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PROFILE_KEYS = {"tracking_uri", "username", "password", "insecure_tls"}


def load_profiles(config) -> dict:
    """{name: MlflowTarget} from ``MLFLOW_PROFILES`` (JSON) or ``MLFLOW_PROFILES_FILE``."""
    text, path = config.get("MLFLOW_PROFILES"), config.get("MLFLOW_PROFILES_FILE")
    if text and path:
        raise ValueError("Set MLFLOW_PROFILES or MLFLOW_PROFILES_FILE, not both")
    if path:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError as exc:  # the message has a position, never the text
        raise ValueError(f"MLFLOW_PROFILES is not valid JSON: {exc}") from None
    if not isinstance(found, dict):
        raise ValueError('MLFLOW_PROFILES must be a JSON object: {"name": {"tracking_uri": ...}}')
    return {name: _profile(name, fields) for name, fields in found.items()}


def _profile(name, fields) -> MlflowTarget:
    where = f"MLFLOW_PROFILES: profile {name!r}"
    if not re.match(PROFILE_NAME, name):
        raise ValueError(f"{where}: names are letters, digits, '_', '.', '-' (at most 64)")
    if not isinstance(fields, dict):
        raise ValueError(f"{where} must be a JSON object")
    unknown = sorted(set(fields) - PROFILE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(PROFILE_KEYS)}")
    uri = fields.get("tracking_uri")
    if not isinstance(uri, str) or uri_problem(uri):
        raise ValueError(f"{where}: tracking_uri must be an http(s) URL without credentials "
                         "or control characters, with a port from 1 to 65535 if any")
    for key in ("username", "password"):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            raise ValueError(f"{where}: {key} must be a string")
    insecure = fields.get("insecure_tls", False)
    if not isinstance(insecure, bool):
        raise ValueError(f"{where}: insecure_tls must be true or false")
    return MlflowTarget(uri=uri, username=fields.get("username"),
                        password=fields.get("password"), verify_tls=not insecure, profile=name)
