"""Which tracking URIs the service accepts: the schema's rule, also applied to profiles."""
from marshmallow import validate

# Only a remote MLflow over HTTP(S): file:, sqlite:, databricks ... would make this
# service read its own disk or credentials. The pattern is also published in the
# OpenAPI spec, so clients and fuzzers see the same rule the service applies.
HTTP_URI = (r"^[Hh][Tt][Tt][Pp][Ss]?://"             # http:// or https://, any case
            r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])"  # host name, IPv4 or [IPv6]; no user@
            r"(?::[0-9]{1,5})?"                        # port
            r"(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?$")  # RFC 3986 path; no query or fragment
http_uri = validate.Regexp(
    HTTP_URI, error="Must be an http:// or https:// URL of an MLflow server, such as "
                    "https://mlflow.example.com/mlflow-api (no credentials, query or fragment).")
