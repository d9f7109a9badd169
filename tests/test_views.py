"""Unit tests of the plot-sized views of a history: since_step/since_timestamp windows
and max_points downsampling (pure numpy; property tests with hypothesis)."""
import math

import numpy as np
import orjson
from hypothesis import given, settings, strategies as st

from app import history

values_st = st.lists(
    st.one_of(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
              st.just(math.nan), st.just(math.inf)),
    min_size=0, max_size=400)


def series_of(values):
    values = np.array(values, dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    steps = np.arange(values.size, dtype=np.int64) * 3
    return history.Series(steps, steps * 10 + 7, values)


def positions(sample, full):
    """Where each kept point sits in the full series (steps are unique here)."""
    return np.searchsorted(full.steps, sample.steps)


@settings(max_examples=300, deadline=None)
@given(values_st, st.integers(min_value=5, max_value=120))
def test_downsample_keeps_first_last_extremes_and_nan(values, max_points):
    full = series_of(values)
    sample = history.downsample(full, max_points)
    assert sample.size <= max_points or full.size <= max_points
    if full.size <= max_points:
        assert sample.size == full.size
        return
    kept = positions(sample, full)
    # a subsequence of the original points, in order, each unchanged
    assert np.all(np.diff(kept) > 0)
    assert np.array_equal(sample.timestamps, full.timestamps[kept])
    assert np.array_equal(sample.values, full.values[kept], equal_nan=True)
    assert kept[0] == 0 and kept[-1] == full.size - 1
    finite = full.values[~np.isnan(full.values)]
    if finite.size:
        assert finite.min() in sample.values and finite.max() in sample.values
    if np.isnan(full.values).any():
        # the first NaN (a blow-up's onset) is never hidden
        assert np.argmax(np.isnan(full.values)) in kept


@settings(max_examples=200, deadline=None)
@given(values_st, st.integers(min_value=5, max_value=60))
def test_no_dropped_point_is_outside_its_neighbours_range(values, max_points):
    """Every dropped point has kept points no lower and no higher than it close by
    (within one bucket), so the plotted envelope contains every local spike."""
    full = series_of(values)
    sample = history.downsample(full, max_points)
    if full.size <= max_points:
        return
    slots = 3 if np.isnan(full.values[1:-1]).any() else 2
    width = -(-(full.size - 2) // ((max_points - 2) // slots))
    kept = positions(sample, full)
    for i in np.flatnonzero(~np.isnan(full.values)):
        if i in kept:
            continue
        near = kept[np.abs(kept - i) < width]
        near_values = full.values[near]
        assert (near_values >= full.values[i]).any() and (near_values <= full.values[i]).any()


def test_downsample_of_a_spike_and_a_blow_up():
    values = np.sin(np.arange(100_000) / 500.0)
    values[31_337] = 50.0          # a loss spike
    values[77_000:] = np.nan       # diverged
    full = series_of(values)
    sample = history.downsample(full, 1000)
    assert sample.size <= 1000
    assert 50.0 in sample.values
    assert 77_000 * 3 in sample.steps           # where it blew up
    assert sample.steps[0] == 0 and sample.steps[-1] == full.steps[-1]


@given(values_st, st.integers(min_value=5, max_value=50))
def test_encode_metric_stats_are_over_the_full_history(values, max_points):
    full = series_of(values)
    encoded = orjson.loads(b"".join(history.encode_metric("m", full, max_points=max_points)))
    plain = orjson.loads(b"".join(history.encode_metric("m", full)))
    for field in ("total_points", "min_value", "max_value", "last_value"):
        assert encoded[field] == plain[field]
    assert encoded["total_points"] == full.size
    assert encoded["downsampled"] == (full.size > max_points)
    assert len(encoded["history"]) <= max(max_points, full.size if full.size <= max_points else 0)
    assert "downsampled" not in plain


@given(st.lists(st.tuples(st.integers(-5, 50), st.integers(0, 100)), max_size=80),
       st.one_of(st.none(), st.integers(-6, 51)), st.one_of(st.none(), st.integers(-1, 101)))
def test_window_keeps_exactly_the_points_after(points, since_step, since_timestamp):
    full = history.Series(np.array([p[0] for p in points], dtype=np.int64),
                          np.array([p[1] for p in points], dtype=np.int64),
                          np.arange(len(points), dtype=np.float64))
    cut = history.window(full, since_step, since_timestamp)
    expected = [i for i, (step, ts) in enumerate(points)
                if (since_step is None or step > since_step)
                and (since_timestamp is None or ts > since_timestamp)]
    assert cut.values.tolist() == [float(i) for i in expected]


def test_window_stats_describe_the_selected_points():
    full = series_of([5.0, 1.0, 9.0, 2.0, 3.0])   # steps 0, 3, 6, 9, 12
    encoded = orjson.loads(b"".join(history.encode_metric("m", full, since_step=3)))
    assert [p["step"] for p in encoded["history"]] == [6, 9, 12]
    assert (encoded["total_points"], encoded["min_value"], encoded["max_value"],
            encoded["last_value"]) == (3, 2.0, 9.0, 3.0)


def test_csv_export_of_a_million_points_streams_in_bounded_memory():
    """The rows are produced a slice at a time: the largest amount of memory allocated
    at once stays a small fraction of the CSV's size."""
    import csv
    import io
    import tracemalloc

    from app.runs import export
    from app.runs.views import View

    n = 1_000_000
    steps = np.arange(n, dtype=np.int64)
    full = history.Series(steps, steps + 1_700_000_000_000, np.sqrt(steps) / 7.0)
    run = {"info": {"run_id": "r1", "run_name": "name, with comma"},
           "data": {"metrics": [{"key": "m"}]}}
    chunks = export.csv_chunks([run], {("r1", "m"): full}, View())
    header = next(chunks)
    tracemalloc.start()
    total, first = 0, None
    for chunk in chunks:
        total += len(chunk)
        first = first or chunk
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total > 40_000_000
    assert peak < total / 8, (peak, total)
    rows = list(csv.reader(io.StringIO((header + first).decode())))
    assert rows[0] == ["run_id", "run_name", "metric", "step", "value", "timestamp"]
    assert rows[1] == ["r1", "name, with comma", "m", "0", "0.0", "1700000000000"]
    assert float(rows[50][4]) == full.values[49]
