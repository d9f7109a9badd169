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
new generation and so a new tag. The content coding is not hashed: app/delivery.py
appends it to a compressed answer's tag. An answer with a run that is not finished has
no ETag: its histories come fresh from MLflow on every poll, and nothing cheaper than
the answer itself says whether they changed. Nor has one while the cache cannot say a
run's generation.
"""
import hashlib

import orjson

from app.cache.freshness import fingerprint, terminal
from app.runs.query import RunsQuery

# Bump when the bytes of a run or of the envelope change for the same runs and query.
FORMAT = "runs-json-1"
# delivery appends the content coding to a compressed answer's tag (app/delivery.py)
CODING_SUFFIXES = ("-gzip", "-zstd")


def etag_of(query: RunsQuery, listing, generations: dict, *, as_csv: bool) -> str | None:
    runs = listing["runs"]
    if not all(terminal(run) for run in runs):
        return None
    with_history = query.include_metric_history
    made_of = []
    for run in runs:
        generation = generations.get(run["info"]["run_id"]) if with_history else ""
        if not isinstance(generation, str):  # unknown: not cached, or the cache is down
            return None
        # Tags (include_tags) are not in the fingerprint: they come with the listing.
        made_of.append([run["info"]["run_id"], fingerprint(run), generation,
                        run.get("data", {}).get("tags")])
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
