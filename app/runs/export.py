"""Histories as CSV rows, streamed: ``run_id, run_name, metric, step, value, timestamp``.

Rows are written from the numpy columns a slice at a time, so a million-row export
never holds more than one slice as text. NaN/Infinity are empty cells.

Text cells (run_id, run_name, metric) that a spreadsheet would run as a formula are
neutralised as OWASP describes (CSV injection): a leading ``=``, ``+``, ``-``, ``@``, tab or
carriage return gets a ``'`` in front. Numbers (step, value, timestamp) are written as
numbers, so a negative value stays -1.5. The csv module quotes cells holding commas,
quotes or newlines.
"""
import csv
import io
import json
import math
from itertools import repeat

COLUMNS = ("run_id", "run_name", "metric", "step", "value", "timestamp")
ROWS_PER_CHUNK = 20_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What the JSON answer lists beside the runs goes into JSON headers, bounded: reverse
# proxies refuse a response whose headers exceed a buffer (nginx: 4-8 KB for them all).
HEADER_ENTRIES = 20
HEADER_BYTES = 1536  # per list header; keys and run ids may be long, and \u-escaped


def csv_chunks(runs, histories: dict, view):
    """Yield the CSV as UTF-8 byte chunks; ``histories`` is {(run_id, key): Series} and
    is emptied as it goes (each history freed once written); None: the header only."""
    yield _rows([COLUMNS])
    for run in runs if histories is not None else ():
        run_id = run["info"]["run_id"]
        cells = safe_text(run_id), safe_text(run["info"].get("run_name") or "")
        for key in view.keys_of(run):
            points = view.points(histories.pop((run_id, key)))
            for start in range(0, points.size, ROWS_PER_CHUNK):
                window = slice(start, start + ROWS_PER_CHUNK)
                values = ["" if math.isnan(v) else v for v in points.values[window].tolist()]
                yield _rows(zip(repeat(cells[0]), repeat(cells[1]), repeat(safe_text(key)),
                                points.steps[window].tolist(), values,
                                points.timestamps[window].tolist()))


def safe_text(cell: str) -> str:
    """A text cell a spreadsheet shows as text instead of evaluating it."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _rows(rows) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerows(rows)  # floats as repr: they read back exactly
    return text.getvalue().encode()


def header_list(items) -> str:
    """ASCII JSON of the first ``items`` (whole entries: at most HEADER_ENTRIES, in at
    most HEADER_BYTES); a ``-Count`` header beside it has the total."""
    kept, size = [], len("[]")
    for item in items[:HEADER_ENTRIES]:
        size += len(json.dumps(item)) + (len(", ") if kept else 0)
        if size > HEADER_BYTES:
            break
        kept.append(item)
    return json.dumps(kept)
