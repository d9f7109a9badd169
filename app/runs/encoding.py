"""The answer's bytes: each run as the contract's JSON object, the envelope around the
runs, and the headers a CSV export carries instead of the envelope's extras.

Runs arrive as pre-encoded JSON pieces (a cached run is the bytes Redis sent): the
envelope is written around them without decoding or copying them again.
"""
from dataclasses import dataclass

import orjson

from app import history
from app.runs import export
from app.runs.views import View

WRITE_SIZE = 1 << 20


@dataclass
class RunsAnswer:
    chunks: object  # the body in pieces: bytes, or views of cached entries; or a generator
    length: int     # None when streamed (CSV)
    cache: str      # HIT (MLflow not asked), MISS (nothing from cache) or PARTIAL
    headers: dict = None
    etag: str = None  # app/runs/etag.py; None when the answer has none
    not_modified: bool = False  # a 304's: the client holds it (``etag``), no body

    def __iter__(self):
        """The body for the WSGI server, which writes bytes: a cached run (a view of
        what Redis sent) goes out a megabyte at a time instead of as one more copy. A
        run with its compressed form stays a ``Segment`` for app/api/delivery.py."""
        for chunk in self.chunks:
            if isinstance(chunk, memoryview):
                for start in range(0, len(chunk), WRITE_SIZE):
                    yield bytes(chunk[start:start + WRITE_SIZE])
            else:
                yield chunk


def not_modified(tag: str, cache_state, headers=None) -> RunsAnswer:
    """The answer to a conditional GET whose If-None-Match holds it: ``tag``, no body."""
    return RunsAnswer((), 0, cache_state, headers, tag, not_modified=True)


def json_answer(listing, pieces, view, cache_state, etag=None, cursor=None) -> RunsAnswer:
    """The contract's envelope around the runs' pre-encoded JSON pieces; ``cursor`` for the
    next poll (app/runs/cursor.py)."""
    experiment = listing["experiment"]
    head = {"success": True, "experiment_name": experiment and experiment["name"],
            "total_runs": len(pieces)}
    tail = {"message": f"Fetched {len(pieces)} run(s) with "
                       f"{sum(n for _, n in pieces)} total metric histories"}
    if view.metric_keys:
        tail["unknown_metric_keys"] = view.unknown_keys(listing["runs"])
    if "errors" in listing:
        tail["run_errors"] = listing["errors"]
    if cursor is not None:
        tail["cursor"] = cursor
    chunks = [orjson.dumps(head)[:-1] + b',"runs":[']
    for i, (piece, _) in enumerate(pieces):
        if i:
            chunks.append(b",")
        chunks += piece if isinstance(piece, list) else [piece]  # a list: with_tags' chunks
    chunks.append(b"]," + orjson.dumps(tail)[1:])
    return RunsAnswer(chunks, sum(len(c) for c in chunks), cache_state, etag=etag)


def csv_headers(listing, view):
    """What the JSON answer would report beside the rows (ASCII-safe JSON, bounded)."""
    headers = {"Content-Disposition": 'attachment; filename="mlflow-runs.csv"'}
    if view.metric_keys:
        unknown = view.unknown_keys(listing["runs"])
        headers["X-Unknown-Metric-Keys-Count"] = str(len(unknown))
        headers["X-Unknown-Metric-Keys"] = export.header_list(unknown)
    if "errors" in listing:
        headers["X-Run-Errors-Count"] = str(len(listing["errors"]))
        headers["X-Run-Errors"] = export.header_list(
            [{"run_id": e["run_id"], "code": e["code"]} for e in listing["errors"]])
    return headers


def run_json(run, histories=None, view=View(), totals=None):
    """(the contract's run object as JSON, its number of histories).

    ``histories`` None means none were asked for. Metric histories are spliced in
    as pre-encoded pieces and everything is joined once: a million-point history
    is never held as Python objects, nor copied more than once. ``totals`` ({key:
    history.tally}) marks a run answered since the view's cursor: its histories hold only
    what is new, their stats are the whole history's.
    """
    head = run_fields(run, view, histories, totals)
    if histories is None:
        return orjson.dumps(dict(head, metrics_history=[])), 0
    keys = view.keys_of(run)
    pieces = [orjson.dumps(head)[:-1], b',"metrics_history":[']
    for i, key in enumerate(keys):
        if i:
            pieces.append(b",")
        # pop: each history's columns are freed once encoded, before the final join.
        pieces += view.encode(key, histories.pop((head["run_id"], key)),
                              None if totals is None else totals[key])
    pieces.append(b"]}")
    return b"".join(pieces), len(keys)


def run_fields(run, view=View(), histories=None, totals=None):
    """The contract's run object without ``metrics_history`` (which comes last), and the
    dashboard's fields (times in ms since the epoch, null when MLflow has none); with a
    cursor, ``since_cursor``: whether the histories are only what is new since it."""
    info, data = run["info"], run.get("data", {})
    fields = {
        "run_id": info["run_id"],
        "run_name": info.get("run_name"),
        "status": info.get("status"),
        "duration_seconds": history.duration_seconds(info.get("start_time"), info.get("end_time")),
        "start_time": _ms(info.get("start_time")),
        "end_time": _ms(info.get("end_time")),
        "experiment_id": info.get("experiment_id"),
        "user_id": info.get("user_id") or None,
        "parameters": {p["key"]: p.get("value", "") for p in data.get("params", [])},
        "metrics_summary": view.summary(run, histories, totals),
    }
    if view.cursor is not None:
        fields["since_cursor"] = totals is not None
    return fields


def _ms(value):
    return None if value is None or value == "" else int(value)


def with_tags(piece, run):
    """A run's JSON piece (bytes, or a view of a cached entry) with ``"tags"`` added as
    its last member, without decoding it: tags are asked per query and never part of
    the cached run JSON. Pieces end with ``}`` (app/runs/encoding.run_json)."""
    tags = {t["key"]: t.get("value", "") for t in run.get("data", {}).get("tags", [])}
    return [piece[:-1], b',"tags":', orjson.dumps(tags), b"}"]
