"""Which runs a /mlflow/runs query selects, asked of MLflow.

The result, a *listing*, is plain JSON (it may be cached): the experiment named by
the query (or None), the selected runs' metadata (newest first, or in the order of
``run_ids``) and, for ``run_ids``, each run that could not be read, with its reason
(app/runs/by_ids.py).
"""
from app import errors
from app.mlflow.errors import Rejected
from app.runs import by_ids
from app.runs.query import Selection
from app.runs.search import matching, not_found_as, one_run, search


class Contradicted(Exception):
    """MLflow's answer contradicts the experiment as the cache remembered it."""


def select(ctx, sel: Selection, *, remember: bool = True) -> dict:
    """The listing; ``remember``: a shared listing's experiment may be as MLflow
    resolved it within AUTH_CACHE_TTL. If MLflow's answer then contradicts that
    resolution, it is forgotten and the experiment asked of MLflow."""
    experiment, remembered = resolve_experiment(ctx, sel, remember)
    try:
        return _select(ctx, sel, experiment, remembered, remember)
    except Contradicted:
        ctx.cache.forget_experiment(ctx.target, experiment)
        return select(ctx, sel, remember=False)


def _select(ctx, sel: Selection, experiment, remembered: bool, remember: bool) -> dict:
    failed = None
    if sel.run_id is not None:
        if sel.run_ids and sel.run_id not in sel.run_ids:
            raise errors.NotFound(f"Run '{sel.run_id}' is not among run_ids.")
        run = one_run(ctx, sel, None if remembered else experiment)
        if remembered and run["info"]["experiment_id"] != experiment["experiment_id"]:
            raise Contradicted  # the name is another experiment's now, or the run is not in it
        experiment = experiment or _experiment_of(ctx, sel, run, remember)
        runs = matching(ctx, sel, [run])
    elif sel.run_ids:
        runs, failed = by_ids.several_runs(ctx, sel, experiment)
        if experiment is None and len({r["info"]["experiment_id"] for r in runs}) == 1:
            experiment = ctx.mlflow.get_experiment(runs[0]["info"]["experiment_id"])
    else:
        ids = [experiment["experiment_id"]] if experiment else None
        runs = search(ctx, sel, ids)
        if remembered and not runs:
            # MLflow's run search silently leaves out experiments the caller may not
            # read: with the experiment from the cache, no runs proves nothing (a
            # revoked caller must not store an empty shared listing). MLflow decides.
            experiment = _still(ctx, experiment)
    listing = {"experiment": experiment and {"experiment_id": experiment["experiment_id"],
                                             "name": experiment["name"]},
               "runs": [slim(run, tags=sel.include_tags) for run in runs]}
    if failed is not None:
        listing["errors"] = failed
    return listing


def resolve_experiment(ctx, sel: Selection, remember: bool = True):
    """(The experiment named by experiment_name and/or experiment_id (they must agree),
    whether it came from the cache rather than from MLflow for this caller)."""
    by_name = by_id = None
    remembered = []
    if sel.experiment_name is not None:
        by_name = _lookup(ctx, sel, "name", sel.experiment_name, ctx.mlflow.get_experiment_by_name,
                          f"Experiment '{sel.experiment_name}' not found. "
                          "POST /mlflow/experiments lists the names you can read.", remembered,
                          remember=remember)
    if sel.experiment_id is not None:
        # MLflow answers 400 to an id that cannot be one ("abc"): no such experiment.
        by_id = _lookup(ctx, sel, "id", sel.experiment_id, ctx.mlflow.get_experiment,
                        f"Experiment with id '{sel.experiment_id}' not found.", remembered,
                        also=(400,), remember=remember)
    if by_name and by_id and by_name["experiment_id"] != by_id["experiment_id"]:
        raise errors.InvalidInput(
            f"experiment_name '{by_name['name']}' is experiment {by_name['experiment_id']}, "
            f"not experiment_id {by_id['experiment_id']}; send one of them, or both matching.")
    experiment = by_name or by_id
    if experiment and experiment.get("lifecycle_stage") == "deleted" and not sel.include_deleted:
        raise errors.NotFound(f"Experiment '{experiment['name']}' is deleted; "
                              "send include_deleted: true to read it anyway.")
    return experiment, bool(remembered) and all(remembered)


def _still(ctx, experiment):
    """The remembered ``experiment`` as MLflow answers it to this caller now; Contradicted
    if MLflow refuses it, has it no more, or names it otherwise."""
    try:
        now = ctx.mlflow.get_experiment(experiment["experiment_id"])
    except Rejected as refused:
        if refused.status == 403 or refused.not_found:
            raise Contradicted from None
        raise
    if now["name"] != experiment["name"]:
        raise Contradicted
    ctx.cache.set_experiment(ctx.target, now)
    return now


def _experiment_of(ctx, sel, run, remember):
    """The experiment of a run MLflow just let this caller read (so its experiment too):
    for a shared listing's refresh, as MLflow resolved it within AUTH_CACHE_TTL, so the
    refresh is the one runs/get; else asked of MLflow."""
    experiment_id = run["info"]["experiment_id"]
    return (_resolved(ctx, sel, "id", experiment_id, remember)
            or _keep(ctx, sel, ctx.mlflow.get_experiment(experiment_id)))


def _lookup(ctx, sel, by, value, fetch, message, remembered, also=(), *, remember=True):
    """The experiment by name or id. For a shared listing's refresh, as MLflow resolved
    it within AUTH_CACHE_TTL, if this caller holds a grant for it (then the refresh is
    one run search); else asked of MLflow, with these credentials (and a resolution it
    contradicts is forgotten)."""
    known = _resolved(ctx, sel, by, value, remember)
    if known and ctx.cache.has_grant(ctx.target, known["experiment_id"]):
        remembered.append(True)
        return known
    found = not_found_as(fetch, value, message, also=also)
    remembered.append(False)
    if known and (known["experiment_id"], known["name"]) != (found["experiment_id"], found["name"]):
        ctx.cache.forget_experiment(ctx.target, known)
    return _keep(ctx, sel, found)


def _resolved(ctx, sel, by, value, remember=True):
    """The experiment as MLflow resolved it by ``by`` within AUTH_CACHE_TTL: only for a
    shared listing (its resolution is per server, not per caller), and neither on a
    refresh nor once MLflow contradicted it (``remember`` false)."""
    if sel.shared and remember and not ctx.refresh:
        return ctx.cache.get_experiment(ctx.target, by, value)
    return None


def _keep(ctx, sel, found):
    """``found`` (MLflow's answer), kept for the shared listings' later refreshes."""
    if sel.shared:
        ctx.cache.set_experiment(ctx.target, found)
    return found


def slim(run, tags=False):
    """A run without its tags (they can be large), except the run name and user, unless
    ``tags`` (include_tags): only then does the listing hold them, for this query."""
    data = run.get("data", {})
    found = {t["key"]: t.get("value") for t in data.get("tags", [])}
    info = dict(run["info"])
    info["run_name"] = info.get("run_name") or found.get("mlflow.runName")
    info["user_id"] = info.get("user_id") or found.get("mlflow.user")
    slimmed = {"info": info, "data": {"params": data.get("params", []),
                                      "metrics": data.get("metrics", [])}}
    if tags:
        slimmed["data"]["tags"] = data.get("tags", [])
    return slimmed
