"""Which runs a selection picks (app/runs/select.py, by_ids.py), fast: a scripted MLflow."""
import pytest

from app import errors
from app.runs.query import Selection
from app.runs.select import select
from tests.support.scripted import ScriptedApi, context, run

EXPERIMENTS = [{"experiment_id": "1", "name": "exp", "lifecycle_stage": "active"},
               {"experiment_id": "2", "name": "other", "lifecycle_stage": "active"},
               {"experiment_id": "3", "name": "gone", "lifecycle_stage": "deleted"}]
RUNS = [run("a", "1", start=3), run("b", "1", start=2), run("c", "2", start=1),
        run("d", "1", start=0, deleted=True)]


def picked(sel, mlflow=None):
    mlflow = mlflow or ScriptedApi(EXPERIMENTS, RUNS)
    found = select(context(mlflow), sel)
    return [r["info"]["run_id"] for r in found["runs"]], found


def test_an_experiment_by_name_gives_its_runs_newest_first():
    ids, found = picked(Selection(experiment_name="exp"))
    assert ids == ["a", "b"] and found["experiment"] == {"experiment_id": "1", "name": "exp"}


def test_name_and_id_of_different_experiments_is_a_422():
    with pytest.raises(errors.InvalidInput, match="experiment_name 'exp' is experiment 1"):
        picked(Selection(experiment_name="exp", experiment_id="2"))


def test_an_unknown_experiment_is_a_404_in_our_words():
    with pytest.raises(errors.NotFound, match="Experiment 'nope' not found"):
        picked(Selection(experiment_name="nope"))


def test_a_deleted_experiment_needs_include_deleted():
    with pytest.raises(errors.NotFound, match="is deleted"):
        picked(Selection(experiment_id="3"))
    assert picked(Selection(experiment_id="3", include_deleted=True))[0] == []


def test_a_run_outside_the_named_experiment_is_a_404():
    with pytest.raises(errors.NotFound, match="is not in experiment 'exp'"):
        picked(Selection(experiment_name="exp", run_id="c"))


def test_run_ids_keep_their_order_and_report_what_cannot_be_read():
    ids, found = picked(Selection(run_ids=("c", "zz", "a", "d", "bad id!"), limit=5))
    assert ids == ["c", "a"]
    assert [(e["run_id"], e["code"]) for e in found["errors"]] == \
        [("zz", 404), ("d", 404), ("bad id!", 404)]
    assert "deleted" in found["errors"][1]["message"]


def test_run_ids_cost_a_search_not_a_call_per_run():
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    picked(Selection(run_ids=("a", "b", "c"), limit=3), mlflow)
    assert [call[0] for call in mlflow.calls].count("get_run") == 0


def test_a_filter_mlflow_rejects_is_a_422_naming_the_field():
    with pytest.raises(errors.http.UnprocessableEntity) as refused:
        picked(Selection(experiment_id="1", filter_string="metrics.x > 1"))
    assert list(refused.value.data["errors"]) == ["filter_string"]


def test_run_status_is_applied():
    running = ScriptedApi(EXPERIMENTS, RUNS + [run("e", "1", status="RUNNING", start=9)])
    ids, _ = picked(Selection(run_id="e", run_status=("FINISHED",)), running)
    assert ids == []
