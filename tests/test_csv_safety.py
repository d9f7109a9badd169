"""Issue 10, items 6 and 11: what the CSV export writes is safe to open in a spreadsheet,
and its response headers stay small enough for reverse proxies. Real basic-auth MLflow."""
import csv
import io
import json
import os
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.support import seed
from tests.support.calls import user_body
from tests.support.overrides import module_wide_client  # noqa: F401  (client: one per module)

FORMULA = '=HYPERLINK("http://evil","x")'
# a key MLflow's API accepts, and keys only older servers/other stores hold (written raw)
RISKY_KEYS = {"-cmd": -1.5, "@sum": -2.25, "+x": 3.5, "\tx": 4.0, "\rx": -0.125}


@pytest.fixture(scope="module")
def formula_run(mlflow_scratch_server):
    """A FINISHED run named like a spreadsheet formula, with metrics whose keys start
    with formula characters and have negative values."""
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = \
        mlflow_scratch_server.admin
    try:
        mlflow = MlflowClient(tracking_uri=mlflow_scratch_server.uri)
        experiment_id = mlflow.create_experiment(f"csv-injection-{os.getpid()}-{time.time_ns()}")
        run_id = mlflow.create_run(experiment_id, run_name=FORMULA).info.run_id
        mlflow.log_metric(run_id, "-cmd", RISKY_KEYS["-cmd"], timestamp=seed.BASE_TIME_MS, step=0)
        mlflow.set_terminated(run_id)
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    seed.write_metrics_raw(mlflow_scratch_server.db_uri, run_id, {
        key: [seed.Point(0, value, seed.BASE_TIME_MS)]
        for key, value in RISKY_KEYS.items() if key != "-cmd"})
    return run_id


def csv_rows(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))


def test_csv_neutralises_formula_cells_and_keeps_numbers(client, mlflow_scratch_server,
                                                         formula_run):
    response = client.post("/mlflow/runs", json=user_body(
        mlflow_scratch_server, run_id=formula_run, format="csv"))
    header, *rows = csv_rows(response)
    assert header == ["run_id", "run_name", "metric", "step", "value", "timestamp"]
    assert {row[2] for row in rows} == {"'" + key for key in RISKY_KEYS}
    for run_id, run_name, metric, step, value, timestamp in rows:
        assert run_id == formula_run
        assert run_name == "'" + FORMULA  # the quotes and comma inside survive the quoting
        # numbers stay numbers: a negative value is not prefixed
        assert float(value) == RISKY_KEYS[metric[1:]] and value[0] != "'"
        assert int(step) == 0 and int(timestamp) == seed.BASE_TIME_MS
    # no cell of the file starts with a character a spreadsheet would execute
    text_cells = [cell for row in rows for cell in row[:3]]
    assert not [cell for cell in text_cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


# --- response headers (item 11) ---------------------------------------------------

HEADER_BYTES = 1536  # app.runs.export.HEADER_BYTES: each list header's budget


def post_csv(client, body):
    """Sent as UTF-8 (the test client's default would \\u-escape it past MAX_CONTENT_LENGTH)."""
    return client.post("/mlflow/runs", data=json.dumps(body, ensure_ascii=False).encode(),
                       content_type="application/json")


def test_unknown_metric_keys_header_is_bounded(client, as_user, mlflow_server):
    # 999 unknown keys of 250 characters (and one known), \u-escaped: 1.5 MB uncapped
    keys = [f"ключ-{i:04d}-" + "é" * 240 for i in range(999)]
    response = post_csv(client, as_user(run_id=mlflow_server.ids["runs"]["finished"],
                                        metric_keys=["train_loss", *keys], format="csv"))
    rows = csv_rows(response)
    assert len(rows) == 1 + len(seed.FINISHED_METRICS["train_loss"])
    header = response.headers["X-Unknown-Metric-Keys"]
    assert len(header.encode()) <= HEADER_BYTES
    assert header.isascii()
    shown = json.loads(header)
    assert shown == keys[:len(shown)]  # whole entries, in the order asked
    assert response.headers["X-Unknown-Metric-Keys-Count"] == "999"
    # short keys: up to 20 of them, as X-Run-Errors
    short = [f"k{i}" for i in range(30)]
    response = post_csv(client, as_user(run_id=mlflow_server.ids["runs"]["finished"],
                                        metric_keys=short, format="csv"))
    assert json.loads(response.headers["X-Unknown-Metric-Keys"]) == short[:20]
    assert response.headers["X-Unknown-Metric-Keys-Count"] == "30"
    # the JSON answer keeps the full list
    payload = post_csv(client, as_user(run_id=mlflow_server.ids["runs"]["finished"],
                                       metric_keys=keys[:50], include_metric_history=False))
    assert payload.get_json()["unknown_metric_keys"] == keys[:50]


def test_run_errors_header_is_bounded(client, as_user, mlflow_server):
    finished = mlflow_server.ids["runs"]["finished"]
    bogus = ([f"ид-{i:02d}-" + "ü" * 94 for i in range(15)]        # not MLflow ids at all
             + [f"{i:02d}" + "f" * 98 for i in range(15)])          # plausible but unknown
    response = post_csv(client, as_user(run_ids=[finished, *bogus], metric_keys=["val/acc"],
                                        format="csv"))
    assert {row[0] for row in csv_rows(response)[1:]} == {finished}
    header = response.headers["X-Run-Errors"]
    assert len(header.encode()) <= HEADER_BYTES and header.isascii()
    shown = json.loads(header)
    assert shown and [e["run_id"] for e in shown] == bogus[:len(shown)]
    assert {e["code"] for e in shown} == {404}
    assert response.headers["X-Run-Errors-Count"] == "30"
