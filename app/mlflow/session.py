"""The one HTTP session per process, shared by every request's calls to MLflow."""
import threading
from http.cookiejar import DefaultCookiePolicy

import requests
from requests.adapters import HTTPAdapter

_session_lock = threading.Lock()
_sessions: dict[int, requests.Session] = {}


def shared_session(pool_size: int) -> requests.Session:
    """One keep-alive session per process (and pool size), reused by every request."""
    with _session_lock:
        session = _sessions.get(pool_size)
        if session is None:
            session = requests.Session()
            # A cookie MLflow (or a proxy) sets for one caller must never ride along
            # with another caller's request on this shared session.
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            session.trust_env = False  # no ~/.netrc credentials or proxy surprises
            adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[pool_size] = session
        return session
