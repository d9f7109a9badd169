"""Details of the guards that only the mutation runs showed unchecked (docs/testing.md,
"Mutation testing"): each test here kills mutants of the guard code that the rest of the
suite let live. Pure where the guard is pure; real MLflow and Redis where it is not.
"""
import orjson
import pytest
from werkzeug.exceptions import HTTPException

from app.access import Access, Allowlist, load_profiles
from app.access.connection import Connection
from app.cache.freshness import fingerprint
from app.cache.run_cache import RunCache
from app.mlflow.target import MlflowTarget
from app.runs.query import Selection


# --- the allowlist -------------------------------------------------------------------

def test_any_port_but_zero_can_be_allowed():
    allowlist = Allowlist("mlflow.internal:1")
    assert allowlist.allows("http://mlflow.internal:1/") and allowlist.allows("https://mlflow.internal:1")
    assert not Allowlist("mlflow.internal:0").allows("http://mlflow.internal:0")


@pytest.mark.parametrize("uri", ["https://mlflow.internal/mlflow/a%5c..%5c..%5cadmin",
                                 "https://mlflow.internal/mlflow/a\\b"])
def test_a_backslash_in_a_path_segment_is_refused(uri):
    # some servers read a backslash as a slash: "a\..\..\admin" would leave the allowed prefix
    assert not Allowlist("https://mlflow.internal/mlflow").allows(uri)


@pytest.mark.parametrize("text, says", [
    ("mlflow\x07.internal", "'mlflow\\x07.internal' holds a control character"),
    ("ftp://host/", "'ftp://host/' is not an http(s) URI prefix "
                    "(no user info, query, fragment or dot segments)"),
    ("user@host", "'user@host' is neither a URI prefix (https://host[:port][/path]) nor a host[:port]"),
    (" , ", "ALLOWED_TRACKING_URIS is set but names no URI or host"),
])
def test_a_bad_allowlist_says_which_entry_and_what_is_wrong(text, says):
    with pytest.raises(ValueError) as raised:
        Allowlist(text)
    assert says in str(raised.value) and str(raised.value).startswith("ALLOWED_TRACKING_URIS")


# --- connection profiles ----------------------------------------------------------------

@pytest.mark.parametrize("config, says", [
    ({"MLFLOW_PROFILES": "{}", "MLFLOW_PROFILES_FILE": "/p.json"},
     "Set MLFLOW_PROFILES or MLFLOW_PROFILES_FILE, not both"),
    ({"MLFLOW_PROFILES": "{"}, "MLFLOW_PROFILES is not valid JSON: "),
    ({"MLFLOW_PROFILES": "[]"}, 'MLFLOW_PROFILES must be a JSON object: {"name": {"tracking_uri": ...}}'),
    ({"MLFLOW_PROFILES": '{"a b": {}}'},
     "MLFLOW_PROFILES: profile 'a b': names are letters, digits, '_', '.', '-' (at most 64)"),
    ({"MLFLOW_PROFILES": '{"p": 1}'}, "MLFLOW_PROFILES: profile 'p' must be a JSON object"),
    ({"MLFLOW_PROFILES": '{"p": {"url": 1}}'},
     "MLFLOW_PROFILES: profile 'p': unknown keys ['url']; "
     "known: ['insecure_tls', 'password', 'tracking_uri', 'username']"),
    ({"MLFLOW_PROFILES": '{"p": {"tracking_uri": "ftp://h"}}'},
     "MLFLOW_PROFILES: profile 'p': tracking_uri must be an http(s) URL without credentials "
     "or control characters, with a port from 1 to 65535 if any"),
    ({"MLFLOW_PROFILES": '{"p": {"tracking_uri": "https://h", "username": 7}}'},
     "MLFLOW_PROFILES: profile 'p': username must be a string"),
    ({"MLFLOW_PROFILES": '{"p": {"tracking_uri": "https://h", "insecure_tls": 0}}'},
     "MLFLOW_PROFILES: profile 'p': insecure_tls must be true or false"),
])
def test_a_bad_profile_setting_says_exactly_what_is_wrong(config, says):
    with pytest.raises(ValueError) as raised:
        load_profiles(config)
    assert str(raised.value).startswith(says)


def test_a_profile_with_an_authorization_header_is_refused_naming_it():
    access = Access({"MLFLOW_PROFILES": '{"p": {"tracking_uri": "https://h"}}'})
    with pytest.raises(HTTPException) as raised:
        access.target_for(Connection.of({"profile": "p"}), "Basic YTpi")
    assert raised.value.data["errors"] == {"Authorization": [
        "A profile brings its own credentials: send no Authorization header with it."]}
    with pytest.raises(HTTPException) as raised:
        access.target_for(Connection.of({"profile": "q"}), None)
    assert raised.value.code == 404 and raised.value.description == (
        "Profile 'q' is not configured on this service; ask its operator for the profile names.")


# --- cache keys: whose, and for what --------------------------------------------------

QUERY = Selection(**{"experiment_name": "e", "experiment_id": None, "run_id": None, "limit": 5,
         "include_deleted": False, "filter_string": None, "order_by": None, "run_ids": None,
         "run_status": None})
CALLER = MlflowTarget(uri="https://mlflow.internal", username="alice", password="pw")


def keys() -> RunCache:
    return RunCache(None, secret=b"k", run_ttl=1, list_ttl=1, auth_ttl=1, kind="x")


@pytest.mark.parametrize("field, other", [
    ("experiment_name", "f"), ("experiment_id", "7"), ("run_id", "r"), ("limit", 6),
    ("include_deleted", True), ("filter_string", "metrics.a > 1"), ("order_by", ["start_time"]),
    ("run_ids", ["r"]), ("run_status", ["FINISHED"]),
])
def test_a_listing_key_tells_apart_queries_that_differ_in_one_field(field, other):
    other = tuple(other) if isinstance(other, list) else other
    assert keys().list_key(CALLER, QUERY) != keys().list_key(CALLER, QUERY.but(**{field: other}))


@pytest.mark.parametrize("other", [
    MlflowTarget(uri="https://mlflow.internal", username="alice", password="pw2"),
    MlflowTarget(uri="https://mlflow.internal", username="bob", password="pw"),
    MlflowTarget(uri="https://mlflow.internal/other", username="alice", password="pw"),
    MlflowTarget(uri="https://mlflow.internal", username="alice", password="pw", verify_tls=False),
])
def test_listing_and_grant_keys_tell_callers_apart(other):
    cache = keys()
    across = QUERY.but(experiment_name=None)  # across experiments: a listing per caller
    assert not across.shared
    assert cache.list_key(CALLER, across) != cache.list_key(other, across)
    assert cache.grant_key(CALLER, "1") != cache.grant_key(other, "1")
    assert cache.grant_key(CALLER, "1") != cache.grant_key(CALLER, "2")
    # scoped to one experiment: shared by callers of one server and TLS choice (issue 12),
    # never across servers or TLS choices (the grant still decides who may read it)
    assert QUERY.shared
    same_server = (other.uri, other.verify_tls) == (CALLER.uri, CALLER.verify_tls)
    assert (cache.list_key(CALLER, QUERY) == cache.list_key(other, QUERY)) == same_server


def test_a_callers_epoch_key_is_a_mac_of_uri_username_and_password_only():
    """One epoch for the caller whichever TLS choice, never another password's or user's
    or server's; its name holds no credential."""
    cache = keys()
    assert cache.epoch_key(CALLER) == cache.epoch_key(
        MlflowTarget(uri="HTTPS://mlflow.internal:443/", username="alice", password="pw",
                     verify_tls=False))
    for other in (MlflowTarget(uri="https://mlflow.internal", username="alice", password="pw2"),
                  MlflowTarget(uri="https://mlflow.internal", username="bob", password="pw"),
                  MlflowTarget(uri="https://mlflow.internal/other", username="alice", password="pw")):
        assert cache.epoch_key(CALLER) != cache.epoch_key(other)
    key = cache.epoch_key(CALLER)
    assert key == "epoch:" + cache.seal.mac("epoch", "https://mlflow.internal", "alice", "pw")
    assert key not in {cache.grant_key(CALLER, "1"), cache.experiment_key(CALLER, "name", "1")}


def test_keys_are_macs_of_their_parts_as_a_list():
    cache = keys()
    assert cache.seal.mac("a:b", "c") != cache.seal.mac("a", "b:c")
    assert cache.seal.mac(None) != cache.seal.mac("None") and cache.seal.mac(1) != cache.seal.mac("1")
    assert cache.seal.mac(["a"]) != cache.seal.mac("['a']")
    assert keys().seal.mac("a") == cache.seal.mac("a") != RunCache(None, secret=b"k2", run_ttl=1, list_ttl=1,
                                                           auth_ttl=1, kind="x").seal.mac("a")


# --- a request's target ---------------------------------------------------------------

ARGS = {"tracking_uri": "https://mlflow.internal", "username": "alice", "password": "pw",
        "insecure_tls": False, "profile": None}


@pytest.mark.parametrize("insecure", [False, True])
def test_the_target_checks_certificates_unless_the_caller_says_insecure_tls(insecure):
    target = Access({}).target_for(Connection.of(dict(ARGS, insecure_tls=insecure)), None)
    assert target == MlflowTarget(uri="https://mlflow.internal", username="alice", password="pw",
                                  verify_tls=not insecure)


def test_a_profile_is_its_own_target_whatever_else_was_sent():
    access = Access({"MLFLOW_PROFILES": '{"p": {"tracking_uri": "https://h", "username": "svc"}}',
                     "ALLOWED_TRACKING_URIS": "mlflow.internal"})
    target = access.target_for(Connection.of(dict(ARGS, profile="p")), None)
    assert (target.uri, target.username, target.profile) == ("https://h", "svc", "p")


def test_credentials_twice_and_a_refused_uri_say_what_to_do():
    with pytest.raises(HTTPException) as raised:
        Access({}).target_for(Connection.of(dict(ARGS, password=None)), "Basic YTpi")
    assert raised.value.data["errors"] == {"username": [
        "Send credentials in the body or in the Authorization header, not both."]}
    with pytest.raises(HTTPException) as raised:
        Access({"ALLOWED_TRACKING_URIS": "other.internal"}).target_for(Connection.of(ARGS), None)
    assert raised.value.code == 403 and raised.value.description == (
        "tracking_uri 'https://mlflow.internal' was refused by the operator's allowlist "
        "(ALLOWED_TRACKING_URIS); no connection was made. Ask the operator to allow it, "
        "or use one of the configured profiles.")


# --- the fingerprint rule ---------------------------------------------------------------

RUN = {"info": {"run_id": "r", "status": "FINISHED", "end_time": 2000, "lifecycle_stage": "active",
                "run_name": "n", "start_time": 1000},
       "data": {"params": [{"key": "lr", "value": "0.1"}, {"key": "bs", "value": "32"}],
                "metrics": [{"key": "loss", "value": 0.5, "step": 9, "timestamp": 1900},
                            {"key": "acc", "value": 0.9, "step": 9, "timestamp": 1900}]}}


def changed(path, value):
    run = orjson.loads(orjson.dumps(RUN))
    *where, last = path
    target = run
    for step in where:
        target = target[step]
    target[last] = value
    return run


@pytest.mark.parametrize("path, value", [
    (("info", "status"), "FAILED"), (("info", "end_time"), 2001),
    (("info", "lifecycle_stage"), "deleted"), (("info", "run_name"), "m"),
    (("data", "params", 0, "value"), "0.2"), (("data", "params", 0, "key"), "LR"),
    (("data", "metrics", 0, "value"), 0.4), (("data", "metrics", 0, "step"), 10),
    (("data", "metrics", 0, "timestamp"), 1901), (("data", "metrics", 0, "key"), "Loss"),
])
def test_a_change_that_matters_changes_the_fingerprint(path, value):
    assert fingerprint(changed(path, value)) != fingerprint(RUN)


def test_what_does_not_matter_keeps_the_fingerprint():
    assert fingerprint(changed(("info", "start_time"), 5)) == fingerprint(RUN)
    reordered = changed(("data", "params"), RUN["data"]["params"][::-1])
    reordered["data"]["metrics"] = RUN["data"]["metrics"][::-1]
    assert fingerprint(reordered) == fingerprint(RUN)
    bare = {"info": RUN["info"]}  # MLflow may leave out an empty "data"
    assert fingerprint(bare) == fingerprint(dict(bare, data={})) != fingerprint(RUN)
    assert len(fingerprint(RUN)) == 32 and int(fingerprint(RUN), 16) >= 0


# --- the seal -----------------------------------------------------------------------------

def test_an_entry_not_sealed_by_us_is_a_miss_that_says_why(caplog):
    cache = keys()
    sealed = cache.seal.close("run:k", {"points": 1}, b'{"run_id":"r"}').data[1:]  # without the bytes tag
    assert cache.seal.open("run:k", sealed) == ({"points": 1}, b'{"run_id":"r"}')
    mac_end = sealed.index(b"\n")
    forged = b"0" * mac_end + sealed[mac_end:]
    not_an_object = cache.seal.close("run:k", [1], b"x").data[1:]
    for value, why in [(forged, "its MAC does not match"), (not_an_object, "its header is not an object")]:
        caplog.clear()
        assert cache.seal.open("run:k", value) is None
        assert caplog.messages == [f"cache: ignoring entry run:k that this service did not write ({why})"]
    assert cache.seal.open("run:other", sealed) is None  # sealed for another key
