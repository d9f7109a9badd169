"""``run_ids``: many runs by id, found by a few run searches instead of a call per run.

Runs the searches leave out are looked up one by one (a few), for MLflow's own reason;
each run that cannot be read is reported in ``run_errors`` instead of failing the request.
"""
import re
from concurrent.futures import ThreadPoolExecutor

from werkzeug.exceptions import HTTPException

from app import errors
from app.mlflow.errors import Rejected
from app.runs.query import Selection
from app.runs.search import deleted, matching, one_run, search

# run_ids are found by run searches, ``attributes.run_id IN (...)``, so many at a time.
# MLflow parses a filter with sqlparse, which refuses more than 10,000 tokens (~3,300
# ids); 1,000 ids take one ~1 s search on MLflow 3.17 with sqlite (2 x 500: ~1.5 s).
RUN_IDS_PER_SEARCH = 1000
RUN_ID = re.compile(r"[A-Za-z0-9_-]+")  # MLflow's are 32 hex digits; only these go in a filter
# Runs the searches did not return are asked for one by one (runs/get), for MLflow's own
# reason (403 or 404), at most this many per request: the others are reported 404.
RUN_LOOKUPS = 20


def several_runs(ctx, sel: Selection, experiment):
    """``run_ids`` in their order (or ``order_by``'s), found by a few run searches instead
    of a call per run: (runs, an error object per run that is missing, forbidden, deleted,
    elsewhere or filtered out)."""
    run_ids = sel.run_ids
    wanted = [run_id for run_id in run_ids if RUN_ID.fullmatch(run_id)]
    failed = [run_error(i, errors.NotFound(f"Run '{i}' not found: MLflow run ids are letters, "
                                           "digits, '-' and '_'.")) for i in run_ids
              if not RUN_ID.fullmatch(i)]
    experiment_ids = [experiment["experiment_id"]] if experiment else []
    if wanted and not experiment:  # those these credentials may read (a search refuses others)
        view = "ALL" if sel.include_deleted else "ACTIVE_ONLY"
        experiment_ids = [e["experiment_id"] for e in ctx.mlflow.search_experiments(view)]
    runs = _by_ids(ctx, sel, experiment_ids, wanted)
    missing = _without(wanted, runs)
    if missing and (sel.filter_string or sel.run_status
                    or not sel.include_deleted):  # one more search says why
        everything = sel.but(filter_string=None, run_status=None, order_by=None,
                             include_deleted=True)
        left_out = _by_ids(ctx, everything, experiment_ids, missing)
        failed += [run_error(_id(run), _left_out(run, sel)) for run in left_out]
        missing = _without(missing, left_out)
    late, unread = _looked_up(ctx, sel, experiment, missing)
    if late and sel.order_by:  # MLflow orders them all together
        runs = matching(ctx, sel.but(filter_string=None, run_status=None), runs + late)
    elif not sel.order_by:
        runs = _in_order(runs + late, run_ids, _id)
    return runs[:sel.limit], _in_order(failed + unread, run_ids, lambda e: e["run_id"])


def _by_ids(ctx, sel: Selection, experiment_ids, run_ids):
    """The runs of ``run_ids`` (plain tokens: RUN_ID) in these experiments that ``query``
    selects, by run searches with ``attributes.run_id IN (...)``."""
    # MLflow orders within one search: with order_by, one search for them all.
    step = max(1, len(run_ids)) if sel.order_by else RUN_IDS_PER_SEARCH
    found = []
    for start in range(0, len(run_ids), step):
        chunk = run_ids[start:start + step]
        clauses = ["attributes.run_id IN ({})".format(", ".join(f"'{i}'" for i in chunk))]
        clauses += [sel.filter_string] if sel.filter_string else []
        found += search(ctx, sel.but(filter_string=" and ".join(clauses), limit=len(chunk)),
                        experiment_ids, asked=sel)
    asked = set(run_ids)  # MLflow returns no other run; a server that does is not believed
    return [run for run in found if _id(run) in asked]


def _looked_up(ctx, sel: Selection, experiment, run_ids):
    """The first RUN_LOOKUPS of ``run_ids`` asked of MLflow one by one, in parallel, for
    its own reason (403, 404, elsewhere); (runs that match after all, errors)."""
    asked, unasked = run_ids[:RUN_LOOKUPS], run_ids[RUN_LOOKUPS:]
    failed = [run_error(i, errors.NotFound(
        f"Run '{i}' not found among the runs these credentials can read (not looked up one "
        f"by one: more than {RUN_LOOKUPS} of run_ids were missing).")) for i in unasked]
    with ThreadPoolExecutor(max_workers=max(1, min(len(asked), ctx.concurrency))) as pool:
        answers = list(pool.map(lambda i: _run_or_error(ctx, sel, experiment, i), asked))
    found = [answer for answer in answers if "info" in answer]
    kept = matching(ctx, sel, found)
    kept_ids = {_id(run) for run in kept}
    failed += [answer for answer in answers if "info" not in answer]
    failed += [run_error(_id(run), _left_out(run, sel)) for run in found
               if _id(run) not in kept_ids]
    return kept, failed


def _run_or_error(ctx, sel: Selection, experiment, run_id):
    try:
        return one_run(ctx, sel, experiment, run_id)
    except errors.NotFound as exc:  # the others fail the whole request
        return run_error(run_id, exc)
    except Rejected as exc:
        if exc.status != 403:
            raise
        return run_error(run_id, errors.for_mlflow(exc))


def _left_out(run, sel: Selection) -> HTTPException:
    """Why a run these credentials can read is not among the query's runs."""
    if run["info"].get("lifecycle_stage") == "deleted" and not sel.include_deleted:
        return deleted(_id(run))
    return errors.NotFound(f"Run '{_id(run)}' does not match filter_string/run_status.")


def _without(run_ids, runs):
    have = {_id(run) for run in runs}
    return [run_id for run_id in run_ids if run_id not in have]


def _in_order(items, run_ids, id_of):
    order = {run_id: i for i, run_id in enumerate(run_ids)}
    return sorted(items, key=lambda item: order[id_of(item)])


def run_error(run_id, exc: HTTPException) -> dict:
    return {"run_id": run_id, "code": exc.code, "status": exc.name, "message": exc.description}


def _id(run):
    return run["info"]["run_id"]
