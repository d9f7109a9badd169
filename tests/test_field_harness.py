"""Smoke tests of the field harness (tests/support): the infrastructure alone, no service code.

Each part skips with the reason when its tool cannot run here (no root, no dockerd, ...).
The seconds each setup takes are printed as ``FIELD <what>: <value>`` (``pytest -s``).
"""
import http.server
import json
import shutil
import threading
import time
from collections import Counter

import pytest
import redis
import requests
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient
from redis.sentinel import Sentinel

from tests.support import base_image, docker_engine
from tests.support.docker_engine import DockerEngine
from tests.support.nginx import Nginx
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_sentinel import RedisSentinelSet
from tests.support.base_image import BASE_TAG
from tests.support.calls import user_body
from tests.support.processes import free_port
from tests.support.service_image import (NGINX_TAG, REDIS_TAG, SERVICE_TAG, ComposeStack,
                                         ServiceContainer, build_service_image,
                                         compose_available, ensure_nginx_image,
                                         ensure_redis_image)
from tests.support.seed import seed_big_run
from tests.support.slow_clients import body_stalled, healthz, never_reading, request_line_only

pytestmark = pytest.mark.server  # every test here starts real infrastructure

APP_UID = "10001"   # the Dockerfile's `useradd --uid`
SLOW_SOCKETS, NEVER_READING = 40, 8
BIG_POINTS = 100_000   # a ~6.5 MB answer: more than a never-reading socket's buffers


def field(what, value):
    print(f"FIELD {what}: {value}")


def needs(*tools):
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        pytest.skip(f"not installed: {missing} (apt-get install redis-server redis-tools nginx)")


# -- Docker: engine, base image, the service image --------------------------------------

@pytest.fixture(scope="module")
def engine():
    reason = docker_engine.why_not()
    if reason:
        pytest.skip(reason)
    with DockerEngine() as engine:
        field("dockerd start s", f"{engine.start_seconds:.1f} (ours: {engine.started_here})")
        yield engine


@pytest.fixture(scope="module")
def service_image(engine):
    reason = base_image.why_not(engine)
    if reason:
        pytest.skip(reason)
    base = base_image.ensure_base_image(engine)
    field("base image", base)
    field("base image MB", round(base.size_bytes / 1e6))
    field("service image build s", f"{build_service_image(engine):.1f}")
    field("service image MB", round(engine.image_size(SERVICE_TAG) / 1e6))
    return SERVICE_TAG


def test_base_image_is_a_python_3_11_with_pip_in_usr_local(engine, service_image):
    script = ("command -v python; command -v pip; "
              "python -c 'import sys; print(sys.prefix, sys.version_info[:2])'")
    out = engine.docker("run", "--rm", "--network", "host", BASE_TAG, "sh", "-c",
                        script).stdout.split("\n")
    assert out[:3] == ["/usr/local/bin/python", "/usr/local/bin/pip", "/usr/local (3, 11)"]


def test_service_container_healthy_non_root_and_stops_gracefully(engine, service_image):
    with ServiceContainer(engine, service_image) as box:
        field("container to /healthz s", f"{box.wait_http():.1f}")
        field("container to healthy s", f"{box.wait_healthy():.1f}")
        processes = box.top()
        assert processes and {p["UID"] for p in processes} == {APP_UID}
        assert box.exec("id", "-u").strip() == APP_UID
        # gunicorn itself is PID 1, so docker stop's SIGTERM reaches its master.
        assert "gunicorn" in box.exec("cat", "/proc/1/cmdline")
        code, seconds = box.stop(grace=10)
        field("docker stop s", f"{seconds:.1f}")
        logs = box.logs()
        assert code == 0 and seconds < 10, logs[-3000:]
        assert "Handling signal: term" in logs and "Shutting down: Master" in logs
        assert "[ERROR]" not in logs, logs[-3000:]


def test_the_container_serves_real_runs_and_finishes_them_on_stop(engine, service_image,
                                                                  mlflow_server, redis_url,
                                                                  redis_prefix):
    """The image against the test MLflow and Redis: a real /mlflow/runs answer, cached on
    the next poll; ``docker stop`` while a request is in flight lets it finish."""
    env = {"REDIS_URL": redis_url, "SECRET_KEY": "container-test", "CACHE_KEY_PREFIX": redis_prefix}
    with ServiceContainer(engine, service_image, env=env) as box:
        box.wait_http()
        query = user_body(mlflow_server, run_id=mlflow_server.ids["runs"]["finished"])
        first = requests.post(f"{box.url}/mlflow/runs", json=query, timeout=120)
        assert first.status_code == 200, first.text[:500]
        assert first.json()["runs"][0]["metrics_history"] and first.headers["X-Cache"] == "MISS"
        second = requests.post(f"{box.url}/mlflow/runs", json=query, timeout=120)
        assert second.headers["X-Cache"] == "HIT" and second.content == first.content
        # A slow request (every run of shared-exp fetched afresh from MLflow) in flight
        # when the container is told to stop.
        slow = user_body(mlflow_server, experiment_name="shared-exp", refresh=True)
        answers = []

        def poll():
            answer = requests.post(f"{box.url}/mlflow/runs", json=slow, timeout=120)
            answers.append((answer, time.monotonic()))

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(0.5)
        stop_began = time.monotonic()
        code, seconds = box.stop(grace=60)
        thread.join(timeout=120)
        [(answer, answered_at)] = answers
        field("docker stop with a request in flight s", f"{seconds:.1f}")
        assert answered_at > stop_began, "the request ended before the stop: it proves nothing"
        assert answer.status_code == 200 and answer.json()["total_runs"] > 1  # whole, not cut
        assert code == 0


def test_compose_stack_keeps_answering_behind_its_nginx_under_slow_clients(
        engine, service_image, mlflow_server, mlflow_scratch_server):
    """compose.yaml as an operator runs it: nginx (the reference config) in front of the
    service, and its Redis. Through the stack's nginx a real run is fetched and then a HIT;
    with 40 silent sockets, 40 stalled bodies and 8 clients never reading a large answer
    held open, /healthz and polls keep answering (served directly, fewer stall gunicorn:
    tests/test_field_restarts.py)."""
    if not compose_available():
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    field("redis image build s", f"{ensure_redis_image(engine):.1f}")
    field("nginx image build s", f"{ensure_nginx_image(engine):.1f}")
    port, redis_port, proxy_port = free_port(), free_port(), free_port()
    env = {"BASE_IMAGE": BASE_TAG, "REDIS_IMAGE": REDIS_TAG, "NGINX_IMAGE": NGINX_TAG,
           "SERVICE_IMAGE": SERVICE_TAG, "SERVICE_PORT": port, "REDIS_PORT": redis_port,
           "PROXY_PORT": proxy_port, "SECRET_KEY": "compose-test-key"}
    with ComposeStack(engine, env) as stack:
        field("compose up s", f"{stack.up():.1f}")
        box = ServiceContainer(engine, port=port)   # only for its waiting helpers
        box.name, box.started_at = f"{stack.project}_service_1", time.monotonic()
        box.wait_http("/readyz")    # 200 only once the service's Redis answers
        assert redis.Redis(port=redis_port).ping()
        assert box.exec("id", "-u").strip() == APP_UID
        site = f"http://127.0.0.1:{proxy_port}/mlflow-logs"
        deadline = time.monotonic() + 60
        while healthz(site) is None:
            assert time.monotonic() < deadline, stack.logs()[-4000:]
            time.sleep(0.2)
        poll = user_body(mlflow_server, run_id=mlflow_server.ids["runs"]["finished"])
        first = requests.post(f"{site}/mlflow/runs", json=poll, timeout=120)
        assert first.status_code == 200 and first.json()["runs"][0]["metrics_history"], \
            first.text[:500]
        assert requests.post(f"{site}/mlflow/runs", json=poll,
                             timeout=120).headers["X-Cache"] == "HIT"
        big = user_body(mlflow_scratch_server, http_timeout=300,
                        run_id=seed_big_run(mlflow_scratch_server.db_uri, BIG_POINTS, "compose"))
        answer = requests.post(f"{site}/mlflow/runs", json=big, timeout=330)
        assert answer.status_code == 200 and len(answer.content) > 6_000_000, answer.text[:300]
        path = "/mlflow-logs/mlflow/runs"
        socks = ([request_line_only(proxy_port, path) for _ in range(SLOW_SOCKETS)]
                 + [body_stalled(proxy_port, path) for _ in range(SLOW_SOCKETS)]
                 + [never_reading(proxy_port, path, big) for _ in range(NEVER_READING)])
        try:
            seconds, answers = [], []
            t0 = time.monotonic()
            while time.monotonic() - t0 < 5:
                seconds.append(healthz(site))
                answers.append(requests.post(f"{site}/mlflow/runs", json=poll, timeout=10))
        finally:
            for sock in socks:
                sock.close()
        assert None not in seconds, seconds
        assert all(a.status_code == 200 and a.content == first.content for a in answers)
        field("compose stack under slow clients", f"{len(seconds)} /healthz (slowest "
              f"{max(seconds):.2f} s) and {len(answers)} polls through its nginx, all answered")
        # Stalled bodies sent to gunicorn's own port (what the stack's nginx saves it from)
        # stall the service: the check above would fail without nginx in front. Twice as
        # many: the two workers accept unevenly, and one left with a free thread answers
        # a probe (seen with 40: the first of three probes answered in 3 ms).
        socks = [body_stalled(port, "/mlflow/runs") for _ in range(2 * SLOW_SOCKETS)]
        try:
            time.sleep(1)
            probes = [healthz(box.url) for _ in range(3)]
            assert None in probes, probes
        finally:
            for sock in socks:
                sock.close()
    project = f"label=com.docker.compose.project={stack.project}"
    assert engine.docker("ps", "-aq", "--filter", project).stdout.strip() == ""


# -- Redis Cluster ----------------------------------------------------------------------

def test_redis_cluster_fails_over_to_a_replica_keeping_replicated_writes():
    needs("redis-server", "redis-cli")
    with RedisCluster() as cluster:
        field("cluster start s", f"{cluster.start_seconds:.1f}")
        assert len(cluster.masters()) == 3 and len(cluster.nodes) == 6
        client = ClusterClient(startup_nodes=[ClusterNode(*n.split(":")) for n in cluster.nodes],
                               decode_responses=True)
        for i in range(50):
            client.set(f"field:{i}", i)
        master = cluster.master_for_key("field:7")
        replicas = set(cluster.replicas_of(master))
        # Replication is asynchronous: WAIT until the replica has the write a kill must keep.
        assert client.wait(1, 5000, target_nodes=client.get_node_from_key("field:7")) == 1
        cluster.kill(master)
        field("cluster failover s", f"{cluster.wait_for_failover(master):.1f}")
        assert cluster.master_for_key("field:7") in replicas
        assert client.get("field:7") == "7"
        client.set("field:after", "yes")
        cluster.restart(master)   # back as a replica of whoever took over
        assert master in cluster.replicas_of(cluster.master_for_key("field:7"))
        assert client.get("field:after") == "yes"
        client.close()


# -- Redis Sentinel ---------------------------------------------------------------------

def test_sentinel_promotes_the_replica_and_clients_follow_it():
    needs("redis-server")
    with RedisSentinelSet() as sentinels:
        field("sentinel start s", f"{sentinels.start_seconds:.1f}")
        assert len(sentinels.sentinels.split(",")) == 3
        master = Sentinel(sentinels.sentinel_addresses, socket_timeout=1).master_for(
            "mymaster", socket_timeout=1, decode_responses=True)
        master.set("field:before", "1")
        assert master.wait(1, 5000) == 1   # on the replica before the kill
        old = sentinels.kill_master()
        field("sentinel failover s", f"{sentinels.wait_for_failover():.1f}")
        assert sentinels.master_address() not in (old, None)
        assert master.get("field:before") == "1"   # asked of the promoted replica
        master.set("field:after", "2")
        assert master.get("field:after") == "2"
        field("sentinel old master back as replica s", f"{sentinels.restart(old):.1f}")


# -- nginx ------------------------------------------------------------------------------

PREFIX_PROXY = """
map $http_x_request_id $field_request_id {
    default $http_x_request_id;
    ""      $request_id;
}
upstream field_backends {
    @UPSTREAM_SERVERS@
}
server {
    listen @LISTEN@;
    location /mlflow-logs/ {
        proxy_pass http://field_backends/;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-Prefix /mlflow-logs;
        proxy_set_header X-Request-ID $field_request_id;
    }
}
"""


class EchoBackend:
    """A tiny HTTP server answering each GET with its name, the path and the headers it got."""

    def __init__(self, name):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({"backend": name, "path": self.path,
                                   "headers": dict(self.headers)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_nginx_round_robins_a_path_prefix_and_passes_forwarded_headers():
    needs("nginx")
    backends = [EchoBackend("a"), EchoBackend("b")]
    try:
        with Nginx(PREFIX_PROXY, upstreams=[b.address for b in backends]) as proxy:
            field("nginx start s", f"{proxy.start_seconds:.2f}")
            answers = [requests.get(f"{proxy.url}/mlflow-logs/healthz", timeout=5).json()
                       for _ in range(4)]
            assert Counter(a["backend"] for a in answers) == {"a": 2, "b": 2}
            assert {a["path"] for a in answers} == {"/healthz"}   # prefix stripped
            headers = answers[0]["headers"]
            assert headers["X-Forwarded-For"] == "127.0.0.1"
            assert headers["X-Forwarded-Proto"] == "http"
            assert headers["X-Forwarded-Host"] == f"127.0.0.1:{proxy.port}"
            assert headers["X-Forwarded-Prefix"] == "/mlflow-logs"
            assert len(headers["X-Request-ID"]) == 32       # made by nginx when absent
            mine = requests.get(f"{proxy.url}/mlflow-logs/x", headers={"X-Request-ID": "rid-42"},
                                timeout=5).json()
            assert mine["headers"]["X-Request-ID"] == "rid-42"   # a caller's id passes through
            assert "xrid=rid-42" in proxy.access_log.read_text()
            field("nginx reload s", f"{proxy.reload(upstreams=[backends[1].address]):.2f}")
            after = [requests.get(f"{proxy.url}/mlflow-logs/x", timeout=5).json()["backend"]
                     for _ in range(3)]
            assert after == ["b", "b", "b"]
    finally:
        for backend in backends:
            backend.close()
