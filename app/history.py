"""Pure functions over metric values and histories (no I/O).

A history is held as three numpy columns rather than one dict per point: a
million-point metric is then 24 MB instead of hundreds, and its JSON is written
from the columns a slice at a time, as pieces that the caller joins once.
"""
import hashlib
import math
from typing import NamedTuple

import numpy as np
import orjson

ENCODE_SLICE = 20_000  # points turned into dicts at a time while encoding


class Series(NamedTuple):
    steps: np.ndarray       # int64
    timestamps: np.ndarray  # int64
    values: np.ndarray      # float64; NaN wherever MLflow had NaN or +-Infinity

    @property
    def size(self) -> int:
        return len(self.steps)


def finite_or_none(value):
    """A JSON-safe metric value: MLflow sends NaN/Infinity as numbers or strings."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def empty() -> Series:
    return Series(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))


def finite_or_nan(values):
    """``values`` with NaN wherever it held NaN or +-Infinity (in place)."""
    values[~np.isfinite(values)] = np.nan
    return values


def concat(parts) -> Series:
    parts = list(parts)
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return empty()
    return Series(*(np.concatenate(column) for column in zip(*parts)))


def ordered(series: Series) -> Series:
    """By step, then timestamp; stable, so equal pairs keep MLflow's order."""
    if _is_ordered(series):  # the usual case: no copy of a history that may be huge
        return series
    order = np.lexsort((series.timestamps, series.steps))
    return Series(*(column[order] for column in series))


def window(series: Series, since_step=None, since_timestamp=None, max_step=None) -> Series:
    """Only the points logged after ``since_step`` and/or ``since_timestamp`` (both, if
    both), and at or below ``max_step``: since_step < step <= max_step."""
    if since_step is None and since_timestamp is None and max_step is None:
        return series
    keep = np.ones(series.size, dtype=bool)
    if since_step is not None:
        keep &= series.steps > since_step
    if max_step is not None:
        keep &= series.steps <= max_step
    if since_timestamp is not None:
        keep &= series.timestamps > since_timestamp
    return Series(*(column[keep] for column in series))


def stats(series: Series) -> dict:
    """total_points, min/max over the finite values, and the last value (of an ordered series)."""
    finite = series.values[~np.isnan(series.values)]
    return {
        "total_points": series.size,
        "min_value": float(finite.min()) if finite.size else None,
        "max_value": float(finite.max()) if finite.size else None,
        "last_value": finite_or_none(series.values[-1]) if series.size else None,
    }


def downsample(series: Series, max_points: int) -> Series:
    """At most ``max_points`` points of an ordered series, for plotting.

    Keeps the first and the last point and, in each of equal-sized buckets of the
    points between them, the lowest and the highest finite value and the first NaN
    (a loss spike or a NaN blow-up is never hidden; the global min and max are
    always kept). Fewer points than ``max_points`` come back unchanged.
    """
    if series.size <= max_points:
        return series
    inner = series.values[1:-1]
    nan = np.isnan(inner)
    slots = 3 if nan.any() else 2
    buckets = max(1, (max_points - 2) // slots)
    width = -(-inner.size // buckets)          # ceil: every point falls in a bucket
    rows = -(-inner.size // width)
    pad = rows * width - inner.size
    offsets = np.arange(rows) * width

    def per_bucket(column, fill):
        return np.concatenate([column, np.full(pad, fill, dtype=column.dtype)]).reshape(rows, width)

    low = per_bucket(np.where(nan, np.inf, inner), np.inf)
    high = per_bucket(np.where(nan, -np.inf, inner), -np.inf)
    nans = per_bucket(nan, False)

    def picked(found, index):
        """Series positions of each bucket's pick, for the buckets that have one."""
        return offsets[found] + index[found] + 1

    keep = np.unique(np.concatenate([
        [0],
        picked(np.isfinite(low.min(axis=1)), low.argmin(axis=1)),
        picked(np.isfinite(high.max(axis=1)), high.argmax(axis=1)),
        picked(nans.any(axis=1), nans.argmax(axis=1)),
        [series.size - 1]]))
    return Series(*(column[keep] for column in series))


def _is_ordered(series: Series) -> bool:
    steps, stamps = series.steps, series.timestamps
    if series.size < 2:
        return True
    same_step = steps[1:] == steps[:-1]
    return bool((steps[1:] >= steps[:-1]).all() and (stamps[1:] >= stamps[:-1])[same_step].all())


def encode_metric(metric_name, series: Series, *, max_points=None, since_step=None,
                  since_timestamp=None, max_step=None, totals=None) -> list:
    """The contract's metric history object as JSON, in pieces for one final join.

    Points are ordered by step, then timestamp; NaN/Infinity are null; min/max are
    over the finite values only. ``since_*`` select the points first; the stats are
    over every selected point, or ``totals`` (a ``tally`` of the whole history, when
    ``series`` is only its newest points: a cursor's answer); ``max_points`` then thins
    them for plotting and adds ``downsampled``.
    """
    series = window(ordered(series), since_step, since_timestamp, max_step)
    summary = stats(series) if totals is None else {
        key: totals[key] for key in ("total_points", "min_value", "max_value", "last_value")}
    if max_points is not None:
        shown = downsample(series, max_points)
        summary["downsampled"] = shown.size < series.size
        series = shown
    return [orjson.dumps({"metric_name": metric_name})[:-1], b',"history":[',
            *encode_points(series), b"],", orjson.dumps(summary)[1:]]


def last_value(series: Series):
    """The value of the latest point (greatest step, then timestamp), as ``stats`` reports
    it for the whole series; None for an empty one."""
    return finite_or_none(ordered(series).values[-1]) if series.size else None


def encode_points(series: Series) -> list:
    """``{"step":..,"value":..,"timestamp":..}`` items, comma-separated, a slice at a time:
    only one slice of points is ever held as Python objects."""
    pieces = []
    for start in range(0, series.size, ENCODE_SLICE):
        window = slice(start, start + ENCODE_SLICE)
        points = [{"step": s, "value": v, "timestamp": t} for s, v, t in zip(
            series.steps[window].tolist(), series.values[window].tolist(),
            series.timestamps[window].tolist())]
        if pieces:
            pieces.append(b",")
        pieces.append(orjson.dumps(points)[1:-1])  # orjson writes NaN as null
    return pieces


COLUMN_TYPES = (np.dtype("<i8"), np.dtype("<i8"), np.dtype("<f8"))  # steps, timestamps, values


def to_bytes(series: Series) -> bytes:
    """The three columns one after another (fixed little-endian types), for the cache."""
    return b"".join(np.ascontiguousarray(column, dtype=kind).tobytes()
                    for column, kind in zip(series, COLUMN_TYPES))


def from_bytes(buffer) -> Series:
    """``to_bytes`` read back, as read-only views of ``buffer`` (no copy)."""
    size = len(buffer) // 24
    if len(buffer) != size * 24:
        raise ValueError(f"{len(buffer)} bytes are not whole points")
    return Series(*(np.frombuffer(buffer, dtype=kind, count=size, offset=i * size * 8)
                    for i, kind in enumerate(COLUMN_TYPES)))


def digest(series: Series) -> str:
    """Which points a history holds, as a short string: the point count and a hash of the
    points in one order (step, timestamp, then the value's bits), so two fetches of the
    same history agree whatever order MLflow sent them in, and a point added, removed or
    changed gives another digest. A change detector, not a seal: what it compares was
    fetched by the service itself."""
    values = np.where(np.isnan(series.values), np.nan, series.values)  # one NaN's bits
    steps, stamps, values = ordered(Series(series.steps, series.timestamps, values))
    columns = steps, stamps, values.view(np.int64)
    if not _in_point_order(*columns):  # points of one step and timestamp, not by value
        order = np.lexsort(columns[::-1])
        columns = tuple(column[order] for column in columns)
    hashed = hashlib.blake2b(digest_size=10)
    for column in columns:
        hashed.update(np.ascontiguousarray(column, dtype="<i8"))
    return f"{series.size}:{hashed.hexdigest()}"


def _in_point_order(steps, stamps, bits) -> bool:
    """Whether the points are ordered by step, then timestamp, then value bits."""
    later = steps[1:] > steps[:-1]
    if later.all():
        return True
    same_step, same_stamp = steps[1:] == steps[:-1], stamps[1:] == stamps[:-1]
    return bool((later | same_step & ((stamps[1:] > stamps[:-1])
                                      | same_stamp & (bits[1:] >= bits[:-1]))).all())


def duration_seconds(start_ms, end_ms):
    """Run duration, or None while a run has no end time (still running, or crashed)."""
    if start_ms is None or end_ms is None:
        return None
    return (int(end_ms) - int(start_ms)) / 1000.0


# --- growing histories (a live run's tail: app/runs/increments.py) --------------------

POINT = np.dtype([("step", "<i8"), ("timestamp", "<i8"), ("value", "<f8")])


def keyed(series: Series) -> np.ndarray:
    """One 24-byte key per point: equal keys are points MLflow stores once (its metric
    rows are unique by step, timestamp and value). NaN has one bit pattern, -0.0 is 0.0."""
    rows = np.empty(series.size, dtype=POINT)
    rows["step"], rows["timestamp"] = series.steps, series.timestamps
    values = series.values + 0.0
    values[np.isnan(values)] = np.nan
    rows["value"] = values
    return rows.view("V24")


def take(series: Series, keep) -> Series:
    return Series(*(column[keep] for column in series))


def without(series: Series, held: Series) -> Series:
    """The points of ``series`` that ``held`` lacks, in ``series``' order."""
    if not held.size or not series.size:
        return series
    return take(series, ~np.isin(keyed(series), keyed(held)))


def tally(series: Series, prior: dict = None) -> dict:
    """``stats`` of ``prior``'s points and ``series`` together, from ``prior`` (a tally)
    and the new points alone: a growing history's stats without reading it again. The
    last point is the greatest (step, timestamp, value), MLflow's own "latest" rule."""
    new = stats(series) if series.size else None
    if prior is None:
        prior = {"total_points": 0, "min_value": None, "max_value": None,
                 "last_value": None, "last": None}
    if new is None:
        return prior
    finite = [v for v in (prior["min_value"], prior["max_value"], new["min_value"],
                          new["max_value"]) if v is not None]
    i = int(np.lexsort((series.values, series.timestamps, series.steps))[-1])
    last = [int(series.steps[i]), int(series.timestamps[i])]
    later = prior["last"] is None or last >= prior["last"]
    return {"total_points": prior["total_points"] + series.size,
            "min_value": min(finite) if finite else None,
            "max_value": max(finite) if finite else None,
            "last_value": finite_or_none(series.values[i]) if later else prior["last_value"],
            "last": last if later else prior["last"]}
