"""Helpers of the benchmarks' own: loopback-only environment, progress lines, the run
wrapper and the --service-env option. Servers (MLflow, Redis, gunicorn, the counting proxy)
come from the harness the tests use, ``tests/support``.

Scripts put the repo root on ``sys.path`` and ``from bench.common import ...``.
"""
import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from tests.support.gunicorn import LOOPBACK
from tests.support.processes import HarnessError

REPO = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT = 330  # above the http_timeout (300 s) the service is given


class BenchError(HarnessError):
    pass


def isolate_environment():
    """Keep every byte on loopback: no HTTP proxies, no MLflow telemetry."""
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = f"{LOOPBACK},localhost"
    # The MLflow server launcher drops MLFLOW_* variables, not DO_NOT_TRACK.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"


def step(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_bench(run, args):
    """``run(args, stack)`` with everything it starts stopped at the end, on a failure,
    on Ctrl-C or on SIGTERM; exits with a message on the last three."""
    isolate_environment()
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every process we started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with contextlib.ExitStack() as stack:
            outcome = run(args, stack)
            step("stopping")
            return outcome
    except HarnessError as exc:  # BenchError, or a server that did not start
        sys.exit(f"benchmark failed: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped")


def bench_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has: --out (default bench/out/<name>.json)
    and --service-env; the script adds its own, then calls ``parse_bench_args``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / f"bench/out/{name}.json")
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for gunicorn, for experiments (repeatable), "
                             "e.g. MLFLOW_CONCURRENCY=16")
    return parser


def parse_bench_args(parser):
    """The arguments, with --service-env NAME=VALUE ... as a dict."""
    args = parser.parse_args()
    try:
        args.service_env = dict(item.split("=", 1) for item in args.service_env)
    except ValueError:
        parser.error("--service-env takes NAME=VALUE")
    return args


def write_json(path: Path, results: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")
