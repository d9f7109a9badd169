"""Pure functions over metric values and histories (no I/O).

A history is held as three numpy columns rather than one dict per point: a
million-point metric is then 24 MB instead of hundreds, and its JSON is written
from the columns a slice at a time, as pieces that the caller joins once.
"""
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


def from_records(records) -> Series:
    """MLflow metric records ({step, value, timestamp, ...}) -> a Series, in their order."""
    values = np.array([_float(r.get("value")) for r in records], dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    return Series(np.array([int(r.get("step", 0)) for r in records], dtype=np.int64),
                  np.array([int(r.get("timestamp", 0)) for r in records], dtype=np.int64),
                  values)


def concat(parts) -> Series:
    parts = list(parts)
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return from_records([])
    return Series(*(np.concatenate(column) for column in zip(*parts)))


def ordered(series: Series) -> Series:
    """By step, then timestamp; stable, so equal pairs keep MLflow's order."""
    order = np.lexsort((series.timestamps, series.steps))
    return Series(*(column[order] for column in series))


def encode_metric(metric_name, series: Series) -> list:
    """The contract's metric history object as JSON, in pieces for one final join.

    Points are ordered by step, then timestamp; NaN/Infinity are null;
    min/max are over the finite values only.
    """
    series = ordered(series)
    finite = series.values[~np.isnan(series.values)]
    stats = {
        "total_points": series.size,
        "min_value": float(finite.min()) if finite.size else None,
        "max_value": float(finite.max()) if finite.size else None,
        "last_value": finite_or_none(series.values[-1]) if series.size else None,
    }
    return [orjson.dumps({"metric_name": metric_name})[:-1], b',"history":[',
            *encode_points(series), b"],", orjson.dumps(stats)[1:]]


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


def duration_seconds(start_ms, end_ms):
    """Run duration, or None while a run has no end time (still running, or crashed)."""
    if start_ms is None or end_ms is None:
        return None
    return (int(end_ms) - int(start_ms)) / 1000.0


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
