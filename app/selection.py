"""Which runs a /mlflow/runs query selects, asked of MLflow.

The result, a *listing*, is plain JSON (it may be cached): the experiment named by
the query (or None), the selected runs' metadata (newest first, or in the order of
``run_ids``) and, for ``run_ids``, each run that could not be read, with its reason.
"""
import re
from concurrent.futures import ThreadPoolExecutor

from werkzeug.exceptions import HTTPException

from app import errors
from app.gateway import Declined
from app.schemas import RUN_STATUSES

# MLflow runs/search takes a list of experiments; keep each call's list (and the
# SQL IN clause behind it) modest.
EXPERIMENTS_PER_SEARCH = 500
# run_ids are found by run searches, ``attributes.run_id IN (...)``, so many at a time.
# MLflow parses a filter with sqlparse, which refuses more than 10,000 tokens (~3,300
# ids); 1,000 ids take one ~1 s search on MLflow 3.17 with sqlite (2 x 500: ~1.5 s).
RUN_IDS_PER_SEARCH = 1000
RUN_ID = re.compile(r"[A-Za-z0-9_-]+")  # MLflow's are 32 hex digits; only these go in a filter
# Runs the searches did not return are asked for one by one (runs/get), for MLflow's own
# reason (403 or 404), at most this many per request: the others are reported 404.
RUN_LOOKUPS = 20


def select(gateway, query) -> dict:
    experiment = resolve_experiment(gateway, query)
    failed = None
    if query["run_id"] is not None:
        if query.get("run_ids") and query["run_id"] not in query["run_ids"]:
            raise errors.NotFound(f"Run '{query['run_id']}' is not among run_ids.")
        run = one_run(gateway, query, experiment)
        experiment = experiment or gateway.get_experiment(run["info"]["experiment_id"])
        runs = matching(gateway, query, [run])
    elif query.get("run_ids"):
        runs, failed = several_runs(gateway, query, experiment)
        if experiment is None and len({r["info"]["experiment_id"] for r in runs}) == 1:
            experiment = gateway.get_experiment(runs[0]["info"]["experiment_id"])
    else:
        ids = [experiment["experiment_id"]] if experiment else None
        runs = search(gateway, query, ids)
    listing = {"experiment": experiment and {"experiment_id": experiment["experiment_id"],
                                             "name": experiment["name"]},
               "runs": [slim(run) for run in runs]}
    if failed is not None:
        listing["errors"] = failed
    return listing


def several_runs(gateway, query, experiment):
    """``run_ids`` in their order (or ``order_by``'s), found by a few run searches instead
    of a call per run: (runs, an error object per run that is missing, forbidden, deleted,
    elsewhere or filtered out)."""
    run_ids = query["run_ids"]
    wanted = [run_id for run_id in run_ids if RUN_ID.fullmatch(run_id)]
    failed = [run_error(i, errors.NotFound(f"Run '{i}' not found: MLflow run ids are letters, "
                                           "digits, '-' and '_'.")) for i in run_ids
              if not RUN_ID.fullmatch(i)]
    experiment_ids = [experiment["experiment_id"]] if experiment else []
    if wanted and not experiment:  # those these credentials may read (a search refuses others)
        view = "ALL" if query["include_deleted"] else "ACTIVE_ONLY"
        experiment_ids = [e["experiment_id"] for e in gateway.search_experiments(view)]
    runs = _by_ids(gateway, query, experiment_ids, wanted)
    missing = _without(wanted, runs)
    if missing and (query.get("filter_string") or query.get("run_status")
                    or not query["include_deleted"]):  # one more search says why
        everything = dict(query, filter_string=None, run_status=None, order_by=None,
                          include_deleted=True)
        left_out = _by_ids(gateway, everything, experiment_ids, missing)
        failed += [run_error(_id(run), _left_out(run, query)) for run in left_out]
        missing = _without(missing, left_out)
    late, unread = _looked_up(gateway, query, experiment, missing)
    if late and query.get("order_by"):  # MLflow orders them all together
        runs = matching(gateway, dict(query, filter_string=None, run_status=None), runs + late)
    elif not query.get("order_by"):
        runs = _in_order(runs + late, run_ids, _id)
    return runs[:query["limit"]], _in_order(failed + unread, run_ids, lambda e: e["run_id"])


def _by_ids(gateway, query, experiment_ids, run_ids):
    """The runs of ``run_ids`` (plain tokens: RUN_ID) in these experiments that ``query``
    selects, by run searches with ``attributes.run_id IN (...)``."""
    # MLflow orders within one search: with order_by, one search for them all.
    step = max(1, len(run_ids)) if query.get("order_by") else RUN_IDS_PER_SEARCH
    found = []
    for start in range(0, len(run_ids), step):
        chunk = run_ids[start:start + step]
        clauses = ["attributes.run_id IN ({})".format(", ".join(f"'{i}'" for i in chunk))]
        clauses += [query["filter_string"]] if query.get("filter_string") else []
        found += search(gateway, dict(query, filter_string=" and ".join(clauses),
                                      limit=len(chunk)), experiment_ids, asked=query)
    asked = set(run_ids)  # MLflow returns no other run; a server that does is not believed
    return [run for run in found if _id(run) in asked]


def _looked_up(gateway, query, experiment, run_ids):
    """The first RUN_LOOKUPS of ``run_ids`` asked of MLflow one by one, in parallel, for
    its own reason (403, 404, elsewhere); (runs that match after all, errors)."""
    asked, unasked = run_ids[:RUN_LOOKUPS], run_ids[RUN_LOOKUPS:]
    failed = [run_error(i, errors.NotFound(
        f"Run '{i}' not found among the runs these credentials can read (not looked up one "
        f"by one: more than {RUN_LOOKUPS} of run_ids were missing).")) for i in unasked]
    with ThreadPoolExecutor(max_workers=max(1, min(len(asked), gateway.concurrency))) as pool:
        answers = list(pool.map(lambda i: _run_or_error(gateway, query, experiment, i), asked))
    found = [answer for answer in answers if "info" in answer]
    kept = matching(gateway, query, found)
    kept_ids = {_id(run) for run in kept}
    failed += [answer for answer in answers if "info" not in answer]
    failed += [run_error(_id(run), _left_out(run, query)) for run in found
               if _id(run) not in kept_ids]
    return kept, failed


def _run_or_error(gateway, query, experiment, run_id):
    try:
        return one_run(gateway, dict(query, run_id=run_id), experiment)
    except (errors.NotFound, errors.Forbidden) as exc:  # the others fail the whole request
        return run_error(run_id, exc)


def _left_out(run, query) -> HTTPException:
    """Why a run these credentials can read is not among the query's runs."""
    if run["info"].get("lifecycle_stage") == "deleted" and not query["include_deleted"]:
        return _deleted(_id(run))
    return errors.NotFound(f"Run '{_id(run)}' does not match filter_string/run_status.")


def _deleted(run_id):
    return errors.NotFound(f"Run '{run_id}' is deleted; send include_deleted: true to read it.")


def _without(run_ids, runs):
    have = {_id(run) for run in runs}
    return [run_id for run_id in run_ids if run_id not in have]


def _in_order(items, run_ids, id_of):
    order = {run_id: i for i, run_id in enumerate(run_ids)}
    return sorted(items, key=lambda item: order[id_of(item)])


def run_error(run_id, exc: HTTPException) -> dict:
    return {"run_id": run_id, "code": exc.code, "status": exc.name, "message": exc.description}


def matching(gateway, query, runs):
    """Those of ``runs`` that pass ``filter_string`` (asked of MLflow) and ``run_status``,
    in ``order_by``'s order if it is given."""
    statuses = query.get("run_status")
    runs = [run for run in runs if not statuses or run["info"].get("status") in statuses]
    ordering = query.get("order_by") and len(runs) > 1
    if not runs or not (query.get("filter_string") or ordering):
        return runs
    # MLflow evaluates the filter and the order; the ids are MLflow's own, never the caller's text.
    clauses = ["attributes.run_id IN ({})".format(", ".join(f"'{_id(run)}'" for run in runs))]
    clauses += [query["filter_string"]] if query.get("filter_string") else []
    narrowed = dict(query, filter_string=" and ".join(clauses), run_status=None, limit=len(runs))
    by_id = {_id(run): run for run in runs}
    found = search(gateway, narrowed, sorted({run["info"]["experiment_id"] for run in runs}))
    return [by_id[_id(run)] for run in found if _id(run) in by_id]


def _id(run):
    return run["info"]["run_id"]


def resolve_experiment(gateway, query):
    """The experiment named by experiment_name and/or experiment_id (they must agree)."""
    by_name = by_id = None
    if query["experiment_name"] is not None:
        by_name = _not_found_as(gateway.get_experiment_by_name, query["experiment_name"],
                                f"Experiment '{query['experiment_name']}' not found. "
                                "POST /mlflow/experiments lists the names you can read.")
    if query["experiment_id"] is not None:
        # MLflow answers 400 to an id that cannot be one ("abc"): no such experiment.
        by_id = _not_found_as(lambda i: gateway.get_experiment(i, decline=(400,)),
                              query["experiment_id"],
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
        raise _deleted(run_id)
    return run


def search(gateway, query, experiment_ids=None, asked=None):
    """The first ``limit`` runs of these experiments (default: every active one you
    may read), newest first or by ``order_by``, passing ``filter_string`` to MLflow.
    A filter MLflow rejects is a 422 naming the fields of ``asked`` (default ``query``)."""
    view = "ALL" if query["include_deleted"] else "ACTIVE_ONLY"
    options = {"filter_string": _with_status(query.get("filter_string"), query.get("run_status")),
               "order_by": query.get("order_by")}
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
        given = [field for field in ("filter_string", "order_by", "run_status")
                 if (asked or query).get(field)]
        if not given:  # a filter of ours, not the caller's
            raise errors.UpstreamError(f"MLflow rejected a run search: {refused.message}") from None
        raise errors.invalid_fields(
            {field: [f"MLflow rejected it: {refused.message}"] for field in given}) from None
    if len(experiment_ids) > step:
        found.sort(key=lambda r: int(r["info"].get("start_time") or 0), reverse=True)
    return found[:query["limit"]]


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
    except (errors.NotFound, Declined):
        raise errors.NotFound(message) from None
