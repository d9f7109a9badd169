"""The mutation run's configuration points at code that exists (docs/testing.md, "Mutation
testing"): when app/ modules move, this fails until pyproject.toml's
[[tool.mutate_guards.target]] entries are repointed. No server needed."""
from tests.support.mutation import Target, function_lines, problems, targets


def test_every_file_function_and_test_file_named_for_mutation_exists():
    assert targets(), "pyproject.toml names no guard code to mutate"
    assert problems() == []


def test_each_target_names_functions_and_tests():
    for target in targets():
        assert target.functions and target.tests, target.file


def test_a_missing_name_is_reported(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "guard.py").write_text("class Seal:\n    def check(self):\n        return 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_guard.py").write_text("def test_seal_holds():\n    pass\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mutate_guards.files]\nguard = "app/guard.py"\nmoved = "app/moved.py"\n'
        '[[tool.mutate_guards.target]]\nfile = "guard"\nfunctions = ["Seal.check", "Seal.gone", "gone"]\n'
        'tests = ["tests/test_gone.py", "tests/test_guard.py::test_seal",'
        ' "tests/test_guard.py::test_gone"]\n'
        '[[tool.mutate_guards.target]]\nfile = "moved"\nfunctions = ["x"]\ntests = []\n')
    assert [t.file for t in targets(tmp_path)] == ["app/guard.py", "app/moved.py"]
    assert problems(tmp_path) == [
        "app/guard.py: no function Seal.gone", "app/guard.py: no function gone",
        "tests/test_gone.py: no such test", "tests/test_guard.py::test_gone: no such test",
        "app/moved.py: no such file"]


def test_function_lines_cover_the_whole_method_and_nothing_else():
    source = ("import x\n\n\nclass Seal:\n    @staticmethod\n    def check(value):\n"
              "        if value:\n            return 1\n        return 2\n\n\ndef other():\n    pass\n")
    assert function_lines(source, ["Seal.check", "other", "Seal"]) == {"Seal.check": {6, 7, 8, 9},
                                                                       "other": {12, 13}}


def test_mutant_names_follow_the_module_path():
    assert Target("", "app/cache.py", (), ()).mangled("RunCache.has_grant") == "app.cache.xǁRunCacheǁhas_grant"
    assert Target("", "app/cache/__init__.py", (), ()).mangled("fingerprint") == "app.cache.x_fingerprint"
