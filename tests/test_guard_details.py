"""Details of the guards that only the mutation runs showed unchecked (docs/testing.md,
"Mutation testing"): each test here kills mutants of the guard code that the rest of the
suite let live. Pure where the guard is pure; real MLflow and Redis where it is not.
"""
import pytest

from app.access import Allowlist


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
