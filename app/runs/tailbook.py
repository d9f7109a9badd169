"""A metric tail's bookkeeping as points come in: what the next refresh compares and how
it proves a read complete (app/runs/increments.py). Pure; no I/O."""
import numpy as np

from app import history

# Points kept at a metric's highest step, to tell which of a range read's points at that
# step are new; beyond it (many values at one step, e.g. everything logged at step 0)
# the metric is read by offset instead.
AT_MAX_KEPT = 64


def value(number):
    """A value as the tail keeps it: finite, or None (NaN and infinities, as JSON has none)."""
    return history.finite_or_none(number)


def entry(metric) -> list | None:
    """MLflow's latest entry of a metric (a record of runs/search) as [step, timestamp,
    value]: what a refresh compares with the tail's to know whether the metric changed."""
    if metric is None:
        return None
    return [int(metric.get("step") or 0), int(metric.get("timestamp") or 0),
            value(metric.get("value"))]


def absorb(tail, new: history.Series):
    """Account for ``new`` points (not yet held) in ``tail``'s bookkeeping."""
    before = tail.max_step
    if before is not None and (new.steps < before).any():
        tail.odd = True  # logged below the highest step: a step range would miss such points
    tail.size += new.size
    tail.tally = history.tally(new, tail.tally)
    top = int(new.steps.max())
    if before is None or top > before:
        tail.max_step, tail.at_max = top, _pairs(new, new.steps == top)
    elif top == before and tail.at_max is not None:
        tail.at_max = tail.at_max + _pairs(new, new.steps == top)
    if tail.at_max is not None and len(tail.at_max) > AT_MAX_KEPT:
        tail.at_max = None
    i = int(np.lexsort((_ordering(new.values), new.steps, new.timestamps))[-1])
    last = [int(new.timestamps[i]), int(new.steps[i]), value(new.values[i])]
    if tail.last_read is None or _key(last) > _key(tail.last_read):
        tail.last_read = last


def at_max(tail) -> history.Series:
    """The points the tail holds at its highest step, as a Series."""
    pairs = tail.at_max or []
    return history.Series(np.full(len(pairs), tail.max_step or 0, dtype=np.int64),
                          np.array([p[0] for p in pairs], dtype=np.int64),
                          np.array([np.nan if p[1] is None else p[1] for p in pairs],
                                   dtype=np.float64))


def is_last_read(tail, points: history.Series) -> bool:
    """Whether an offset read's first point is the tail's last in MLflow's order: then
    the tail holds exactly MLflow's points before it, and every later one is new."""
    first = [int(points.timestamps[0]), int(points.steps[0]), value(points.values[0])]
    return first == tail.last_read


def _pairs(series, where) -> list:
    return [[int(t), value(v)] for t, v in zip(series.timestamps[where], series.values[where])]


def _ordering(values):
    # MLflow stores NaN as 0 (with is_nan) and orders by that value.
    return np.where(np.isnan(values), 0.0, values)


def _key(point):
    return point[0], point[1], 0.0 if point[2] is None else point[2]
