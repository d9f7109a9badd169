"""Where and as whom one request talks to MLflow."""
import base64
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MlflowTarget:
    """Where and as whom to talk to MLflow, for one request."""

    uri: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_tls: bool = True
    profile: str | None = field(default=None, compare=False)  # the operator's name for it

    @property
    def label(self) -> str:
        """How error messages name it: the caller's own URI, or for a profile only its
        name (where it points, and as whom, are the operator's: they map the network)."""
        return f"MLflow of profile {self.profile!r}" if self.profile else f"MLflow at {self.uri}"

    @property
    def uses_auth(self) -> bool:
        return self.username is not None or self.password is not None

    @property
    def headers(self) -> dict:
        if not self.uses_auth:
            return {}
        # UTF-8 as RFC 7617 and MLflow's server (werkzeug) expect; requests' own basic
        # auth encodes latin-1 and fails on other characters. A lone username or
        # password is still sent (MLflow then says 401), never dropped.
        pair = f"{self.username or ''}:{self.password or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
