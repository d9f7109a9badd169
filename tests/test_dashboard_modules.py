"""The dashboard page's pure modules (app/dashboard/static/js), run by Node without a
browser: the URL hash both ways (keys with "/", ",", ":", spaces, accents), CSV cells safe in
a spreadsheet and numbers exact, runs merged on one x axis for uPlot (several points at one
step, steps out of order, gaps on a log axis), a cursor poll appended or replaced as
docs/api.md says; a chart's requests (one metric each, the operator's http_timeout ceiling
from the OpenAPI spec for a first load, its own cursor and ETag for polls) against a stand-in
fetch; charts loaded a few at a time; no poll while the tab is hidden, one at once when it
is shown. The page as a whole, in Chromium: tests/test_dashboard_page.py.

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
    import * as api from {json.dumps((JS / 'api.js').as_uri())};
    import * as limit from {json.dumps((JS / 'limit.js').as_uri())};
    import * as loader from {json.dumps((JS / 'loader.js').as_uri())};
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


def test_the_first_load_asks_for_the_operators_ceiling_read_from_the_spec():
    out = run_js("""
        const spec = m => ({paths: {"/mlflow/runs": {get: {parameters: [
            {name: "profile", schema: {type: "string"}},
            {name: "http_timeout", schema: {type: "number", maximum: m}}]}}}});
        const asked = [];
        globalThis.fetch = async url => { asked.push(url);
                                          return new Response(JSON.stringify(spec(300))); };
        const first = await api.ceiling(), again = await api.ceiling();
        return {first, again, asked, of: [api.maxTimeout(spec(45)), api.maxTimeout(spec("x")),
                                          api.maxTimeout({}), api.maxTimeout(null)]};""")
    assert out["first"] == out["again"] == 300
    assert out["asked"] == ["../openapi.json"]  # once, relative to the page
    assert out["of"] == [45, 60, 60, 60]       # no maximum stated: 60 s


def test_a_chart_loads_its_metric_then_polls_with_its_own_cursor_and_etag():
    out = run_js("""
        const asked = [];
        const run = (status, steps, since) => ({run_id: "r1", run_name: "one", status,
            since_cursor: since, metrics_history: [{metric_name: "loss", total_points: 9,
            min_value: 0, max_value: 1, last_value: 1,
            history: steps.map(step => ({step, value: step, timestamp: step}))}]});
        const answers = [
            [200, {runs: [run("RUNNING", [0, 1], undefined), {run_id: "r2", status: "FINISHED",
                   metrics_history: []}], cursor: "c1.first"}, '"e1"'],
            [304, null, '"e1"'],
            [200, {runs: [run("FINISHED", [2], true)], cursor: "c1.second"}, '"e2"']];
        globalThis.fetch = async (url, init) => {
            asked.push({url, inm: init.headers["If-None-Match"] ?? null});
            const [status, json, etag] = answers.shift();
            return new Response(json && JSON.stringify(json), {status, headers: {ETag: etag}});
        };
        const one = new loader.ChartLoader({connection: {trackingUri: "http://m"},
            runIds: ["r1", "r2"], maxPoints: 600, runs: new Map()}, "loss");
        const results = [await one.load(300), await one.poll(30), one.changed,
                         await one.poll(30), one.changed, await one.poll(30)];
        const q = a => Object.fromEntries([...new URL(a.url, "http://x/d/").searchParams.keys()]
            .map(k => [k, new URL(a.url, "http://x/d/").searchParams.getAll(k)]));
        return {results, asked: asked.map(a => ({...q(a), inm: a.inm})),
                steps: one.chart.toJSON().runs.r1.steps, live: one.live};""")
    load, first_poll, changed_304, second_poll, changed_200, done = out["results"]
    assert load["points"] == 2 and first_poll == {"status": 304, "bytes": 0, "points": 0}
    assert second_poll["status"] == 200 and second_poll["points"] == 1
    assert (changed_304, changed_200) == (False, True) and done is None and out["live"] == []
    assert out["steps"] == [0, 1, 2]
    first, poll1, poll2 = out["asked"]
    assert first["metric_keys"] == ["loss"] and first["run_ids"] == ["r1", "r2"]
    assert first["max_points"] == ["600"] and first["http_timeout"] == ["300"]
    assert "cursor" not in first and first["inm"] is None
    assert poll1["run_ids"] == ["r1"] and poll1["cursor"] == ["c1.first"]  # the live run only
    assert poll1["inm"] == '"e1"' and poll1["http_timeout"] == ["30"]
    assert poll2["cursor"] == ["c1.first"] and poll2["inm"] == '"e1"'  # a 304 keeps both


def test_charts_are_loaded_a_few_at_a_time_in_order():
    out = run_js("""
        const run = limit.limiter(3);
        let now = 0, most = 0;
        const started = [];
        const tasks = [...Array(8).keys()].map(i => run(async () => {
            now += 1; most = Math.max(most, now); started.push(i);
            await new Promise(r => setTimeout(r, 5 * (i % 3)));
            now -= 1;
            if (i === 4) throw new Error("chart 4 failed");
            return i;
        }));
        const settled = await Promise.allSettled(tasks);
        return {most, started, settled: settled.map(s => s.status)};""")
    assert out["most"] == 3 and out["started"] == list(range(8))
    assert out["settled"] == ["fulfilled"] * 4 + ["rejected"] + ["fulfilled"] * 3


def test_no_poll_while_the_tab_is_hidden_and_one_at_once_when_shown():
    out = run_js(f"""
        const page = new EventTarget();
        page.hidden = false;
        globalThis.document = page;
        const {{Poller}} = await import({json.dumps((JS / 'poller.js').as_uri())});
        let polls = 0;
        const poller = new Poller(0.02, {{poll: async () => {{ polls += 1; return {{}}; }},
                                         onPoll: () => {{}}, onState: () => {{}}}});
        const wait = ms => new Promise(r => setTimeout(r, ms));
        poller.start();
        while (polls < 2) await wait(10);
        page.hidden = true;
        page.dispatchEvent(new Event("visibilitychange"));
        await wait(50);  // a poll that was out when the tab was hidden ends
        const hidden = polls, text = poller.text();
        await wait(300);  // 15 poll periods
        const after = polls;
        page.hidden = false;
        page.dispatchEvent(new Event("visibilitychange"));
        const shown = polls;  // asked at once, not a period later
        poller.stop();
        return {{hidden, after, shown, text}};""")
    assert out["after"] == out["hidden"] and out["shown"] == out["hidden"] + 1
    assert "paused" in out["text"]
