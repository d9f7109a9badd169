"""Request helpers shared by the tests (and by the benchmarks where they fit): request
bodies, posting with a status check, strict JSON, what the schema accepts."""
import base64
import json
import math
from urllib.parse import urlencode

import marshmallow as ma


def user_body(server, user="admin", **fields):
    """Request body for ``user`` (admin, alice, bob) against a basic-auth ``server``."""
    password = server.admin[1] if user == "admin" else server.users[user]
    return {"tracking_uri": server.uri, "username": user, "password": password,
            "http_timeout": 60, **fields}


def poll(client, body, status=200, route="/mlflow/runs"):
    """POST ``body`` with a Flask test client; the response, after checking its status."""
    response = client.post(route, json=body)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    return response


def basic(user, password) -> str:
    """An ``Authorization: Basic`` header's value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get_form(body, route="/mlflow/runs", **headers):
    """(URL, headers) of the GET form of a request ``body``: its fields as query parameters
    (list fields repeated, booleans as true/false), its credentials in the header."""
    fields = dict(body)
    user, password = fields.pop("username", None), fields.pop("password", None)
    params = [(name, str(v).lower() if isinstance(v, bool) else str(v))
              for name, value in fields.items()
              for v in (value if isinstance(value, (list, tuple)) else [value])]
    if user is not None or password is not None:
        headers["Authorization"] = basic(user or "", password or "")
    return f"{route}?{urlencode(params)}", headers


def strict_json(raw: bytes):
    """Parse as a browser's JSON.parse would: NaN/Infinity are not JSON."""
    def reject(token):
        raise ValueError(f"non-JSON token {token}")
    return json.loads(raw, parse_constant=reject)


def post_runs(client, body, status=200):
    """POST /mlflow/runs, check the status, and parse the answer strictly."""
    response = client.post("/mlflow/runs", json=body)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    return strict_json(response.data)


def expected_history(points):
    """The ``history`` the service answers for seeded ``Point``s: by step, then timestamp;
    NaN and infinities as null."""
    ordered = sorted(points, key=lambda p: (p.step, p.timestamp))
    return [{"step": p.step, "value": p.value if math.isfinite(p.value) else None,
             "timestamp": p.timestamp} for p in ordered]


def schema_accepts(name, value) -> bool:
    """Would the request schema accept ``value`` for the connection field ``name``? (For
    ``tracking_uri``: would the service connect to it.)"""
    from app.api.schemas import ConnectionSchema  # the app only when asked: bench imports this

    try:
        ConnectionSchema().fields[name].deserialize(value)
        return True
    except ma.ValidationError:
        return False


def keep_cross_field_rules(fields):
    """Make a generated request keep the rules between fields that JSON Schema cannot state
    (the spec says them in words; their 422s are tested on their own): max_step above
    since_step, and a ``cursor`` that is one of the service's (opaque: no schema can
    generate one) and comes without a step window, CSV or ``include_metric_history: false``."""
    if not isinstance(fields, dict):
        return
    since, most = fields.get("since_step"), fields.get("max_step")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (since, most)) \
            and most <= since < 2**63 - 1:
        fields["max_step"] = since + 1
    if isinstance(fields.get("cursor"), str):
        from app.runs.cursor import Cursor, keys_digest  # the app only when asked
        fields["cursor"] = Cursor(keys_digest(None), (("0" * 32, "t", "0" * 16, 0),)).encode()
        for name in ("since_step", "since_timestamp", "max_step"):
            fields.pop(name, None)
        if fields.get("format") == "csv":
            fields.pop("format")
        if fields.get("include_metric_history") in (False, "false", "0"):
            fields.pop("include_metric_history")


def mlflow_requests(client, endpoint, status) -> float:
    """mlflow_logs_mlflow_requests_total{endpoint, status} as the app's /metrics says now
    (metrics are process globals: compare before and after)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "mlflow_logs_mlflow_requests_total"
               and sample.labels == {"endpoint": endpoint, "status": status})
