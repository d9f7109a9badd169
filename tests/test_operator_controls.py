"""Operators' controls against real MLflow and Redis: the tracking URI allowlist, connection
profiles, the Authorization: Basic header, MAX_RESPONSE_POINTS, RATE_LIMIT and the probes."""
import base64
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from app import create_app
from tests.support.gunicorn import gunicorn
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer

ROUTES = ["/health", "/mlflow/experiments", "/mlflow/runs"]


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def assert_error(response, status):
    body = response.get_json()
    assert response.status_code == status, body
    assert body["success"] is False and body["code"] == status and body["message"] == body["detail"]
    return body


# --- ALLOWED_TRACKING_URIS ----------------------------------------------------------

def proxy_port(proxy):
    return proxy.uri.rsplit(":", 1)[1]


@pytest.mark.parametrize("route", ROUTES)
def test_allowlist_refuses_before_any_connection(route, proxy, mlflow_server, as_user, mlflow_calls):
    app = create_app({"TESTING": True, "ALLOWED_TRACKING_URIS": mlflow_server.uri})
    response = app.test_client().post(route, json=as_user(tracking_uri=proxy.uri))
    body = assert_error(response, 403)
    assert "allowlist" in body["message"] and "ALLOWED_TRACKING_URIS" in body["message"]
    assert proxy.count() == 0 and mlflow_calls == []


@pytest.mark.parametrize("uri", [
    "http://127.0.0.1:{port}/mlflow-admin",           # not a whole segment of the prefix
    "http://127.0.0.1:{port}/mlflow/../admin",        # out of the prefix again
    "http://127.0.0.1:{port}/mlflow/%2e%2e/admin",
    "http://127.0.0.1:{port}/",
    "https://127.0.0.1:{port}/mlflow",                # another scheme
    "http://127.0.0.1.nip.io:{port}/mlflow",           # a host that starts like the allowed one
    "http://localhost:{port}/mlflow",                 # the same machine by another name
    "http://169.254.169.254/latest/meta-data/",       # cloud metadata
])
def test_allowlist_tricky_uris_make_no_connection(uri, proxy, as_user, mlflow_calls):
    port = proxy_port(proxy)
    app = create_app({"TESTING": True, "ALLOWED_TRACKING_URIS": f"http://127.0.0.1:{port}/mlflow"})
    response = app.test_client().post("/mlflow/experiments",
                                      json=as_user(tracking_uri=uri.format(port=port)))
    assert response.status_code in (403, 422)  # 422: the schema already refuses some forms
    assert_error(response, response.status_code)
    assert proxy.count() == 0 and mlflow_calls == []


@pytest.mark.parametrize("uri, status", [
    ("http://127.0.0.1:{port}/mlflow\n", 422), ("http://127.0.0.1:{port}/mlflow\r\n", 422),
    ("http://127.0.0.1:{port}/mlflow/\t", 422), ("http://127.0.0.1:{port}/ml\nflow", 422),
    # percent-encoded control characters are valid URI text, but the allowlist refuses them
    ("http://127.0.0.1:{port}/mlflow/%0A", 403), ("http://127.0.0.1:{port}/mlflow/x%0d%0a", 403),
])
def test_allowlist_control_characters_make_no_connection(uri, status, proxy, as_user,
                                                         mlflow_calls):
    port = proxy_port(proxy)
    app = create_app({"TESTING": True, "ALLOWED_TRACKING_URIS": f"http://127.0.0.1:{port}/mlflow"})
    response = app.test_client().post("/mlflow/experiments",
                                      json=as_user(tracking_uri=uri.format(port=port)))
    body = assert_error(response, status)
    if status == 422:
        assert set(body["errors"]) == {"tracking_uri"}
    assert proxy.count() == 0 and mlflow_calls == []


def test_allowlist_lets_the_allowed_server_through(proxy, as_user):
    app = create_app({"TESTING": True,
                      "ALLOWED_TRACKING_URIS": f"mlflow.example.invalid, 127.0.0.1:{proxy_port(proxy)}"})
    for route in ROUTES:
        response = app.test_client().post(route, json=as_user(tracking_uri=proxy.uri + "/"))
        assert response.status_code == 200, response.get_json()
    assert proxy.count("/api/2.0/mlflow/experiments/search") >= 2


def test_bad_allowlist_stops_start_up():
    with pytest.raises(ValueError, match="ALLOWED_TRACKING_URIS"):
        create_app({"TESTING": True, "ALLOWED_TRACKING_URIS": "ftp://mlflow.internal/"})


# --- profiles -------------------------------------------------------------------------

def profiles_of(server, **users):
    """MLFLOW_PROFILES JSON: profile name -> one of the server's users."""
    passwords = dict(server.users, admin=server.admin[1])
    return json.dumps({name: {"tracking_uri": server.uri, "username": user,
                              "password": passwords.get(user, "wrong-password")}
                       for name, user in users.items()})


@pytest.fixture
def profiled_app(cached_app, mlflow_server):
    """An app caching in Redis, with profiles admin/alice/wrong and an allowlist that
    leaves out the profiles' server: operator-configured profiles are trusted."""
    return cached_app(
        MLFLOW_PROFILES=profiles_of(mlflow_server, prod="admin", alice="alice", wrong="bob-typo"),
        ALLOWED_TRACKING_URIS="mlflow.example.invalid")


def test_profile_reads_runs_as_its_user(profiled_app, mlflow_server):
    client = profiled_app.test_client()
    names = {e["name"] for e in client.post("/mlflow/experiments", json={"profile": "alice"}).get_json()["experiments"]}
    assert "shared-exp" in names and "secret-exp" not in names  # MLflow's permissions for alice
    body = client.post("/mlflow/runs", json={"profile": "prod", "experiment_name": "secret-exp"}).get_json()
    assert body["success"] is True and body["total_runs"] == 1
    health = client.post("/health", json={"profile": "prod", "http_timeout": 30}).get_json()
    assert health["status"] == "healthy" and health["authentication"] == "basic_auth"
    assert health["ssl_verification"] is True  # a profile verifies TLS unless it says otherwise


def test_profiles_keep_users_apart_in_the_cache(profiled_app, mlflow_server, mlflow_calls):
    client = profiled_app.test_client()
    secret = {"experiment_name": "secret-exp"}
    first = client.post("/mlflow/runs", json={"profile": "prod", **secret})
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    again = client.post("/mlflow/runs", json={"profile": "prod", **secret})
    assert again.headers["X-Cache"] == "HIT" and again.get_data() == first.get_data()
    # alice's profile is another caller: the cached run is not hers to read
    assert_error(client.post("/mlflow/runs", json={"profile": "alice", **secret}), 403)
    run_id = mlflow_server.ids["runs"]["secret"]
    assert_error(client.post("/mlflow/runs", json={"profile": "alice", "run_id": run_id}), 403)
    assert_error(client.post("/mlflow/runs", json={"profile": "wrong", "run_id": run_id}), 401)


@pytest.mark.parametrize("extra", [
    {"tracking_uri": "http://127.0.0.1:9"}, {"username": "admin"}, {"password": "x"},
    {"insecure_tls": True}, {"insecure_tls": False}, {"tracking_uri": None},
])
def test_profile_with_connection_fields_is_422_naming_them(profiled_app, extra):
    response = profiled_app.test_client().post("/mlflow/runs", json={"profile": "prod", **extra})
    body = assert_error(response, 422)
    assert set(body["errors"]) == set(extra)


def test_unknown_profile_is_404_without_listing_profiles(profiled_app, mlflow_calls):
    response = profiled_app.test_client().post("/mlflow/experiments", json={"profile": "staging"})
    body = assert_error(response, 404)
    assert "staging" in body["message"] and "prod" not in body["message"]
    assert mlflow_calls == []


def test_profile_and_authorization_header_is_422(profiled_app, mlflow_server):
    response = profiled_app.test_client().post("/mlflow/experiments", json={"profile": "prod"},
                                               headers=basic("alice", mlflow_server.users["alice"]))
    assert "Authorization" in assert_error(response, 422)["errors"]


def test_profile_password_never_leaves_the_service(profiled_app, mlflow_server, redis_url,
                                                   redis_prefix, caplog):
    """Not in answers (success and errors), logs, the OpenAPI spec, nor Redis keys or values."""
    caplog.set_level(logging.DEBUG)
    password = mlflow_server.admin[1]
    secrets = [password.encode(), base64.b64encode(f"admin:{password}".encode())]
    client = profiled_app.test_client()
    shared = mlflow_server.ids["experiments"]["shared-exp"]
    requests = [("/health", {}), ("/mlflow/experiments", {}),
                ("/mlflow/runs", {"experiment_id": shared, "limit": 20}),
                ("/mlflow/runs", {"experiment_id": shared, "limit": 20}),  # from the cache
                ("/mlflow/runs", {"run_id": "0" * 32}),                    # an MLflow error
                ("/mlflow/runs", {"experiment_name": "no-such-exp"}),
                ("/mlflow/runs", {"experiment_name": "secret-exp", "http_timeout": 0.001})]
    seen = []
    for route, fields in requests:
        response = client.post(route, json={"profile": "prod", **fields})
        assert response.status_code != 500
        seen.append(response.get_data() + str(response.headers).encode())
    seen.append(client.get("/openapi.json").get_data())
    store = redis.Redis.from_url(redis_url)
    keys = list(store.scan_iter(match=redis_prefix + "*"))
    assert any(b":run:" in key for key in keys) and any(b":grant:" in key for key in keys)
    seen += keys + [store.get(key) or b"" for key in keys]
    seen.append(caplog.text.encode())
    for secret in secrets:
        assert not [text[:200] for text in seen if secret in text]


def test_profiles_from_a_file(tmp_path, mlflow_server):
    path = tmp_path / "profiles.json"
    path.write_text(profiles_of(mlflow_server, prod="bob"))
    app = create_app({"TESTING": True, "MLFLOW_PROFILES_FILE": str(path)})
    response = app.test_client().post("/mlflow/experiments", json={"profile": "prod"})
    assert response.status_code == 200 and response.get_json()["total_experiments"] == 4


# --- Authorization: Basic ---------------------------------------------------------------

def test_authorization_header_instead_of_body_fields(client, mlflow_server):
    body = {"tracking_uri": mlflow_server.uri, "http_timeout": 30}
    response = client.post("/mlflow/experiments", json=body,
                           headers=basic("alice", mlflow_server.users["alice"]))
    assert response.status_code == 200
    assert "secret-exp" not in {e["name"] for e in response.get_json()["experiments"]}
    health = client.post("/health", json=body, headers=basic("bob", mlflow_server.users["bob"]))
    assert health.get_json()["status"] == "healthy"
    assert health.get_json()["authentication"] == "basic_auth"


@pytest.mark.parametrize("user, password", [("alice", "wrong-password"), ("jörg", "pässwörd")])
def test_authorization_header_credentials_mlflow_rejects_are_401(client, mlflow_server, user,
                                                                 password, caplog):
    caplog.set_level(logging.DEBUG)
    response = client.post("/mlflow/experiments", json={"tracking_uri": mlflow_server.uri},
                           headers=basic(user, password))
    body = assert_error(response, 401)
    assert user in body["message"] and password not in body["message"]
    assert password not in caplog.text and basic(user, password)["Authorization"] not in caplog.text


@pytest.mark.parametrize("fields", [{"username": "alice"}, {"password": "x"},
                                    {"username": "alice", "password": "x"}])
def test_authorization_header_and_body_credentials_is_422(client, mlflow_server, fields, mlflow_calls):
    response = client.post("/mlflow/experiments", json={"tracking_uri": mlflow_server.uri, **fields},
                           headers=basic("alice", mlflow_server.users["alice"]))
    assert set(assert_error(response, 422)["errors"]) == set(fields)
    assert mlflow_calls == []


@pytest.mark.parametrize("header", ["Bearer token", "Basic not-base64!", "Basic " + base64.b64encode(b"nocolon").decode()])
def test_malformed_authorization_header_is_422(client, mlflow_server, header, mlflow_calls):
    response = client.post("/mlflow/experiments", json={"tracking_uri": mlflow_server.uri},
                           headers={"Authorization": header})
    body = assert_error(response, 422)
    assert "Authorization" in body["errors"] and "Malformed Authorization header" in body["message"]
    assert mlflow_calls == []


def test_authorization_header_goes_through_the_allowlist(proxy, mlflow_server):
    app = create_app({"TESTING": True, "ALLOWED_TRACKING_URIS": mlflow_server.uri})
    response = app.test_client().post("/mlflow/experiments", json={"tracking_uri": proxy.uri},
                                      headers=basic("admin", mlflow_server.admin[1]))
    assert_error(response, 403)
    assert proxy.count() == 0


# --- MAX_RESPONSE_POINTS ------------------------------------------------------------------

def points_of(body):
    return sum(m["total_points"] for run in body["runs"] for m in run["metrics_history"])


def test_max_response_points(cached_app, mlflow_server, as_user, mlflow_calls):
    query = as_user(run_id=mlflow_server.ids["runs"]["long"])  # a finished run: cached
    total = points_of(cached_app().test_client().post("/mlflow/runs", json=query).get_json())
    assert total > 1000

    exact = cached_app(MAX_RESPONSE_POINTS=total).test_client()
    assert points_of(exact.post("/mlflow/runs", json=query).get_json()) == total

    mlflow_calls.clear()
    tight = cached_app(MAX_RESPONSE_POINTS=total - 1).test_client()
    body = assert_error(tight.post("/mlflow/runs", json=dict(query, refresh=True)), 422)
    assert "MAX_RESPONSE_POINTS" in body["message"] and "limit" in body["message"]
    assert any("history" in call for call in mlflow_calls)  # counted after fetching ...

    # ... and, for cached runs, from their cache header, before any history is fetched
    mlflow_calls.clear()
    assert_error(tight.post("/mlflow/runs", json=query), 422)
    assert not any("history" in call for call in mlflow_calls)
    # a narrower query fits
    narrow = tight.post("/mlflow/runs", json=dict(query, include_metric_history=False))
    assert narrow.status_code == 200


def test_max_response_points_counts_across_runs(cached_app, as_user):
    """Cached and fresh runs together: shared-exp has finished (cached) and running runs."""
    query = as_user(experiment_name="shared-exp", limit=20)
    total = points_of(cached_app().test_client().post("/mlflow/runs", json=query).get_json())
    assert points_of(cached_app(MAX_RESPONSE_POINTS=total).test_client()
                     .post("/mlflow/runs", json=query).get_json()) == total
    tight = cached_app(MAX_RESPONSE_POINTS=total - 1).test_client()
    assert_error(tight.post("/mlflow/runs", json=query), 422)


# --- RATE_LIMIT ---------------------------------------------------------------------------

def test_rate_limit_with_redis_storage(cached_app, redis_url, redis_prefix, mlflow_server, as_user):
    # behind one proxy (PROXY_FIX_HOPS=1): it tells the client's address in X-Forwarded-For
    worker = cached_app(RATE_LIMIT="3/hour", PROXY_FIX_HOPS=1).test_client()
    other_worker = cached_app(RATE_LIMIT="3/hour", PROXY_FIX_HOPS=1).test_client()  # shares the counters in Redis
    for _ in range(3):
        assert worker.post("/mlflow/experiments", json=as_user()).status_code == 200
    for client in (worker, other_worker):
        response = client.post("/mlflow/experiments", json=as_user())
        body = assert_error(response, 429)
        assert "RATE_LIMIT" in body["message"]
        assert 1 <= int(response.headers["Retry-After"]) <= 3600
    # counted per client address (after ProxyFix), and probes are not limited
    elsewhere = worker.post("/mlflow/experiments", json=as_user(),
                            headers={"X-Forwarded-For": "10.1.2.3"})
    assert elsewhere.status_code == 200
    assert worker.get("/healthz").status_code == 200 and worker.get("/readyz").status_code == 200
    keys = list(redis.Redis.from_url(redis_url).scan_iter(match=redis_prefix + "ratelimit*"))
    assert keys


def test_rate_limit_off_by_default(client, mlflow_server, as_user):
    for _ in range(5):
        response = client.post("/health", json={"tracking_uri": "http://127.0.0.1:9"})
        assert response.status_code == 200  # answered, not limited
        assert response.get_json()["status"] == "unhealthy" and response.get_json()["error_code"] == 502


def test_rate_limit_survives_redis_going_away(mlflow_server, as_user):
    with RedisServer() as private:
        app = create_app({"TESTING": True, "REDIS_URL": private.url, "SECRET_KEY": "k",
                          "RATE_LIMIT": "4/hour"})
        client = app.test_client()
        assert client.post("/mlflow/experiments", json=as_user()).status_code == 200
        private.stop()
        statuses = [client.post("/mlflow/experiments", json=as_user()).status_code
                    for _ in range(5)]
        # no 500s: counted in memory meanwhile, and still limited there
        assert statuses == [200, 200, 200, 200, 429]


def test_bad_rate_limit_stops_start_up():
    with pytest.raises(ValueError, match="RATE_LIMIT"):
        create_app({"TESTING": True, "RATE_LIMIT": "lots"})


# --- /healthz and /readyz -------------------------------------------------------------------

def test_probes_without_redis(client, mlflow_calls):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok", "cache": "SimpleCache"}
    assert mlflow_calls == []


@pytest.mark.server
def test_readyz_follows_redis():
    with RedisServer() as private:
        app = create_app({"TESTING": True, "REDIS_URL": private.url, "SECRET_KEY": "k",
                          "CACHE_RETRY_AFTER": 0.5})
        client = app.test_client()
        assert client.get("/readyz").get_json() == {"status": "ok", "cache": "RedisCache"}
        private.stop()
        body = assert_error(client.get("/readyz"), 503)
        assert "RedisCache" in body["message"]
        assert client.get("/healthz").status_code == 200  # liveness does no I/O
        private.start()
        time.sleep(0.6)  # the cache's back-off after the failure (probes do not cut it short)
        assert client.get("/readyz").status_code == 200


def test_probes_are_not_in_the_openapi_spec_nor_take_posts(client):
    assert not {"/healthz", "/readyz"} & set(client.get("/openapi.json").get_json()["paths"])
    assert_error(client.post("/healthz"), 405)


# --- under gunicorn, as deployed --------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def gunicorn_with_limit(redis_url, redis_prefix, tmp_path):
    """gunicorn with two workers, RATE_LIMIT=6/hour, counters in the test's Redis prefix."""
    env = {"RATE_LIMIT": "6/hour", "CACHE_KEY_PREFIX": redis_prefix}
    with gunicorn(tmp_path, redis_url, workers=2, env=env) as svc:
        yield svc.base, svc.env


def dockerfile_healthcheck() -> str:
    """The Python code of the Dockerfile's HEALTHCHECK."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK"))
    return shlex.split(line.split(" CMD ", 1)[1])[2]  # python -c <code>


def test_gunicorn_workers_share_the_limit_and_healthcheck_works(gunicorn_with_limit):
    base, env = gunicorn_with_limit
    statuses = []
    for _ in range(10):  # a new connection each: both workers serve
        with requests.Session() as session:
            statuses.append(session.post(f"{base}/health", json={"tracking_uri": "http://127.0.0.1:9"},
                                         timeout=10).status_code)
    assert statuses == [200] * 6 + [429] * 4  # one budget in Redis, not one per worker
    check = subprocess.run([sys.executable, "-c", dockerfile_healthcheck()], env=env, timeout=10)
    assert check.returncode == 0
    unbound = dict(env, GUNICORN_BIND=f"127.0.0.1:{free_port()}")
    assert subprocess.run([sys.executable, "-c", dockerfile_healthcheck()], env=unbound,
                          capture_output=True, timeout=10).returncode != 0


def test_rate_limit_storage_is_the_caches_redis():
    from limits.storage import storage_from_string

    from app.cache.settings import limiter_storage as storage
    from config import Config

    base = {k: getattr(Config, k) for k in dir(Config) if k.isupper()}
    base.update(REDIS_URL=None, REDIS_SENTINELS=None, REDIS_CLUSTER=None, CACHE_KEY_PREFIX="p:")
    assert storage(base) == ("memory://", {})
    uri, options = storage(dict(base, REDIS_URL="redis://r:6379/2"))
    assert uri == "redis://r:6379/2" and options["key_prefix"] == "p:ratelimit"
    assert "password" not in options  # REDIS_URL carries its own
    uri, options = storage(dict(base, REDIS_SENTINELS="s1:26379, s2:26379",
                                REDIS_SENTINEL_MASTER="main", REDIS_PASSWORD="pw"))
    assert uri == "redis+sentinel://s1:26379,s2:26379/main" and options["password"] == "pw"
    storage_from_string(uri, **options)  # limits accepts it (connects lazily)
    uri, _ = storage(dict(base, REDIS_CLUSTER="c1:7000,c2:7000"))
    assert uri == "redis+cluster://c1:7000,c2:7000"


def test_openapi_documents_profile_and_the_connection_rule(client):
    spec = client.get("/openapi.json").get_json()
    for name in ("Connection", "RunsQuery"):
        schema = spec["components"]["schemas"][name]
        assert "profile" in schema["properties"] and "tracking_uri" not in schema.get("required", [])
        with_uri, with_profile = schema["anyOf"]
        assert with_uri["required"] == ["tracking_uri"] and with_profile["required"] == ["profile"]
        assert {r["required"][0] for r in with_profile["not"]["anyOf"]} == \
            {"tracking_uri", "username", "password", "insecure_tls"}
    runs = spec["paths"]["/mlflow/runs"]["post"]["responses"]
    assert {"403", "404", "422", "429"} <= set(runs)
