"""Unit tests of the pure history maths."""
import math

import pytest
from hypothesis import given, strategies as st

from app import history


@pytest.mark.parametrize("raw, expected", [
    (1.5, 1.5), ("2.5", 2.5), (3, 3.0),
    (math.nan, None), ("NaN", None), (math.inf, None), ("Infinity", None),
    ("-Infinity", None), (None, None), ("garbage", None),
])
def test_finite_or_none(raw, expected):
    assert history.finite_or_none(raw) == expected


def test_normalize_orders_by_step_then_timestamp_and_keeps_ties():
    raw = [{"step": "2", "value": 1, "timestamp": "5"},
           {"step": 1, "value": 2, "timestamp": 9},
           {"step": 1, "value": 3, "timestamp": 7},
           {"step": 1, "value": 4, "timestamp": 7}]
    assert history.normalize(raw) == [
        {"step": 1, "value": 3.0, "timestamp": 7},
        {"step": 1, "value": 4.0, "timestamp": 7},
        {"step": 1, "value": 2.0, "timestamp": 9},
        {"step": 2, "value": 1.0, "timestamp": 5},
    ]


def test_summarize_ignores_non_finite_for_min_max_but_reports_last():
    points = history.normalize([{"step": 0, "value": 1.0, "timestamp": 0},
                                {"step": 1, "value": "Infinity", "timestamp": 0},
                                {"step": 2, "value": -3.0, "timestamp": 0},
                                {"step": 3, "value": "NaN", "timestamp": 0}])
    summary = history.summarize("m", points)
    assert (summary["min_value"], summary["max_value"], summary["last_value"]) == (-3.0, 1.0, None)
    assert summary["total_points"] == 4


def test_summarize_empty_and_all_nan():
    assert history.summarize("m", [])["min_value"] is None
    nan_only = history.normalize([{"step": 0, "value": "NaN", "timestamp": 0}])
    assert history.summarize("m", nan_only)["max_value"] is None


@given(st.lists(st.tuples(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(0, 10**13)), max_size=50))
def test_summary_matches_definition(triples):
    points = history.normalize([{"step": s, "value": v, "timestamp": t} for s, v, t in triples])
    summary = history.summarize("m", points)
    finite = [v for _, v, _ in triples if math.isfinite(v)]
    assert summary["total_points"] == len(triples)
    assert summary["min_value"] == (min(finite) if finite else None)
    assert summary["max_value"] == (max(finite) if finite else None)
    assert [(p["step"], p["timestamp"]) for p in points] == sorted((s, t) for s, _, t in triples)
    assert all(p["value"] is None or math.isfinite(p["value"]) for p in points)


def test_duration():
    assert history.duration_seconds(1000, 3_601_000) == 3600.0
    assert history.duration_seconds("1000", "2500") == 1.5
    assert history.duration_seconds(1000, None) is None
