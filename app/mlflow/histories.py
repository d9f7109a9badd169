"""Many runs' metric histories with the fewest MLflow calls, several at a time.

Per metric key, runs go to MLflow's bulk endpoint 100 at a time (one call instead
of one per run). Runs the bulk answer may have cut short (its silent 25,000-point
cap), batches it refused (a 403 for one run must not hide the others; 404/405 from a
server or proxy without the ajax routes), and single runs are fetched per run with
the paged get-history, which is always complete.

With ``since_step`` (a live run's poll), MLflow's bulk-interval endpoint returns only
the points after it, for every run of a batch (even a batch of one); a run whose
answer may have been sampled is fetched in full instead, and cut by the caller.
"""
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from app import history
from app.mlflow.api import BULK_MAX_RUNS
from app.mlflow.errors import Rejected

EMPTY = history.empty()
# Refusals of a bulk call that per-run calls may still get past: one forbidden run, or a
# server or proxy without the ajax routes.
BULK_REFUSALS = {403, 404, 405}


def fetch_histories(mlflow, wanted, concurrency, since_step=None):
    """{(run_id, key): history.Series} for every (run_id, key) pair in ``wanted``: the
    complete history, or with ``since_step`` at least every point after that step."""
    by_key = {}
    for run_id, key in wanted:
        by_key.setdefault(key, []).append(run_id)
    fetcher = _Fetcher(mlflow, concurrency, since_step)
    try:
        return fetcher.run(by_key)
    finally:
        # On the first failure, drop the calls not yet started: the answer is an error anyway.
        fetcher.pool.shutdown(wait=True, cancel_futures=True)


class _Fetcher:
    def __init__(self, mlflow, concurrency, since_step=None):
        self.mlflow = mlflow
        self.since_step = since_step
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
        self.pending = {}        # future -> ("bulk", key, run_ids) or ("run", key, run_id)
        self.found = {}

    def run(self, by_key):
        for key, run_ids in by_key.items():
            for start in range(0, len(run_ids), BULK_MAX_RUNS):
                self._submit_batch(key, run_ids[start:start + BULK_MAX_RUNS])
        while self.pending:
            done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
            for future in done:
                self._collect(future, *self.pending.pop(future))
        return self.found

    def _submit_batch(self, key, run_ids):
        if self.since_step is not None:
            future = self.pool.submit(self.mlflow.get_metric_history_since, run_ids, key,
                                      self.since_step)
            self.pending[future] = ("bulk", key, run_ids)
        elif len(run_ids) > 1:
            future = self.pool.submit(self.mlflow.get_metric_history_bulk, run_ids, key)
            self.pending[future] = ("bulk", key, run_ids)
        else:
            self._submit_runs(key, run_ids)

    def _submit_runs(self, key, run_ids):
        """Per run: complete (paged), and each run gets its own answer."""
        for run_id in run_ids:
            future = self.pool.submit(self.mlflow.get_metric_history, run_id, key)
            self.pending[future] = ("run", key, run_id)

    def _collect(self, future, kind, key, ids):
        if kind == "run":
            self.found[(ids, key)] = future.result()
            return
        try:
            by_run, complete = future.result()
        except Rejected as refused:
            if refused.status not in BULK_REFUSALS:
                raise
            # Every batch is already under way by now, so a server without the bulk
            # route costs one quick refusal per metric key, not a wait for the first.
            by_run, complete = {}, set()
        for run_id in ids:
            if run_id in complete:
                self.found[(run_id, key)] = by_run.get(run_id, EMPTY)
        self._submit_runs(key, [run_id for run_id in ids if run_id not in complete])
