"""The service on Redis's distributed modes: a Redis Cluster (3 masters + 3 replicas) and
Sentinel (master, replica, 3 sentinels), configured by REDIS_CLUSTER / REDIS_SENTINELS.

Each topology is started once for the module, with one gunicorn (2 workers) on it and a
counting proxy in front of the session's MLflow. For each: every use of Redis works
(cached runs, grants, listings, single-flight locks, rate-limit counters) with no cache
error at all (a CROSSSLOT refusal would be one: the store turns it into a miss), and a
master SIGKILLed while threads poll fails no request, after which the cache answers again
(``X-Cache: HIT``, 0 MLflow calls). Figures are printed as ``FIELD ...`` (``pytest -s``).
"""
import re
import shutil
import threading
import time

import pytest
import redis
import requests
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient
from redis.sentinel import Sentinel

from tests.support.gunicorn import gunicorn
from tests.support.poller import Poller
from tests.support.proxy import MlflowProxy
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_sentinel import MASTER_NAME, RedisSentinelSet

pytestmark = pytest.mark.server

PREFIX = "field-redis:"
HTTP_TIMEOUT = 30
RATE = "100000/hour"


def field(what, value):
    print(f"FIELD {what}: {value}")


class ClusterSetup:
    """A RedisCluster as the tests drive it: the service's env, a client, a failover."""
    name = "cluster"

    def __init__(self):
        self.redis = RedisCluster().__enter__()
        self.env = {"REDIS_CLUSTER": self.redis.env_value}
        self.client = ClusterClient(startup_nodes=[ClusterNode(*n.split(":"))
                                                   for n in self.redis.nodes])

    def keys(self):
        return {k.decode() for k in self.client.scan_iter(
            match=PREFIX + "*", target_nodes=ClusterClient.PRIMARIES)}

    def kill_master_of(self, key) -> str:
        """SIGKILL the master serving ``key``: the one whose failover the test is about."""
        self.killed = self.redis.master_for_key(key)
        self.redis.kill(self.killed)
        return self.killed

    def wait_for_failover(self) -> float:
        return self.redis.wait_for_failover(self.killed)

    def restart(self):
        self.redis.restart(self.killed)

    def close(self):
        self.client.close()
        self.redis.close()


class SentinelSetup:
    name = "sentinel"

    def __init__(self):
        self.redis = RedisSentinelSet().__enter__()
        self.env = {"REDIS_SENTINELS": self.redis.sentinels, "REDIS_SENTINEL_MASTER": MASTER_NAME}
        self.client = Sentinel(self.redis.sentinel_addresses, socket_timeout=1).master_for(
            MASTER_NAME, socket_timeout=1)

    def keys(self):
        return {k.decode() for k in self.client.scan_iter(match=PREFIX + "*")}

    def kill_master_of(self, key) -> str:
        self.killed = self.redis.kill_master()   # one master holds every key
        return self.killed

    def wait_for_failover(self) -> float:
        return self.redis.wait_for_failover()

    def restart(self):
        self.redis.restart(self.killed)

    def close(self):
        self.client.close()
        self.redis.close()


@pytest.fixture(scope="module", params=[ClusterSetup, SentinelSetup], ids=["cluster", "sentinel"])
def setup(request):
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("not installed: redis-server, redis-cli (apt-get install redis-server)")
    t0 = time.monotonic()
    setup = request.param()
    field(f"{setup.name} start s", f"{time.monotonic() - t0:.1f}")
    yield setup
    setup.close()


@pytest.fixture(scope="module")
def mlflow_proxy(mlflow_server):
    with MlflowProxy(mlflow_server.uri) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def service(setup, tmp_path_factory):
    env = dict(setup.env, SECRET_KEY="field-redis-secret", CACHE_KEY_PREFIX=PREFIX,
               RATE_LIMIT=RATE,
               # Back to Redis soon after a failure; no list refresh within a test.
               CACHE_RETRY_AFTER="1", RUN_LIST_TTL="300",
               # Every run read from Redis: a worker's own copy would (rightly) serve it
               # while Redis fails over, and these tests are about Redis.
               LOCAL_COPIES_MB="0")
    with gunicorn(tmp_path_factory.mktemp(f"gunicorn-{setup.name}"), workers=2, env=env) as svc:
        yield svc


def runs_body(mlflow_server, proxy, run="finished", **fields):
    username, password = mlflow_server.admin
    return {"tracking_uri": proxy.uri, "username": username, "password": password,
            "run_id": mlflow_server.ids["runs"][run], "http_timeout": HTTP_TIMEOUT, **fields}


def post(service, path, body):
    return requests.post(f"{service.base}{path}", json=body, timeout=HTTP_TIMEOUT + 5)


def cache_errors(service) -> float:
    text = requests.get(f"{service.base}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(r"^mlflow_logs_cache_errors_total\{[^}]*\} (\S+)",
                                            text, re.M))


def test_every_use_of_redis_works_with_no_cache_error(setup, service, mlflow_server, mlflow_proxy):
    assert requests.get(f"{service.base}/readyz", timeout=5).status_code == 200
    errors_before = cache_errors(service)
    # Runs: two cold requests for the same uncached run at once; the single-flight lock
    # lets one of them fetch its history, the other waits and reads the cache.
    body = runs_body(mlflow_server, mlflow_proxy, run="long")
    mlflow_proxy.reset()
    answers = [None, None]
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, post(
        service, "/mlflow/runs", body))) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert answers[0].json() == answers[1].json()
    history = [p for p in mlflow_proxy.paths if "metrics/get-history" in p]
    assert history and len(set(history)) == len(history)   # one fetch: the lock held
    # Cached: grants, the run, its series, its generation. Nothing from MLflow.
    mlflow_proxy.reset()
    again = post(service, "/mlflow/runs", body)
    assert again.headers["X-Cache"] == "HIT" and mlflow_proxy.count() == 0
    assert again.json() == answers[0].json()
    # A listing (a run search by experiment; finished runs only, as only those are
    # cached), cached too.
    listing = runs_body(mlflow_server, mlflow_proxy, experiment_name="cap-exp")
    listing.pop("run_id")
    first = post(service, "/mlflow/runs", listing)
    assert first.status_code == 200 and len(first.json()["runs"]) >= 2, first.text
    mlflow_proxy.reset()
    second = post(service, "/mlflow/runs", listing)
    assert second.json() == first.json()
    assert mlflow_proxy.count() == 0, mlflow_proxy.paths
    keys = setup.keys()
    kinds = {key[len(PREFIX):].split(":", 1)[0] for key in keys}
    assert {"grant", "gen", "run", "list", "ratelimit"} <= kinds, kinds
    # The listing read its runs' entries and generations with one multi-key read each
    # (keys in different slots: mget_nonatomic on a cluster).
    assert sum(k.startswith(PREFIX + "run:") for k in keys) >= 3
    counter = next(k for k in keys if k.startswith(PREFIX + "ratelimit"))
    assert int(setup.client.get(counter)) >= 5   # every /mlflow request above counted
    assert cache_errors(service) == errors_before
    assert "CROSSSLOT" not in service.log.read_text() and "cache: " not in service.log.read_text()


def test_master_killed_while_polling_fails_no_request(setup, service, mlflow_server,
                                                      mlflow_proxy):
    body = runs_body(mlflow_server, mlflow_proxy)
    expected = post(service, "/mlflow/runs", body)
    assert expected.status_code == 200
    assert post(service, "/mlflow/runs", body).headers["X-Cache"] == "HIT"
    run_id = body["run_id"]
    entry = next(k for k in setup.keys() if k.startswith(PREFIX + "run:") and k.endswith(run_id))
    with Poller(f"{service.base}/mlflow/runs", body, threads=4, pause=0.02,
                timeout=HTTP_TIMEOUT + 5) as poller:
        poller.wait_for(lambda rs: len(rs) >= 20, "polls before the kill")
        killed = setup.kill_master_of(entry)
        t_kill = time.monotonic()
        failover = setup.wait_for_failover()
        t_failover = time.monotonic()
        # Caching resumes by itself: HITs again among the polls sent after the failover.
        poller.wait_for(lambda rs: any(r.start > t_failover and r.cache == "HIT" for r in rs),
                        "a HIT after the failover")
        time.sleep(1)
    records = poller.snapshot()
    failed = [r for r in records if r.status != 200 or r.body != expected.json()]
    assert not failed, failed[:3]
    during = [r for r in records if t_kill <= r.start <= t_failover]
    assert during, "no request was sent while the master was away"
    first_hit = min(r.end for r in records if r.start > t_kill and r.cache == "HIT")
    # The cache is back: the run from Redis, with no MLflow call at all.
    mlflow_proxy.reset()
    after = post(service, "/mlflow/runs", body)
    assert after.headers["X-Cache"] == "HIT" and mlflow_proxy.count() == 0
    assert after.json() == expected.json()
    field(f"{setup.name} failover", f"killed {killed}; promoted after {failover:.1f} s; "
          f"{len(records)} requests ({len(during)} during the failover, "
          f"{sum(r.cache != 'HIT' for r in during)} not from the cache), 0 failed; "
          f"first HIT {first_hit - t_kill:.1f} s after the kill")
    setup.restart()
