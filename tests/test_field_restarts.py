"""Slow clients and restarts, with two hosts behind the reference nginx (deploy/nginx.conf)
and, for comparison, one gunicorn served directly.

* 40 sockets that send a request line and nothing more, 40 that stop midway through a body,
  and 8 that ask for a 13 MB answer and never read it: through nginx the service keeps
  answering /healthz and polls (nginx holds them, not gunicorn, and drops the stalled ones
  after client_header_timeout / client_body_timeout).
  Served by gunicorn directly, they hold its threads for as long as the clients stay:
  /healthz times out meanwhile, and answers again once they are gone (docs/operating.md).
* gunicorn's SIGHUP reload and a rolling restart of both hosts, one host after the other,
  while threads poll through nginx: no failed request.
"""
import time

import pytest
import requests

from tests.support.gunicorn import gunicorn
from tests.support.hosts import PREFIX_PATH, behind_nginx, print_field as field
from tests.support.nginx import Nginx, reference_template
from tests.support.seed import seed_big_run
from tests.support.poller import Poller
from tests.support.slow_clients import (body_stalled, closed_by_peer, healthz, never_reading,
                                        request_line_only)

pytestmark = pytest.mark.server

SLOW_SOCKETS = 40
NEVER_READING = 8
BIG_POINTS = 200_000


@pytest.fixture(scope="module")
def site(redis_url, tmp_path_factory):
    with behind_nginx(tmp_path_factory.mktemp("hosts"), redis_url,
                      env={"RUN_LIST_TTL": "300"}) as site:
        yield site


def body_for(server, run_id, http_timeout=60):
    username, password = server.admin
    return {"tracking_uri": server.uri, "username": username, "password": password,
            "run_id": run_id, "http_timeout": http_timeout}


@pytest.fixture(scope="module")
def big_body(site, mlflow_scratch_server):
    """A 13 MB answer, cached in the hosts' Redis by one cold fetch through nginx."""
    run_id = seed_big_run(mlflow_scratch_server.db_uri, BIG_POINTS)
    body = body_for(mlflow_scratch_server, run_id, http_timeout=300)
    answer = requests.post(f"{site.url}/mlflow/runs", json=body, timeout=330)
    assert answer.status_code == 200 and len(answer.content) > 12_000_000, answer.text[:300]
    return body


def test_slow_clients_through_nginx_leave_the_service_answering(site, big_body, mlflow_server):
    port = site.nginx.port
    # More stalled bodies than the two hosts have threads (2 x 2 x 8): served directly,
    # each would hold a gunicorn thread.
    slow = [request_line_only(port, "/mlflow-logs/mlflow/runs") for _ in range(SLOW_SOCKETS)] \
        + [body_stalled(port, "/mlflow-logs/mlflow/runs") for _ in range(SLOW_SOCKETS)]
    stuck = [never_reading(port, "/mlflow-logs/mlflow/runs", big_body)
             for _ in range(NEVER_READING)]
    try:
        poll = body_for(mlflow_server, mlflow_server.ids["runs"]["finished"])
        expected = requests.post(f"{site.url}/mlflow/runs", json=poll, timeout=70).json()
        t0 = time.monotonic()
        with Poller(f"{site.url}/mlflow/runs", poll, threads=2, pause=0.05) as poller:
            seconds = []
            while time.monotonic() - t0 < 12:   # past nginx's client_header_timeout (10 s)
                seconds.append(healthz(site.url))
                time.sleep(0.2)
        records = poller.snapshot()
        assert None not in seconds, seconds
        assert records and all(r.status == 200 and r.body == expected for r in records), \
            [r for r in records if r.status != 200][:3]
        # nginx, not the service, dropped the clients that stopped sending.
        assert all(closed_by_peer(sock) for sock in slow)
        field("slow clients via nginx", f"{SLOW_SOCKETS} silent, {SLOW_SOCKETS} with a stalled "
              f"body and {NEVER_READING} never-reading "
              f"sockets: {len(seconds)} /healthz (slowest {max(seconds):.2f} s), "
              f"{len(records)} polls, all answered")
    finally:
        for sock in slow + stuck:
            sock.close()


@pytest.fixture
def direct(site, tmp_path):
    """One gunicorn (1 worker, 8 threads) on the hosts' cache, no proxy in front."""
    shared = {k: site.hosts["a"].env[k] for k in ("SECRET_KEY", "CACHE_KEY_PREFIX", "REDIS_URL",
                                                  "RUN_LIST_TTL")}
    with gunicorn(tmp_path, shared.pop("REDIS_URL"), workers=1, threads=8, env=shared) as svc:
        yield svc


def test_slow_clients_served_by_gunicorn_directly_hold_its_threads(direct, big_body):
    """The documented behaviour without a buffering proxy (docs/operating.md: Slow clients)."""
    port = int(direct.base.rsplit(":", 1)[1])
    assert healthz(direct.base) is not None
    for name, make in (("silent", lambda: request_line_only(port, "/mlflow/runs")),
                       ("never-reading", lambda: never_reading(port, "/mlflow/runs", big_body))):
        count = SLOW_SOCKETS if name == "silent" else NEVER_READING
        socks = [make() for _ in range(count)]
        try:
            time.sleep(1)
            # Every thread is held, and stays held: gunicorn defers only connections that
            # sent nothing at all for 5 s; it has no timeout for one that stops midway.
            assert healthz(direct.base) is None
            time.sleep(6)
            assert healthz(direct.base) is None
        finally:
            for sock in socks:
                sock.close()
        back = time.monotonic()
        while healthz(direct.base, timeout=1) is None:
            assert time.monotonic() - back < 30, f"gunicorn did not recover from {name} clients"
        field(f"gunicorn direct, {count} {name} sockets",
              f"/healthz timed out while they stayed; answered {time.monotonic() - back:.1f} s "
              "after they closed")


def stalled_bodies_stall_healthz(nginx) -> bool:
    """40 bodies stalled midway sent through ``nginx``: does /healthz through it stop
    answering while they stay (5 s, inside nginx's client_body_timeout of 10 s)?"""
    socks = [body_stalled(nginx.port, f"{PREFIX_PATH}/mlflow/runs") for _ in range(SLOW_SOCKETS)]
    try:
        time.sleep(1)
        return any(healthz(nginx.url + PREFIX_PATH) is None for _ in range(3))
    finally:
        for sock in socks:
            sock.close()


def test_request_buffering_is_what_keeps_stalled_bodies_off_gunicorn(direct):
    """The reference's ``proxy_request_buffering on`` is what the slow-client test above
    relies on: the same nginx with it off hands each stalled body to a gunicorn thread as
    it arrives, and 40 of them stall one worker of 8 threads."""
    address = direct.base.removeprefix("http://")
    reference = reference_template()
    unbuffered = reference.replace("proxy_request_buffering on;", "proxy_request_buffering off;")
    assert unbuffered != reference
    outcome = {}
    for name, template in (("reference", reference), ("request buffering off", unbuffered)):
        with Nginx(template, upstreams=[address]) as nginx:
            outcome[name] = stalled_bodies_stall_healthz(nginx)
        while healthz(direct.base, timeout=1) is None:   # gunicorn's threads let go
            time.sleep(0.5)
    assert outcome == {"reference": False, "request buffering off": True}, outcome
    field("stalled bodies through nginx, one gunicorn of 8 threads",
          "/healthz answered with the reference config; stalled with proxy_request_buffering off")


def poll_during(site, mlflow_server, action):
    body = body_for(mlflow_server, mlflow_server.ids["runs"]["finished"])
    expected = requests.post(f"{site.url}/mlflow/runs", json=body, timeout=70).json()
    with Poller(f"{site.url}/mlflow/runs", body, threads=4, pause=0.02) as poller:
        poller.wait_for(lambda rs: len(rs) >= 20, "polls before the restart")
        detail = action()
        n = len(poller.snapshot())
        poller.wait_for(lambda rs: len(rs) >= n + 20, "polls after the restart")
    records = poller.snapshot()
    failed = [r for r in records if r.status != 200 or r.body != expected]
    assert not failed, failed[:3]
    return len(records), detail


def test_sighup_reload_of_both_hosts_fails_no_request(site, mlflow_server):
    def reload():
        return [site.reload(name) for name in ("a", "b")]
    requests_seen, seconds = poll_during(site, mlflow_server, reload)
    field("SIGHUP reload", f"{requests_seen} polls, 0 failed; back in rotation after "
          + ", ".join(f"{s:.1f}" for s in seconds) + " s")


def test_rolling_restart_of_both_hosts_fails_no_request(site, mlflow_server):
    def rolling():
        return [site.restart(name) for name in ("a", "b")]
    lines_before = len(site.nginx.access_log.read_text().splitlines())
    requests_seen, seconds = poll_during(site, mlflow_server, rolling)
    retried = sum(", " in line for line in
                  site.nginx.access_log.read_text().splitlines()[lines_before:])
    field("rolling restart", f"{requests_seen} polls, 0 failed ({retried} sent on to the other "
          "host by nginx); each host back after " + ", ".join(f"{s:.1f}" for s in seconds) + " s")
