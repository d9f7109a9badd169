"""Pure functions over metric values and histories (no I/O)."""
import math


def finite_or_none(value):
    """A JSON-safe metric value: MLflow sends NaN/Infinity as numbers or strings."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def normalize(raw_points):
    """MLflow metric records -> [{step, value, timestamp}] ordered by step, then timestamp.

    The sort is stable, so several values logged at one step with one timestamp
    keep MLflow's order.
    """
    points = [
        {"step": int(p.get("step", 0)),
         "value": finite_or_none(p.get("value")),
         "timestamp": int(p.get("timestamp", 0))}
        for p in raw_points
    ]
    points.sort(key=lambda p: (p["step"], p["timestamp"]))
    return points


def summarize(metric_name, points):
    """The contract's metric history object; min/max only over finite values."""
    finite = [p["value"] for p in points if p["value"] is not None]
    return {
        "metric_name": metric_name,
        "history": points,
        "total_points": len(points),
        "min_value": min(finite) if finite else None,
        "max_value": max(finite) if finite else None,
        "last_value": points[-1]["value"] if points else None,
    }


def duration_seconds(start_ms, end_ms):
    """Run duration, or None while a run has no end time (still running, or crashed)."""
    if start_ms is None or end_ms is None:
        return None
    return (int(end_ms) - int(start_ms)) / 1000.0
