"""The dashboard page's server side (app/dashboard), without a browser: the page and its
assets are served with the contract's headers and content types, under a proxy prefix too;
the vendored uPlot matches its VERSION.json; the page has no inline script or style (the
CSP would block it). The page itself in Chromium: tests/test_dashboard_page.py."""
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app import create_app
from app.dashboard import CSP

ROOT = Path(__file__).parent.parent / "app" / "dashboard"
STATIC = ROOT / "static"
UPLOT = STATIC / "vendor" / "uplot"
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}


@pytest.fixture(scope="module")
def client():
    return create_app({"TESTING": True, "ACCESS_LOG": False}).test_client()


class Tags(HTMLParser):
    """Every start tag of a page: (tag, {attribute: value}), and the text inside scripts."""

    def __init__(self):
        super().__init__()
        self.tags, self.script_text, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.script_text.append(data)


def page_tags(text):
    parser = Tags()
    parser.feed(text)
    return parser


def test_the_page_is_served_with_the_contracts_headers(client):
    response = client.get("/dashboard/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    for name, value in HEADERS.items():
        assert response.headers[name] == value
    assert "script-src 'self';" in CSP and "'unsafe-inline'" not in CSP
    assert b'id="connect"' in response.data


def test_dashboard_without_the_slash_is_redirected_to_the_page(client):
    response = client.get("/dashboard")
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/dashboard/")


@pytest.mark.parametrize("path, mimetype", [
    ("dashboard.css", "text/css"),
    ("js/main.js", "text/javascript"),
    ("vendor/uplot/uPlot.iife.min.js", "text/javascript"),
    ("vendor/uplot/uPlot.min.css", "text/css"),
])
def test_assets_are_served_with_their_types_and_headers(client, path, mimetype):
    response = client.get(f"/dashboard/static/{path}")
    assert response.status_code == 200
    assert response.mimetype == mimetype  # with nosniff, a module script needs a JS type
    assert response.data == (STATIC / path).read_bytes()
    for name, value in HEADERS.items():
        assert response.headers[name] == value


def test_every_module_the_page_imports_is_served(client):
    """main.js and what it imports, transitively: a missing module is a blank page."""
    seen, todo = set(), ["main.js"]
    while todo:
        name = todo.pop()
        seen.add(name)
        response = client.get(f"/dashboard/static/js/{name}")
        assert response.status_code == 200, name
        imports = re.findall(r'^import .* from "\./([\w-]+\.js)";$', response.text, re.M)
        todo += [i for i in imports if i not in seen]
    assert seen == {p.name for p in (STATIC / "js").glob("*.js")}


def test_nothing_outside_static_is_served(client):
    assert client.get("/dashboard/static/../__init__.py").status_code == 404
    assert client.get("/dashboard/static/%2e%2e/page.html").status_code == 404
    assert client.get("/dashboard/page.html").status_code == 404


def test_the_page_has_no_inline_script_or_style_and_only_relative_urls():
    tags = page_tags((ROOT / "page.html").read_text())
    scripts = [attrs for tag, attrs in tags.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    assert tags.script_text == []
    assert ("script", {"type": "module", "src": "static/js/main.js"}) in tags.tags
    assert all(tag != "style" and "style" not in attrs for tag, attrs in tags.tags)
    assert all(not name.startswith("on") for _, attrs in tags.tags for name in attrs)
    urls = [attrs.get(a) for tag, attrs in tags.tags for a in ("src", "href")
            if attrs.get(a) and not attrs[a].startswith("data:")]
    assert urls and all(not u.startswith(("/", "http:", "https:")) for u in urls), urls


def test_the_scripts_call_the_api_relative_to_the_page():
    """Under a reverse-proxy prefix the page must reach <prefix>/mlflow/…, not /mlflow/…
    (and <prefix>/openapi.json: the longest http_timeout the operator allows)."""
    text = "\n".join(p.read_text() for p in (STATIC / "js").glob("*.js"))
    called = set(re.findall(r'"(\.\./[\w/.]+)"', text))
    assert called == {"../mlflow/experiments", "../mlflow/runs", "../openapi.json"}
    assert not re.search(r'fetch\(\s*["\'`]/', text)
    assert "localStorage." not in text and "document.cookie" not in text


def test_the_page_and_assets_work_under_a_proxy_prefix():
    client = create_app({"TESTING": True, "ACCESS_LOG": False,
                         "PROXY_FIX_HOPS": 1}).test_client()
    prefix = {"X-Forwarded-Prefix": "/logs"}
    assert client.get("/dashboard/", headers=prefix).status_code == 200
    assert client.get("/dashboard/static/js/api.js", headers=prefix).status_code == 200
    assert client.get("/dashboard", headers=prefix).headers["Location"].endswith(
        "/logs/dashboard/")


def test_vendored_uplot_matches_its_version_record():
    record = json.loads((UPLOT / "VERSION.json").read_text())
    assert record["name"] == "uplot" and re.fullmatch(r"1\.6\.\d+", record["version"])
    assert record["source"].endswith(f"/uplot-{record['version']}.tgz")
    assert set(record["sha256"]) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, digest in record["sha256"].items():
        assert hashlib.sha256((UPLOT / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (UPLOT / "LICENSE").read_text()


def test_the_api_routes_and_the_spec_are_unchanged_by_the_page(client):
    spec = client.get("/openapi.json").get_json()
    assert not any(path.startswith("/dashboard") for path in spec["paths"])
    assert client.get("/healthz").headers.get("Content-Security-Policy") is None


def test_the_spec_states_the_http_timeout_ceiling_where_the_page_reads_it():
    """api.js maxTimeout(): /mlflow/runs' GET parameter http_timeout, its schema's maximum,
    is the operator's MAX_HTTP_TIMEOUT (a cold first load may take that long)."""
    client = create_app({"TESTING": True, "ACCESS_LOG": False,
                         "MAX_HTTP_TIMEOUT": 120}).test_client()
    spec = client.get("/openapi.json").get_json()
    parameters = spec["paths"]["/mlflow/runs"]["get"]["parameters"]
    schema = next(p for p in parameters if p["name"] == "http_timeout")["schema"]
    assert schema["maximum"] == 120
