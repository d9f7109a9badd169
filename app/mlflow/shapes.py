"""The shape of MLflow's answers that the service relies on, checked as they come in.

A server that answers 200 with JSON of another shape (``[1,2,3]``, ``{"experiment":
null}``, a run without ``info``, a metric step ``"abc"``) is not behaving like MLflow:
the transport turns ``WrongShape`` into ``NotMlflow``, answered as into a 502 naming the endpoint and what was wrong, instead
of a KeyError deep in the service. Each checker takes a value and where it sits in the
answer, and returns the value. Only what the service reads is checked: missing lists are
empty (MLflow leaves out empty repeated fields), unknown keys are ignored. A text field
longer than the operator allows (MLFLOW_MAX_FIELD_CHARS; MLflow's own longest are tag
values, 8,000 characters) is wrong too: the service would echo it.
"""
import contextlib
import contextvars
import re

INT64 = 2**63
INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")
# The operator's MLFLOW_MAX_FIELD_CHARS, for the answer being checked (None: no limit). The
# transport sets it around each check (``fields_at_most``), so the checkers keep their
# plain signatures; a context variable is per thread, as each check is.
_MAX_FIELD_CHARS = contextvars.ContextVar("max_field_chars", default=None)


class WrongShape(ValueError):
    """What is wrong with an answer, e.g. ``'experiment' is not an object``."""


def _name(where, key):
    return f"{where}.{key}" if where else key


def obj(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise WrongShape(f"'{where}' is not an object")
    return value


def listed(container: dict, key: str, where: str) -> list:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise WrongShape(f"'{where}' is not a list")
    return value


@contextlib.contextmanager
def fields_at_most(max_chars: int):
    """Text fields checked in this block may hold at most ``max_chars`` characters."""
    token = _MAX_FIELD_CHARS.set(max_chars)
    try:
        yield
    finally:
        _MAX_FIELD_CHARS.reset(token)


def text(container: dict, key: str, where: str, *, required=True):
    value = container.get(key)
    if value is None and not required:
        return value
    if not isinstance(value, str):
        raise WrongShape(f"'{_name(where, key)}' is not a string")
    most = _MAX_FIELD_CHARS.get()
    if most is not None and len(value) > most:
        raise WrongShape(f"'{_name(where, key)}' is longer than MLFLOW_MAX_FIELD_CHARS={most} "
                         "characters")
    return value


def integer(container: dict, key: str, where: str):
    """An optional int64, as a JSON number or a string of digits (protobuf's JSON)."""
    value = container.get(key)
    if value is None or (type(value) is int and -INT64 <= value < INT64):
        return value
    if isinstance(value, str) and INTEGER_TEXT.fullmatch(value) and -INT64 <= int(value) < INT64:
        return value
    raise WrongShape(f"'{_name(where, key)}' is not a 64-bit integer")


def number(container: dict, key: str, where: str):
    """A metric value: a JSON number, or a string such as "NaN" or "Infinity"."""
    value = container.get(key)
    if type(value) in (int, float):
        return value
    if isinstance(value, str):
        try:
            float(value)
            return value
        except ValueError:
            pass
    raise WrongShape(f"'{_name(where, key)}' is not a number")


# --- MLflow's objects ----------------------------------------------------------------

def experiment(value, where="experiment") -> dict:
    found = obj(value, where)
    text(found, "experiment_id", where)
    text(found, "name", where)
    text(found, "lifecycle_stage", where, required=False)
    text(found, "artifact_location", where, required=False)
    return found


def run(value, where="run") -> dict:
    found = obj(value, where)
    info = obj(found.get("info"), f"{where}.info")
    for key in ("run_id", "experiment_id"):
        text(info, key, f"{where}.info")
    for key in ("status", "lifecycle_stage", "run_name"):
        text(info, key, f"{where}.info", required=False)
    for key in ("start_time", "end_time"):
        integer(info, key, f"{where}.info")
    data = found.get("data")
    if data is not None:
        _run_data(obj(data, f"{where}.data"), f"{where}.data")
    return found


def _run_data(data, where):
    for name in ("params", "tags"):
        entries = listed(data, name, f"{where}.{name}")
        for i, entry in enumerate(entries):
            obj(entry, f"{where}.{name}[{i}]")
            text(entry, "key", f"{where}.{name}[{i}]")
            text(entry, "value", f"{where}.{name}[{i}]", required=False)
        _unique_keys(entries, f"{where}.{name}")
    metrics = listed(data, "metrics", f"{where}.metrics")
    for i, metric in enumerate(metrics):
        point(metric, f"{where}.metrics[{i}]")
        text(metric, "key", f"{where}.metrics[{i}]")
    _unique_keys(metrics, f"{where}.metrics")


def _unique_keys(entries, where):
    # A run has one param, tag and latest metric per key: the service keys them so.
    if len({entry["key"] for entry in entries}) != len(entries):
        raise WrongShape(f"'{where}' lists a key more than once")


def point(value, where, *, run_id=False) -> dict:
    """A metric record: numeric value, int64 step and timestamp (and a run_id string)."""
    found = obj(value, where)
    number(found, "value", where)
    integer(found, "step", where)
    integer(found, "timestamp", where)
    if run_id:
        text(found, "run_id", where)
    return found


def points(records, where, *, run_id=False) -> list:
    """Metric records, each checked (``history.from_records`` takes the usual answer,
    numbers only, in one go, and only calls this when it finds something else)."""
    for i, record in enumerate(records):
        point(record, f"{where}[{i}]", run_id=run_id)
    return records


# --- whole answers ------------------------------------------------------------------

def field(key, check):
    """An answer holding one object under ``key`` ({"experiment": {...}})."""
    def checked(answer):
        check(answer.get(key), key)
        return answer
    return checked


def page(items_key, check):
    """A page of a list ({"runs": [...], "next_page_token": "..."}), ``check`` per item."""
    def checked(answer):
        for i, item in enumerate(listed(answer, items_key, items_key)):
            check(item, f"{items_key}[{i}]")
        text(answer, "next_page_token", "", required=False)
        return answer
    return checked


def history_page(answer):
    """metrics/get-history: the records themselves are checked as they are converted
    (``history.from_records``: a history may have millions)."""
    listed(answer, "metrics", "metrics")
    text(answer, "next_page_token", "", required=False)
    return answer


def bulk_history(answer):
    """The ajax bulk endpoints: records grouped by their run_id."""
    for i, record in enumerate(history_page(answer).get("metrics") or []):
        if type(record) is not dict or type(record.get("run_id")) is not str:
            text(obj(record, f"metrics[{i}]"), "run_id", f"metrics[{i}]")
    return answer


# What each endpoint answers.
experiment_answer = field("experiment", experiment)  # experiments/get, get-by-name
run_answer = field("run", run)                       # runs/get
experiments_page = page("experiments", experiment)   # experiments/search
runs_page = page("runs", run)                        # runs/search
