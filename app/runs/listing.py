"""A query's listing (which runs it selects) from the cache or from MLflow, and the
grants that let a cached listing or run be served to these credentials.

A cached listing is per caller (MLflow filters searches by permission), except for a
query scoped to one experiment or run (``Selection.shared``), whose listing is the same
for everyone who may read that experiment and is shared. Either way, before it is
served, MLflow must have accepted these credentials for each of its experiments within
AUTH_CACHE_TTL (a *grant*), so a revoked permission stops cached answers too, and a
caller without permission never gets a listing someone else filled. A grant is recorded
under the caller's epoch taken before MLflow was asked, so that a refusal of MLflow's
(which deletes the epoch: app/errors.py) drops it even when it is recorded afterwards.
"""
from app.cache.flight import one_asks
from app.runs.query import Selection
from app.runs.select import select


def listing(ctx, sel: Selection):
    """(The selection's listing, whether it came from the cache). When the cached
    listing expires under many polls, one of them asks MLflow; the others wait."""
    cache = ctx.cache
    key = cache.list_key(ctx.target, sel)
    if ctx.refresh or cache.list_ttl <= 0:
        return _select(ctx, sel, key), False
    found, cached = one_asks(cache, ctx.deadline, key, lambda: cache.get_listing(key),
                             lambda: _select(ctx, sel, key), kind="listing")
    if cached:
        for experiment_id in experiments_of(found):
            _ensure_grant(ctx, experiment_id)
    return found, cached


def _select(ctx, sel, key):
    epoch = ctx.cache.epoch(ctx.target)  # before MLflow is asked (see the module's doc)
    found = select(ctx, sel)
    # MLflow just answered these credentials for these experiments (its searches
    # leave out what the caller may not read).
    for experiment_id in experiments_of(found):
        ctx.cache.record_grant(ctx.target, experiment_id, epoch)
    ctx.cache.set_listing(key, found)
    return found


def experiments_of(found) -> list:
    ids = {run["info"]["experiment_id"] for run in found["runs"]}
    if found["experiment"]:
        ids.add(found["experiment"]["experiment_id"])
    return sorted(ids)


def _ensure_grant(ctx, experiment_id):
    """MLflow must have accepted these credentials for this experiment recently."""
    cache, target = ctx.cache, ctx.target
    checks = []  # what the cache said at each look, the last one before an ask

    def look():
        checks.append(cache.check_grant(target, experiment_id))
        return True if checks[-1].held else None

    def ask():
        epoch = cache.epoch(target, checks[-1] if checks else None)
        experiment = ctx.mlflow.get_experiment(experiment_id)  # 401/403 propagate to the caller
        cache.record_grant(target, experiment_id, epoch)
        cache.set_experiment(target, experiment)  # its name and state, as of now
        return True

    if cache.auth_ttl <= 0:
        ask()
        return
    one_asks(cache, ctx.deadline, cache.grant_key(target, experiment_id), look, ask, kind="grant")
