"""Faults under load: the service as deployed (gunicorn, 2 workers) while a few dashboards
poll it, with its Redis killed, its MLflow restarted, or one of its workers killed.

Real parts only: a basic-auth MLflow of this module's own (test b stops and restarts it),
a private redis-server (test a kills it), gunicorn started like the benchmarks start it.
Correctness tests: outcomes are asserted; every wait is a hang guard, not a timing.
"""
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.support.mlflow_fixtures import copy_of_seeded
from tests.support.gunicorn import gunicorn
from tests.support.processes import children
from tests.support.mlflow_server import MlflowServer
from tests.support.poller import Poller
from tests.support.proxy import MlflowProxy
from tests.support.redis_server import RedisServer

HTTP_TIMEOUT = 30  # the callers' http_timeout; a fault must be answered well within it
CACHE_RETRY_AFTER = 1


@pytest.fixture(scope="module")
def fault_mlflow(tmp_path_factory, _mlflow_seeded_db):
    """A basic-auth MLflow on its own copy of the seed data: test b restarts it, so it is
    not shared with other modules. MLflow's auth cache is on (as MLflow recommends for
    busy servers) so that the polls that miss the cache do not queue on password checks."""
    data = copy_of_seeded(tmp_path_factory, "mlflow-faults", _mlflow_seeded_db)
    with MlflowServer(data.path, auth=True, ids=data.ids, auth_cache_ttl=30) as server:
        yield server


def runs_body(server, tracking_uri=None, **fields):
    username, password = server.admin
    return {"tracking_uri": tracking_uri or server.uri, "username": username,
            "password": password, "run_id": server.ids["runs"]["finished"],
            "http_timeout": HTTP_TIMEOUT, **fields}


def expected_answer(base, body):
    response = requests.post(f"{base}/mlflow/runs", json=body, timeout=HTTP_TIMEOUT + 5)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["runs"][0]["run_id"] == body["run_id"]
    assert answer["runs"][0]["metrics_history"]  # a real answer, histories and all
    return answer


def is_dead(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet: either way its sockets are closed."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone while its stat file was read
        return True


def wait_until(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_redis_killed_mid_load(tmp_path, fault_mlflow):
    """No failed request and no wrong answer while Redis is gone; caching resumes by
    itself once Redis is back on the same port (empty: it kept nothing)."""
    with RedisServer() as redis_server, MlflowProxy(fault_mlflow.uri) as proxy, \
            gunicorn(tmp_path, redis_server.url, workers=2, env={
                "CACHE_RETRY_AFTER": str(CACHE_RETRY_AFTER),
                # No list refresh during the test: a HIT then means Redis answered.
                "RUN_LIST_TTL": "300",
                # Every run read from Redis: the workers' own copies would (rightly) serve
                # it while Redis is down, and this test is about Redis going away.
                "LOCAL_COPIES_MB": "0"}) as svc:
        body = runs_body(fault_mlflow, proxy.uri)
        expected = expected_answer(svc.base, body)
        with Poller(f"{svc.base}/mlflow/runs", body, threads=4) as poller:
            poller.wait_for(lambda rs: sum(r.cache == "HIT" for r in rs) >= 20, "cached answers")
            redis_server.stop()  # SIGKILL; returns once the process is reaped
            killed = time.monotonic()
            # Long enough for every worker to retry the dead Redis a few times.
            poller.wait_for(lambda rs: sum(r.start > killed for r in rs) >= 12
                            and rs[-1].start > killed + 3 * CACHE_RETRY_AFTER, "polls without Redis")
            redis_server.start()  # same port, empty
            restarted = time.monotonic()
            poller.wait_for(lambda rs: sum(r.start > restarted + CACHE_RETRY_AFTER
                                           and r.cache == "HIT" for r in rs) >= 20,
                            "cached answers after Redis came back")
        records = poller.snapshot()

        failed = [r for r in records if r.status != 200 or r.body != expected]
        assert not failed, failed[:3]
        during = [r for r in records if killed < r.start and r.end < restarted]
        assert during and all(r.cache == "MISS" for r in during)  # MLflow answered them
        # Caching resumed: polls are served without asking MLflow anything.
        proxy.reset()
        after = Poller(f"{svc.base}/mlflow/runs", body, threads=2)
        with after:
            after.wait_for(lambda rs: len(rs) >= 20, "20 more polls")
        assert {r.cache for r in after.snapshot()} == {"HIT"}
        assert all(r.status == 200 and r.body == expected for r in after.snapshot())
        assert proxy.count() == 0


def test_mlflow_restarted_mid_load(tmp_path, fault_mlflow):
    """While MLflow is down every poll gets a quick 502/504 in the one error shape;
    once it is back, every poll succeeds again."""
    # "refresh": every poll asks MLflow, as polls of running runs do.
    body = runs_body(fault_mlflow, refresh=True)
    with gunicorn(tmp_path, None, workers=2) as svc:
        expected = expected_answer(svc.base, body)
        with Poller(f"{svc.base}/mlflow/runs", body, threads=2, pause=0.05) as poller:
            poller.wait_for(lambda rs: sum(r.status == 200 for r in rs) >= 4, "answers")
            stopping = time.monotonic()
            fault_mlflow.stop()  # SIGTERM: polls during its shutdown may get either answer
            stopped = time.monotonic()
            poller.wait_for(lambda rs: sum(r.start > stopped for r in rs) >= 6, "polls while down")
            fault_mlflow.start()  # same port and stores; returns once it answers /health
            back = time.monotonic()
            poller.wait_for(lambda rs: sum(r.start > back for r in rs) >= 6, "polls after restart")
        records = poller.snapshot()

    assert all(r.status in (200, 502, 504) for r in records), \
        [r for r in records if r.status not in (200, 502, 504)][:3]
    assert all(r.body == expected for r in records if r.status == 200)
    before = [r for r in records if r.end < stopping]
    gap = [r for r in records if stopped < r.start and r.end < back]
    after = [r for r in records if r.start > back]
    assert before and all(r.status == 200 for r in before), before
    assert len(gap) >= 6
    for r in gap:
        assert r.status in (502, 504), r
        assert r.body["success"] is False and r.body["code"] == r.status, r.body
        assert "MLflow" in r.body["message"] and r.body["detail"] == r.body["message"]
        # Quick: far below the http_timeout the caller allowed (a hang guard, not a timing).
        assert r.end - r.start < HTTP_TIMEOUT / 3, r
    assert after and all(r.status == 200 for r in after), [r for r in after if r.status != 200][:3]


def test_worker_killed_mid_load(tmp_path, fault_mlflow, redis_url, redis_prefix):
    """SIGKILL one of the two workers: the other keeps answering, the master starts a
    new one, and no answer is ever wrong. Only requests that the dead worker was
    handling at that instant can be lost (their connection is reset)."""
    body = runs_body(fault_mlflow)
    with gunicorn(tmp_path, redis_url, workers=2,
                 env={"CACHE_KEY_PREFIX": redis_prefix}) as svc:
        expected = expected_answer(svc.base, body)
        workers = children(svc.master.pid)
        assert len(workers) == 2, workers
        threads = 4
        with Poller(f"{svc.base}/mlflow/runs", body, threads=threads) as poller:
            poller.wait_for(lambda rs: len(rs) >= 40, "answers")
            victim = workers[0]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: is_dead(victim), f"worker {victim} to die")
            dead = time.monotonic()
            wait_until(lambda: len(children(svc.master.pid)) == 2
                       and victim not in children(svc.master.pid), "a new worker")
            respawned = time.monotonic()
            poller.wait_for(lambda rs: sum(r.start > respawned for r in rs) >= 40,
                            "answers after the respawn")
        records = poller.snapshot()
        new_workers = children(svc.master.pid)

    assert victim not in new_workers and len(new_workers) == 2
    answered = [r for r in records if r.status is not None]
    assert all(r.status == 200 and r.body == expected for r in answered), \
        [r for r in answered if r.status != 200 or r.body != expected][:3]
    lost = [r for r in records if r.status is None]
    # At most the requests in flight on the killed worker: one per polling thread.
    assert len(lost) <= threads and all(r.start < dead for r in lost), lost
    assert all(r.status == 200 for r in records if r.start > dead)
    assert sum(r.start > respawned for r in records) >= 40
