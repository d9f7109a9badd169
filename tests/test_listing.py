"""Listings (app/runs/listing.py) and their cache key, fast: a scripted MLflow and an
in-memory cache."""
import dataclasses

import pytest

from app.mlflow.errors import Rejected
from app.mlflow.target import MlflowTarget
from app.runs.listing import listing
from app.runs.query import Selection
from tests.support.scripted import ScriptedApi, context, memory_cache, run

EXPERIMENTS = [{"experiment_id": "1", "name": "exp", "lifecycle_stage": "active"}]
RUNS = [run("a", start=2), run("b", start=1)]

# A value different from the default, for each field of Selection.
OTHER_VALUE = {str: "x", int: 3, bool: True, tuple: ("FINISHED",)}


def other_value(field):
    default = field.default
    for kind, value in OTHER_VALUE.items():
        if kind.__name__ in str(field.type):
            return value if value != default else None
    raise AssertionError(f"no test value for Selection.{field.name} ({field.type}): add one")


@pytest.mark.parametrize("field", dataclasses.fields(Selection), ids=lambda f: f.name)
def test_every_selection_field_reaches_the_listing_key(field):
    cache, target = memory_cache(), MlflowTarget("http://mlflow.test", "alice", "pw")
    base = Selection()
    changed = base.but(**{field.name: other_value(field)})
    assert cache.list_key(target, changed) != cache.list_key(target, base)


def test_the_listing_key_is_per_caller():
    cache, sel = memory_cache(), Selection()
    keys = {cache.list_key(MlflowTarget("http://mlflow.test", user, pw, tls), sel)
            for user, pw, tls in [("alice", "pw", True), ("bob", "pw", True),
                                  ("alice", "other", True), ("alice", "pw", False)]}
    assert len(keys) == 4


def test_a_repeated_listing_comes_from_the_cache_without_asking_mlflow():
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache()
    first, cached = listing(context(mlflow, cache), Selection(experiment_id="1"))
    assert not cached and [r["info"]["run_id"] for r in first["runs"]] == ["a", "b"]
    asked = len(mlflow.calls)
    second, cached = listing(context(mlflow, cache), Selection(experiment_id="1"))
    assert cached and second == first
    assert len(mlflow.calls) == asked  # the grant MLflow gave with the search is still fresh


def test_a_cached_listing_needs_a_grant_for_its_experiments():
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache(auth_ttl=0)  # grants are never kept: each cached listing asks again
    listing(context(mlflow, cache), Selection(experiment_id="1"))
    mlflow.calls.clear()
    mlflow.refuse["get_experiment"] = (403, "PERMISSION_DENIED")
    with pytest.raises(Exception) as refused:
        listing(context(mlflow, cache), Selection(experiment_id="1"))
    assert getattr(refused.value, "status", None) == 403
    assert mlflow.calls == [("get_experiment", "1")]


def test_refresh_asks_mlflow_again():
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache()
    listing(context(mlflow, cache), Selection(experiment_id="1"))
    asked = len(mlflow.calls)
    _, cached = listing(context(mlflow, cache, refresh=True), Selection(experiment_id="1"))
    assert not cached and len(mlflow.calls) > asked


def test_only_experiment_or_run_scoped_listings_are_shared():
    """Shared: one experiment or run, whoever asks (still per server and TLS choice).
    Per caller: every experiment (MLflow filters by permission), and run_ids."""
    cache = memory_cache()
    callers = [MlflowTarget("http://mlflow.test", user, pw) for user, pw in [("alice", "a"), ("bob", "b")]]

    def keys(sel):
        return {cache.list_key(target, sel) for target in callers}
    for sel in (Selection(experiment_name="exp"), Selection(experiment_id="1"), Selection(run_id="r")):
        assert len(keys(sel)) == 1
        assert cache.list_key(MlflowTarget("http://mlflow.test", "alice", "a", False), sel) not in keys(sel)
    for sel in (Selection(), Selection(run_ids=("r",)), Selection(experiment_id="1", run_ids=("r",))):
        assert len(keys(sel)) == 2


def test_an_experiment_named_like_another_ones_id_is_never_taken_for_it():
    """The experiment resolution cache keeps names and ids apart: experiment "7" by id
    and the experiment *named* "7" are two experiments."""
    experiments = [{"experiment_id": "7", "name": "seven", "lifecycle_stage": "active"},
                   {"experiment_id": "8", "name": "7", "lifecycle_stage": "active"}]
    mlflow = ScriptedApi(experiments, [run("a", experiment_id="7"), run("b", experiment_id="8")])
    cache = memory_cache()
    by_id, _ = listing(context(mlflow, cache), Selection(experiment_id="7"))
    by_name, _ = listing(context(mlflow, cache), Selection(experiment_name="7"))
    assert [r["info"]["run_id"] for r in by_id["runs"]] == ["a"]
    assert [r["info"]["run_id"] for r in by_name["runs"]] == ["b"]


def test_grants_are_never_held_with_auth_cache_ttl_0():
    cache, target = memory_cache(auth_ttl=0), MlflowTarget("http://mlflow.test", "alice", "pw")
    cache.record_grant(target, "1", "an-epoch")
    assert cache.has_grant(target, "1") is False


def test_an_expired_shared_listing_is_refilled_from_the_resolved_name_without_asking_for_it():
    """With the listing gone (RUN_LIST_TTL=0 here) and a grant held, the experiment's
    name as MLflow resolved it within AUTH_CACHE_TTL saves the by-name call: the refill is
    the run search alone."""
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache(list_ttl=0)
    listing(context(mlflow, cache), Selection(experiment_name="exp"))
    mlflow.calls.clear()
    again, _ = listing(context(mlflow, cache), Selection(experiment_name="exp"))
    assert [r["info"]["run_id"] for r in again["runs"]] == ["a", "b"]
    assert [call[0] for call in mlflow.calls] == ["search_runs"]


def test_the_listing_a_refresh_made_is_the_one_later_polls_get():
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache()
    listing(context(mlflow, cache), Selection(experiment_id="1"))
    mlflow.runs["c"] = run("c", start=3)
    refreshed, _ = listing(context(mlflow, cache, refresh=True), Selection(experiment_id="1"))
    later, cached = listing(context(mlflow, cache), Selection(experiment_id="1"))
    assert [r["info"]["run_id"] for r in refreshed["runs"]] == ["c", "a", "b"]
    assert cached and later == refreshed


def test_the_experiment_resolution_cache_is_per_mlflow_server():
    """Two MLflow servers each with an experiment named "exp" (ids 1 and 2); on the second
    the caller also holds a grant for its experiment 1 (another experiment there). The
    name resolved on the first server is never used on the second."""
    first = ScriptedApi(EXPERIMENTS, RUNS)
    second = ScriptedApi([{"experiment_id": "1", "name": "other", "lifecycle_stage": "active"},
                          {"experiment_id": "2", "name": "exp", "lifecycle_stage": "active"}],
                         [run("x", experiment_id="1"), run("y", experiment_id="2")],
                         target=MlflowTarget("http://other-mlflow.test", "alice", "pw"))
    cache = memory_cache()
    listing(context(second, cache), Selection(experiment_id="1"))   # a grant for 1 there
    listing(context(first, cache), Selection(experiment_name="exp"))
    found, _ = listing(context(second, cache), Selection(experiment_name="exp"))
    assert [r["info"]["run_id"] for r in found["runs"]] == ["y"]


def test_a_grant_asked_again_for_a_cached_listing_is_kept_for_the_next_polls():
    """AUTH_CACHE_TTL shorter than RUN_LIST_TTL: once the grant expires, the next poll of
    the cached listing asks MLflow for it once, and the polls after that hold it again."""
    import time
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache(auth_ttl=1, list_ttl=60)
    listing(context(mlflow, cache), Selection(experiment_id="1"))
    time.sleep(1.1)
    mlflow.calls.clear()
    for _ in range(3):
        assert listing(context(mlflow, cache), Selection(experiment_id="1"))[1]   # cached
    assert mlflow.calls == [("get_experiment", "1")]


# --- refusals drop grants (issue 19, item 4) ----------------------------------------------

def test_a_refusal_drops_every_grant_of_the_caller_and_only_theirs():
    """Every experiment, either TLS choice, however the URI is spelled; not another
    password's, user's or server's grants."""
    cache = memory_cache()
    caller = MlflowTarget("http://mlflow.test", "alice", "pw")
    same = [caller, MlflowTarget("HTTP://mlflow.test:80/", "alice", "pw", verify_tls=False)]
    others = [MlflowTarget("http://mlflow.test", "alice", "other-pw"),
              MlflowTarget("http://mlflow.test", "bob", "pw"),
              MlflowTarget("http://other-mlflow.test", "alice", "pw")]
    for target in same + others:
        for experiment_id in ("1", "2"):
            cache.record_grant(target, experiment_id, cache.epoch(target))
    assert all(cache.has_grant(t, e) for t in same + others for e in ("1", "2"))
    cache.drop_grants(caller)
    assert not any(cache.has_grant(t, e) for t in same for e in ("1", "2"))
    assert all(cache.has_grant(t, e) for t in others for e in ("1", "2"))


def test_a_yes_given_before_a_refusal_grants_nothing_when_recorded_after_it():
    """The grant check of a cached listing asks MLflow; while MLflow answers yes, another
    request of the caller is refused. The grant recorded after that refusal is not held:
    the next poll asks MLflow again."""
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache()
    listing(context(mlflow, cache), Selection(experiment_id="1"))
    cache.drop_grants(mlflow.target)
    mlflow.during["get_experiment"] = lambda: cache.drop_grants(mlflow.target)
    assert listing(context(mlflow, cache), Selection(experiment_id="1"))[1]  # MLflow said yes
    assert not cache.has_grant(mlflow.target, "1")
    del mlflow.during["get_experiment"]
    mlflow.calls.clear()
    listing(context(mlflow, cache), Selection(experiment_id="1"))
    assert mlflow.calls == [("get_experiment", "1")]
    assert cache.has_grant(mlflow.target, "1")  # MLflow's yes with no refusal since: held


def test_a_search_answered_before_a_refusal_grants_nothing_when_recorded_after_it():
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache()
    mlflow.during["search_runs"] = lambda: cache.drop_grants(mlflow.target)
    listing(context(mlflow, cache), Selection(experiment_id="1"))
    assert not cache.has_grant(mlflow.target, "1")


def test_a_warm_listing_reads_the_cache_twice_and_writes_nothing():
    """The listing, then the grant with the caller's epoch in the same read: the epoch
    costs a warm poll no round trip."""
    mlflow = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache()
    listing(context(mlflow, cache), Selection(experiment_id="1"))
    reads, writes = [], []
    get_many, set_many, delete_many = (cache.store.get_many, cache.store.set_many,
                                       cache.store.delete_many)
    cache.store.get_many = lambda keys, **kw: reads.append(list(keys)) or get_many(keys, **kw)
    cache.store.set_many = lambda values, ttl: writes.append(values) or set_many(values, ttl)
    cache.store.delete_many = lambda keys: writes.append(keys) or delete_many(keys)
    mlflow.calls.clear()
    assert listing(context(mlflow, cache), Selection(experiment_id="1"))[1]
    assert mlflow.calls == [] and writes == []
    assert [[key.split(":")[0] for key in keys] for keys in reads] == [["list"], ["grant", "epoch"]]


# --- an experiment's remembered resolution and MLflow's answer (issue 19, item 5) ----------

def renamed_and_replaced(mlflow):
    """Experiment 1 ("exp") renamed "exp-old"; a new experiment 2 named "exp", with run n."""
    mlflow.experiments["1"] = dict(mlflow.experiments["1"], name="exp-old")
    mlflow.experiments["2"] = {"experiment_id": "2", "name": "exp", "lifecycle_stage": "active"}
    mlflow.runs["n"] = run("n", experiment_id="2", start=5)


def another_caller(mlflow, user):
    """The same MLflow, as ``user``."""
    other = ScriptedApi(target=MlflowTarget("http://mlflow.test", user, "pw2"))
    other.experiments, other.runs = mlflow.experiments, mlflow.runs
    return other


def test_a_cached_listing_by_name_refused_to_a_caller_is_made_anew_for_the_name_now():
    alice = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache()
    listing(context(alice, cache), Selection(experiment_name="exp"))
    renamed_and_replaced(alice)
    bob = another_caller(alice, "bob")
    bob.forbidden = {"1"}
    found, cached = listing(context(bob, cache), Selection(experiment_name="exp"))
    assert not cached and [r["info"]["run_id"] for r in found["runs"]] == ["n"]
    alice.forbidden = {"2"}
    with pytest.raises(Rejected) as refused:  # alice is never shown experiment 1's runs as "exp"
        listing(context(alice, cache), Selection(experiment_name="exp"))
    assert refused.value.status == 403


def test_a_grant_check_naming_the_experiment_otherwise_makes_the_listing_anew():
    """carol may read both: MLflow's answer to her grant check names experiment 1
    "exp-old", so the listing cached for "exp" is of another experiment now."""
    alice = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache()
    listing(context(alice, cache), Selection(experiment_name="exp"))
    renamed_and_replaced(alice)
    found, _ = listing(context(another_caller(alice, "carol"), cache), Selection(experiment_name="exp"))
    assert found["experiment"] == {"experiment_id": "2", "name": "exp"}
    assert [r["info"]["run_id"] for r in found["runs"]] == ["n"]


def test_a_refused_listing_by_id_is_not_asked_twice():
    """An id names one experiment for good: MLflow's 403 to the grant check stands."""
    alice = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache()
    listing(context(alice, cache), Selection(experiment_id="1"))
    bob = another_caller(alice, "bob")
    bob.forbidden = {"1"}
    with pytest.raises(Rejected):
        listing(context(bob, cache), Selection(experiment_id="1"))
    assert bob.calls == [("get_experiment", "1")]


def test_a_remembered_name_the_run_contradicts_is_asked_again():
    """run_id with experiment_name: the run is in the experiment the name is now, not in
    the one the cache remembers for it."""
    alice = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache(list_ttl=0)
    listing(context(alice, cache), Selection(experiment_name="exp"))  # name and grant cached
    renamed_and_replaced(alice)
    found, _ = listing(context(alice, cache), Selection(experiment_name="exp", run_id="n"))
    assert [r["info"]["run_id"] for r in found["runs"]] == ["n"]
    assert found["experiment"]["experiment_id"] == "2"
    assert cache.get_experiment(alice.target, "name", "exp")["experiment_id"] == "2"


def test_a_remembered_experiment_gone_is_resolved_by_its_name_again():
    """No runs in the remembered experiment, and MLflow has it no more (404): the name is
    asked of MLflow, not answered 404."""
    alice = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache(list_ttl=0)
    listing(context(alice, cache), Selection(experiment_name="exp"))
    del alice.experiments["1"]
    for run_id in ("a", "b"):
        del alice.runs[run_id]
    alice.experiments["2"] = {"experiment_id": "2", "name": "exp", "lifecycle_stage": "active"}
    alice.runs["n"] = run("n", experiment_id="2")
    found, _ = listing(context(alice, cache), Selection(experiment_name="exp"))
    assert [r["info"]["run_id"] for r in found["runs"]] == ["n"]
    assert cache.get_experiment(alice.target, "id", "1") is None  # forgotten


def test_a_name_mlflow_resolves_otherwise_forgets_the_old_experiments_resolution():
    alice = ScriptedApi(EXPERIMENTS, RUNS)
    cache = memory_cache(list_ttl=0)
    listing(context(alice, cache), Selection(experiment_name="exp"))
    renamed_and_replaced(alice)
    listing(context(another_caller(alice, "bob"), cache), Selection(experiment_name="exp"))
    assert cache.get_experiment(alice.target, "name", "exp")["experiment_id"] == "2"
    assert cache.get_experiment(alice.target, "id", "1") is None  # it said "exp"
