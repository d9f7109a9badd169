"""An answer's ETag, derived from what made it rather than from its bytes, so that a
conditional poll can be answered without building (or compressing) the answer, or
reading any of it: app/runs/assembly.py decides a 304 from the listing and the runs'
generations alone.

What makes a /mlflow/runs answer: the query, every field of it (``RunsQuery.answer_parts``:
the selection, the view, histories or not, the format) but ``refresh``, which changes how
the answer is made and not what it says; JSON or CSV as decided (``format``, or the Accept
header); the encoding of runs (``FORMAT``); the listing's extras (experiment, run errors);
and, for each run, its fingerprint, its tags when asked for, and the *generation* its
cached copies belong to (app/cache/run_cache.py): a refresh, or a refetch after a copy
expired (which is how points logged late below a run's latest step come in), writes a
new generation and so a new tag. A live run's part is its shared tail as read (its epoch
and sequence number: app/cache/tails.py) with what the listing shows of it besides its
metrics' values (``live_print``). The content coding is not hashed: app/api/delivery.py
appends it to a compressed answer's tag. An answer has no ETag while the cache cannot
say a run's generation or tail (a live run read from MLflow for this request alone).
"""
import hashlib

import orjson

from app.cache.freshness import fingerprint, live_print, terminal
from app.runs.query import RunsQuery

# Bump when the bytes of a run or of the envelope change for the same runs and query.
FORMAT = "runs-json-1"
# delivery appends the content coding to a compressed answer's tag (app/api/delivery.py)
CODING_SUFFIXES = ("-gzip", "-zstd")


def etag_of(query: RunsQuery, listing, generations: dict, *, as_csv: bool,
            live: dict = None) -> str | None:
    """``live``: {run_id: TailState}, the live runs' tails as read for this answer."""
    with_history = query.include_metric_history
    made_of = []
    for run in listing["runs"]:
        run_id, tags = run["info"]["run_id"], run.get("data", {}).get("tags")
        if not with_history:  # the run as listed is the whole answer
            made_of.append([run_id, fingerprint(run), "", tags])
        elif terminal(run):
            generation = generations.get(run_id)
            if not isinstance(generation, str):  # unknown: not cached, or the cache is down
                return None
            # Tags (include_tags) are not in the fingerprint: they come with the listing.
            made_of.append([run_id, fingerprint(run), generation, tags])
        else:
            state = (live or {}).get(run_id)
            if state is None:  # read from MLflow for this request alone: nothing says more
                return None
            # Its histories (and so the summary) are the tail's as of (epoch, seq).
            made_of.append([run_id, live_print(run), state.epoch, state.seq, tags])
    # The query whole (RunsQuery.answer_parts: every field but refresh), not a hand-picked
    # list: one field left out (max_step was) gives two different answers one tag.
    parts = [FORMAT, "csv" if as_csv else "json", query.answer_parts(), listing["experiment"],
             listing.get("errors"), made_of]
    return hashlib.blake2b(orjson.dumps(parts), digest_size=16).hexdigest()


def held(if_none_match, tag: str | None) -> str | None:
    """The tag among those ``If-None-Match`` names (werkzeug's ETags) that is ``tag`` in
    some coding: the representation the client holds, which a 304 names (as its 200 did).
    None when none is, or the answer has no tag."""
    if tag is None or not if_none_match:
        return None
    if if_none_match.star_tag:
        return tag
    ours = {tag, *(tag + suffix for suffix in CODING_SUFFIXES)}
    return next((sent for sent in sorted(if_none_match.as_set(include_weak=True))
                 if sent in ours), None)
