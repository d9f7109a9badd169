"""Which MLflow a request may reach, and as whom: the operator's controls.

* ``ALLOWED_TRACKING_URIS``: the only MLflow servers a caller's ``tracking_uri`` may name.
  Without it the service is an open HTTP relay into its own network; with it, a
  ``tracking_uri`` outside the list is a 403 decided here, before a gateway (and so a
  connection) exists.
* ``MLFLOW_PROFILES``: named MLflow servers with their credentials, set by the operator,
  so a browser dashboard sends ``"profile": "prod"`` and never holds a password.
* The caller's own credentials: the body's ``username``/``password`` or an
  ``Authorization: Basic`` header.

Every path ends in the same ``MlflowTarget`` (uri, username, password, TLS), so cache
keys and grants (MACs over uri + username + password) separate callers the same way
whichever way the credentials came.

Settings are parsed once, at start-up (``init_app``); a malformed setting stops the
service there, with a message that names the setting but never a password.
"""
import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from app import errors
from app.gateway import MlflowTarget
from app.schemas import PROFILE_NAME
from app.uris import CONTROL_CHARACTER, uri_problem

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}
PROFILE_KEYS = {"tracking_uri", "username", "password", "insecure_tls"}


# --- the allowlist ------------------------------------------------------------

@dataclass(frozen=True)
class Place:
    """A URI taken apart for matching: lower-case scheme and host, the effective port,
    and the path's segments (percent-decoded, trailing slash dropped)."""

    scheme: str | None  # None: a bare host entry, which allows http and https
    host: str
    port: int | None    # None: a bare host entry without port (the scheme's default port)
    segments: tuple


def place_of(uri: str) -> Place | None:
    """``uri`` as a Place, or None when it cannot be matched safely (and so is refused).

    Refused: other schemes, user info (``https://allowed@evil``), a query or fragment,
    a bad port, and paths with ``.``/``..`` segments or encoded slashes, which a server
    could resolve to somewhere outside an allowed path prefix. Control characters are
    refused anywhere, raw or percent-encoded: ``urlsplit`` silently drops tabs and
    newlines, so ``…/mlflow\n`` would match ``…/mlflow`` and then be sent as ``%0A``.
    The URI is matched as sent (an operator's entries are stripped by ``parse_allowed``).
    """
    if CONTROL_CHARACTER.search(uri) or uri != uri.strip():
        return None
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or "@" in parts.netloc or parts.query or parts.fragment:
        return None
    segments = _segments(parts.path)
    host = _host(parts.hostname)
    if not host or segments is None or port == 0:
        return None
    return Place(scheme, host, port if port is not None else DEFAULT_PORTS[scheme], segments)


def _host(hostname):
    # urlsplit lower-cases it; "mlflow.internal." is the same DNS name as "mlflow.internal".
    return (hostname or "").rstrip(".")


def _segments(path: str):
    segments = [unquote(s) for s in path.split("/")[1:]]
    while segments and segments[-1] == "":
        segments.pop()
    if any(s in (".", "..") or "/" in s or "\\" in s or CONTROL_CHARACTER.search(s)
           for s in segments):
        return None
    return tuple(segments)


def parse_allowed(entry: str) -> Place:
    """One ``ALLOWED_TRACKING_URIS`` entry: a URI prefix, or a bare ``host[:port]``."""
    text = entry.strip()
    if CONTROL_CHARACTER.search(text):
        raise ValueError(f"ALLOWED_TRACKING_URIS: {entry!r} holds a control character")
    if "://" in text:
        place = place_of(text)
        if place is None:
            raise ValueError(f"ALLOWED_TRACKING_URIS: {entry!r} is not an http(s) URI prefix "
                             "(no user info, query, fragment or dot segments)")
        return place
    try:
        parts = urlsplit("//" + text)
        port = parts.port
    except ValueError:
        port, parts = None, None
    if parts is None or not _host(parts.hostname) or "@" in parts.netloc or parts.path:
        raise ValueError(f"ALLOWED_TRACKING_URIS: {entry!r} is neither a URI prefix "
                         "(https://host[:port][/path]) nor a host[:port]")
    return Place(None, _host(parts.hostname), port, ())


class Allowlist:
    """The operator's ``ALLOWED_TRACKING_URIS``; ``None`` text means every URI is allowed."""

    def __init__(self, text: str | None):
        if text is None:
            self.entries = None
            return
        self.entries = [parse_allowed(e) for e in text.split(",") if e.strip()]
        if not self.entries:
            raise ValueError("ALLOWED_TRACKING_URIS is set but names no URI or host")

    @property
    def enabled(self) -> bool:
        return self.entries is not None

    def allows(self, uri: str) -> bool:
        if self.entries is None:
            return True
        place = place_of(uri)
        return place is not None and any(_matches(entry, place) for entry in self.entries)


def _matches(entry: Place, place: Place) -> bool:
    if entry.host != place.host:
        return False
    if entry.scheme is not None and entry.scheme != place.scheme:
        return False
    wanted_port = entry.port if entry.port is not None else DEFAULT_PORTS[place.scheme]
    # Whole segments only: "/mlflow" allows "/mlflow/api", never "/mlflow-admin".
    return place.port == wanted_port and place.segments[:len(entry.segments)] == entry.segments


# --- connection profiles --------------------------------------------------------

def load_profiles(config) -> dict:
    """{name: MlflowTarget} from ``MLFLOW_PROFILES`` (JSON) or ``MLFLOW_PROFILES_FILE``."""
    text, path = config.get("MLFLOW_PROFILES"), config.get("MLFLOW_PROFILES_FILE")
    if text and path:
        raise ValueError("Set MLFLOW_PROFILES or MLFLOW_PROFILES_FILE, not both")
    if path:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError as exc:  # the message has a position, never the text
        raise ValueError(f"MLFLOW_PROFILES is not valid JSON: {exc}") from None
    if not isinstance(found, dict):
        raise ValueError('MLFLOW_PROFILES must be a JSON object: {"name": {"tracking_uri": ...}}')
    return {name: _profile(name, fields) for name, fields in found.items()}


def _profile(name, fields) -> MlflowTarget:
    where = f"MLFLOW_PROFILES: profile {name!r}"
    if not re.match(PROFILE_NAME, name):
        raise ValueError(f"{where}: names are letters, digits, '_', '.', '-' (at most 64)")
    if not isinstance(fields, dict):
        raise ValueError(f"{where} must be a JSON object")
    unknown = sorted(set(fields) - PROFILE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(PROFILE_KEYS)}")
    uri = fields.get("tracking_uri")
    if not isinstance(uri, str) or uri_problem(uri):
        raise ValueError(f"{where}: tracking_uri must be an http(s) URL without credentials "
                         "or control characters, with a port from 1 to 65535 if any")
    for key in ("username", "password"):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            raise ValueError(f"{where}: {key} must be a string")
    insecure = fields.get("insecure_tls", False)
    if not isinstance(insecure, bool):
        raise ValueError(f"{where}: insecure_tls must be true or false")
    return MlflowTarget(uri=uri, username=fields.get("username"),
                        password=fields.get("password"), verify_tls=not insecure, profile=name)


# --- the caller's credentials ------------------------------------------------------

def basic_credentials(header: str) -> tuple[str, str]:
    """(username, password) from ``Authorization: Basic <base64 of user:pass>`` (UTF-8)."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise _bad_header("only 'Basic <base64 of username:password>' is accepted")
    try:
        pair = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise _bad_header("the credentials are not base64 of UTF-8 'username:password'") from None
    username, colon, password = pair.partition(":")
    if not colon or not username:
        raise _bad_header("the decoded credentials must be 'username:password'")
    if len(username) > 256 or len(password) > 1024:
        raise _bad_header("username (256) or password (1024 characters) too long")
    return username, password


def _bad_header(why: str):
    # A 422 like any other bad input (401 means MLflow rejected the credentials).
    return errors.invalid_fields({"Authorization": [f"Malformed Authorization header: {why}."]})


# --- the whole decision ----------------------------------------------------------

class Access:
    """The operator's allowlist and profiles, and how a request's target is chosen."""

    def __init__(self, config):
        self.allowlist = Allowlist(config.get("ALLOWED_TRACKING_URIS"))
        self.profiles = load_profiles(config)

    def target_for(self, args: dict, authorization: str | None) -> MlflowTarget:
        """The request's MLflow target, or a 403/422 before any connection is made.

        The schema has already refused a profile sent with tracking_uri, username,
        password or insecure_tls.
        """
        if args.get("profile") is not None:
            return self._profile(args["profile"], authorization)
        username, password = args["username"], args["password"]
        if authorization is not None:
            sent = [f for f in ("username", "password") if args[f] is not None]
            if sent:
                raise errors.invalid_fields({f: ["Send credentials in the body or in the "
                                                 "Authorization header, not both."] for f in sent})
            username, password = basic_credentials(authorization)
        if not self.allowlist.allows(args["tracking_uri"]):
            raise errors.Forbidden(
                f"tracking_uri {args['tracking_uri']!r} was refused by the operator's allowlist "
                "(ALLOWED_TRACKING_URIS); no connection was made. Ask the operator to allow "
                "it, or use one of the configured profiles.")
        return MlflowTarget(uri=args["tracking_uri"], username=username, password=password,
                            verify_tls=not args["insecure_tls"])

    def _profile(self, name, authorization):
        if authorization is not None:
            raise errors.invalid_fields({"Authorization": [
                "A profile brings its own credentials: send no Authorization header with it."]})
        # Operator-configured profiles are trusted: the allowlist governs callers' URIs.
        target = self.profiles.get(name)
        if target is None:
            # 404 like an unknown experiment: the name is well-formed, the service has no such
            # thing. The configured names are not listed (they map the internal network).
            raise errors.NotFound(f"Profile {name!r} is not configured on this service; "
                                  "ask its operator for the profile names.")
        return target


def init_app(app):
    access = app.extensions["access"] = Access(app.config)
    if not access.allowlist.enabled:
        log.warning("ALLOWED_TRACKING_URIS is not set: callers can make this service connect "
                    "to any http(s) address it can reach "
                    "(docs/operating.md: Allowlist of MLflow servers)")
    if access.profiles:
        log.info("connection profiles: %s", ", ".join(sorted(access.profiles)))
