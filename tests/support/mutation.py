"""The guard code that tests/mutate_guards.py mutates, as configured in pyproject.toml
([[tool.mutate_guards.target]]: a file, its functions, the tests that matter for them).

Shared by the runner and tests/test_mutation_config.py, which fails when a file or a
function named there no longer exists (after a move of app/ modules, say), so that the
mutation run cannot quietly mutate nothing.
"""
import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEPARATOR = "ǁ"  # mutmut's: a method's mangled name is xǁClassǁmethod, a function's x_name


@dataclass(frozen=True)
class Target:
    what: str
    file: str          # relative to the repository, e.g. "app/cache.py"
    functions: tuple   # "name" or "Class.method"
    tests: tuple       # test files or node ids, relative to the repository

    @property
    def module(self) -> str:
        return self.file.removesuffix(".py").removesuffix("/__init__").replace("/", ".")

    def mangled(self, function: str) -> str:
        """mutmut's name for ``function``, with the module: app.cache.xǁRunCacheǁhas_grant."""
        owner, _, name = function.rpartition(".")
        local = f"x{SEPARATOR}{owner}{SEPARATOR}{name}" if owner else f"x_{name}"
        return f"{self.module}.{local}"


def targets(root: Path = ROOT) -> list[Target]:
    """The targets, each ``file`` resolved through [tool.mutate_guards.files] (an unknown
    alias is kept as written, and then reported by ``problems``)."""
    with open(root / "pyproject.toml", "rb") as file:
        config = tomllib.load(file)["tool"]["mutate_guards"]
    files = config.get("files", {})
    return [Target(t.get("what", ""), files.get(t["file"], t["file"]), tuple(t["functions"]),
                   tuple(t["tests"])) for t in config["target"]]


def function_lines(source: str, names) -> dict:
    """{name: set of line numbers} of each top-level function or method named (``Class.method``);
    a name not found is missing from the result."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{member.name}"] = member
    return {name: set(range(found[name].lineno, found[name].end_lineno + 1))
            for name in names if name in found}


def problems(root: Path = ROOT) -> list[str]:
    """What in the configuration points at nothing: files, functions, test files."""
    found = []
    for target in targets(root):
        path = root / target.file
        if not path.is_file():
            found.append(f"{target.file}: no such file")
            continue
        lines = function_lines(path.read_text(encoding="utf-8"), target.functions)
        found += [f"{target.file}: no function {name}" for name in target.functions if name not in lines]
        found += [f"{test}: no such test" for test in target.tests if not _test_exists(root, test)]
    return found


def _test_exists(root: Path, test: str) -> bool:
    """A test file, or a node-id prefix (file::name-prefix) that some test function starts with."""
    path, _, name = test.partition("::")
    if not (root / path).is_file():
        return False
    return not name or f"def {name}" in (root / path).read_text(encoding="utf-8")
