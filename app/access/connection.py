"""What a request sent to say which MLflow to reach and how, typed (made by the schema)."""
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Connection:
    tracking_uri: str | None = None
    profile: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    insecure_tls: bool = True
    http_timeout: float = 15.0

    @classmethod
    def of(cls, data: dict) -> "Connection":
        """From the schema's fields; a GET form has no username/password fields (the
        Authorization header or a profile supplies them): they are None."""
        return cls(**{f.name: data.get(f.name, f.default) for f in fields(cls)})
