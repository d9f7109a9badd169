"""Which tracking URIs the service accepts: the schema's rule, also applied to profiles."""
import re
from urllib.parse import urlsplit

import marshmallow as ma
from marshmallow import validate

# RFC 3986 IPv6address (as Python's ipaddress reads it) and the port range 1-65535, so
# that every URI the published pattern allows can be parsed and connected to.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_OCTET}(?:\.{_OCTET}){{3}})"
_IPV6 = "(?:" + "|".join([
    rf"(?:{_H16}:){{6}}{_LS32}",
    rf"::(?:{_H16}:){{5}}{_LS32}",
    rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
    rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
    rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
    rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
]) + ")"
_PORT = (r"0*(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
         r"|6553[0-5])")

# Only a remote MLflow over HTTP(S): file:, sqlite:, databricks ... would make this
# service read its own disk or credentials. The pattern is also published in the
# OpenAPI spec, so clients and fuzzers see the same rule the service applies.
HTTP_URI = (r"^[Hh][Tt][Tt][Pp][Ss]?://"              # http:// or https://, any case
            rf"(?:[A-Za-z0-9._~-]+|\[{_IPV6}\])"     # host name, IPv4 or [IPv6]; no user@
            rf"(?::{_PORT})?"                           # port
            r"(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?$")  # RFC 3986 path; no query or fragment
URI_ERROR = ("Must be an http:// or https:// URL of an MLflow server, such as "
             "https://mlflow.example.com/mlflow-api (no credentials, query or fragment; "
             "a port from 1 to 65535).")
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a tracking URI, or None. The whole string must match (a
    regex ``$`` alone lets a final newline through, which ``urlsplit`` then drops)."""
    control = CONTROL_CHARACTER.search(uri)
    if control:
        return (f"Must not contain control characters (U+{ord(control.group()):04X} at "
                f"position {control.start()}).")
    if not re.fullmatch(HTTP_URI, uri):
        return URI_ERROR
    try:  # the pattern should have made sure of it: never let a 500 through
        urlsplit(uri).port
    except ValueError:
        return URI_ERROR
    return None


class HttpUri(validate.Regexp):
    """Publishes HTTP_URI (a pattern JSON Schema clients understand); checks ``uri_problem``."""

    def __call__(self, value):
        problem = uri_problem(value)
        if problem:
            raise ma.ValidationError(problem)
        return value


http_uri = HttpUri(HTTP_URI, error=URI_ERROR)
