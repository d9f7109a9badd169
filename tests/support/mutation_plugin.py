"""The pytest side of tests/mutate_guards.py: one pytest session runs every mutant.

Loaded with ``-p tests.support.mutation_plugin`` in the mutated copy of the repository
(``mutants/``), with ``MUTATE_GUARDS_PLAN`` naming a JSON file: {"mutants": {name: [test
prefixes]}, "results": path}. It replaces pytest's test loop:

1. Every collected test runs once, unmutated, with mutmut's trampolines recording which
   guard functions each test calls ("stats"). The session fixtures (MLflow servers, the
   seeded store) start here, once. A failing test stops everything: mutants of a red suite
   prove nothing.
2. Each mutant runs in a child forked from this process (the servers stay up, nothing is
   set up again): only the tests that called its function, fastest first, until one fails.
   A test that fails kills the mutant; a child that runs past its time (three times the
   tests' clean duration, plus 30 s) is a timeout, which also kills it.
"""
import json
import os
import signal
import time

import pytest
from _pytest.runner import runtestprotocol

KILLED, SURVIVED, TIMEOUT, NO_TESTS = "killed", "survived", "timeout", "no tests"
EXIT = {1: KILLED, 0: SURVIVED, 2: TIMEOUT}


class TimedOut(Exception):
    pass


def _run(item, nextitem) -> bool:
    """Run one test (setup, call, teardown); True if it failed."""
    return any(report.failed for report in runtestprotocol(item, nextitem=nextitem, log=False))


def _clean_pass(session):
    """{nodeid: (seconds, set of mangled functions called)}; raises if a test fails."""
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.state import state
    set_mutant_under_test("stats")
    found = {}
    items = session.items
    for i, item in enumerate(items):
        state()._stats.clear()
        start = time.monotonic()
        # the last test keeps the session's fixtures (the servers) up for the mutants
        nextitem = items[i + 1] if i + 1 < len(items) else items[0]
        # once more when it fails: on a loaded machine a timing margin may be missed once
        if any(r.failed for r in runtestprotocol(item, nextitem=nextitem)) and \
                any(r.failed for r in runtestprotocol(item, nextitem=nextitem)):
            raise pytest.UsageError(f"{item.nodeid} fails without any mutant: fix the suite first")
        found[item.nodeid] = (time.monotonic() - start, set(state()._stats))
    set_mutant_under_test("")
    return found


def _child(name, items, anchor, seconds, log_path):
    """In the forked child: run ``items`` under mutant ``name``; exit 1 at the first failure."""
    from mutmut.mutation.trampoline import set_mutant_under_test
    log = open(log_path, "w", encoding="utf-8")
    status = 0
    try:
        def too_long(*_):
            raise TimedOut(f"mutant {name} still running after {seconds} s")
        signal.signal(signal.SIGALRM, too_long)
        signal.alarm(seconds)
        set_mutant_under_test(name)
        for i, item in enumerate(items):
            # keep the session's fixtures: they are the parent's servers
            nextitem = items[i + 1] if i + 1 < len(items) else anchor
            log.write(f"{item.nodeid}\n")
            log.flush()
            if _run(item, nextitem):
                status = 1
                break
    except TimedOut:
        status = 2
    except BaseException as exc:  # a mutant that breaks the runner itself is killed too
        log.write(f"runner error: {exc!r}\n")
        status = 1
    finally:
        log.close()
        os._exit(status)


def _mutants(session, plan, clean):
    by_id = {item.nodeid: item for item in session.items}
    for name, prefixes in plan["mutants"].items():
        function = name.partition("__mutmut_")[0]
        tests = sorted((nodeid for nodeid, (_, called) in clean.items()
                        if function in called and nodeid.startswith(tuple(prefixes))),
                       key=lambda nodeid: clean[nodeid][0])
        yield name, [by_id[nodeid] for nodeid in tests], sum(clean[n][0] for n in tests)


def _plan():
    with open(os.environ["MUTATE_GUARDS_PLAN"], encoding="utf-8") as file:
        return json.load(file)


def pytest_collection_modifyitems(config, items):
    """Only the tests some mutant may run (the targets' node-id prefixes)."""
    if not os.environ.get("MUTATE_GUARDS_PLAN"):
        return
    prefixes = tuple({p for tests in _plan()["mutants"].values() for p in tests})
    deselected = [item for item in items if not item.nodeid.startswith(prefixes)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.nodeid.startswith(prefixes)]


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    if not os.environ.get("MUTATE_GUARDS_PLAN") or session.config.option.collectonly:
        return None
    plan = _plan()
    # stopped by a signal, the session still tears down (the MLflow servers it started);
    # a background job's SIGINT is ignored unless set again
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    clean = _clean_pass(session)
    logs = os.path.join(os.path.dirname(plan["results"]), "logs")
    os.makedirs(logs, exist_ok=True)
    jobs, results, running = int(plan.get("jobs", 1)), {}, {}
    # the cheapest first (as mutmut does): most mutants die early, so more are done sooner
    pending = sorted(_mutants(session, plan, clean), key=lambda mutant: mutant[2])
    total = len(pending)
    anchor = session.items[0]
    while pending or running:
        while pending and len(running) < jobs:
            name, items, seconds = pending.pop(0)
            if not items:
                results[name] = {"status": NO_TESTS, "tests": 0}
                print(f"[{len(results)}/{total}] {NO_TESTS:8} {name}", flush=True)
                continue
            limit = int(3 * seconds + 30)
            pid = os.fork()
            if pid == 0:
                _child(name, items, anchor if anchor is not items[-1] else session.items[-1],
                       limit, os.path.join(logs, name + ".log"))
            running[pid] = (name, time.monotonic() + limit + 60, len(items))
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            for pid, (name, hard_stop, _) in list(running.items()):
                if time.monotonic() > hard_stop:  # stuck where the alarm cannot reach
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
            continue
        name, _, count = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        with open(os.path.join(logs, name + ".log"), encoding="utf-8") as log:
            last = log.read().splitlines()[-1:]  # the test that failed, or was running at the timeout
        results[name] = {"status": EXIT.get(code, KILLED), "tests": count,
                         "by": last[0] if last and code else None}
        print(f"[{len(results)}/{total}] {results[name]['status']:8} {name}", flush=True)
        _save(plan, results, clean)  # so far: a run stopped early keeps what it found
    _save(plan, results, clean)
    return True


def _save(plan, results, clean):
    with open(plan["results"] + ".new", "w", encoding="utf-8") as file:
        json.dump({"results": results, "clean": {k: v[0] for k, v in clean.items()}}, file, indent=1)
    os.replace(plan["results"] + ".new", plan["results"])
