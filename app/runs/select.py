"""Which runs a /mlflow/runs query selects, asked of MLflow.

The result, a *listing*, is plain JSON (it may be cached): the experiment named by
the query (or None), the selected runs' metadata (newest first, or in the order of
``run_ids``) and, for ``run_ids``, each run that could not be read, with its reason
(app/runs/by_ids.py).
"""
from app import errors
from app.runs import by_ids
from app.runs.query import Selection
from app.runs.search import matching, not_found_as, one_run, search


def select(ctx, sel: Selection) -> dict:
    experiment = resolve_experiment(ctx, sel)
    failed = None
    if sel.run_id is not None:
        if sel.run_ids and sel.run_id not in sel.run_ids:
            raise errors.NotFound(f"Run '{sel.run_id}' is not among run_ids.")
        run = one_run(ctx, sel, experiment)
        experiment = experiment or ctx.mlflow.get_experiment(run["info"]["experiment_id"])
        runs = matching(ctx, sel, [run])
    elif sel.run_ids:
        runs, failed = by_ids.several_runs(ctx, sel, experiment)
        if experiment is None and len({r["info"]["experiment_id"] for r in runs}) == 1:
            experiment = ctx.mlflow.get_experiment(runs[0]["info"]["experiment_id"])
    else:
        ids = [experiment["experiment_id"]] if experiment else None
        runs = search(ctx, sel, ids)
    listing = {"experiment": experiment and {"experiment_id": experiment["experiment_id"],
                                             "name": experiment["name"]},
               "runs": [slim(run, tags=sel.include_tags) for run in runs]}
    if failed is not None:
        listing["errors"] = failed
    return listing


def resolve_experiment(ctx, sel: Selection):
    """The experiment named by experiment_name and/or experiment_id (they must agree)."""
    by_name = by_id = None
    if sel.experiment_name is not None:
        by_name = not_found_as(ctx.mlflow.get_experiment_by_name, sel.experiment_name,
                               f"Experiment '{sel.experiment_name}' not found. "
                               "POST /mlflow/experiments lists the names you can read.")
    if sel.experiment_id is not None:
        # MLflow answers 400 to an id that cannot be one ("abc"): no such experiment.
        by_id = not_found_as(ctx.mlflow.get_experiment, sel.experiment_id,
                             f"Experiment with id '{sel.experiment_id}' not found.", also=(400,))
    if by_name and by_id and by_name["experiment_id"] != by_id["experiment_id"]:
        raise errors.InvalidInput(
            f"experiment_name '{by_name['name']}' is experiment {by_name['experiment_id']}, "
            f"not experiment_id {by_id['experiment_id']}; send one of them, or both matching.")
    experiment = by_name or by_id
    if experiment and experiment.get("lifecycle_stage") == "deleted" and not sel.include_deleted:
        raise errors.NotFound(f"Experiment '{experiment['name']}' is deleted; "
                              "send include_deleted: true to read it anyway.")
    return experiment


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
