"""Bad input: a 422 (or 400/415) naming the problem, never a 500; no MLflow needed."""
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.access import Allowlist
from app.uris import HTTP_URI, uri_problem

GOOD = {"tracking_uri": "http://127.0.0.1:9", "username": "u", "password": "p"}


def error_fields(response):
    body = response.get_json()
    assert body["success"] is False and body["code"] == response.status_code
    assert body["message"] == body["detail"]
    return body.get("errors", {})


@pytest.mark.parametrize("uri", [
    "file:///etc/passwd", "sqlite:///mlflow.db", "databricks", "databricks://profile",
    "ftp://host", "http://", "not a url", "", "http://user:pw@host",
    "postgresql://u@h/db", "http://host/?q=1",
])
@pytest.mark.parametrize("route", ["/health", "/mlflow/experiments", "/mlflow/runs"])
def test_only_http_tracking_uris(client, route, uri):
    response = client.post(route, json=dict(GOOD, tracking_uri=uri))
    assert response.status_code == 422
    assert "tracking_uri" in error_fields(response)


@pytest.mark.parametrize("uri", [
    "http://127.0.0.1:9/mlflow\n", "http://127.0.0.1:9\n", "http://127.0.0.1:9/mlflow\r",
    "http://127.0.0.1:9/ml\tflow", "http://127.0.0.1:9/\x00", "http://127.0.0.1:9/\x7f",
    "http://127.0.0.1:9/\x85", " http://127.0.0.1:9", "http://127.0.0.1:9/\u2028",
])
@pytest.mark.parametrize("route", ["/health", "/mlflow/experiments", "/mlflow/runs"])
def test_control_characters_in_tracking_uri_are_422(client, route, uri, mlflow_calls):
    response = client.post(route, json=dict(GOOD, tracking_uri=uri))
    assert response.status_code == 422
    assert "tracking_uri" in error_fields(response)
    assert mlflow_calls == []


@pytest.mark.parametrize("port", ["99999", "65536", "0", "00000"])
@pytest.mark.parametrize("route", ["/health", "/mlflow/experiments", "/mlflow/runs"])
def test_ports_out_of_range_are_422(client, route, port, mlflow_calls):
    response = client.post(route, json=dict(GOOD, tracking_uri=f"http://127.0.0.1:{port}"))
    assert response.status_code == 422
    assert "1 to 65535" in error_fields(response)["tracking_uri"][0]
    assert mlflow_calls == []


@pytest.mark.parametrize("field, value", [
    ("limit", 0), ("limit", 1001), ("limit", -1), ("limit", "ten"), ("limit", 2.5),
    ("http_timeout", 0), ("http_timeout", -1), ("http_timeout", "soon"), ("http_timeout", 10_000),
    ("insecure_tls", "maybe"), ("insecure_tls", 0), ("include_metric_history", "true"),
    ("http_timeout", "15"), ("http_timeout", True), ("experiment_id", 1),
    ("experiment_name", ""), ("experiment_id", ""), ("run_id", ""), ("run_id", 5),
])
def test_bad_values_are_422_naming_the_field(client, field, value):
    response = client.post("/mlflow/runs", json=dict(GOOD, **{field: value}))
    assert response.status_code == 422
    assert field in error_fields(response)
    assert field in response.get_json()["message"]


def test_unknown_field_is_named(client):
    response = client.post("/mlflow/runs", json=dict(GOOD, experiment_nme="typo"))
    assert response.status_code == 422
    assert error_fields(response) == {"experiment_nme": ["Unknown field."]}


def test_missing_tracking_uri(client):
    response = client.post("/health", json={})
    assert response.status_code == 422
    assert "tracking_uri" in error_fields(response)


def test_non_object_body(client):
    response = client.post("/mlflow/runs", json=[GOOD])
    assert response.status_code == 422
    assert error_fields(response) == {"_schema": ["Invalid input type."]}


def test_malformed_json_is_400(client):
    response = client.post("/mlflow/runs", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["success"] is False


def test_form_body_is_415_not_ignored(client):
    response = client.post("/mlflow/runs", data={"tracking_uri": "http://x"})
    assert response.status_code == 415
    assert "application/json" in response.get_json()["message"]


def test_unknown_route_and_method_use_the_error_shape(client):
    assert client.post("/nope", json={}).get_json()["code"] == 404
    response = client.put("/mlflow/runs")  # GET has a form (app/api/queryforms.py); PUT none
    assert response.status_code == 405 and response.get_json()["success"] is False


def test_oversized_body_is_413(app):
    app.config["MAX_CONTENT_LENGTH"] = 100
    response = app.test_client().post("/health", json=dict(GOOD, username="x" * 200))
    assert response.status_code == 413
    assert response.get_json()["success"] is False


@given(st.from_regex(HTTP_URI, fullmatch=True))
@settings(max_examples=300, deadline=None)
def test_every_uri_the_published_pattern_allows_is_accepted(uri):
    """Clients and fuzzers read the pattern: what it allows must never be a 422 (nor crash
    urlsplit, whose port and bracketed host checks raise ValueError)."""
    assert uri_problem(uri) is None
    port = urlsplit(uri).port
    assert port is None or 1 <= port <= 65535
    Allowlist("mlflow.internal").allows(uri)


@pytest.mark.parametrize("uri", ["http://[1]", "http://[1.2.3.4]", "http://[:]", "http://[::1]:0",
                                 "http://[::1::2]", "http://[1:2:3:4:5:6:7:8:9]"])
def test_bracketed_hosts_must_be_ipv6_addresses(client, uri):
    response = client.post("/mlflow/runs", json=dict(GOOD, tracking_uri=uri))
    assert response.status_code == 422 and "tracking_uri" in error_fields(response)


# --- JSON that is malformed, or valid JSON holding what no field can take ---------------------

ROUTES = ["/health", "/mlflow/experiments", "/mlflow/runs"]
URI = '"tracking_uri": "http://127.0.0.1:9"'


def post_raw(client, route, body: bytes):
    return client.post(route, data=body, content_type="application/json")


@pytest.mark.parametrize("body", [
    b"{" + URI.encode() + b', "limit": ' + b"[" * 2000 + b"]" * 2000 + b"}",  # nested 2,000 deep
    b"[" * 100_000,
    b"{" + URI.encode() + b', "limit": ' + b"9" * 5000 + b"}",               # 5,000 digits
    b"{" + URI.encode() + b', "x": -' + b"1" * 4301 + b"}",
    b"{" + URI.encode() + b', "http_timeout": NaN}',                          # not JSON
    b"{" + URI.encode() + b', "http_timeout": Infinity}',
    b"{" + URI.encode() + b', "username": "\xff\xfe"}',                       # not UTF-8
    b"{" + URI.encode() + b', "username": "\xed\xa0\x80"}',                   # an encoded surrogate
    b"{" + URI.encode() + b",}", b"{not json", b"\x00",
])
@pytest.mark.parametrize("route", ROUTES)
def test_malformed_json_is_400_with_its_position(client, route, body, mlflow_calls):
    response = post_raw(client, route, body)
    assert response.status_code == 400, response.get_data()
    assert error_fields(response) == {}
    message = response.get_json()["message"]
    assert message.startswith("Malformed JSON") and "char " in message
    assert mlflow_calls == []


@pytest.mark.parametrize("body, field", [
    ('{%s, "username": "\\ud800", "password": "p"}' % URI, "username"),
    ('{%s, "username": "u", "password": "x\\udfffy"}' % URI, "password"),
    ('{%s, "run_ids": ["a", "\\udc00"]}' % URI, "run_ids"),
    ('{%s, "order_by": ["\\ud83d"], "limit": 1}' % URI, "order_by"),
    ('{"tracking_uri": "http://127.0.0.1:9/\\ud800"}', "tracking_uri"),
    ('{%s, "\\ud800": 1}' % URI, "\\ud800"),
])
@pytest.mark.parametrize("route", ROUTES)
def test_a_lone_surrogate_is_422_naming_its_field(client, route, body, field, mlflow_calls):
    response = post_raw(client, route, body.encode())
    assert response.status_code == 422, response.get_data()
    assert field in error_fields(response)
    assert "surrogate" in response.get_json()["message"]
    assert mlflow_calls == []


@pytest.mark.parametrize("field, digits", [("limit", 20), ("since_step", 25),
                                           ("max_points", 4000), ("since_timestamp", 300),
                                           ("limit", 400), ("http_timeout", 4300)])
def test_an_integer_too_large_for_its_field_is_422_naming_it(client, field, digits, mlflow_calls):
    response = post_raw(client, "/mlflow/runs",
                        ('{%s, "%s": %s}' % (URI, field, "9" * digits)).encode())
    assert response.status_code == 422, response.get_data()
    assert field in error_fields(response)
    assert mlflow_calls == []


def test_limits_come_from_the_apps_own_settings_and_the_spec_says_them():
    from app import create_app

    small = create_app({"TESTING": True, "MAX_RUNS_LIMIT": 5, "MAX_HTTP_TIMEOUT": 2}).test_client()
    body = {"tracking_uri": "http://127.0.0.1:1", "limit": 50, "http_timeout": 100,
            "run_ids": [f"r{i}" for i in range(6)]}
    answer = small.post("/mlflow/runs", json=body)
    assert answer.status_code == 422
    assert set(answer.get_json()["errors"]) == {"limit", "http_timeout", "run_ids"}
    spec = small.get("/openapi.json").get_json()["components"]["schemas"]
    assert spec["RunsQuery"]["properties"]["limit"]["maximum"] == 5
    assert spec["RunsQuery"]["properties"]["run_ids"]["maxItems"] == 5
    assert spec["Connection"]["properties"]["http_timeout"]["maximum"] == 2
    # another app, made after, keeps the defaults
    default = create_app({"TESTING": True}).test_client().get("/openapi.json").get_json()
    assert default["components"]["schemas"]["RunsQuery"]["properties"]["limit"]["maximum"] == 1000
