"""MLflow's metric records as history Series: the one place their JSON becomes columns."""
import numpy as np

from app import history
from app.mlflow import shapes


def from_records(records, where="metrics") -> history.Series:
    """MLflow metric records ({step, value, timestamp, ...}) -> a Series, in their order.

    A record MLflow would not send (a step "abc", a value null) raises
    ``WrongShape`` naming it (``where[i]``). The usual answer, numbers
    only, is taken by numpy as it is (which reads a JSON true/false among numbers as
    1/0: not worth a look at each of a million points); numbers written as strings
    ("5", "NaN"), protobuf's JSON, are converted one by one.
    """
    if not records:
        return history.empty()
    try:
        steps = np.array([r.get("step", 0) for r in records])
        stamps = np.array([r.get("timestamp", 0) for r in records])
        values = np.array([r.get("value") for r in records])
    except (AttributeError, ValueError):  # a record that is not an object; lists of lists
        pass
    else:
        if (steps.dtype == np.int64 and stamps.dtype == np.int64 and values.dtype.kind in "fi"
                and steps.ndim == stamps.ndim == values.ndim == 1):
            values = values.astype(np.float64, copy=False)
            return history.Series(steps, stamps, history.finite_or_nan(values))
    shapes.points(records, where)  # raises, naming the record, unless all are numbers
    return history.Series(
        np.array([int(r.get("step", 0)) for r in records], dtype=np.int64),
        np.array([int(r.get("timestamp", 0)) for r in records], dtype=np.int64),
        history.finite_or_nan(np.array([float(r["value"]) for r in records], dtype=np.float64)))
