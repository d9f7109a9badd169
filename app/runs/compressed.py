"""Finished runs' compressed forms, kept beside their JSON so that a warm compressed poll
splices stored gzip members / zstd frames (app/compression.py) instead of compressing
megabytes again on every poll.

A run's form for a coding lives under ``<run key>:<coding>`` in the shared cache and in
the worker's own copies, sealed like every entry and valid by the same rules: the run's
fingerprint and its current generation (a refresh, or a refetch that found the run
changed, retires the forms with the JSON). A run without a form yet is compressed once,
at the stored level, by the request that first needs it, and the form is stored.
"""
from app.cache.freshness import fingerprint, terminal
from app.compression import Segment, stored_form

# Smaller runs are left to the stream compressor: a member/frame per run costs a header
# and a fresh dictionary, worth it only for runs of some size.
MIN_SEGMENT = 16 * 1024


class CompressedForms:
    def __init__(self, ctx, coding: str):
        self.ctx, self.cache, self.coding = ctx, ctx.cache, coding

    def wrap(self, runs, pieces, generations: dict) -> list:
        """``pieces`` [(JSON, histories)] with each large finished run's JSON as a
        ``Segment`` carrying its compressed form for this coding."""
        wanted = {run["info"]["run_id"]: (run, piece[0]) for run, piece in zip(runs, pieces)
                  if terminal(run) and len(piece[0]) >= MIN_SEGMENT
                  and isinstance(generations.get(run["info"]["run_id"]), str)}
        if not wanted:
            return pieces
        forms = self._stored(wanted, generations)
        for run_id, (run, raw) in wanted.items():
            if run_id not in forms:
                forms[run_id] = stored_form(raw, self.coding)
                self._store(run, forms[run_id], generations[run_id])
        return [(Segment(piece[0], {self.coding: forms[run["info"]["run_id"]]}), piece[1])
                if run["info"]["run_id"] in wanted else piece
                for run, piece in zip(runs, pieces)]

    def _key(self, run):
        return f"{self.cache.run_key(self.ctx.target.uri, run['info']['run_id'])}:{self.coding}"

    def _stored(self, wanted, generations) -> dict:
        """{run_id: form} of the forms this worker or the shared cache has, current."""
        found, rest = {}, []
        for run_id, (run, _) in wanted.items():
            copy = self.cache.local.get(self._key(run), fingerprint(run))
            if copy and copy[0].get("generation") == generations[run_id]:
                found[run_id] = copy[1]
            else:
                rest.append(run)
        entries = self.cache.get_entries([self._key(run) for run in rest]) if rest else {}
        for run in rest:
            entry = entries.get(self._key(run))
            run_id = run["info"]["run_id"]
            if entry and entry[0].get("generation") == generations[run_id] \
                    and entry[0].get("fingerprint") == fingerprint(run):
                found[run_id] = entry[1]
                self.cache.local.put(self._key(run), *entry, ttl=self.cache.ttl_for(run))
        return found

    def _store(self, run, form: bytes, generation: str):
        header = {"fingerprint": fingerprint(run), "generation": generation,
                  "coding": self.coding}
        ttl = self.cache.ttl_for(run)
        self.cache.set_entry(self._key(run), header, form, ttl)
        self.cache.local.put(self._key(run), header, form, ttl=ttl)
