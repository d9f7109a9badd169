"""What each route does, in terms of the MLflow gateway and the history maths."""
from concurrent.futures import ThreadPoolExecutor

from app import errors, history
from app.gateway import MlflowGateway

# MLflow runs/search takes a list of experiments; keep each call's list (and the
# SQL IN clause behind it) modest.
EXPERIMENTS_PER_SEARCH = 500


def health(gateway: MlflowGateway) -> dict:
    report = {
        "authentication": "basic_auth" if gateway.target.uses_auth else "none",
        "ssl_verification": gateway.target.verify_tls,
    }
    try:
        found = len(gateway.search_experiments())
    except errors.http.HTTPException as exc:
        # /health is a diagnostic: it names the cause instead of failing.
        return dict(report, status="unhealthy", mlflow_accessible=False,
                    experiments_found=None, error=exc.description, error_code=exc.code)
    return dict(report, status="healthy", mlflow_accessible=True, experiments_found=found)


def experiments(gateway: MlflowGateway) -> dict:
    found = [
        {"experiment_id": e["experiment_id"], "name": e["name"],
         "artifact_location": e.get("artifact_location"),
         "lifecycle_stage": e.get("lifecycle_stage", "active")}
        for e in gateway.search_experiments()
    ]
    return {"success": True, "total_experiments": len(found), "experiments": found}


def runs(gateway: MlflowGateway, query: dict, concurrency: int) -> dict:
    experiment = resolve_experiment(gateway, query)
    selected = select_runs(gateway, query, experiment)
    if query["run_id"] and experiment is None:
        experiment = gateway.get_experiment(selected[0]["info"]["experiment_id"])
    wanted = [(r["info"]["run_id"], k) for r in selected for k in metric_keys(r)]
    fetched = fetch_histories(gateway, wanted, concurrency) if query["include_metric_history"] else None
    built = [build_run(run, fetched) for run in selected]
    histories = sum(len(r["metrics_history"]) for r in built)
    return {
        "success": True,
        "experiment_name": experiment["name"] if experiment else None,
        "total_runs": len(built),
        "runs": built,
        "message": f"Fetched {len(built)} run(s) with {histories} total metric histories",
    }


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


def select_runs(gateway, query, experiment):
    """The runs to return: one by run_id, else the newest of the experiment(s)."""
    view = "ALL" if query["include_deleted"] else "ACTIVE_ONLY"
    if query["run_id"] is not None:
        return [_one_run(gateway, query, experiment)]
    if experiment is not None:
        return gateway.search_runs([experiment["experiment_id"]], query["limit"], view)
    # No selector: the most recent runs across all active experiments.
    ids = [e["experiment_id"] for e in gateway.search_experiments()]
    found = []
    for start in range(0, len(ids), EXPERIMENTS_PER_SEARCH):
        found += gateway.search_runs(ids[start:start + EXPERIMENTS_PER_SEARCH], query["limit"], view)
    found.sort(key=lambda r: int(r["info"].get("start_time") or 0), reverse=True)
    return found[:query["limit"]]


def _one_run(gateway, query, experiment):
    run_id = query["run_id"]
    run = _not_found_as(gateway.get_run, run_id, f"Run '{run_id}' not found.")
    info = run["info"]
    if experiment is not None and info["experiment_id"] != experiment["experiment_id"]:
        raise errors.NotFound(f"Run '{run_id}' is not in experiment '{experiment['name']}' "
                              f"(it is in experiment {info['experiment_id']}).")
    if info.get("lifecycle_stage") == "deleted" and not query["include_deleted"]:
        raise errors.NotFound(f"Run '{run_id}' is deleted; send include_deleted: true to read it.")
    return run


def _not_found_as(fetch, key, message):
    try:
        return fetch(key)
    except errors.NotFound:
        raise errors.NotFound(message) from None


def metric_keys(run):
    return sorted({m["key"] for m in run.get("data", {}).get("metrics", [])})


def fetch_histories(gateway, wanted, concurrency):
    """{(run_id, key): raw points} for every pair, ``concurrency`` MLflow calls at a time."""
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(wanted))))
    try:
        futures = [pool.submit(gateway.get_metric_history, run_id, key) for run_id, key in wanted]
        return {pair: future.result() for pair, future in zip(wanted, futures)}
    finally:
        # On the first failure, drop the calls not yet started: the answer is an error anyway.
        pool.shutdown(wait=True, cancel_futures=True)


def build_run(run, histories=None):
    """The contract's run object; ``histories`` None means none were asked for."""
    info, data = run["info"], run.get("data", {})
    latest = {m["key"]: history.finite_or_none(m.get("value")) for m in data.get("metrics", [])}
    metrics_history = [] if histories is None else [
        history.summarize(key, history.normalize(histories[(info["run_id"], key)]))
        for key in metric_keys(run)
    ]
    return {
        "run_id": info["run_id"],
        "run_name": info.get("run_name") or _tag(data, "mlflow.runName"),
        "status": info.get("status"),
        "duration_seconds": history.duration_seconds(info.get("start_time"), info.get("end_time")),
        "parameters": {p["key"]: p.get("value", "") for p in data.get("params", [])},
        "metrics_summary": latest,
        "metrics_history": metrics_history,
    }


def _tag(data, key):
    return next((t.get("value") for t in data.get("tags", []) if t["key"] == key), None)
