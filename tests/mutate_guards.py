"""Mutation testing of the guard code: each mutant of the functions named in pyproject.toml
([[tool.mutate_guards.target]]) against the tests that matter for them.

    TEST_REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python tests/mutate_guards.py [--jobs 2]
        [--only 'app.cache.xǁRunCacheǁhas_grant*'] [--tests tests/test_guards.py] [--list]

mutmut (requirements-dev.txt) makes the mutants: its operators, and its trampolines, which
put every mutant of a function into one mutated copy of the repository (``mutants/``) and
pick the active one at call time from ``MUTANT_UNDER_TEST``. Running them is ours
(tests/support/mutation_plugin.py), because `mutmut run` starts a pytest session per mutant,
and with it the MLflow servers (seconds each, hundreds of mutants): here one session starts
them once, runs the tests clean, then forks a child per mutant that runs only the tests
that called the mutated function, until one fails.

Writes mutants/results.json and mutants/report.md (the table, and each survivor's diff);
docs/testing.md ("Mutation testing") says what the survivors are and why they are harmless.
Not part of the test suite: run it by hand when guard code or its tests change.
"""
import argparse
import ast
import difflib
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.mutation import ROOT, function_lines, problems, targets  # noqa: E402

OUT = ROOT / "mutants"  # --out changes it
PLUGIN = "tests.support.mutation_plugin"


def copy_repository():
    """The working tree as git sees it (tracked and new files, not ignored ones) into mutants/."""
    shutil.rmtree(OUT, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (OUT / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, OUT / name)


def functions_of(code: str) -> dict:
    """{name: source lines} of every function in ``code`` (mutants are methods or functions)."""
    lines = code.splitlines()
    return {node.name: lines[node.lineno - 1:node.end_lineno] for node in ast.walk(ast.parse(code))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def diff(defs: dict, local: str) -> str:
    """The mutant's change, as a diff of its function against the original one."""
    original = local.partition("__mutmut_")[0] + "__mutmut_orig"
    a, b = defs[original][1:], defs[local][1:]  # without the def lines, whose names differ
    return "\n".join(line for line in difflib.unified_diff(a, b, lineterm="", n=0)
                     if not line.startswith(("---", "+++", "@@")))


def mutate() -> tuple[dict, dict, dict]:
    """Write the mutated files; ({mutant: its target's tests}, {mutant: diff}, {mutant: target})."""
    from mutmut.mutation.file_mutation import mutate_file_contents
    tests, diffs, owner = {}, {}, {}
    os.chdir(ROOT)  # mutmut reads its [tool.mutmut] from the working directory
    by_file = {}
    for target in targets():
        by_file.setdefault(target.file, []).append(target)
    for file, group in by_file.items():
        source = (ROOT / file).read_text(encoding="utf-8")
        of = {t.mangled(f): t for t in group for f in t.functions}
        lines = set().union(*function_lines(source, [f for t in group for f in t.functions]).values())
        mutated = mutate_file_contents(file, source, covered_lines=lines)
        (OUT / file).write_text(mutated.code, encoding="utf-8")
        defs = functions_of(mutated.code)
        for local in mutated.mutant_names:
            name = f"{group[0].module}.{local}"
            target = of[name.partition("__mutmut_")[0]]
            tests[name], owner[name], diffs[name] = list(target.tests), target, diff(defs, local)
    return tests, diffs, owner


def report(results: dict, diffs: dict, owner: dict) -> str:
    rows = ["| guard code | file | mutants | killed | timeout | survived | no tests |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for target in list(dict.fromkeys(owner.values())) + [None]:
        found = [r["status"] for name, r in results.items() if target in (None, owner[name])]
        counts = [found.count(s) for s in ("killed", "timeout", "survived", "no tests")]
        label = (target.what, target.file) if target else ("**all**", "")
        rows.append(f"| {label[0]} | {label[1]} | {len(found)} | " + " | ".join(map(str, counts)) + " |")
    survivors = [name for name, r in results.items() if r["status"] in ("survived", "no tests")]
    text = "\n".join(rows) + "\n\n## Survivors\n"
    for name in sorted(survivors):
        text += (f"\n### {name} ({results[name]['status']}, {results[name]['tests']} tests)\n\n"
                 f"```diff\n{diffs[name]}\n```\n")
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="mutant names (glob), repeatable")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--tests", nargs="+",
                        help="run only these of the targets' tests (files or node ids)")
    parser.add_argument("--again", action="store_true",
                        help="only the last run's survivors again (after adding tests), results merged")
    parser.add_argument("--out", default="mutants",
                        help="the mutated copy and the results (default mutants/)")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args()
    global OUT
    OUT = (ROOT / args.out).resolve()
    if OUT.parent != ROOT or not OUT.name.startswith("mutants"):  # it is removed first
        sys.exit("--out must be a folder of the repository named mutants*")
    wrong = problems()
    if wrong:
        sys.exit("pyproject.toml [tool.mutate_guards] points at nothing:\n  " + "\n  ".join(wrong))
    last = OUT / "results.json"
    previous = json.loads(last.read_text(encoding="utf-8"))["results"] if args.again and last.exists() else {}
    if args.again:
        args.only += [name for name, r in previous.items() if r["status"] in ("survived", "no tests")]
        if not args.only:
            sys.exit("--again: no survivors in mutants/results.json")
    copy_repository()
    tests, diffs, owner = mutate()
    if args.only:
        tests = {name: t for name, t in tests.items()
                 if any(fnmatch.fnmatchcase(name, pattern) for pattern in args.only)}
    if args.tests:
        tests = {name: [t for t in args.tests if t.startswith(tuple(prefixes))]
                 for name, prefixes in tests.items()}
    if args.list:
        for name in tests:
            print(name, "\n  " + diffs[name].replace("\n", "\n  "))
        print(f"{len(tests)} mutants")
        return
    plan = OUT / "plan.json"
    plan.write_text(json.dumps({"mutants": tests, "results": str(OUT / "results.json"),
                                "jobs": args.jobs}), encoding="utf-8")
    files = sorted({test.partition("::")[0] for prefixes in tests.values() for test in prefixes})
    env = dict(os.environ, MUTATE_GUARDS_PLAN=str(plan), PYTHONPATH=str(OUT))
    pytest = subprocess.Popen([sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider",
                               "-q", *files], cwd=OUT, env=env)
    signal.signal(signal.SIGTERM, lambda *_: pytest.terminate())  # it stops its servers
    code = pytest.wait()
    if code != 0 or not (OUT / "results.json").exists():
        sys.exit(f"the clean run failed (pytest exit {code}): no mutant was run")
    results = json.loads(last.read_text(encoding="utf-8"))["results"]
    if previous:
        results = {**previous, **results}
        last.write_text(json.dumps({"results": results}, indent=1), encoding="utf-8")
    text = report({name: r for name, r in results.items() if name in owner}, diffs, owner)  # still mutants
    (OUT / "report.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
