"""What an MLflow server may send: limits on an answer's size (as sent and as decoded, read
as it comes), on the pages one read follows, and on the text fields the service echoes;
past each a 502 naming the operator's setting.

Fake upstreams (real HTTP servers on loopback) play the servers that send too much; the
service runs in-process with small limits so each case is quick.
tests/test_hostile_upstream.py measures what the default limits let a server cost a
gunicorn worker.
"""
import gzip
import json
import tracemalloc

import pytest

from app import create_app
from tests.support import hostile_mlflow
from tests.support.calls import mlflow_requests
from tests.support.fake_mlflow import API, EXPERIMENT, POINT, RUNS
from tests.support.hostile_mlflow import MB, HostileMlflow

SEARCH = f"{API}/experiments/search"
HISTORY = f"{API}/metrics/get-history"


def service(**config):
    return create_app({"TESTING": True, **config}).test_client()


def experiments(client, mlflow, route="/mlflow/experiments"):
    return client.post(route, json={"tracking_uri": mlflow.uri, "http_timeout": 10})


def experiments_page(count, name_chars=10, token=None):
    page = {"experiments": [
        dict(EXPERIMENT, experiment_id=str(i), name=f"{i}".rjust(name_chars, "e"))
        for i in range(count)]}
    return json.dumps(dict(page, next_page_token=token) if token else page).encode()


# --- content codings: gzip only, decoded a step at a time -------------------------------

def test_gzip_is_the_one_coding_asked_for_and_read(client):
    body = experiments_page(3)
    # Two gzip members, as a proxy may send: both are read.
    with HostileMlflow(hostile_mlflow.answer(gzip.compress(body[:20]) + gzip.compress(body[20:]),
                                             [("Content-Encoding", "gzip")])) as mlflow:
        response = experiments(client, mlflow)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["total_experiments"] == 3
        assert [headers["Accept-Encoding"] for headers in mlflow.seen] == ["gzip"]


NOT_ASKED = "a content coding the service did not ask for"


@pytest.mark.parametrize("coding, body, why", [
    ("br", b"\x1b\x00", NOT_ASKED),
    ("deflate", b"x\x9c\x03\x00", NOT_ASKED),
    ("gzip, gzip", gzip.compress(gzip.compress(b"{}")), NOT_ASKED),
    ("gzip", b"{}", "not valid gzip"),
    ("gzip", gzip.compress(experiments_page(3))[:-12], "gzip cut short"),
])
def test_a_body_that_cannot_be_decoded_is_a_502(client, coding, body, why):
    with HostileMlflow(hostile_mlflow.answer(body, [("Content-Encoding", coding)])) as mlflow:
        response = experiments(client, mlflow)
    assert response.status_code == 502
    assert response.get_json()["message"] == (
        f"MLflow at {mlflow.uri} answered {SEARCH} with a body that could not be decoded: {why}.")


# --- the size of an answer ---------------------------------------------------------------

def test_a_gzip_bomb_is_stopped_while_it_is_decoded():
    """50 MB of spaces (50 KB of gzip) against MLFLOW_MAX_ANSWER_MB=1: decoding stops at
    the limit, so the request never holds much more than 1 MB of it."""
    client = service(MLFLOW_MAX_ANSWER_MB=1)
    counted = mlflow_requests(client, SEARCH, "too_large")
    with HostileMlflow(hostile_mlflow.gzip_bomb(50)) as mlflow:
        tracemalloc.start()
        try:
            response = experiments(client, mlflow)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 502
    assert response.get_json()["message"] == (
        f"MLflow at {mlflow.uri} answered {SEARCH} with more than MLFLOW_MAX_ANSWER_MB=1 MB; "
        "the operator can raise the limit.")
    assert peak < 4 * MB, peak
    assert mlflow_requests(client, SEARCH, "too_large") == counted + 1  # the metric's label


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "read-to-the-end"])
def test_an_answer_larger_than_the_limit_is_a_502(length):
    client = service(MLFLOW_MAX_ANSWER_MB=1)
    with HostileMlflow(hostile_mlflow.huge_name(2, length=length)) as mlflow:
        response = experiments(client, mlflow)
    assert response.status_code == 502
    assert "with more than MLFLOW_MAX_ANSWER_MB=1 MB;" in response.get_json()["message"]


def test_an_answer_at_the_limit_is_read():
    body = experiments_page(1, name_chars=MB - len(experiments_page(1, name_chars=1)) + 1)
    assert len(body) == MB
    client = service(MLFLOW_MAX_ANSWER_MB=1, MLFLOW_MAX_FIELD_CHARS=MB)
    with HostileMlflow(hostile_mlflow.answer(body)) as mlflow:
        assert experiments(client, mlflow).status_code == 200


def test_a_searchs_pages_together_are_one_answer():
    """A search keeps every page's items: its pages share the one limit."""
    page = experiments_page(1000, name_chars=500, token="more")  # about 0.6 MB
    client = service(MLFLOW_MAX_ANSWER_MB=1)
    with HostileMlflow(hostile_mlflow.answer(page)) as mlflow:
        response = experiments(client, mlflow)
    assert response.status_code == 502
    message = response.get_json()["message"]
    assert "with more than MLFLOW_MAX_ANSWER_MB=1 MB over 2 pages;" in message
    assert mlflow.requests == 2


# --- pages ---------------------------------------------------------------------------------

def test_endless_search_pages_stop_at_max_pages():
    client = service(MLFLOW_MAX_PAGES=5)
    with HostileMlflow(hostile_mlflow.endless_pages) as mlflow:
        response = experiments(client, mlflow)
    assert response.status_code == 502
    assert response.get_json()["message"] == (
        f"MLflow at {mlflow.uri} answered {SEARCH} with more than MLFLOW_MAX_PAGES=5 pages (or "
        "more items than that many full pages); the operator can raise the limit.")
    assert mlflow.requests == 5


def pages(count):
    """experiments/search in ``count`` pages of one experiment each."""
    def behaviour(handler):
        number = int((handler.body or {}).get("page_token") or 0) + 1
        token = str(number) if number < count else None
        hostile_mlflow.answer(experiments_page(1, token=token))(handler)
    return behaviour


def test_a_search_of_exactly_max_pages_is_whole():
    with HostileMlflow(pages(5)) as mlflow:
        response = experiments(service(MLFLOW_MAX_PAGES=5), mlflow)
    assert response.status_code == 200 and response.get_json()["total_experiments"] == 5


@pytest.mark.parametrize("points, message", [
    (1, "more than MLFLOW_MAX_PAGES=5 pages"),    # a page token forever
    (30, "more than MLFLOW_MAX_PAGES=5 pages"),   # pages larger than asked: 3 x 30 > 5 x 10
])
def test_a_history_that_never_ends_stops_at_max_pages(fake_mlflow, points, message):
    history = {"metrics": [dict(POINT, step=i) for i in range(points)], "next_page_token": "t"}
    fake_mlflow.answers[HISTORY] = (200, json.dumps(history).encode())
    client = service(MLFLOW_MAX_PAGES=5, MLFLOW_HISTORY_PAGE_SIZE=10)
    response = client.post("/mlflow/runs", json={"tracking_uri": fake_mlflow.uri, "run_id": "r1"})
    assert response.status_code == 502
    assert message in response.get_json()["message"]
    assert fake_mlflow.paths.count(HISTORY) == (5 if points == 1 else 2)


# --- text fields echoed back ------------------------------------------------------------------

def with_run(**changes):
    found = json.loads(json.dumps(RUNS["r1"]))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = found
        for parent in parents:
            target = target[parent] if not parent.isdigit() else target[int(parent)]
        target[last] = value
    return found


LONG = "x" * 101
FIELDS = [
    (SEARCH, {"experiments": [dict(EXPERIMENT, name=LONG)]}, {}, "experiments[0].name"),
    (SEARCH, {"experiments": [dict(EXPERIMENT, experiment_id=LONG)]}, {},
     "experiments[0].experiment_id"),
    (f"{API}/runs/get", {"run": with_run(info__run_name=LONG)}, {"run_id": "r1"},
     "run.info.run_name"),
    (f"{API}/runs/get", {"run": with_run(data__params__0__value=LONG)}, {"run_id": "r1"},
     "run.data.params[0].value"),
    (f"{API}/runs/get", {"run": with_run(data__tags__0__value=LONG)}, {"run_id": "r1"},
     "run.data.tags[0].value"),
    (f"{API}/runs/search", {"runs": [with_run(data__metrics__0__key=LONG)]}, {"experiment_id": "1"},
     "runs[0].data.metrics[0].key"),
]


@pytest.mark.parametrize("endpoint, answer, fields, where", FIELDS, ids=[f[3] for f in FIELDS])
def test_a_field_longer_than_the_limit_is_a_502_naming_it(fake_mlflow, endpoint, answer, fields,
                                                           where):
    fake_mlflow.answers[endpoint] = (200, json.dumps(answer).encode())
    client = service(MLFLOW_MAX_FIELD_CHARS=100)
    route = "/mlflow/experiments" if endpoint == SEARCH else "/mlflow/runs"
    response = client.post(route, json={"tracking_uri": fake_mlflow.uri, **fields})
    assert response.status_code == 502
    assert response.get_json()["message"] == (
        f"MLflow at {fake_mlflow.uri} answered 200 to {endpoint} with a body that is not "
        f"MLflow's: '{where}' is longer than MLFLOW_MAX_FIELD_CHARS=100 characters.")


def test_a_field_at_the_limit_is_echoed(fake_mlflow):
    fake_mlflow.answers[SEARCH] = (200, json.dumps({"experiments": [
        dict(EXPERIMENT, name="x" * 100)]}).encode())
    response = service(MLFLOW_MAX_FIELD_CHARS=100).post(
        "/mlflow/experiments", json={"tracking_uri": fake_mlflow.uri})
    assert response.status_code == 200
    assert response.get_json()["experiments"][0]["name"] == "x" * 100


def test_the_content_length_of_a_chunked_answer_means_nothing(client):
    """A chunked answer is as long as its chunks (RFC 9112 6.3), whatever else it says."""
    body = experiments_page(2)

    def chunked(handler):
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Content-Length", str(100 * 2**30))
        handler.end_headers()
        handler.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))

    with HostileMlflow(chunked) as mlflow:
        response = experiments(client, mlflow)
    assert response.status_code == 200 and response.get_json()["total_experiments"] == 2
