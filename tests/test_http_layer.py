"""The HTTP layer of issue 12: CORS, Content-Encoding, caching headers, the GET forms and
the /docs examples; the Flask test client where it proves it, the real MLflow otherwise."""
import base64
import gzip
import io
from urllib.parse import urlencode

import pytest
import zstandard

from app import create_app
from app.compression import Segment, stored_form
from app.api.schemas import CONNECTION_EXAMPLE, RUNS_EXAMPLE

PAGE = "http://127.0.0.1:8090"
OTHER = "http://127.0.0.1:8091"
DOWN = "http://127.0.0.1:1"  # nothing listens: a 502 without any traffic elsewhere
API = ("/health", "/mlflow/experiments", "/mlflow/runs")


def make(**config):
    return create_app({"TESTING": True, "ACCESS_LOG": False, **config}).test_client()


def preflight(client, origin, path="/mlflow/runs"):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "authorization, content-type"})


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def decode(response):
    coding = response.headers.get("Content-Encoding")
    if coding == "gzip":
        return gzip.decompress(response.data)
    if coding == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(response.data),
                                                          read_across_frames=True).read()
    assert coding is None, coding
    return response.data


# --- CORS -------------------------------------------------------------------

def test_cors_is_off_by_default(client):
    answer = preflight(client, PAGE)
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_preflight_from_an_allowed_origin_is_answered_and_cacheable():
    client = make(CORS_ALLOWED_ORIGINS=f"https://dash.example.com, {PAGE}", CORS_MAX_AGE=900)
    answer = preflight(client, PAGE)
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert answer.headers["Access-Control-Max-Age"] == "900"
    assert {"authorization", "content-type"} <= {
        h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert "Origin" in answer.headers["Vary"]
    assert "Access-Control-Allow-Origin" not in preflight(client, OTHER).headers
    assert "Access-Control-Allow-Origin" not in preflight(client, PAGE, "/metrics").headers


def test_error_answers_carry_the_cors_headers_and_preflights_are_not_rate_limited():
    client = make(CORS_ALLOWED_ORIGINS=PAGE, RATE_LIMIT="1/minute")
    for _ in range(3):
        assert preflight(client, PAGE).status_code == 200  # not counted
    invalid = client.post("/mlflow/runs", json={"nope": 1}, headers={"Origin": PAGE})
    limited = client.post("/mlflow/runs", json={"nope": 1}, headers={"Origin": PAGE})
    assert (invalid.status_code, limited.status_code) == (422, 429)
    for answer in (invalid, limited):
        assert answer.headers["Access-Control-Allow-Origin"] == PAGE
        exposed = {h.strip() for h in answer.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"X-Cache", "X-Request-ID", "X-Run-Errors", "X-Run-Errors-Count",
                "X-Unknown-Metric-Keys", "Content-Disposition", "ETag", "Retry-After"} <= exposed


def test_any_origin_is_answered_without_credentials():
    answer = preflight(make(CORS_ALLOWED_ORIGINS="*"), OTHER)
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in answer.headers


@pytest.mark.parametrize("setting", ["*, http://a.example", "http://a.example/", "a.example",
                                     "http://a.example/path"])
def test_origins_a_browser_never_sends_are_refused_at_start_up(setting):
    with pytest.raises(ValueError, match="CORS_ALLOWED_ORIGINS"):
        make(CORS_ALLOWED_ORIGINS=setting)


# --- caching headers and compression (test client) --------------------------

@pytest.mark.parametrize("path", API)
def test_api_answers_are_private_and_vary(client, path):
    for answer in (client.post(path, json={"tracking_uri": DOWN, "http_timeout": 1}),
                   client.get(path + "?nope=1")):
        assert answer.headers["Cache-Control"] == "private, no-cache"
        assert {"Authorization", "Accept", "Accept-Encoding", "Origin"} <= {
            v.strip() for v in answer.headers["Vary"].split(",")}
    assert "Cache-Control" not in client.get("/healthz").headers


@pytest.mark.parametrize("accept, coding", [("gzip", "gzip"), ("gzip, deflate, br, zstd", "zstd"),
                                            ("gzip;q=0", None), ("br", None), (None, None)])
def test_spec_is_compressed_as_negotiated(client, accept, coding):
    plain = client.get("/openapi.json").data
    answer = client.get("/openapi.json", headers={"Accept-Encoding": accept} if accept else {})
    assert answer.headers.get("Content-Encoding") == coding
    assert "Accept-Encoding" in answer.headers["Vary"]
    assert decode(answer) == plain and len(plain) > 1024
    if coding:
        assert len(answer.data) < len(plain) / 3
        assert int(answer.headers["Content-Length"]) == len(answer.data)


def test_small_answers_go_plain(client):
    answer = client.post("/mlflow/runs", json={"nope": 1}, headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 422 and "Content-Encoding" not in answer.headers
    assert answer.get_json()["errors"] == {"nope": ["Unknown field."]}


def test_a_body_with_stored_segments_is_spliced_or_written_raw(app):
    raw = b'{"run":' + b"1," * 5000 + b"1}"
    stored = {c: stored_form(raw, c) for c in ("gzip", "zstd")}

    @app.get("/segments")
    def segments():
        body = [b"[", Segment(raw, stored), b"]"]
        return app.response_class(iter(body), mimetype="application/json",
                                  headers={"Content-Length": str(len(raw) + 2)})

    client = app.test_client()
    assert client.get("/segments").data == b"[" + raw + b"]"
    for coding in ("gzip", "zstd"):
        answer = client.get("/segments", headers={"Accept-Encoding": coding})
        assert stored[coding] in answer.data and decode(answer) == b"[" + raw + b"]"


def test_a_streamed_answer_is_compressed_as_it_is_read(app):
    import os
    read = []

    @app.get("/stream")
    def stream():
        def body():
            for i in range(100):
                read.append(i)
                yield os.urandom(64 * 1024)  # incompressible: output at once
        return app.response_class(body(), mimetype="text/csv")

    answer = app.test_client().get("/stream", headers={"Accept-Encoding": "gzip"}, buffered=False)
    assert answer.headers["Content-Encoding"] == "gzip" and "Content-Length" not in answer.headers
    pieces = iter(answer.response)
    first = next(pieces)
    assert first and len(read) < 10  # not the whole body first
    assert len(gzip.decompress(first + b"".join(pieces))) == 100 * 64 * 1024
    answer.close()


# --- GET forms (test client) -------------------------------------------------

def test_get_form_refuses_credentials_unknown_and_repeated_parameters(client):
    answer = client.get(f"/mlflow/runs?tracking_uri={DOWN}&username=a&password=b&nope=1")
    assert answer.status_code == 422
    assert set(answer.get_json()["errors"]) == {"username", "password"}
    assert "Never in a URL" in answer.get_json()["errors"]["password"][0]
    answer = client.get(f"/mlflow/runs?tracking_uri={DOWN}&nope=1&limit=2&limit=3")
    assert answer.get_json()["errors"].keys() == {"limit"}
    answer = client.get(f"/mlflow/runs?tracking_uri={DOWN}&nope=1")
    assert answer.status_code == 422 and answer.get_json()["errors"] == {"nope": ["Unknown field."]}
    answer = client.get(f"/mlflow/runs?tracking_uri={DOWN}&limit=x&refresh=maybe&http_timeout=nan")
    assert set(answer.get_json()["errors"]) == {"limit", "refresh", "http_timeout"}


def test_get_form_types_its_parameters(client):
    answer = client.get("/mlflow/runs?" + urlencode(
        [("tracking_uri", DOWN), ("limit", "3"), ("refresh", "true"), ("http_timeout", "2.5"),
         ("metric_keys", "a"), ("metric_keys", "b"), ("run_status", "FINISHED")]),
        headers={"Authorization": basic("u", "p")})
    assert answer.status_code == 502, answer.get_json()  # valid: MLflow was tried


def test_get_form_costs_the_rate_limit_by_its_runs():
    client = make(RATE_LIMIT="10/minute")
    first = client.get(f"/mlflow/runs?tracking_uri={DOWN}&http_timeout=1&limit=1000")
    assert first.status_code == 502
    assert client.get(f"/mlflow/runs?tracking_uri={DOWN}&http_timeout=1").status_code == 429


# --- /docs ---------------------------------------------------------------------

def test_spec_has_nothing_unused_and_no_null_a_field_refuses(client):
    spec = client.get("/openapi.json").get_json()
    assert "PaginationMetadata" not in spec["components"]["schemas"]
    for name, component in spec["components"]["schemas"].items():
        for field, prop in component.get("properties", {}).items():
            assert not ("default" in prop and prop["default"] is None
                        and not prop.get("nullable")), (name, field)
    body = spec["paths"]["/mlflow/runs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["example"] == RUNS_EXAMPLE and "profile" not in body["example"]
    get = {p["name"] for p in spec["paths"]["/mlflow/runs"]["get"]["parameters"]}
    assert {"metric_keys", "profile", "tracking_uri"} <= get and not {"username", "password"} & get


# --- against the real MLflow -----------------------------------------------------

def test_docs_examples_work_once_filled_in(client, as_user):
    real = {k: v for k, v in as_user().items() if k in CONNECTION_EXAMPLE}
    assert client.post("/health", json={**CONNECTION_EXAMPLE, **real}).get_json()["status"] == "healthy"
    answer = client.post("/mlflow/runs", json={**RUNS_EXAMPLE, **real})
    assert answer.status_code == 200, answer.get_json()


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_compressed_runs_decode_to_the_plain_answer(client, body, coding):
    query = body(experiment_name="shared-exp")
    plain = client.post("/mlflow/runs", json=query)
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    packed = client.post("/mlflow/runs", json=query, headers={"Accept-Encoding": coding})
    assert packed.headers["Content-Encoding"] == coding and "Content-Length" not in packed.headers
    assert decode(packed) == plain.data and len(packed.data) < len(plain.data) / 3
    assert packed.headers["Cache-Control"] == "private, no-cache"


def test_csv_export_is_streamed_compressed(client, body):
    query = body(experiment_name="shared-exp", format="csv")
    plain = client.post("/mlflow/runs", json=query)
    packed = client.post("/mlflow/runs", json=query, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip" and packed.is_streamed
    assert decode(packed) == plain.data and plain.data.startswith(b"run_id,")
    # A stream that ends within the first KB (the header row only) goes plain, sized.
    short = client.post("/mlflow/runs", json=dict(query, include_metric_history=False),
                        headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in short.headers and short.data.startswith(b"run_id,")
    assert int(short.headers["Content-Length"]) == len(short.data) < 1024


def test_get_form_answers_as_post_does(client, body, mlflow_server, proxy):
    fields = body(experiment_name="shared-exp", metric_keys=["train_loss", "long_metric"],
                  include_deleted=False, limit=5)
    posted = client.post("/mlflow/runs", json=fields)
    user, password = fields.pop("username"), fields.pop("password")
    params = [(k, str(v).lower() if isinstance(v, bool) else str(v))
              for k, v in fields.items() if k != "metric_keys"]
    params += [("metric_keys", k) for k in fields["metric_keys"]]
    got = client.get("/mlflow/runs?" + urlencode(params),
                     headers={"Authorization": basic(user, password)})
    assert got.status_code == 200 and got.data == posted.data
    calls = len(proxy.paths)
    refused = client.get("/mlflow/runs?" + urlencode([*params, ("username", user)]))
    assert refused.status_code == 422 and "username" in refused.get_json()["errors"]
    assert len(proxy.paths) == calls  # refused before any connection


def test_cors_headers_on_a_real_401(as_user):
    client = make(CORS_ALLOWED_ORIGINS=PAGE)
    answer = client.post("/mlflow/experiments", json=as_user(password="wrong-password"),
                         headers={"Origin": PAGE, "Accept-Encoding": "gzip"})
    assert answer.status_code == 401
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE
    assert answer.headers["Cache-Control"] == "private, no-cache"
