"""Interactive docs from local assets, and schemathesis against /openapi.json."""
import schemathesis
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from hypothesis import HealthCheck, settings

from app import create_app
from config import Config
from tests.support.calls import keep_cross_field_rules, schema_accepts


def test_swagger_ui_uses_local_assets(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "docs-assets/swagger-ui-bundle.js" in page and "//" not in page.split("docs-assets")[0][-5:]
    assert "https://" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert client.get(f"/docs-assets/{asset}").status_code == 200


def test_openapi_describes_the_contract(client):
    spec = client.get("/openapi.json").get_json()
    assert set(spec["paths"]) == {"/health", "/mlflow/experiments", "/mlflow/runs"}
    query = spec["components"]["schemas"]["RunsQuery"]["properties"]
    assert {"tracking_uri", "username", "password", "insecure_tls", "http_timeout", "experiment_name",
            "experiment_id", "run_id", "limit", "include_metric_history"} <= set(query)
    assert query["limit"]["default"] == 10 and query["http_timeout"]["default"] == 15
    assert query["insecure_tls"]["default"] is True


def test_docs_behind_a_path_prefix():
    client = create_app({"TESTING": True, "PROXY_FIX_HOPS": 1}).test_client()
    page = client.get("/docs", headers={"X-Forwarded-Prefix": "/mlflow-logs"}).get_data(as_text=True)
    assert "/mlflow-logs/openapi.json" in page


schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app({"TESTING": True}))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error(case, mlflow_server):
    for fields in (case.body, case.query):  # POST bodies and the GET forms' parameters
        if not isinstance(fields, dict):
            continue
        if schema_accepts("tracking_uri", fields.get("tracking_uri")):
            # Generated hosts would be traffic to arbitrary addresses: aim at our MLflow.
            fields["tracking_uri"] = mlflow_server.uri
            timeout = fields.get("http_timeout")
            if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) \
                    and 0 < timeout <= Config.MAX_HTTP_TIMEOUT:  # keep invalid ones invalid
                fields["http_timeout"] = min(timeout, 5)
        keep_cross_field_rules(fields)
    # 502/504 are documented answers (e.g. http_timeout=0.001 is valid and times out);
    # what must never happen is a 500.
    # The in-process client does not decode Content-Encoding (tests/test_http_layer.py does).
    case.headers = {**(case.headers or {}), "Accept-Encoding": "identity"}
    excluded = [not_a_server_error]
    if case.method == "GET":
        # The connection rule (profile or tracking_uri, not both) is published for bodies
        # (document_connection_rule) but query parameters cannot state it: a generated
        # ?profile=a&insecure_tls=true is "valid" to schemathesis, a 422 to the service.
        excluded.append(positive_data_acceptance)
    response = case.call_and_validate(excluded_checks=excluded)
    assert response.status_code != 500, response.text
