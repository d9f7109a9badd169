"""Which runs a /mlflow/runs query selects, asked of MLflow.

The result, a *listing*, is plain JSON (it may be cached): the experiment named by
the query (or None) and the selected runs' metadata, newest first.
"""
from app import errors
from app.gateway import Declined

# MLflow runs/search takes a list of experiments; keep each call's list (and the
# SQL IN clause behind it) modest.
EXPERIMENTS_PER_SEARCH = 500


def select(gateway, query) -> dict:
    experiment = resolve_experiment(gateway, query)
    if query["run_id"] is not None:
        run = one_run(gateway, query, experiment)
        experiment = experiment or gateway.get_experiment(run["info"]["experiment_id"])
        runs = [run]
        if query.get("filter_string"):  # the run, if it matches (MLflow's id, not the caller's)
            narrowed = f"attributes.run_id = '{run['info']['run_id']}' and {query['filter_string']}"
            runs = search(gateway, dict(query, filter_string=narrowed), [experiment["experiment_id"]])
    else:
        ids = [experiment["experiment_id"]] if experiment else None
        runs = search(gateway, query, ids)
    return {"experiment": experiment and {"experiment_id": experiment["experiment_id"],
                                          "name": experiment["name"]},
            "runs": [slim(run) for run in runs]}


def resolve_experiment(gateway, query):
    """The experiment named by experiment_name and/or experiment_id (they must agree)."""
    by_name = by_id = None
    if query["experiment_name"] is not None:
        by_name = _not_found_as(gateway.get_experiment_by_name, query["experiment_name"],
                                f"Experiment '{query['experiment_name']}' not found. "
                                "POST /mlflow/experiments lists the names you can read.")
    if query["experiment_id"] is not None:
        by_id = _not_found_as(gateway.get_experiment, query["experiment_id"],
                              f"Experiment with id '{query['experiment_id']}' not found.")
    if by_name and by_id and by_name["experiment_id"] != by_id["experiment_id"]:
        raise errors.InvalidInput(
            f"experiment_name '{by_name['name']}' is experiment {by_name['experiment_id']}, "
            f"not experiment_id {by_id['experiment_id']}; send one of them, or both matching.")
    experiment = by_name or by_id
    if experiment and experiment.get("lifecycle_stage") == "deleted" and not query["include_deleted"]:
        raise errors.NotFound(f"Experiment '{experiment['name']}' is deleted; "
                              "send include_deleted: true to read it anyway.")
    return experiment


def one_run(gateway, query, experiment):
    run_id = query["run_id"]
    run = _not_found_as(gateway.get_run, run_id, f"Run '{run_id}' not found.")
    info = run["info"]
    if experiment is not None and info["experiment_id"] != experiment["experiment_id"]:
        raise errors.NotFound(f"Run '{run_id}' is not in experiment '{experiment['name']}' "
                              f"(it is in experiment {info['experiment_id']}).")
    if info.get("lifecycle_stage") == "deleted" and not query["include_deleted"]:
        raise errors.NotFound(f"Run '{run_id}' is deleted; send include_deleted: true to read it.")
    return run


def search(gateway, query, experiment_ids=None):
    """The first ``limit`` runs of these experiments (default: every active one you
    may read), newest first or by ``order_by``, passing ``filter_string`` to MLflow."""
    view = "ALL" if query["include_deleted"] else "ACTIVE_ONLY"
    options = {"filter_string": query.get("filter_string"), "order_by": query.get("order_by")}
    if experiment_ids is None:
        experiment_ids = [e["experiment_id"] for e in gateway.search_experiments()]
    # Newest-first results can be merged across calls; any other order needs one call.
    step = EXPERIMENTS_PER_SEARCH if not options["order_by"] else max(1, len(experiment_ids))
    found = []
    try:
        for start in range(0, len(experiment_ids), step):
            found += gateway.search_runs(experiment_ids[start:start + step], query["limit"],
                                         view, **options)
    except Declined as refused:
        given = [field for field in ("filter_string", "order_by") if options[field]]
        raise errors.invalid_fields(
            {field: [f"MLflow rejected it: {refused.message}"] for field in given}) from None
    if len(experiment_ids) > step:
        found.sort(key=lambda r: int(r["info"].get("start_time") or 0), reverse=True)
    return found[:query["limit"]]


def slim(run):
    """A run without its tags (they can be large), except the run name."""
    data = run.get("data", {})
    name = next((t.get("value") for t in data.get("tags", []) if t["key"] == "mlflow.runName"), None)
    info = dict(run["info"])
    info["run_name"] = info.get("run_name") or name
    return {"info": info, "data": {"params": data.get("params", []),
                                   "metrics": data.get("metrics", [])}}


def _not_found_as(fetch, key, message):
    try:
        return fetch(key)
    except errors.NotFound:
        raise errors.NotFound(message) from None
