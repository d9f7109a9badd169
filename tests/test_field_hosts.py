"""Two service hosts (separate gunicorn masters) behind a real nginx running the reference
deploy/nginx.conf, under the path prefix /mlflow-logs/, sharing the test Redis.

The docs and the spec work under the prefix; a run fetched cold through one host is a HIT
with 0 MLflow calls through the other; the rate limit is one budget across hosts; request
ids pass through nginx and the service; a 13 MB answer comes gzipped through nginx's
buffers. Each test that spends rate-limit budget connects from a loopback address of its
own (the service counts per client address, which it takes from nginx's X-Forwarded-For).
"""
import gzip
import uuid

import pytest
import requests

from tests.support.hosts import behind_nginx, print_field as field, session_from
from tests.support.seed import seed_big_run
from tests.support.proxy import MlflowProxy

pytestmark = pytest.mark.server

RATE = 12           # per hour and client address: RATE_LIMIT
BIG_POINTS = 200_000   # a ~13 MB JSON answer


@pytest.fixture(scope="module")
def site(redis_url, tmp_path_factory):
    with behind_nginx(tmp_path_factory.mktemp("hosts"), redis_url,
                      # A run's info is kept for a test's length: HIT means no MLflow call.
                      env={"RATE_LIMIT": f"{RATE}/hour", "RUN_LIST_TTL": "300"}) as site:
        yield site


@pytest.fixture(scope="module")
def mlflow_proxy(mlflow_server):
    with MlflowProxy(mlflow_server.uri) as proxy:
        yield proxy


def rid() -> str:
    return f"field-{uuid.uuid4().hex[:16]}"


def test_docs_and_spec_under_the_prefix(site):
    page = requests.get(f"{site.url}/docs", timeout=10)
    assert page.status_code == 200 and 'url: "/mlflow-logs/openapi.json"' in page.text
    spec = requests.get(f"{site.url}/openapi.json", timeout=10)
    assert spec.status_code == 200 and "/mlflow/runs" in spec.json()["paths"]
    # The page's own assets are relative: they resolve under the prefix too.
    asset = page.text.split("docs-assets/", 1)[1].split('"', 1)[0]
    assert requests.get(f"{site.url}/docs-assets/{asset}", timeout=10).status_code == 200
    bare = requests.get(site.url, allow_redirects=False, timeout=10)
    assert bare.status_code == 301 and bare.headers["Location"].endswith("/mlflow-logs/")


def test_a_run_fetched_through_one_host_is_a_hit_through_the_other(site, mlflow_server,
                                                                   mlflow_proxy):
    client = session_from("127.0.0.3")
    username, password = mlflow_server.admin
    body = {"tracking_uri": mlflow_proxy.uri, "username": username, "password": password,
            "run_id": mlflow_server.ids["runs"]["finished"], "http_timeout": 60}
    first_id = rid()
    cold = client.post(f"{site.url}/mlflow/runs", json=body, headers={"X-Request-ID": first_id},
                       timeout=70)
    assert cold.status_code == 200 and cold.headers["X-Cache"] == "MISS", cold.text
    [cold_host] = site.served_by(first_id)
    # nginx round-robins: within a few requests one goes to the other host.
    for _ in range(4):
        mlflow_proxy.reset()
        request_id = rid()
        warm = client.post(f"{site.url}/mlflow/runs", json=body,
                           headers={"X-Request-ID": request_id}, timeout=70)
        if site.served_by(request_id) != [cold_host]:
            break
    else:
        pytest.fail("nginx sent four requests in a row to the same host")
    assert warm.headers["X-Cache"] == "HIT" and mlflow_proxy.count() == 0, mlflow_proxy.paths
    assert warm.json() == cold.json()
    field("two hosts", f"cold via host {cold_host}: MISS; via host {site.served_by(request_id)[0]}:"
          " HIT, 0 MLflow calls")


def test_the_rate_limit_is_one_budget_across_hosts(site):
    client = session_from("127.0.0.2")
    answers = []
    for _ in range(2 * RATE):
        request_id = rid()
        # Malformed, so no MLflow call: still counted (the limit comes before validation).
        response = client.post(f"{site.url}/mlflow/experiments", json={"bogus": 1},
                               headers={"X-Request-ID": request_id}, timeout=10)
        answers.append((response.status_code, site.served_by(request_id)[0],
                        response.headers.get("Retry-After")))
    statuses = [status for status, _, _ in answers]
    # With a budget per host, 2 * RATE would pass.
    assert statuses == [422] * RATE + [429] * RATE, answers
    assert {host for _, host, _ in answers[:RATE]} == {"a", "b"}
    assert {host for _, host, _ in answers[RATE:]} == {"a", "b"}
    assert all(0 < int(after) <= 3600 for _, _, after in answers[RATE:])


def test_request_ids_pass_through_nginx_and_the_service(site):
    mine = rid()
    response = requests.get(f"{site.url}/healthz", headers={"X-Request-ID": mine}, timeout=10)
    assert response.headers["X-Request-ID"] == mine
    [host] = site.served_by(mine)
    assert f'"request_id":"{mine}"' in site.hosts[host].log.read_text()
    # Without one, nginx makes one ($request_id), and the service answers with it.
    made = requests.get(f"{site.url}/healthz", timeout=10).headers["X-Request-ID"]
    assert len(made) == 32 and f"rid={made} " in site.nginx.access_log.read_text()
    assert any(f'"request_id":"{made}"' in svc.log.read_text() for svc in site.hosts.values())


@pytest.fixture(scope="module")
def big_run(mlflow_scratch_server):
    return seed_big_run(mlflow_scratch_server.db_uri, BIG_POINTS)


def test_a_13_mb_answer_comes_gzipped_through_the_buffers(site, mlflow_scratch_server,
                                                          big_run):
    client = session_from("127.0.0.4")
    username, password = mlflow_scratch_server.admin
    body = {"tracking_uri": mlflow_scratch_server.uri, "username": username,
            "password": password, "run_id": big_run, "http_timeout": 300}
    cold = client.post(f"{site.url}/mlflow/runs", json=body, timeout=330,
                       headers={"Accept-Encoding": "identity"})
    assert cold.status_code == 200, cold.text[:500]
    size = len(cold.content)
    assert size > 12_000_000
    zipped = client.post(f"{site.url}/mlflow/runs", json=body, timeout=330, stream=True,
                         headers={"Accept-Encoding": "gzip"})
    raw = zipped.raw.read(decode_content=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["X-Cache"] == "HIT"
    assert gzip.decompress(raw) == cold.content
    assert len(raw) < size / 3
    field("13 MB answer", f"{size / 1e6:.1f} MB JSON, {len(raw) / 1e6:.1f} MB gzipped by nginx "
          f"(cold {cold.elapsed.total_seconds():.1f} s, warm {zipped.elapsed.total_seconds():.1f} s"
          " to headers)")
