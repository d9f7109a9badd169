"""schemathesis, all checks, against the service as deployed: gunicorn (2 workers) with
Redis, talking to the real basic-auth MLflow. test_docs_and_fuzz.py does the same against
the app in-process; this one also covers what only the real server adds (HTTP parsing,
headers, streamed bodies, the cache shared by two workers)."""
import uuid
from urllib.parse import urlencode

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app import create_app
from tests.support.gunicorn import gunicorn
from tests.support.calls import keep_cross_field_rules, schema_accepts

CALL_TIMEOUT = 30  # a hang guard per call; valid generated http_timeouts become <= 5 s
REQUEST_LINE_ROOM = 3500  # bytes of query string well inside gunicorn's 4,094-byte request line


@pytest.fixture(scope="module")
def live_service(tmp_path_factory, redis_url):
    prefix = f"test-live-fuzz-{uuid.uuid4().hex[:12]}:"
    with gunicorn(tmp_path_factory.mktemp("live-fuzz"), redis_url, workers=2,
                 env={"CACHE_KEY_PREFIX": prefix}) as svc:
        yield svc
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


@pytest.fixture(scope="module")
def live_schema(live_service):
    return schemathesis.openapi.from_url(f"{live_service.base}/openapi.json", timeout=10)


# The operations, from the app's own spec (the live one is only there once gunicorn is).
# schemathesis.pytest.from_fixture would load the live spec lazily, but it fails under
# pytest 9 (it reads request.node._nodeid, which pytest 9 no longer has): hypothesis
# runs each operation's strategy instead.
OPERATIONS = [(method.upper(), path)
              for path, methods in create_app({"TESTING": True}).test_client()
              .get("/openapi.json").get_json()["paths"].items()
              for method in methods]


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_live_service_never_fails_on_any_input(method, path, live_schema, mlflow_server):
    operation = live_schema[path][method]
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                      operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def call(case):
        aim_at(case.body, mlflow_server)
        for fields in (case.body, case.query):
            keep_cross_field_rules(fields)
        query = case.query
        if isinstance(query, dict) and schema_accepts("tracking_uri", query.get("tracking_uri")):
            query["tracking_uri"] = mlflow_server.uri  # a GET form: never credentials in a URL
        if isinstance(query, dict) and len(urlencode(query, doseq=True)) > REQUEST_LINE_ROOM:
            # gunicorn itself answers 400 (text/html) to a request line over its
            # limit_request_line (4,094 bytes), before the app sees it: not ours to shape.
            return
        # Every check runs, with two documented exceptions. not_a_server_error: 502/504
        # are documented answers (MLflow down, http_timeout spent), which it counts as
        # failures; what must never happen is a 500. positive_data_acceptance: with valid
        # credentials, a schema-valid filter_string/order_by reaches MLflow, whose grammar
        # no schema expresses, and MLflow's rejection is a documented 422 naming the field.
        response = case.call_and_validate(
            excluded_checks=[not_a_server_error, positive_data_acceptance], timeout=CALL_TIMEOUT)
        assert response.status_code != 500, response.text
        assert response.status_code < 500 or response.json()["success"] is False
        # GET forms: the connection rule (profile or tracking_uri) cannot be stated for query
        # parameters, so a schema-"valid" ?profile=a&insecure_tls=true is the service's 422
        # (as in tests/test_docs_and_fuzz.py).
        if case.method != "GET" and not mlflow_grammar_rejection(response):
            case.validate_response(response, checks=[positive_data_acceptance])

    call()


def mlflow_grammar_rejection(response) -> bool:
    """A 422 whose only complaints are MLflow refusing filter_string/order_by."""
    if response.status_code != 422:
        return False
    errors = response.json().get("errors") or {}
    return bool(errors) and set(errors) <= {"filter_string", "order_by"} and all(
        message.startswith("MLflow rejected it") for messages in errors.values()
        for message in messages)


def aim_at(body, server):
    """Generated hosts would be traffic to arbitrary addresses: aim at our MLflow instead
    (as test_docs_and_fuzz does). Generated credentials (both strings, or both left out)
    become valid ones and valid timeouts 1-5 s, so that most cases get past MLflow's 401
    and the 504 of a tiny timeout to the cache and the answer; a body with only one of
    username and password still gets its 401."""
    if isinstance(body, dict) and schema_accepts("tracking_uri", body.get("tracking_uri")):
        body["tracking_uri"] = server.uri
        credentials = body.get("username"), body.get("password")
        if (all(schema_accepts(name, body.get(name)) for name in ("username", "password"))
                and (all(isinstance(c, str) for c in credentials) or credentials == (None, None))):
            # only credentials the schema accepts: a case generated to break the schema
            # (an over-long password, say) must stay broken
            body["username"], body["password"] = server.admin
        timeout = body.get("http_timeout")
        if schema_accepts("http_timeout", timeout) and timeout is not None:
            # only valid ones (the schema's own minimum and maximum): keep invalid ones invalid
            body["http_timeout"] = min(max(timeout, 1), 5)


def test_the_live_service_logged_no_server_error(live_service):
    """Runs after the fuzzing (same module-scoped service): gunicorn's log, which the
    fuzz test's calls went through, holds no traceback and no lost worker."""
    spec = requests.get(f"{live_service.base}/openapi.json", timeout=10).json()
    assert "/mlflow/runs" in spec["paths"]
    log = live_service.log.read_text(errors="replace")
    # the fuzzing did reach it (the app's JSON access log; gunicorn's own is off)
    assert '"route":"/mlflow/runs","path":"/mlflow/runs","status":200' in log
    for sign in ("Traceback", "Error handling request", "WORKER TIMEOUT", "was sent SIGKILL"):
        assert sign not in log, log[log.index(sign) - 2000:log.index(sign) + 2000]
    assert live_service.master.poll() is None
