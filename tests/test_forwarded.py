"""X-Forwarded-* headers are trusted only when the operator says how many proxies are in
front (PROXY_FIX_HOPS, default 0): a caller cannot choose its rate-limit budget or the
address the access log records, and a forwarded prefix can only be a plain path."""
import logging

import orjson
import pytest

from app import create_app

UNREACHABLE = {"tracking_uri": "http://127.0.0.1:9", "http_timeout": 5}  # refused at once
ACCESS = "mlflow_logs.access"


def limited(**config):
    return create_app({"TESTING": True, "RATE_LIMIT": "3/hour", **config}).test_client()


def peer(address):
    """A request coming from ``address`` (the TCP peer, as the WSGI server reports it)."""
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_forged_forwarded_for_values_share_one_budget():
    client = limited()
    statuses = [client.post("/health", json=UNREACHABLE,
                            headers={"X-Forwarded-For": f"10.9.0.{i}"}).status_code
                for i in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_a_forged_address_cannot_spend_another_clients_budget():
    client = limited()
    for _ in range(4):  # the attacker spends its own budget, whatever it claims to be
        client.post("/health", json=UNREACHABLE, headers={"X-Forwarded-For": "10.0.0.7"},
                    **peer("10.0.0.66"))
    assert client.post("/health", json=UNREACHABLE, **peer("10.0.0.7")).status_code == 200


def test_forwarded_for_is_trusted_with_proxy_fix_hops():
    client = limited(PROXY_FIX_HOPS=1)  # one proxy in front: it sets the client's address
    for i in range(3):
        assert client.post("/health", json=UNREACHABLE,
                           headers={"X-Forwarded-For": "10.0.0.5"}).status_code == 200
    assert client.post("/health", json=UNREACHABLE,
                       headers={"X-Forwarded-For": "10.0.0.5"}).status_code == 429
    assert client.post("/health", json=UNREACHABLE,
                       headers={"X-Forwarded-For": "10.0.0.6"}).status_code == 200


@pytest.fixture
def access_log(caplog):
    caplog.set_level(logging.INFO)
    logger = logging.getLogger(ACCESS)  # does not propagate: listen on it directly
    logger.addHandler(caplog.handler)
    yield lambda: [orjson.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS]
    logger.removeHandler(caplog.handler)


def test_access_log_client_is_the_real_peer(access_log):
    client = create_app({"TESTING": True}).test_client()
    client.post("/health", json=UNREACHABLE, headers={"X-Forwarded-For": "10.1.2.3"},
                **peer("10.0.0.66"))
    [line] = access_log()
    assert line["client"] == "10.0.0.66"


# --- X-Forwarded-Prefix ----------------------------------------------------------------------

@pytest.fixture
def behind_proxy():
    return create_app({"TESTING": True, "PROXY_FIX_HOPS": 1}).test_client()


def docs_page(client, prefix):
    # environ: the test client's header checks would refuse a CR/LF before the app saw it
    return client.get("/docs", environ_overrides={"HTTP_X_FORWARDED_PREFIX": prefix}).get_data(
        as_text=True)


@pytest.mark.parametrize("prefix", [
    "//evil.example", "//evil.example/", "/logs//evil.example", "/\\evil.example",
    "/a\r\n", "/a\x00", "https://evil.example", "evil.example", "/logs/../..",
    "/logs/./x", "/" + "a" * 300, "/a b", '/a"b', "/a<b", "/a,//evil.example",
    "/logs, //evil.example",
])
def test_a_forwarded_prefix_that_is_not_a_plain_path_is_dropped(behind_proxy, prefix):
    page = docs_page(behind_proxy, prefix)
    assert 'url: "/openapi.json"' in page
    assert "evil" not in page and "\\" not in page.split("<script>")[-1]


@pytest.mark.parametrize("prefix", ["/logs", "/logs/", "/team-a/mlflow_logs.v2", "/a%20b"])
def test_a_plain_forwarded_prefix_is_kept(behind_proxy, prefix):
    assert f'url: "{prefix.rstrip("/")}/openapi.json"' in docs_page(behind_proxy, prefix)


def test_no_forwarded_prefix_without_proxy_fix_hops():
    page = docs_page(create_app({"TESTING": True}).test_client(), "/logs")
    assert 'url: "/openapi.json"' in page
