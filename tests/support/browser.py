"""A real browser for the tests: Debian's system Chromium driven by Playwright (the pip
package; no browser of Playwright's own is downloaded), and tiny static sites playing a
dashboard served from another origin.

    with chromium() as browser:          # raises BrowserUnavailable with the reason
        page = browser.new_page()
    with static_site({"/": html}) as origin:   # http://127.0.0.1:<port>
        page.goto(origin + "/")
"""
import contextlib
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# Debian's package (apt-get install chromium); CHROMIUM names another binary.
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and nothing that reaches out of the machine (updates, sync, QUIC probes) or
# needs a GPU or a user namespace (root in a container has no sandbox).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LAUNCH_TIMEOUT_MS = 60_000  # a busy machine starts Chromium slowly


class BrowserUnavailable(RuntimeError):
    """Playwright or Chromium cannot run here (the message says why)."""


@contextlib.contextmanager
def chromium():
    """A launched Chromium (Playwright's ``Browser``), closed on the way out."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        raise BrowserUnavailable(f"the playwright package is missing: {exc}") from None
    if not os.access(CHROMIUM, os.X_OK):
        raise BrowserUnavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                 timeout=LAUNCH_TIMEOUT_MS)
        except Error as exc:
            raise BrowserUnavailable(f"Chromium at {CHROMIUM} did not start: "
                                     f"{str(exc).splitlines()[0]}") from None
        try:
            yield browser
        finally:
            browser.close()


def chromium_or_skip():
    """A module fixture's body: ``yield from chromium_or_skip()`` gives the test Chromium,
    or skips it with the reason when there is none."""
    try:
        launched = chromium()
        instance = launched.__enter__()
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    yield instance
    launched.__exit__(None, None, None)


@contextlib.contextmanager
def static_site(files: dict[str, str]):
    """Serves ``files`` ({path: html}) on a free loopback port from a thread; yields the
    site's origin. Any other path is a 404."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            text = files.get(self.path.split("?")[0])
            body = (text or "not found").encode()
            self.send_response(200 if text is not None else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: pytest shows failures, not every GET
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
