"""Unit tests of the pure history maths."""
import math
import re

import numpy as np
import orjson
import pytest
from hypothesis import given, strategies as st

from app import history
from app.mlflow.records import from_records
from app.mlflow.shapes import WrongShape as NotMlflow


@pytest.mark.parametrize("raw, expected", [
    (1.5, 1.5), ("2.5", 2.5), (3, 3.0),
    (math.nan, None), ("NaN", None), (math.inf, None), ("Infinity", None),
    ("-Infinity", None), (None, None), ("garbage", None),
])
def test_finite_or_none(raw, expected):
    assert history.finite_or_none(raw) == expected


def encoded(series):
    return orjson.loads(b"".join(history.encode_metric("m", series)))


def summarize(records):
    return encoded(from_records(records))


def points(summary):
    return summary["history"]


def test_orders_by_step_then_timestamp_and_keeps_ties():
    raw = [{"step": "2", "value": 1, "timestamp": "5"},
           {"step": 1, "value": 2, "timestamp": 9},
           {"step": 1, "value": 3, "timestamp": 7},
           {"step": 1, "value": 4, "timestamp": 7}]
    assert points(summarize(raw)) == [
        {"step": 1, "value": 3.0, "timestamp": 7},
        {"step": 1, "value": 4.0, "timestamp": 7},
        {"step": 1, "value": 2.0, "timestamp": 9},
        {"step": 2, "value": 1.0, "timestamp": 5},
    ]


def test_non_finite_values_are_null_and_left_out_of_min_max():
    summary = summarize([{"step": 0, "value": 1.0, "timestamp": 0},
                         {"step": 1, "value": "Infinity", "timestamp": 0},
                         {"step": 2, "value": -3.0, "timestamp": 0},
                         {"step": 3, "value": "NaN", "timestamp": 0}])
    assert (summary["min_value"], summary["max_value"], summary["last_value"]) == (-3.0, 1.0, None)
    assert [p["value"] for p in points(summary)] == [1.0, None, -3.0, None]
    assert summary["total_points"] == 4


def test_contract_key_order():
    assert list(summarize([{"step": 0, "value": 1, "timestamp": 0}])) == [
        "metric_name", "history", "total_points", "min_value", "max_value", "last_value"]


def test_empty_and_all_nan():
    assert summarize([])["min_value"] is None and points(summarize([])) == []
    assert summarize([{"step": 0, "value": "NaN", "timestamp": 0}])["max_value"] is None


def test_pages_concatenate():
    pages = [from_records([{"step": i, "value": i, "timestamp": i}]) for i in (3, 1, 2)]
    assert [p["step"] for p in points(encoded(history.concat(pages)))] == [1, 2, 3]


def test_encoding_crosses_slices(monkeypatch):
    monkeypatch.setattr(history, "ENCODE_SLICE", 3)
    raw = [{"step": i, "value": i / 2, "timestamp": 10 * i} for i in range(10)]
    assert points(summarize(raw)) == [{"step": i, "value": i / 2, "timestamp": 10 * i} for i in range(10)]


@given(st.lists(st.tuples(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(0, 10**13)), max_size=50))
def test_summary_matches_definition(triples):
    summary = summarize([{"step": s, "value": v, "timestamp": t} for s, v, t in triples])
    got = points(summary)
    finite = [v for _, v, _ in triples if math.isfinite(v)]
    assert summary["total_points"] == len(got) == len(triples)
    assert summary["min_value"] == (min(finite) if finite else None)
    assert summary["max_value"] == (max(finite) if finite else None)
    assert [(p["step"], p["timestamp"]) for p in got] == sorted((s, t) for s, _, t in triples)
    assert all(p["value"] is None or math.isfinite(p["value"]) for p in got)
    assert summary["last_value"] == (got[-1]["value"] if got else None)


def series_of(triples) -> history.Series:
    steps, values, stamps = zip(*triples) if triples else ((), (), ())
    return history.Series(np.array(steps, np.int64), np.array(stamps, np.int64),
                          np.array(values, np.float64))


# Few steps and timestamps: many points share both, and only their values order them.
POINT = st.tuples(st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                  st.integers(0, 3))


@given(st.lists(POINT, max_size=40), st.randoms(use_true_random=False))
def test_a_digest_is_of_the_points_whatever_their_order(triples, rng):
    """Two fetches of one history (MLflow may order tied points either way) agree."""
    shuffled = list(triples)
    rng.shuffle(shuffled)
    assert history.digest(series_of(shuffled)) == history.digest(series_of(triples))
    assert history.digest(series_of(triples)).startswith(f"{len(triples)}:")


@given(st.lists(POINT, min_size=1, max_size=40), POINT, st.data())
def test_a_point_more_less_or_changed_is_another_digest(triples, other, data):
    before = history.digest(series_of(triples))
    assert history.digest(series_of(triples + [other])) != before
    assert history.digest(series_of(triples[1:])) != before
    changed = data.draw(st.integers(0, len(triples) - 1))
    step, value, stamp = triples[changed]
    for point in ((step + 1, value, stamp), (step, value, stamp + 1)):
        assert history.digest(series_of(triples[:changed] + [point] + triples[changed + 1:])) != before
    if not math.isnan(value) and value != 7.5:
        assert history.digest(series_of(triples[:changed] + [(step, 7.5, stamp)]
                                        + triples[changed + 1:])) != before


def test_a_digest_reads_any_nan_as_one():
    quiet, other = np.array([np.nan]), np.array([0x7FF8_0000_0000_0001], np.int64).view(np.float64)
    assert np.isnan(other[0]) and quiet.tobytes() != other.tobytes()
    steps, stamps = np.zeros(1, np.int64), np.zeros(1, np.int64)
    assert history.digest(history.Series(steps, stamps, quiet)) == \
        history.digest(history.Series(steps, stamps, other))
    assert history.digest(history.empty()).startswith("0:")


def test_duration():
    assert history.duration_seconds(1000, 3_601_000) == 3600.0
    assert history.duration_seconds("1000", "2500") == 1.5
    assert history.duration_seconds(1000, None) is None


@pytest.mark.parametrize("record, what", [
    ({"step": "abc", "value": 1, "timestamp": 0}, "'metrics[1].step' is not a 64-bit integer"),
    ({"step": 2**64, "value": 1, "timestamp": 0}, "'metrics[1].step' is not a 64-bit integer"),
    ({"step": 1, "value": 1, "timestamp": 1.5}, "'metrics[1].timestamp' is not a 64-bit integer"),
    ({"step": 1, "value": None, "timestamp": 0}, "'metrics[1].value' is not a number"),
    ({"step": [1], "value": 1, "timestamp": 0}, "'metrics[1].step' is not a 64-bit integer"),
    ({"step": 1, "value": [1.0], "timestamp": 0}, "'metrics[1].value' is not a number"),
    ({"step": 1, "value": "abc", "timestamp": 0}, "'metrics[1].value' is not a number"),
    ({"step": 1, "timestamp": 0}, "'metrics[1].value' is not a number"),
    ([1, 2], "'metrics[1]' is not an object"),
])
def test_records_mlflow_would_not_send_are_named(record, what):
    with pytest.raises(NotMlflow, match=re.escape(what)):
        from_records([{"step": 0, "value": 1.0, "timestamp": 0}, record])
