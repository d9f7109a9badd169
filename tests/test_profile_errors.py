"""A connection profile's errors say which profile, never where it points or as whom: the
caller chose a name, and the operator's URLs and accounts map the internal network."""
import json
from urllib.parse import urlsplit

import pytest

from app import create_app
from tests.support.processes import free_port

USER = "svc-dashboards"
ROUTES = ["/health", "/mlflow/experiments", "/mlflow/runs"]


def profile_app(uri, **fields):
    profiles = {"team-a": {"tracking_uri": uri, "username": USER, "password": "not-it", **fields}}
    return create_app({"TESTING": True, "MLFLOW_PROFILES": json.dumps(profiles)})


def assert_hidden(response, uri, status):
    """The error names the profile and shows neither its URL, host, port nor user."""
    body = response.get_json()
    text = body["error"] if response.request.path == "/health" else body["message"]
    code = body["error_code"] if response.request.path == "/health" else body["code"]
    assert code == status, body
    assert "profile 'team-a'" in text
    place = urlsplit(uri)
    raw = response.get_data(as_text=True)
    for secret in (uri, place.netloc, place.hostname, str(place.port), USER):
        assert secret not in raw, (secret, raw)


@pytest.mark.parametrize("route", ROUTES)
def test_wrong_password_names_the_profile_only(route, mlflow_server):
    response = profile_app(mlflow_server.uri).test_client().post(route, json={"profile": "team-a"})
    assert_hidden(response, mlflow_server.uri, 401)


@pytest.mark.parametrize("route", ROUTES)
def test_unreachable_profile_names_the_profile_only(route):
    uri = f"http://127.0.0.1:{free_port()}/mlflow"
    response = profile_app(uri).test_client().post(route, json={"profile": "team-a"})
    assert_hidden(response, uri, 502)


@pytest.mark.parametrize("route", ROUTES)
def test_silent_profile_names_the_profile_only(route, silent_server):
    response = profile_app(silent_server).test_client().post(
        route, json={"profile": "team-a", "http_timeout": 0.5})
    assert_hidden(response, silent_server, 504)


@pytest.mark.parametrize("route", ROUTES)
def test_tls_failure_names_the_profile_only(route, mlflow_tls_server):
    response = profile_app(mlflow_tls_server.uri).test_client().post(route, json={"profile": "team-a"})
    assert_hidden(response, mlflow_tls_server.uri, 502)
    message = response.get_data(as_text=True)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "insecure_tls" in message


@pytest.mark.parametrize("status, body", [
    (500, b'{"error_code": "INTERNAL_ERROR", "message": "database is locked"}'),
    (502, b"<html>bad gateway</html>"),
    (200, b"<html>login</html>"),
    (403, b"Permission denied"),
])
@pytest.mark.parametrize("route", ROUTES)
def test_upstream_errors_name_the_profile_only(route, scripted, status, body):
    mlflow = scripted(*[(status, body)] * 3)
    response = profile_app(mlflow.uri).test_client().post(route, json={"profile": "team-a"})
    assert_hidden(response, mlflow.uri, 403 if status == 403 else 502)


def test_a_callers_own_uri_and_user_are_still_named(mlflow_server):
    """Without a profile the caller sent them: naming them helps and reveals nothing."""
    body = {"tracking_uri": mlflow_server.uri, "username": USER, "password": "not-it"}
    message = create_app({"TESTING": True}).test_client().post(
        "/mlflow/experiments", json=body).get_json()["message"]
    assert USER in message
    uri = f"http://127.0.0.1:{free_port()}"
    message = create_app({"TESTING": True}).test_client().post(
        "/mlflow/experiments", json={"tracking_uri": uri}).get_json()["message"]
    assert uri in message
