"""The dashboard page (docs/dashboard.md): GET /dashboard/ and its assets, nothing else.

A thin blueprint: the page is a static HTML file whose scripts call the public API
relative to the page (``../mlflow/runs``), so it works under any reverse-proxy prefix and
holds no logic here. Every answer of the blueprint carries a strict Content-Security-Policy
(no inline script or style, nothing from another origin): the page handles MLflow
passwords, so a script injected into it must not run.
"""
from pathlib import Path

from flask import Blueprint, send_from_directory

HERE = Path(__file__).parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}

# /dashboard/static/<path>: Flask's static route (ETag, conditional GETs, Range).
blp = Blueprint("dashboard", __name__, url_prefix="/dashboard",
                static_folder="static", static_url_path="/static")


@blp.get("/")  # /dashboard is redirected here (308) by the URL map: relative URLs need the /
def page():
    response = send_from_directory(HERE, "page.html", mimetype="text/html")
    # Revalidated on each visit, so a new release's page is never mixed with old scripts.
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.after_request
def secure(response):
    response.headers.update(HEADERS)
    return response
