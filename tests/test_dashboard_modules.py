"""The dashboard page's pure modules (app/dashboard/static/js), run by Node without a
browser: the URL hash both ways (keys with "/", ",", ":", spaces, accents), CSV cells safe in
a spreadsheet and numbers exact, runs merged on one x axis for uPlot (several points at one
step, steps out of order, gaps on a log axis), and a cursor poll appended or replaced as
docs/api.md says. The page as a whole, in Chromium: tests/test_dashboard_page.py.

Skips when ``node`` (18 or later: ES modules) is not on the PATH."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).parent.parent / "app" / "dashboard" / "static" / "js"
NODE = shutil.which("node")


def run_js(body: str):
    """Run ``body`` (an async function body with the modules imported) and return what it
    returns, through JSON."""
    script = f"""
    import * as viewstate from {json.dumps((JS / 'viewstate.js').as_uri())};
    import * as csv from {json.dumps((JS / 'csv.js').as_uri())};
    import * as charts from {json.dumps((JS / 'charts.js').as_uri())};
    import * as model from {json.dumps((JS / 'model.js').as_uri())};
    const result = await (async () => {{ {body} }})();
    process.stdout.write(JSON.stringify(result));
    """
    done = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# Node is a process of its own: the fast path (-m "not server") leaves these out.
pytestmark = [pytest.mark.server,
              pytest.mark.skipif(NODE is None, reason="node is not on the PATH")]

KEYS = ["val/acc", "metric with space", "métrica_ñ", "a,b", "x:y", "100%", "loss"]


def test_the_hash_holds_the_view_and_gives_it_back():
    view = {"experimentId": "12", "runIds": ["0a1b", "2c3d"], "metrics": KEYS, "x": "time",
            "log": True, "zoom": {"metric": "x:y", "from": 10, "to": 250}, "poll": 2}
    hash_, back = run_js(f"""
        const view = {json.dumps(view)};
        const hash = viewstate.format(view);
        return [hash, viewstate.parse(hash)];""")
    assert hash_.startswith("#/e=12&runs=0a1b,2c3d&metrics=") and "x=time&log=1" in hash_
    assert back == view


def test_a_hash_with_broken_parts_keeps_the_rest():
    back = run_js("""return viewstate.parse("#/e=%ZZ&runs=a,,b&x=sideways&log=1"
                                            + "&zoom=loss:9:3&poll=-1&metrics=m");""")
    assert back == {"experimentId": None, "runIds": ["a", "b"], "metrics": ["m"], "x": "step",
                    "log": True, "zoom": None, "poll": None}


def test_csv_cells_are_safe_in_a_spreadsheet_and_numbers_exact():
    cells, text = run_js("""
        const cells = ["=SUM(A1)", "-cmd", "+1", "@x", "\\tx", 'a,"b"', "line\\nbreak", "plain"]
            .map(csv.cell);
        const chart = new model.ChartData("-loss");
        chart.base.set("r1", model.Series.of([{step: 0, value: 0.1 + 0.2, timestamp: 5},
                                              {step: 1, value: null, timestamp: 6},
                                              {step: 2, value: -1.5, timestamp: 7}]));
        const text = csv.build(new Map([["-loss", chart]]), new Map([["r1", {name: "=run"}]]),
                               ["r1", "absent"]);
        return [cells, text];""")
    assert cells == ["'=SUM(A1)", "'-cmd", "'+1", "'@x", "'\tx", '"a,""b"""', '"line\nbreak"',
                     "plain"]
    assert text.split("\r\n") == ["run_id,run_name,metric,step,value,timestamp",
                                  "r1,'=run,'-loss,0,0.30000000000000004,5",
                                  "r1,'=run,'-loss,1,,6", "r1,'=run,'-loss,2,-1.5,7", ""]


def test_runs_are_merged_on_one_x_axis_keeping_every_point():
    merged = run_js("""
        const s = (points) => model.Series.of(points.map(([step, value]) =>
                                                         ({step, value, timestamp: step})));
        const data = new Map([
            ["a", s([[0, 1], [1, 2], [2, 3], [2, 4], [5, 0]])],  // two values at step 2
            ["b", s([[3, 30], [1, 10], [2, null]])],               // out of order, a NaN
        ]);
        const cols = d => d.map(c => Array.from(c));
        return {linear: cols(charts.aligned(["a", "b", "none"], data, "step", false)),
                log: cols(charts.aligned(["a", "b"], data, "step", true)),
                time: cols(charts.aligned(["b"], data, "time", false))};""")
    assert merged["linear"] == [[0, 1, 2, 2, 3, 5],
                                [1, 2, 3, 4, None, 0],
                                [None, 10, None, None, 30, None],
                                [None] * 6]
    assert merged["log"][1] == [1, 2, 3, 4, None, None]  # 0 has no place on a log axis
    assert merged["time"] == [[0.001, 0.002, 0.003], [10, None, 30]]  # seconds


def test_a_cursor_poll_appends_or_replaces_and_names_the_changed_charts():
    out = run_js("""
        const charts = new Map([["loss", new model.ChartData("loss")],
                                ["acc", new model.ChartData("acc")]]);
        const runs = new Map();
        const h = (metric, steps) => ({metric_name: metric, total_points: 99, min_value: -1,
            max_value: 9, last_value: 4,
            history: steps.map(step => ({step, value: step / 2, timestamp: step}))});
        const first = model.absorb(charts, runs, {runs: [
            {run_id: "r", run_name: "run", status: "RUNNING",
             metrics_history: [h("loss", [0, 1]), h("acc", [0])]}]});
        const poll = model.absorb(charts, runs, {runs: [
            {run_id: "r", run_name: "run", status: "FINISHED", since_cursor: true,
             metrics_history: [h("loss", [2, 3]), h("acc", [])]}]});
        const loss = charts.get("loss").toJSON().runs.r.steps;
        const replaced = model.absorb(charts, runs, {runs: [
            {run_id: "r", run_name: "run", status: "FINISHED", since_cursor: false,
             metrics_history: [h("loss", [7])]}]});
        return {first: [first.points, [...first.changed]], poll: [poll.points, [...poll.changed]],
                loss, status: runs.get("r").status, stats: charts.get("loss").stats.get("r"),
                replaced: [[...replaced.changed], charts.get("loss").toJSON().runs.r.steps,
                           charts.get("acc").toJSON().runs.r.steps]};""")
    assert out["first"] == [3, ["loss", "acc"]]
    assert out["poll"] == [2, ["loss"]]  # acc got nothing new: not drawn again
    assert out["loss"] == [0, 1, 2, 3] and out["status"] == "FINISHED"
    assert out["stats"] == {"last": 4, "min": -1, "max": 9, "total": 99}
    assert out["replaced"] == [["loss"], [7], [0]]
