"""Finished runs' compressed forms are kept (app/runs/compressed.py): a warm compressed
poll splices them instead of compressing the run again; real MLflow and Redis."""
import gzip
import io
import zlib

import pytest
import redis
import zstandard

from app import compression
from app.runs import compressed


def decoded(answer):
    coding = answer.headers.get("Content-Encoding")
    if coding == "gzip":
        # one member: curl and browsers stop after the first
        member = zlib.decompressobj(31)
        body = member.decompress(answer.data)
        assert member.eof and member.unused_data == b"", "not a single gzip member"
        assert body == gzip.decompress(answer.data)
        return body
    if coding == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(answer.data),
                                                            read_across_frames=True)
        return reader.read()
    return answer.data


@pytest.fixture
def compressions(monkeypatch):
    """How many runs were compressed to be stored (not streamed) during the test."""
    made = []
    original = compressed.stored_form

    def counting(data, coding, level=None):
        made.append((len(data), coding))
        return original(data, coding, level)
    monkeypatch.setattr(compressed, "stored_form", counting)
    return made


@pytest.fixture
def splices(monkeypatch):
    """The raw size of every stored form spliced into an answer during the test."""
    spliced = []
    for writer in compression.WRITERS.values():
        def counting(self, fragment, raw, original=writer.splice):
            spliced.append(len(raw))
            return original(self, fragment, raw)
        monkeypatch.setattr(writer, "splice", counting)
    return spliced


def stored_forms(redis_url, redis_prefix, coding):
    return redis.Redis.from_url(redis_url).keys(f"{redis_prefix}*:{coding}")


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_a_warm_compressed_poll_splices_the_stored_form(cached_app, body, mlflow_server,
                                                        compressions, splices, coding):
    client = cached_app(RUN_LIST_TTL=300).test_client()
    query = body(run_id=mlflow_server.ids["runs"]["long"])
    plain = client.post("/mlflow/runs", json=query)
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    first = client.post("/mlflow/runs", json=query, headers={"Accept-Encoding": coding})
    assert first.headers["Content-Encoding"] == coding and decoded(first) == plain.data
    assert len(compressions) == 1 and compressions[0][1] == coding  # made once, stored
    assert len(first.data) < len(plain.data) / 4
    assert len(splices) == 1   # the form just made is what the answer carries
    second = client.post("/mlflow/runs", json=query, headers={"Accept-Encoding": coding})
    assert decoded(second) == plain.data and len(compressions) == 1  # not remade
    assert len(splices) == 2 and splices[-1] > len(plain.data) / 2   # the run, spliced
    # another worker (another app) reads the stored form from Redis: still not remade
    other = cached_app(RUN_LIST_TTL=300).test_client()
    third = other.post("/mlflow/runs", json=query, headers={"Accept-Encoding": coding})
    assert decoded(third) == plain.data and len(compressions) == 1 and len(splices) == 3


def test_the_workers_own_copy_of_a_form_serves_when_redis_lost_it(cached_app, body, mlflow_server,
                                                                  redis_url, redis_prefix,
                                                                  compressions, splices):
    client = cached_app(RUN_LIST_TTL=300).test_client()
    query = body(run_id=mlflow_server.ids["runs"]["long"])
    headers = {"Accept-Encoding": "gzip"}
    first = decoded(client.post("/mlflow/runs", json=query, headers=headers))
    [key] = stored_forms(redis_url, redis_prefix, "gzip")
    redis.Redis.from_url(redis_url).delete(key)
    again = client.post("/mlflow/runs", json=query, headers=headers)
    assert decoded(again) == first and len(compressions) == 1 and len(splices) == 2
    # a worker that found the form in Redis keeps its own copy of it too
    client.post("/mlflow/runs", json=dict(query, refresh=True), headers=headers)  # a new form
    other = cached_app(RUN_LIST_TTL=300).test_client()
    assert decoded(other.post("/mlflow/runs", json=query, headers=headers)) == first
    redis.Redis.from_url(redis_url).delete(*stored_forms(redis_url, redis_prefix, "gzip"))
    spliced = len(splices)
    assert decoded(other.post("/mlflow/runs", json=query, headers=headers)) == first
    assert len(compressions) == 2 and len(splices) == spliced + 1


def test_only_large_finished_runs_get_a_form_and_the_others_are_streamed(
        cached_app, body, mlflow_server, redis_url, redis_prefix, compressions, splices):
    """A large run and a small one (< MIN_SEGMENT of JSON) in one answer: only the large
    one's form is made and stored, the small one is compressed with the rest."""
    client = cached_app(RUN_LIST_TTL=300).test_client()
    runs = mlflow_server.ids["runs"]
    query = body(run_ids=[runs["finished"], runs["long"]])
    plain = client.post("/mlflow/runs", json=query)
    assert plain.status_code == 200 and len(plain.json["runs"]) == 2
    for _ in range(2):
        answer = client.post("/mlflow/runs", json=query, headers={"Accept-Encoding": "gzip"})
        assert decoded(answer) == plain.data
    assert [size for size, _ in compressions] == [splices[0]] and len(splices) == 2
    assert len(stored_forms(redis_url, redis_prefix, "gzip")) == 1


def test_a_refresh_retires_the_stored_form(cached_app, body, mlflow_server, compressions):
    client = cached_app(RUN_LIST_TTL=300).test_client()
    query = body(run_id=mlflow_server.ids["runs"]["long"])
    headers = {"Accept-Encoding": "gzip"}
    before = decoded(client.post("/mlflow/runs", json=query, headers=headers))
    client.post("/mlflow/runs", json=dict(query, refresh=True), headers=headers)
    assert len(compressions) == 2  # a new generation: made again
    after = client.post("/mlflow/runs", json=query, headers=headers)
    assert decoded(after) == before and len(compressions) == 2
