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
        return cls(**{f.name: data[f.name] for f in fields(cls)})
