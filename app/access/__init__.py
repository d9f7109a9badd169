"""Which MLflow a request may reach, and as whom: the operator's controls.

* ``ALLOWED_TRACKING_URIS``: the only MLflow servers a caller's ``tracking_uri`` may name.
  Without it the service is an open HTTP relay into its own network; with it, a
  ``tracking_uri`` outside the list is a 403 decided here, before a transport (and so a
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
import logging

from app import errors
from app.access.allowlist import Allowlist
from app.access.connection import Connection
from app.access.credentials import basic_credentials
from app.access.profiles import load_profiles
from app.mlflow.target import MlflowTarget

log = logging.getLogger(__name__)


class Access:
    """The operator's allowlist and profiles, and how a request's target is chosen."""

    def __init__(self, config):
        self.allowlist = Allowlist(config.get("ALLOWED_TRACKING_URIS"))
        self.profiles = load_profiles(config)

    def target_for(self, connection: Connection, authorization: str | None) -> MlflowTarget:
        """The request's MLflow target, or a 403/422 before any connection is made.

        The schema has already refused a profile sent with tracking_uri, username,
        password or insecure_tls.
        """
        if connection.profile is not None:
            return self._profile(connection.profile, authorization)
        username, password = connection.username, connection.password
        if authorization is not None:
            sent = [f for f in ("username", "password") if getattr(connection, f) is not None]
            if sent:
                raise errors.invalid_fields({f: ["Send credentials in the body or in the "
                                                 "Authorization header, not both."] for f in sent})
            username, password = basic_credentials(authorization)
        if not self.allowlist.allows(connection.tracking_uri):
            raise errors.Forbidden(
                f"tracking_uri {connection.tracking_uri!r} was refused by the operator's allowlist "
                "(ALLOWED_TRACKING_URIS); no connection was made. Ask the operator to allow "
                "it, or use one of the configured profiles.")
        return MlflowTarget(uri=connection.tracking_uri, username=username, password=password,
                            verify_tls=not connection.insecure_tls)

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
