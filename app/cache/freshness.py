"""When a cached copy of a run is still right: runs that are finished, unchanged since.

MLflow lets a finished run be written to again (log_metric works; UpdateRun can set it
RUNNING), so a copy is kept only under its run's *fingerprint*: what ``runs/get`` shows
that a write would change. Points logged below the run's latest step change nothing
here; RECENT_RUN_CACHE_TTL bounds how long they go unseen (app/cache/run_cache.py). A
fetch that finds them is another matter: it ``agrees`` with the run's generation or not.
"""
import hashlib

import orjson

TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})


def terminal(run) -> bool:
    """Finished, failed or killed: the only runs whose histories are cached."""
    return run["info"].get("status") in TERMINAL


def fingerprint(run: dict) -> str:
    """What must not have changed for a cached copy of ``run`` to still be right."""
    metrics = run.get("data", {}).get("metrics", [])
    return _digest(run, sorted((m["key"], str(m.get("value")), m.get("step"), m.get("timestamp"))
                               for m in metrics))


def live_print(run: dict) -> str:
    """What of a live run its answer shows besides the histories, which come from its tail
    (and so do the summary's values): its fingerprint, but of its metrics only the keys."""
    return _digest(run, sorted(m["key"] for m in run.get("data", {}).get("metrics", [])))


def _digest(run, metrics) -> str:
    info, data = run["info"], run.get("data", {})
    state = [info.get("status"), info.get("end_time"), info.get("lifecycle_stage"),
             info.get("run_name"),
             sorted((p["key"], p.get("value")) for p in data.get("params", [])), metrics]
    return hashlib.blake2b(orjson.dumps(state), digest_size=16).hexdigest()


def agrees(known: dict, found: dict) -> bool:
    """Whether a fetch's histories ``found`` ({metric key: history.digest}) are those a
    generation's entries were made from (``known``): each metric both name has the same
    digest. A metric the generation does not know yet is no disagreement: it is learned."""
    return all(known.get(key, digest) == digest for key, digest in found.items())
