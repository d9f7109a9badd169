"""Run searches and single runs, asked of MLflow: the steps a selection is made of."""
from app import errors
from app.mlflow.errors import Rejected
from app.runs.query import RUN_STATUSES, Selection

# MLflow runs/search takes a list of experiments; keep each call's list (and the
# SQL IN clause behind it) modest.
EXPERIMENTS_PER_SEARCH = 500


def matching(ctx, sel: Selection, runs):
    """Those of ``runs`` that pass ``filter_string`` (asked of MLflow) and ``run_status``,
    in ``order_by``'s order if it is given."""
    runs = [run for run in runs if not sel.run_status or run["info"].get("status") in sel.run_status]
    ordering = sel.order_by and len(runs) > 1
    if not runs or not (sel.filter_string or ordering):
        return runs
    # MLflow evaluates the filter and the order; the ids are MLflow's own, never the caller's text.
    clauses = ["attributes.run_id IN ({})".format(", ".join(f"'{_id(run)}'" for run in runs))]
    clauses += [sel.filter_string] if sel.filter_string else []
    narrowed = sel.but(filter_string=" and ".join(clauses), run_status=None, limit=len(runs))
    by_id = {_id(run): run for run in runs}
    found = search(ctx, narrowed, sorted({run["info"]["experiment_id"] for run in runs}))
    return [by_id[_id(run)] for run in found if _id(run) in by_id]


def _id(run):
    return run["info"]["run_id"]


def one_run(ctx, sel: Selection, experiment, run_id=None):
    run_id = run_id or sel.run_id
    run = not_found_as(ctx.mlflow.get_run, run_id, f"Run '{run_id}' not found.")
    info = run["info"]
    if experiment is not None and info["experiment_id"] != experiment["experiment_id"]:
        raise errors.NotFound(f"Run '{run_id}' is not in experiment '{experiment['name']}' "
                              f"(it is in experiment {info['experiment_id']}).")
    if info.get("lifecycle_stage") == "deleted" and not sel.include_deleted:
        raise deleted(run_id)
    return run


def deleted(run_id):
    return errors.NotFound(f"Run '{run_id}' is deleted; send include_deleted: true to read it.")


def search(ctx, sel: Selection, experiment_ids=None, asked: Selection = None):
    """The first ``limit`` runs of these experiments (default: every active one you
    may read), newest first or by ``order_by``, passing ``filter_string`` to MLflow.
    A filter MLflow rejects is a 422 naming the fields of ``asked`` (default ``sel``)."""
    view = "ALL" if sel.include_deleted else "ACTIVE_ONLY"
    options = {"filter_string": _with_status(sel.filter_string, sel.run_status),
               "order_by": list(sel.order_by) if sel.order_by else None}
    if experiment_ids is None:
        experiment_ids = [e["experiment_id"] for e in ctx.mlflow.search_experiments()]
    # Newest-first results can be merged across calls; any other order needs one call.
    step = EXPERIMENTS_PER_SEARCH if not options["order_by"] else max(1, len(experiment_ids))
    found = []
    try:
        for start in range(0, len(experiment_ids), step):
            found += ctx.mlflow.search_runs(experiment_ids[start:start + step], sel.limit,
                                            view, **options)
    except Rejected as refused:
        if refused.status != 400 or not (options["filter_string"] or options["order_by"]):
            raise
        # run_status is written into the filter by us (always valid): not the caller's fault
        given = [name for name in ("filter_string", "order_by") if getattr(asked or sel, name)]
        if not given:  # a filter of ours, not the caller's
            raise errors.UpstreamError(f"MLflow rejected a run search: {refused.message}") from None
        raise errors.invalid_fields(
            {name: [f"MLflow rejected it: {refused.message}"] for name in given}) from None
    if len(experiment_ids) > step:
        found.sort(key=lambda r: int(r["info"].get("start_time") or 0), reverse=True)
    return found[:sel.limit]


def _with_status(filter_string, statuses):
    """``filter_string`` and ``run_status``, as one MLflow filter. MLflow allows no IN
    (nor OR) on status, so several statuses are written as "none of the others"."""
    if not statuses or set(statuses) >= set(RUN_STATUSES):
        return filter_string
    if len(statuses) == 1:
        clauses = [f"attributes.status = '{statuses[0]}'"]
    else:
        clauses = [f"attributes.status != '{s}'" for s in RUN_STATUSES if s not in statuses]
    return " and ".join(([filter_string] if filter_string else []) + clauses)


def not_found_as(fetch, key, message, also=()):
    """``fetch(key)``, with MLflow's "no such thing" (or a status in ``also``) as our 404."""
    try:
        return fetch(key)
    except Rejected as exc:
        if exc.not_found or exc.status in also:
            raise errors.NotFound(message) from None
        raise
