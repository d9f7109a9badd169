"""Pure logic of the operators' controls (app/access.py): the allowlist matcher, profile
parsing and the Authorization: Basic header. No I/O; the routes are in test_operator_controls."""
import base64

import pytest
from werkzeug.exceptions import UnprocessableEntity

from app.access import Allowlist, basic_credentials, load_profiles


@pytest.mark.parametrize("allowed, uri", [
    ("https://mlflow.internal/", "https://mlflow.internal"),
    ("https://mlflow.internal/", "https://mlflow.internal/"),
    ("https://mlflow.internal/", "HTTPS://MLflow.Internal:443/some/path"),
    ("https://mlflow.internal", "https://mlflow.internal./"),          # same DNS name
    ("http://mlflow.internal:80/", "http://mlflow.internal"),          # default port
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow"),
    ("https://mlflow.internal/mlflow/", "https://mlflow.internal/mlflow/api"),
    ("https://mlflow.internal/ml%66low", "https://mlflow.internal/mlflow/x"),  # decoded alike
    ("mlflow.internal", "http://mlflow.internal"),
    ("mlflow.internal", "https://mlflow.internal/any/path"),
    ("mlflow.internal:5000", "http://mlflow.internal:5000"),
    ("mlflow.internal:5000", "https://mlflow.internal:5000/x"),
    ("[::1]:5000", "http://[::1]:5000/"),
    ("10.0.0.5", "http://10.0.0.5"),
    ("other.host, mlflow.internal", "https://mlflow.internal"),      # any entry may match
])
def test_allowed(allowed, uri):
    assert Allowlist(allowed).allows(uri)


@pytest.mark.parametrize("allowed, uri", [
    # hosts that start like an allowed one, or hide another host
    ("https://mlflow.internal/", "https://mlflow.internal.evil.com"),
    ("https://mlflow.internal/", "https://mlflow.internal.evil.com/"),
    ("https://mlflow.internal/", "https://mlflow.internal@evil.com"),
    ("https://mlflow.internal/", "https://mlflow.internal:pw@evil.com/"),
    ("https://mlflow.internal/", "https://evil.com/https://mlflow.internal/"),
    ("https://mlflow.internal/", "https://evil.com#@mlflow.internal"),
    ("https://mlflow.internal/", "https://evil.com?@mlflow.internal"),
    ("https://mlflow.internal/", "https://xmlflow.internal/"),
    ("https://mlflow.internal/", "https://mlflow.internal%2eevil.com/"),
    ("mlflow.internal", "https://mlflow.internal.evil.com"),
    ("mlflow.internal", "http://evil.com/mlflow.internal"),
    # scheme and port
    ("https://mlflow.internal/", "http://mlflow.internal/"),
    ("https://mlflow.internal/", "https://mlflow.internal:8443/"),
    ("mlflow.internal", "http://mlflow.internal:8080"),             # admin port of an allowed host
    ("mlflow.internal", "https://mlflow.internal:22"),
    ("mlflow.internal:5000", "http://mlflow.internal"),
    ("mlflow.internal", "file:///etc/passwd"),
    ("mlflow.internal", "ftp://mlflow.internal"),
    ("mlflow.internal", "http://mlflow.internal:99999"),
    # paths: whole segments, no way back out of the prefix
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow-admin"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow/../admin"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow/%2e%2e/admin"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow/..%2fadmin"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow%2f..%2f..%2fadmin"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow/./x"),
    ("mlflow.internal", "https://mlflow.internal/a/../b"),
    # the addresses an open relay is abused for
    ("mlflow.internal", "http://169.254.169.254/latest/meta-data/"),
    ("mlflow.internal", "http://127.0.0.1:6379"),
    ("10.0.0.5", "http://10.0.0.05"),  # another spelling is not the allowed host
    # control characters, raw or percent-encoded, are never stripped nor let through
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow\n"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow\r"),
    ("https://mlflow.internal/mlflow", " https://mlflow.internal/mlflow"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/ml\tflow"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow/\x00"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow/%0A"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow/a%0d%0aHost:x"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow/%7F"),
    ("https://mlflow.internal/mlflow", "https://mlflow.internal/mlflow/%C2%85"),  # C1 NEL
    ("mlflow.internal", "http://mlflow.internal:0"),
])
def test_refused(allowed, uri):
    assert not Allowlist(allowed).allows(uri)


def test_unset_allows_everything():
    allowlist = Allowlist(None)
    assert not allowlist.enabled and allowlist.allows("http://169.254.169.254")


@pytest.mark.parametrize("text", [
    "ftp://host/", "https://user@host/", "https://host/?q=1", "https://host/#f",
    "host/path", "https://host/a/../b", "user@host", "host:notaport", ",", " ", "https://",
])
def test_bad_allowlist_entries_stop_start_up(text):
    with pytest.raises(ValueError, match="ALLOWED_TRACKING_URIS"):
        Allowlist(text)


# --- profiles -------------------------------------------------------------------

PROFILES = ('{"prod": {"tracking_uri": "https://mlflow.internal/api", "username": "svc", '
            '"password": "s3cret-pw"}, "lab": {"tracking_uri": "http://lab:5000", '
            '"insecure_tls": true}}')


def test_profiles_parse():
    profiles = load_profiles({"MLFLOW_PROFILES": PROFILES})
    prod, lab = profiles["prod"], profiles["lab"]
    assert (prod.uri, prod.username, prod.password, prod.verify_tls) == \
        ("https://mlflow.internal/api", "svc", "s3cret-pw", True)  # TLS verified unless said
    assert (lab.username, lab.password, lab.verify_tls) == (None, None, False)
    assert "s3cret-pw" not in repr(prod)


def test_profiles_from_a_file(tmp_path):
    path = tmp_path / "profiles.json"
    path.write_text(PROFILES)
    assert set(load_profiles({"MLFLOW_PROFILES_FILE": str(path)})) == {"prod", "lab"}
    with pytest.raises(ValueError, match="not both"):
        load_profiles({"MLFLOW_PROFILES_FILE": str(path), "MLFLOW_PROFILES": PROFILES})


@pytest.mark.parametrize("text, complaint", [
    ('{"prod": {"tracking_uri": "https://h", "pasword": "s3cret-pw"}}', "unknown keys"),
    ('{"prod": {"username": "u", "password": "s3cret-pw"}}', "tracking_uri"),
    ('{"prod": {"tracking_uri": "https://u:s3cret-pw@h/"}}', "tracking_uri"),
    ('{"prod": {"tracking_uri": "file:///etc/passwd"}}', "tracking_uri"),
    ('{"prod": {"tracking_uri": "https://h/mlflow\\n"}}', "tracking_uri"),
    ('{"prod": {"tracking_uri": "https://h/ml\\tflow"}}', "tracking_uri"),
    ('{"prod": {"tracking_uri": "https://h:99999"}}', "tracking_uri"),
    ('{"prod": {"tracking_uri": "https://h:0/"}}', "tracking_uri"),
    ('{"prod": {"tracking_uri": "https://h", "insecure_tls": "no"}}', "insecure_tls"),
    ('{"prod": {"tracking_uri": "https://h", "password": 123}}', "password"),
    ('{"bad name!": {"tracking_uri": "https://h"}}', "names"),
    ('{"prod": "https://h"}', "object"),
    ('["prod"]', "JSON object"),
    ('{"prod": {"tracking_uri": "https://h", "password": "s3cret-pw",}}', "not valid JSON"),
])
def test_bad_profiles_stop_start_up_without_showing_secrets(text, complaint):
    with pytest.raises(ValueError, match=complaint) as raised:
        load_profiles({"MLFLOW_PROFILES": text})
    assert "s3cret-pw" not in str(raised.value)


# --- Authorization: Basic -----------------------------------------------------------

def basic(text: str, encoding="utf-8") -> str:
    return "Basic " + base64.b64encode(text.encode(encoding)).decode()


@pytest.mark.parametrize("pair, expected", [
    ("alice:alice-password-1", ("alice", "alice-password-1")),
    ("jörg:pässwörd", ("jörg", "pässwörd")),                      # UTF-8 (RFC 7617)
    ("bob:with:colons", ("bob", "with:colons")),                   # first colon splits
    ("bob:", ("bob", "")),
])
def test_basic_credentials(pair, expected):
    assert basic_credentials(basic(pair)) == expected
    assert basic_credentials(basic(pair).replace("Basic", "basic", 1)) == expected


@pytest.mark.parametrize("header", [
    "Bearer abc.def", "Basic", "Basic ", "Basic !!!notbase64", "Basic YWxpY2U",  # bad padding
    basic("no-colon"), basic(":password-only"), basic("jörg:pässwörd", "latin-1"),
    "Digest username=alice", basic("u" * 257 + ":p"),
])
def test_malformed_authorization_is_a_422_naming_the_header(header):
    with pytest.raises(UnprocessableEntity) as raised:
        basic_credentials(header)
    assert "Authorization" in raised.value.data["errors"]
