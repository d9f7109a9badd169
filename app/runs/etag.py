"""An answer's ETag, derived from what made it rather than from its bytes, so that a
conditional poll can be answered without building (or compressing) the answer.

What makes a /mlflow/runs answer: the query (selection, view, histories or not, JSON or
CSV), the encoding of runs (``FORMAT``), the listing's extras (experiment, run errors)
and, for each run, its fingerprint, its tags when asked for, and the *generation* its
cached copies belong to
(app/cache/run_cache.py): a refresh, or a refetch after a copy expired (which is how
points logged late below a run's latest step come in), writes a new generation and so a
new tag. An answer with a run that is not finished has no ETag: its histories come
fresh from MLflow on every poll, and nothing cheaper than the answer itself says
whether they changed. Nor has one while the cache cannot say a run's generation.
"""
import hashlib

import orjson

from app.cache.freshness import fingerprint, terminal

# Bump when the bytes of a run or of the envelope change for the same runs and query.
FORMAT = "runs-json-1"
# delivery appends the content coding to a compressed answer's tag (app/delivery.py)
CODING_SUFFIXES = ("-gzip", "-zstd")


def etag_of(query, listing, generations: dict, *, as_csv: bool) -> str | None:
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
    view = query.view
    parts = [FORMAT, "csv" if as_csv else "json", with_history, query.selection.key_parts(),
             [list(view.metric_keys or ()), view.max_points, view.since_step,
              view.since_timestamp], listing["experiment"], listing.get("errors"), made_of]
    return hashlib.blake2b(orjson.dumps(parts), digest_size=16).hexdigest()


def matches(if_none_match, tag: str) -> bool:
    """Whether ``If-None-Match`` (werkzeug's ETags) names ``tag`` in any coding."""
    if tag is None or not if_none_match:
        return False
    if if_none_match.star_tag:
        return True
    return any(sent == tag or sent in {tag + suffix for suffix in CODING_SUFFIXES}
               for sent in if_none_match.as_set(include_weak=True))
