"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app``. Each can be set from the env."""
import glob
import os
import shutil
import tempfile

from config import env_bool, env_int, env_str

bind = env_str("GUNICORN_BIND", f"0.0.0.0:{env_str('PORT', '8001')}")
# Requests mostly wait on MLflow: threads per worker carry the concurrency.
worker_class = "gthread"
workers = env_int("GUNICORN_WORKERS", 2)
threads = env_int("GUNICORN_THREADS", 8)
# A request is bounded by its http_timeout (MAX_HTTP_TIMEOUT at most); leave headroom.
timeout = env_int("GUNICORN_TIMEOUT", 330)
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = env_int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then so a slow leak cannot grow without bound.
# Each recycling closes the worker's keep-alive connections, and a client sending on one
# at that instant gets a connection error (POST is not retried): rare enough at 50,000.
max_requests = env_int("GUNICORN_MAX_REQUESTS", 50000)
max_requests_jitter = max_requests // 10
# Off: the app writes one JSON line per request (request id, route, cache, MLflow calls;
# ACCESS_LOG). GUNICORN_ACCESSLOG=- turns gunicorn's own line on as well.
accesslog = env_str("GUNICORN_ACCESSLOG") or None
# The request line only (no bodies, no Authorization header).
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
errorlog = "-"
loglevel = env_str("LOG_LEVEL", "info").lower()
# ProxyFix in the app trusts X-Forwarded-* (PROXY_FIX_HOPS); gunicorn itself
# must not rewrite them.
forwarded_allow_ips = env_str("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Metrics with several workers: each worker writes its values to files in
# PROMETHEUS_MULTIPROC_DIR and /metrics adds up all of them. Without the variable a
# directory of our own is made; workers inherit the variable (the app is loaded after
# the fork), and the master empties the directory at start and removes its own at exit.
OWN_METRICS_DIR = "MLFLOW_LOGS_OWN_METRICS_DIR"  # in the environment: survives a config reload
if env_bool("METRICS_ENABLED", True) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ[OWN_METRICS_DIR] = tempfile.mkdtemp(prefix="mlflow-logs-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[OWN_METRICS_DIR]


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


def on_starting(server):
    """Start metrics from zero: files left by an earlier run would be counted again."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for leftover in glob.glob(os.path.join(directory, "*.db")):
            os.remove(leftover)


def child_exit(server, worker):
    """A dead worker's counts stay in the totals; its live gauges are dropped."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.get(OWN_METRICS_DIR):
        shutil.rmtree(os.environ[OWN_METRICS_DIR], ignore_errors=True)
