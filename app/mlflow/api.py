"""MLflow's REST endpoints that the service reads, each answer's shape checked.

``MlflowApi`` speaks through one request's ``Transport`` (app/mlflow/transport.py) and
raises what it raises (app/mlflow/errors.py); callers that handle MLflow's own refusal
(a bulk endpoint a server lacks, a filter MLflow rejects) catch ``Rejected``.
"""
import base64
import functools
import json

from app import history
from app.mlflow import shapes, wording
from app.mlflow.records import from_records

API = "/api/2.0/mlflow"
BULK_HISTORY = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
BULK_MAX_POINTS = 25000  # the endpoint's cap on the total of all runs' points
BULK_MAX_RUNS = 100
BULK_INTERVAL = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
INTERVAL_MAX_PER_RUN = 2500  # the endpoint samples a run's range down to this many points
MAX_STEP = 2**63 - 1         # MLflow steps are int64


def _by_run(run_ids, points) -> dict:
    """{run id: Series} of a bulk answer's points (every asked run, maybe empty)."""
    records = {run_id: [] for run_id in run_ids}
    for point in points:
        records.setdefault(point["run_id"], []).append(point)
    try:
        return {run_id: from_records(found) for run_id, found in records.items()}
    except shapes.WrongShape:
        shapes.points(points, "metrics", run_id=True)  # names the record in the answer's order
        raise


def reads(endpoint):
    """Last resort around a method reading ``endpoint``'s answer: an error a shape check
    missed (a KeyError, TypeError ...) is MLflow's answer being wrong (``NotMlflow``, a
    502), not a 500."""
    def decorate(method):
        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except shapes.WrongShape as exc:  # found while converting (from_records)
                raise wording.shape_error(self.target, endpoint, exc) from None
            except (KeyError, IndexError, TypeError, ValueError, AttributeError,
                    OverflowError) as exc:
                raise wording.shape_error(self.target, endpoint,
                                           f"it could not be read ({type(exc).__name__})") from None
        return guarded
    return decorate


class MlflowApi:
    def __init__(self, transport, *, search_page_size: int = 1000, history_page_size: int = 25000):
        self.transport = transport
        self.target = transport.target
        self.search_page_size = search_page_size
        self.history_page_size = history_page_size

    def call(self, method, endpoint, **kwargs):
        return self.transport.call(method, endpoint, **kwargs)

    # --- MLflow API ------------------------------------------------------
    # Each method checks the shape of what it reads (``shape=``); ``reads`` is the last
    # resort for anything a check missed.

    @reads(f"{API}/experiments/search")
    def search_experiments(self, view_type="ACTIVE_ONLY"):
        """Every experiment, across as many pages as MLflow needs."""
        body = {"max_results": self.search_page_size, "view_type": view_type}
        pages = self._pages("POST", f"{API}/experiments/search", "experiments", body,
                            shape=shapes.experiments_page, kept=True)
        return [experiment for page in pages for experiment in page]

    @reads(f"{API}/experiments/get")
    def get_experiment(self, experiment_id: str):
        data = self.call("GET", f"{API}/experiments/get", params={"experiment_id": experiment_id},
                         shape=shapes.experiment_answer)
        return data["experiment"]

    @reads(f"{API}/experiments/get-by-name")
    def get_experiment_by_name(self, name: str):
        data = self.call("GET", f"{API}/experiments/get-by-name", params={"experiment_name": name},
                         shape=shapes.experiment_answer)
        return data["experiment"]

    @reads(f"{API}/runs/get")
    def get_run(self, run_id: str):
        return self.call("GET", f"{API}/runs/get", params={"run_id": run_id},
                         shape=shapes.run_answer)["run"]

    @reads(f"{API}/runs/search")
    def search_runs(self, experiment_ids, limit: int, view_type="ACTIVE_ONLY", *,
                    filter_string=None, order_by=None):
        """Up to ``limit`` runs (newest first unless ``order_by``), paging as MLflow requires.

        A filter or ordering that MLflow rejects is its ``Rejected`` (400).
        """
        body = {"experiment_ids": list(experiment_ids), "run_view_type": view_type,
                "order_by": order_by or ["attributes.start_time DESC"]}
        if filter_string:
            body["filter"] = filter_string
        pages = self._pages("POST", f"{API}/runs/search", "runs", body, limit=limit,
                            shape=shapes.runs_page, kept=True)
        return [run for page in pages for run in page]

    @reads(BULK_HISTORY)
    def get_metric_history_bulk(self, run_ids, key: str):
        """One metric of up to 100 runs in one call: MLflow's ajax bulk endpoint.

        Returns (Series by run id, complete run ids): the endpoint caps the *total* at
        25,000 points without a page token, so when the cap is hit only the runs
        ordered before the last one returned are known to be complete. Raises
        ``Rejected`` on 403/404/405 (a forbidden or unknown run, or a server or
        proxy without the ajax routes): the caller falls back to per-run calls.
        """
        params = {"run_id": list(run_ids), "metric_key": key, "max_results": BULK_MAX_POINTS}
        data = self.call("GET", BULK_HISTORY, params=params, shape=shapes.bulk_history)
        points = data.get("metrics") or []
        by_run = _by_run(run_ids, points)
        if len(points) < BULK_MAX_POINTS:
            return by_run, set(run_ids)
        returned = [p["run_id"] for p in points]
        if returned != sorted(returned):  # not MLflow's known order: trust nothing
            return by_run, set()
        last = returned[-1]
        return by_run, {run_id for run_id in run_ids if run_id < last}

    @reads(BULK_INTERVAL)
    def get_metric_history_since(self, run_ids, key: str, since_step: int):
        """One metric of up to 100 runs, only the points after ``since_step``: MLflow's
        ajax bulk-interval endpoint, for a live run's poll.

        Returns (Series by run id, complete run ids). The endpoint *samples* a run's
        range down to 2,500 points; a run with fewer points than that came back whole
        (so its answer is provably complete), any other must be fetched in full.
        ``Rejected`` on 403/404/405, as ``get_metric_history_bulk``.
        """
        params = {"run_ids": list(run_ids), "metric_key": key, "start_step": since_step + 1,
                  "end_step": MAX_STEP, "max_results": INTERVAL_MAX_PER_RUN}
        data = self.call("GET", BULK_INTERVAL, params=params, shape=shapes.bulk_history)
        by_run = _by_run(run_ids, data.get("metrics") or [])
        return by_run, {run_id for run_id in run_ids
                        if by_run[run_id].size < INTERVAL_MAX_PER_RUN}

    @reads(f"{API}/metrics/get-history")
    def get_metric_history(self, run_id: str, key: str):
        """Every point of one metric, following MLflow's page tokens, as a Series.

        Each page becomes compact columns before the next is fetched.
        """
        params = {"run_id": run_id, "metric_key": key, "max_results": self.history_page_size}
        pages = self._pages("GET", f"{API}/metrics/get-history", "metrics", params,
                            shape=shapes.history_page, page_size=self.history_page_size)
        return history.concat(from_records(page) for page in pages)

    @reads(f"{API}/metrics/get-history")
    def get_metric_history_from(self, run_id: str, key: str, offset: int):
        """The points of one metric from the ``offset``-th on, in MLflow's own order
        (timestamp, step, value), following its page tokens: a live run's new points at
        any step, in one call. The first page's token is MLflow's own format
        ({"offset": n}, base64), which MLflow calls unstable: a server that refuses it
        answers 400 (``Rejected``) and the caller reads the history whole instead."""
        token = base64.b64encode(json.dumps({"offset": offset}).encode()).decode()
        params = {"run_id": run_id, "metric_key": key, "max_results": self.history_page_size,
                  "page_token": token}  # the first page's; _pages follows MLflow's own after it
        pages = self._pages("GET", f"{API}/metrics/get-history", "metrics", params,
                            shape=shapes.history_page, page_size=self.history_page_size)
        return history.concat(from_records(page) for page in pages)

    def _pages(self, method, endpoint, items_key, request, *, limit=None, shape=None,
               kept=False, page_size=None):
        """Yield each page's items, following ``next_page_token`` (until ``limit`` items).

        Within the operator's limits (``Oversized`` past them): at most ``max_pages`` pages
        and no more items than that many full pages of ``page_size``; the pages of a read
        whose items are all ``kept`` (a search) are one answer, of at most ``max_bytes``.
        """
        limits = self.transport.limits
        most_items = limits.max_pages * (page_size or self.search_page_size)
        budget = limits.budget() if kept else None
        seen, token = 0, None
        for _ in range(limits.max_pages):
            page = dict(request, page_token=token) if token else dict(request)
            if limit is not None:
                page["max_results"] = min(limit - seen, self.search_page_size)
            where = {"params": page} if method == "GET" else {"body": page}
            data = self.call(method, endpoint, shape=shape, budget=budget, **where)
            items = data.get(items_key) or []
            seen += len(items)
            if seen > most_items:
                break
            yield items
            token = data.get("next_page_token")
            if not token or (limit is not None and seen >= limit):
                return
        raise wording.too_many_pages(self.target, endpoint, limits.max_pages)
