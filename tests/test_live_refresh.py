"""A live tail's refresh against a scripted MLflow (tests/support/scripted.py ScriptedLive):
which calls each logging pattern costs, and that a viewer following the cursor holds
exactly MLflow's points. Pure: no server. The same against a real MLflow, Redis and
gunicorn: tests/test_live_tail.py."""
import numpy as np
import pytest

from app import history
from app.cache.tails import FAN_IN, TailState
from app.runs import cursor as cursors
from app.runs import increments, tailbook
from app.runs.live import LiveHistories
from tests.support.scripted import ScriptedLive, context, memory_cache, run

EVERY_POLL = 1e-9  # LIVE_REFRESH: every read refreshes


class Viewer:
    """A chart following the cursor: appends what is new, replaces what comes whole."""

    def __init__(self):
        self.held, self.at = {}, {}

    def poll(self, ctx, runs, keys):
        def after(run_id, state):
            epoch, seq = self.at.get(run_id, (None, None))
            return seq if epoch == state.epoch else None
        read = LiveHistories(ctx).read(runs, lambda run: keys, after)
        for run in runs:
            run_id = run["info"]["run_id"]
            for key in keys:
                got = read.series[(run_id, key)]
                if read.since[run_id] is None:
                    self.held[(run_id, key)] = got
                else:
                    self.held[(run_id, key)] = history.concat([self.held[(run_id, key)], got])
            state = read.states[run_id]
            self.at[run_id] = (state.epoch, state.seq)
        return read

    def points(self, run_id, key):
        series = self.held[(run_id, key)]
        return sorted(zip(series.steps.tolist(), series.timestamps.tolist(),
                          series.values.tolist()))


@pytest.fixture
def world():
    mlflow = ScriptedLive(runs=[run("a", status="RUNNING"), run("b", status="RUNNING")])
    for run_id in ("a", "b"):
        mlflow.runs[run_id]["data"]["metrics"] = []
    cache = memory_cache()
    return mlflow, cache, lambda **kw: context(mlflow, cache, live_refresh=EVERY_POLL, **kw)


def calls_of(mlflow, since):
    return [call[0] for call in mlflow.calls[since:]]


def test_unchanged_metrics_cost_one_run_search_and_grown_ones_one_range_read_for_all_runs(
        world, monkeypatch):
    monkeypatch.setattr(increments, "AUDITS", 0)
    mlflow, cache, ctx = world
    for run_id in ("a", "b"):
        for step in range(100):
            mlflow.log(run_id, "loss", step, 1.0 / (step + 1), 1000 + step)
            mlflow.log(run_id, "val", step // 50 * 50, 0.5, 1000 + step // 50 * 50)
    runs = [mlflow.runs["a"], mlflow.runs["b"]]
    viewer = Viewer()
    viewer.poll(ctx(), runs, ["loss", "val"])
    mark = len(mlflow.calls)
    viewer.poll(ctx(), runs, ["loss", "val"])
    assert calls_of(mlflow, mark) == ["search_runs"]  # nothing changed: no history read
    for run_id in ("a", "b"):
        mlflow.log(run_id, "loss", 100, 0.01, 1100)
    mark = len(mlflow.calls)
    viewer.poll(ctx(), runs, ["loss", "val"])
    assert calls_of(mlflow, mark) == ["search_runs", "get_metric_history_since"]
    assert mlflow.calls[-1][1:] == (("a", "b"), "loss", 98)  # from the highest step held
    for run_id in ("a", "b"):
        assert viewer.points(run_id, "loss") == sorted(mlflow.points[(run_id, "loss")])


@pytest.mark.parametrize("pattern", ["step_0", "same_step", "out_of_order", "backfill"])
def test_a_viewer_following_the_cursor_holds_exactly_mlflows_points(world, pattern):
    mlflow, cache, ctx = world
    rng = np.random.default_rng(7)
    clock = iter(range(10_000, 10**9))
    steps = {"step_0": [0] * 300, "same_step": [s // 3 for s in range(300)],
             "out_of_order": list(rng.permutation(300)),
             "backfill": list(range(200)) + list(range(50, 150))}[pattern]
    runs = [mlflow.runs["a"]]
    viewer = Viewer()
    for start in range(0, len(steps), 20):
        for step in steps[start:start + 20]:
            mlflow.log("a", "loss", int(step), float(rng.random()), next(clock))
        viewer.poll(ctx(), runs, ["loss"])
    for _ in range(3):  # audits find what no step range could see
        increments.AUDIT_AGE, saved = 0.0, increments.AUDIT_AGE
        try:
            viewer.poll(ctx(), runs, ["loss"])
        finally:
            increments.AUDIT_AGE = saved
    assert viewer.points("a", "loss") == sorted(mlflow.points[("a", "loss")])


def test_step_0_logging_is_read_by_offset_not_whole(world):
    mlflow, cache, ctx = world
    runs = [mlflow.runs["a"]]
    viewer = Viewer()
    for i in range(AT := tailbook.AT_MAX_KEPT + 10):
        mlflow.log("a", "loss", 0, float(i), 1000 + i)
    viewer.poll(ctx(), runs, ["loss"])
    mlflow.log("a", "loss", 0, 5.5, 5000)
    mark = len(mlflow.calls)
    viewer.poll(ctx(), runs, ["loss"])
    assert calls_of(mlflow, mark) == ["search_runs", "get_metric_history_from"]
    assert mlflow.calls[-1][3] == AT - 1  # from the tail's last point on
    assert viewer.points("a", "loss") == sorted(mlflow.points[("a", "loss")])


def test_a_run_that_finishes_is_read_whole_once_more(world):
    mlflow, cache, ctx = world
    runs = [mlflow.runs["a"]]
    for step in range(10):
        mlflow.log("a", "loss", step, 1.0, 1000 + step)
    viewer = Viewer()
    viewer.poll(ctx(), runs, ["loss"])
    mlflow.log("a", "loss", 3, 9.0, 2000)  # below the latest step, then the run ends
    mlflow.runs["a"]["info"]["status"] = "FINISHED"
    mark = len(mlflow.calls)
    read = viewer.poll(ctx(), runs, ["loss"])
    assert "get_metric_history" in calls_of(mlflow, mark)
    assert read.states["a"].status == "FINISHED"
    assert viewer.points("a", "loss") == sorted(mlflow.points[("a", "loss")])


def test_an_offset_token_mlflow_refuses_means_whole_reads(world, monkeypatch):
    mlflow, cache, ctx = world
    monkeypatch.setattr(increments, "_no_offsets", set())
    runs = [mlflow.runs["a"]]
    for i in range(100):
        mlflow.log("a", "loss", 0, float(i), 1000 + i)
    viewer = Viewer()
    viewer.poll(ctx(), runs, ["loss"])
    mlflow.refuse["get_metric_history_from"] = (400, "INVALID_PARAMETER_VALUE")
    mlflow.log("a", "loss", 0, 0.5, 9000)
    viewer.poll(ctx(), runs, ["loss"])
    mlflow.log("a", "loss", 0, 0.25, 9001)
    mark = len(mlflow.calls)
    viewer.poll(ctx(), runs, ["loss"])
    assert calls_of(mlflow, mark) == ["search_runs", "get_metric_history"]  # not asked again
    assert viewer.points("a", "loss") == sorted(mlflow.points[("a", "loss")])


def test_a_fresh_tail_is_served_without_asking_mlflow(world):
    mlflow, cache, _ = world
    for step in range(5):
        mlflow.log("a", "loss", step, 1.0, 1000 + step)
    viewer = Viewer()
    viewer.poll(context(mlflow, cache, live_refresh=60), [mlflow.runs["a"]], ["loss"])
    mark = len(mlflow.calls)
    mlflow.log("a", "loss", 5, 1.0, 2000)
    read = viewer.poll(context(mlflow, cache, live_refresh=60), [mlflow.runs["a"]], ["loss"])
    assert calls_of(mlflow, mark) == [] and read.since["a"] is not None
    assert read.series[("a", "loss")].size == 0  # within LIVE_REFRESH: not seen yet


def test_live_refresh_0_and_a_failed_cache_leave_the_request_to_mlflow(world):
    mlflow, cache, _ = world
    mlflow.log("a", "loss", 0, 1.0, 1000)
    assert LiveHistories(context(mlflow, cache, live_refresh=0)).read(
        [mlflow.runs["a"]], lambda run: ["loss"]) is None
    cache.store.get_many = lambda keys, default=...: default if default is not ... else None
    assert LiveHistories(context(mlflow, cache)).read(
        [mlflow.runs["a"]], lambda run: ["loss"]) is None


def test_chunks_merge_so_a_metric_keeps_few_and_reads_back_whole():
    cache, uri = memory_cache(), "http://mlflow.test"
    state = TailState("e1")
    state.metrics["m"] = increments.MetricTail()
    everything = []
    for seq in range(1, 301):
        state.seq = seq
        new = history.Series(np.array([seq]), np.array([seq * 10]), np.array([float(seq)]))
        tailbook.absorb(state.metrics["m"], new)
        assert cache.put_tail(uri, "r", state, {"m": new})
        everything.append(seq)
    assert len(state.metrics["m"].chunks) <= 2 * FAN_IN
    whole = cache.read_points(uri, [("r", state, "m", None)])[("r", "m")]
    assert sorted(whole.steps.tolist()) == everything
    newer = cache.read_points(uri, [("r", state, "m", 290)])[("r", "m")]
    assert sorted(newer.steps.tolist()) == list(range(291, 301))


def test_a_tail_with_a_chunk_gone_is_left_out_of_a_read():
    cache, uri = memory_cache(), "http://mlflow.test"
    state = TailState("e1", seq=1)
    state.metrics["m"] = increments.MetricTail()
    new = history.Series(np.array([1]), np.array([1]), np.array([1.0]))
    tailbook.absorb(state.metrics["m"], new)
    cache.put_tail(uri, "r", state, {"m": new})
    cache.store.delete_many([cache.chunk_key(uri, "r", "e1", "m", 0)])
    assert cache.read_points(uri, [("r", state, "m", None)]) == {}


def test_a_cursor_reads_back_and_garbage_is_refused():
    made = cursors.Cursor(cursors.keys_digest(["loss"]), (("a" * 32, "t", "e" * 16, 7),))
    assert cursors.decode(made.encode()) == made
    for garbage in ("", "c1.", "c1.!!!", "x" * 20, "c1." + "A" * 9000):
        with pytest.raises(ValueError):
            cursors.decode(garbage)


def test_tally_is_the_stats_of_all_points():
    a = history.Series(np.array([1, 5]), np.array([1, 2]), np.array([3.0, np.nan]))
    b = history.Series(np.array([2, 5]), np.array([9, 3]), np.array([-1.0, 7.0]))
    both = history.concat([a, b])
    tally = history.tally(b, history.tally(a))
    whole = history.stats(history.ordered(both))
    assert {k: tally[k] for k in whole} == whole


def test_a_refresh_cut_short_keeps_what_it_read_and_the_next_poll_goes_on(world):
    """A first poll of a big live run that runs out of http_timeout still stores the
    metrics it read: the next poll reads only the rest (else every poll would start over
    and end in a 504 again)."""
    from app.mlflow.errors import DeadlineSpent
    mlflow, cache, ctx = world
    for step in range(10):
        mlflow.log("a", "loss", step, 1.0, 1000 + step)
        mlflow.log("a", "acc", step, 1.0, 1000 + step)
    original = mlflow.get_metric_history_bulk

    def slow_acc(run_ids, key):
        if key == "acc":
            raise DeadlineSpent(mlflow.target, "http_timeout spent")
        return original(run_ids, key)
    mlflow.get_metric_history_bulk = slow_acc
    mlflow.get_metric_history = lambda run_id, key: slow_acc([run_id], key)[0][run_id]
    with pytest.raises(DeadlineSpent):
        Viewer().poll(ctx(), [mlflow.runs["a"]], ["loss", "acc"])
    stored = cache.get_tails("http://mlflow.test", ["a"])["a"]
    assert set(stored.metrics) == {"loss"} and stored.metrics["loss"].size == 10
    mlflow.get_metric_history_bulk = original
    del mlflow.get_metric_history
    mark = len(mlflow.calls)
    viewer = Viewer()
    viewer.poll(ctx(), [mlflow.runs["a"]], ["loss", "acc"])
    assert [c[:3] for c in mlflow.calls[mark:]] == [
        ("search_runs", ("1",), 1), ("get_metric_history", "a", "acc")]
    assert viewer.points("a", "acc") == sorted(mlflow.points[("a", "acc")])
