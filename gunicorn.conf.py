"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app``. Each can be set from the env."""
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8001')}")
# Requests mostly wait on MLflow: threads per worker carry the concurrency.
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A request is bounded by its http_timeout (MAX_HTTP_TIMEOUT at most); leave headroom.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "330"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = 200
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
# The request line only (no bodies, no Authorization header).
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# ProxyFix in the app trusts X-Forwarded-* (PROXY_FIX_HOPS); gunicorn itself
# must not rewrite them.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_fork(server, worker):
    """Give large freed buffers back to the OS at once (glibc only).

    A cold answer for a million-point metric passes through tens of megabytes of
    short-lived buffers; with glibc's adaptive thresholds they stay in the worker's
    heap after the request, and the worker's peak and idle RSS grow by as much.
    """
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 128 * 1024)
    libc.mallopt(m_trim_threshold, 128 * 1024)
