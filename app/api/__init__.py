"""The HTTP edge: routes, request and response schemas, GET forms, delivery (caching
headers, compression), CORS, forwarded headers, the error shape, probes, rate limit.
It turns requests into typed queries for app/runs and answers into HTTP; no MLflow or
cache logic lives here."""
