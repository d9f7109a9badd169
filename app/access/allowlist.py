"""``ALLOWED_TRACKING_URIS``: the only MLflow servers a caller's ``tracking_uri`` may name.

Without it the service is an open HTTP relay into its own network; with it, a
``tracking_uri`` outside the list is a 403 decided before any connection is made.
"""
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from app.uris import CONTROL_CHARACTER

DEFAULT_PORTS = {"http": 80, "https": 443}


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
