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
from app.mlflow.errors import Rejected
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
    if cached and not _granted(ctx, sel, found):
        # MLflow contradicted the experiment the listing was made for: made anew, the
        # experiment resolved by MLflow for this caller (not as the cache remembers it).
        cache.forget_experiment(ctx.target, found["experiment"])
        return _select(ctx, sel, key, remember=False), False
    return found, cached


def _select(ctx, sel, key, remember=True):
    epoch = ctx.cache.epoch(ctx.target)  # before MLflow is asked (see the module's doc)
    found = select(ctx, sel, remember=remember)
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


def _granted(ctx, sel, found) -> bool:
    """Whether ``found`` may be served to these credentials: they hold a grant for each
    of its experiments, or MLflow gives one now (its 401/403 propagate). False when
    MLflow's answer contradicts the experiment the listing was made for: renamed, or,
    for a listing by name, refused or gone (the name may be another experiment's now)."""
    made_for = found["experiment"]
    for experiment_id in experiments_of(found):
        try:
            answer = _ensure_grant(ctx, experiment_id)
        except Rejected as refused:
            if sel.experiment_name is None or not (refused.status == 403 or refused.not_found):
                raise
            return False
        if (made_for and answer and answer["experiment_id"] == made_for["experiment_id"]
                and answer["name"] != made_for["name"]):
            return False
    return True


def _ensure_grant(ctx, experiment_id):
    """MLflow must have accepted these credentials for this experiment recently: the
    experiment as MLflow answered, if it was asked now, else None."""
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
        return experiment

    if cache.auth_ttl <= 0:
        return ask()
    answer, cached = one_asks(cache, ctx.deadline, cache.grant_key(target, experiment_id),
                              look, ask, kind="grant")
    return None if cached else answer
