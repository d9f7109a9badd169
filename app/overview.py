"""POST /health and /mlflow/experiments: what MLflow says about these credentials."""
from app import errors
from app.mlflow.errors import MlflowError


def health(ctx) -> dict:
    report = {
        "authentication": "basic_auth" if ctx.target.uses_auth else "none",
        "ssl_verification": ctx.target.verify_tls,
        "cache": {"backend": ctx.cache.kind, "available": ctx.cache.ping()},
    }
    try:
        found = len(ctx.mlflow.search_experiments())
    except MlflowError as exc:
        # /health is a diagnostic: it names the cause instead of failing.
        errors.refused(exc)
        answer = errors.for_mlflow(exc)
        return dict(report, status="unhealthy", mlflow_accessible=False,
                    experiments_found=None, error=answer.description, error_code=answer.code)
    return dict(report, status="healthy", mlflow_accessible=True, experiments_found=found)


def experiments(ctx) -> dict:
    found = [
        {"experiment_id": e["experiment_id"], "name": e["name"],
         "artifact_location": e.get("artifact_location"),
         "lifecycle_stage": e.get("lifecycle_stage", "active")}
        for e in ctx.mlflow.search_experiments()
    ]
    return {"success": True, "total_experiments": len(found), "experiments": found}
