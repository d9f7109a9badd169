"""ETags on /mlflow/runs answers: derived from what made the answer (app/runs/etag.py),
against the real MLflow and Redis."""
import pytest

from app.runs.cursor import Cursor
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)


@pytest.fixture
def client(cached_app):
    return cached_app().test_client()


def poll(client, query, **headers):
    answer = client.post("/mlflow/runs", json=query, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer


def test_finished_runs_have_a_stable_etag_until_something_changes(client, body, mlflow_server):
    query = body(run_id=mlflow_server.ids["runs"]["finished"])
    first = poll(client, query)
    tag = first.headers["ETag"]
    assert tag.startswith('"') and len(tag) == 34
    assert poll(client, query).headers["ETag"] == tag       # a warm poll: the same answer
    other_view = poll(client, dict(query, max_points=10)).headers["ETag"]
    csv = poll(client, dict(query, format="csv")).headers["ETag"]
    no_history = poll(client, dict(query, include_metric_history=False)).headers["ETag"]
    assert len({tag, other_view, csv, no_history}) == 4      # each answer its own tag
    refreshed = poll(client, dict(query, refresh=True)).headers["ETag"]
    assert refreshed != tag                                  # a refresh is a new generation
    assert poll(client, query).headers["ETag"] == refreshed


def test_a_live_runs_tag_is_its_tails_and_without_a_tail_there_is_none(
        cached_app, body, admin_client):
    experiment_id = admin_client.create_experiment("etag-live-" + __name__.replace(".", "-")
                                                   + str(id(cached_app)))
    run_id = admin_client.create_run(experiment_id).info.run_id
    admin_client.log_metric(run_id, "loss", 1.0, step=0)
    client = cached_app(LIVE_REFRESH=600).test_client()
    tag = poll(client, body(run_id=run_id)).headers["ETag"]
    admin_client.log_metric(run_id, "loss", 0.5, step=1)
    assert poll(client, body(run_id=run_id)).headers["ETag"] == tag  # the tail, unchanged
    refreshed = cached_app(LIVE_REFRESH=0.001).test_client()  # the same Redis: refreshed
    assert poll(refreshed, body(run_id=run_id)).headers["ETag"] != tag
    per_poll = cached_app(LIVE_REFRESH=0).test_client()  # no tail: nothing cheaper says more
    assert "ETag" not in poll(per_poll, body(run_id=run_id)).headers


def basic(user, password):
    import base64
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_conditional_get_of_unchanged_finished_runs_is_a_304_without_mlflow(
        cached_app, proxy, mlflow_server):
    client = cached_app(RUN_LIST_TTL=300).test_client()  # the listing outlives a slow first poll
    url = (f"/mlflow/runs?tracking_uri={proxy.uri}&experiment_name=shared-exp"
           "&run_status=FINISHED&http_timeout=60")
    auth = {"Authorization": basic(*mlflow_server.admin)}
    first = client.get(url, headers=dict(auth, **{"Accept-Encoding": "gzip"}))
    assert first.status_code == 200 and first.headers["Content-Encoding"] == "gzip"
    tag = first.headers["ETag"]
    assert tag.endswith('-gzip"')  # each coding its own tag
    proxy.reset()
    again = client.get(url, headers=dict(auth, **{"If-None-Match": tag,
                                                  "Accept-Encoding": "gzip"}))
    assert again.status_code == 304 and again.data == b""
    assert proxy.count() == 0                       # MLflow not asked
    wire = sum(len(k) + len(v) + 4 for k, v in again.headers.items())
    assert wire < 1024, dict(again.headers)         # headers only, under 1 KB
    # the plain representation's tag names the same answer
    plain = client.get(url, headers=dict(auth, **{"If-None-Match": tag.replace("-gzip", "")}))
    assert plain.status_code == 304
    # a POST is never answered 304 (If-None-Match is for GET and HEAD)
    post = client.post("/mlflow/runs", json={"tracking_uri": proxy.uri, "username": mlflow_server.admin[0],
                                              "password": mlflow_server.admin[1],
                                              "experiment_name": "shared-exp",
                                              "run_status": ["FINISHED"], "http_timeout": 60},
                       headers={"If-None-Match": tag})
    assert post.status_code == 200


# --- what the tag is made of: the query whole (issue 19, item 2) --------------------

# A value other than the default for every field of the typed query. A field added to
# Selection, View or RunsQuery without a line here fails the test below: give it one (and
# the tag then covers it), or add it to RunsQuery.NOT_IN_ANSWER if it cannot change the
# answer's bytes.
VARIANTS = {
    "Selection": {"experiment_name": "other", "experiment_id": "7", "run_id": "r1",
                  "run_ids": ("r1", "r2"), "limit": 11, "include_deleted": True,
                  "filter_string": "metrics.loss < 1", "order_by": ("start_time ASC",),
                  "run_status": ("FINISHED",), "include_tags": True},
    "View": {"metric_keys": ("loss",), "max_points": 5, "since_step": 10,
             "since_timestamp": 1, "max_step": 100,
             "cursor": Cursor("k", (("r1", "g", "f" * 32, 0),))},
    "RunsQuery": {"include_metric_history": False, "format": "csv"},
}
FINISHED_LISTING = {"experiment": {"experiment_id": "1", "name": "e"}, "runs": [
    {"info": {"run_id": "r1", "status": "FINISHED", "experiment_id": "1", "end_time": 5},
     "data": {"params": [], "metrics": [{"key": "loss", "value": 1.0, "step": 3}]}}]}


def tag_of(query, as_csv=False):
    from app.runs.etag import etag_of
    return etag_of(query, FINISHED_LISTING, {"r1": "generation-1"}, as_csv=as_csv)


def test_every_field_of_the_query_changes_the_tag_but_refresh():
    from dataclasses import fields, replace

    from app.runs.query import RunsQuery, Selection
    from app.runs.views import View

    base = RunsQuery(Selection(experiment_id="1"))
    tag = tag_of(base)
    assert tag and tag_of(base) == tag
    variants = {
        "Selection": lambda name, value: replace(base, selection=replace(base.selection,
                                                                         **{name: value})),
        "View": lambda name, value: replace(base, view=replace(base.view, **{name: value})),
        "RunsQuery": lambda name, value: replace(base, **{name: value}),
    }
    for cls in (Selection, View, RunsQuery):
        for field in fields(cls):
            if field.name in ("selection", "view"):  # their own fields, one by one above
                continue
            if cls is RunsQuery and field.name in RunsQuery.NOT_IN_ANSWER:
                assert tag_of(replace(base, **{field.name: True})) == tag, field.name
                continue
            assert field.name in VARIANTS[cls.__name__], \
                f"{cls.__name__}.{field.name} has no variant: does it change the answer?"
            changed = variants[cls.__name__](field.name, VARIANTS[cls.__name__][field.name])
            assert tag_of(changed) != tag, f"{cls.__name__}.{field.name} is not in the ETag"
    assert tag_of(base, as_csv=True) != tag  # CSV by the Accept header: format unset
    assert RunsQuery.NOT_IN_ANSWER == {"refresh"}


def test_a_step_window_and_a_zoom_each_have_their_own_tag(client, body, mlflow_server):
    """since_step=10&max_step=100 and ...&max_step=200 are different answers, and so is
    a zoom (max_step=50) of the unfiltered answer: never one tag (a wrong 304)."""
    from urllib.parse import urlencode

    query = body(run_id=mlflow_server.ids["runs"]["finished"])  # train_loss: steps 0..99
    auth = {"Authorization": basic(*mlflow_server.admin)}
    params = {k: v for k, v in query.items() if k not in ("username", "password")}

    def get(**view):
        answer = client.get("/mlflow/runs?" + urlencode(dict(params, **view), doseq=True),
                            headers=auth)
        assert answer.status_code == 200, answer.get_json()
        return answer

    window_50, window_100 = get(since_step=10, max_step=50), get(since_step=10, max_step=100)
    assert window_50.data != window_100.data
    assert window_50.headers["ETag"] != window_100.headers["ETag"]
    whole, zoom = get(), get(max_step=50)
    assert whole.data != zoom.data and whole.headers["ETag"] != zoom.headers["ETag"]
    # The unfiltered answer's tag does not make the zoom a 304.
    again = client.get("/mlflow/runs?" + urlencode(dict(params, max_step=50), doseq=True),
                       headers=dict(auth, **{"If-None-Match": whole.headers["ETag"]}))
    assert again.status_code == 200 and again.data == zoom.data


# --- a 304 is decided before any entry is read (issue 19, item 6) -------------------

# The finished runs of shared-exp (finished, empty, long: the long one's JSON has a stored
# gzip form) as the whole runs' JSON, as a view of their columns, and as CSV.
SHAPES = {"json": {}, "view": {"metric_keys": ["train_loss", "long_metric"], "max_points": 100},
          "csv": {"format": "csv", "metric_keys": ["train_loss"]}}


def shared_exp_url(proxy, **fields):
    from urllib.parse import urlencode

    return "/mlflow/runs?" + urlencode(dict(tracking_uri=proxy.uri, experiment_name="shared-exp",
                                            run_status="FINISHED", http_timeout=60, **fields),
                                       doseq=True)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_304_reads_the_listing_grants_and_generations_and_no_entry(
        cached_app, proxy, mlflow_server, cache_reads, shape):
    client = cached_app(RUN_LIST_TTL=300).test_client()
    url = shared_exp_url(proxy, **SHAPES[shape])
    headers = {"Authorization": basic(*mlflow_server.admin), "Accept-Encoding": "gzip"}
    first = client.get(url, headers=headers)
    assert first.status_code == 200
    warm = client.get(url, headers=headers)  # every entry, column and form now cached
    assert (warm.headers["X-Cache"], warm.headers["ETag"]) == ("HIT", first.headers["ETag"])
    cache_reads.clear()
    again = client.get(url, headers=dict(headers, **{"If-None-Match": first.headers["ETag"]}))
    assert (again.status_code, again.headers["X-Cache"]) == (304, "HIT")
    # Neither a run's JSON, its columns or compressed forms, nor a worker's own copies.
    entries = [key for key in cache_reads if isinstance(key, tuple) or key.startswith("run:")]
    assert entries == [], cache_reads
    assert len({key for key in cache_reads if key.startswith("gen:")}) == 3, cache_reads


@pytest.mark.parametrize("coding", [None, "gzip", "zstd"])
def test_a_304_names_the_representation_the_client_holds(cached_app, proxy, mlflow_server,
                                                         coding):
    """Each coding's answer has its own tag (the coding appended); a 304 to it carries
    that tag, as the 200 would (RFC 9110, 15.4.5), and another answer's tag is no match."""
    client = cached_app(RUN_LIST_TTL=300).test_client()
    url = shared_exp_url(proxy)
    headers = {"Authorization": basic(*mlflow_server.admin)}
    if coding:
        headers["Accept-Encoding"] = coding
    first = client.get(url, headers=headers)
    tag = first.headers["ETag"]
    assert first.headers.get("Content-Encoding") == coding
    assert tag.endswith(f'-{coding}"') if coding else tag.count("-") == 0
    again = client.get(url, headers=dict(headers, **{"If-None-Match": f'"other", {tag}'}))
    assert (again.status_code, again.headers["ETag"]) == (304, tag)
    other = '"' + "0" * 32 + tag[33:]  # another answer's tag, in this coding
    assert client.get(url, headers=dict(headers, **{"If-None-Match": other})).status_code == 200


def test_with_the_cache_down_there_is_no_etag_and_no_304(proxy, mlflow_server):
    """The generations unknown, nothing says the client's copy is current: a full answer."""
    from app import create_app
    from tests.support.redis_server import RedisServer

    with RedisServer() as server:
        client = create_app({"TESTING": True, "REDIS_URL": server.url, "SECRET_KEY": "k",
                             "CACHE_RETRY_AFTER": 60}).test_client()
        url, auth = shared_exp_url(proxy), {"Authorization": basic(*mlflow_server.admin)}
        tag = client.get(url, headers=auth).headers["ETag"]
        server.stop()
        for held in (tag, "*"):
            again = client.get(url, headers=dict(auth, **{"If-None-Match": held}))
            assert again.status_code == 200 and "ETag" not in again.headers


def test_a_conditional_refresh_is_answered_in_full(cached_app, proxy, mlflow_server):
    client = cached_app().test_client()
    url, auth = shared_exp_url(proxy), {"Authorization": basic(*mlflow_server.admin)}
    tag = client.get(url, headers=auth).headers["ETag"]
    refreshed = client.get(url + "&refresh=true", headers=dict(auth, **{"If-None-Match": tag}))
    assert refreshed.status_code == 200 and refreshed.headers["ETag"] not in (tag, None)
