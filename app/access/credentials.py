"""The caller's own credentials, from an ``Authorization: Basic`` header."""
import base64
import binascii

from app import errors


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
