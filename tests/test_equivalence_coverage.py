"""SPEC §9: every public reference name has an eqx twin and an equivalence test.

Also keeps `pytest -k equivalence` exact: equivalence tests live only in
`tests/test_equivalence_*.py`, and every test there is named `test_equivalence_*`.
"""

import ast
import inspect
from pathlib import Path

import eqx_impl
import reference

TESTS = Path(__file__).parent
# Abstract bases have no behaviour of their own: their subclasses are tested.
EXEMPT = {"AbstractSchedule", "AbstractWeighting"}


def _public_names(module):
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name not in EXEMPT
    )


def _test_functions(path):
    tree = ast.parse(path.read_text())
    return [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test")]


def test_equivalence_every_reference_name_has_an_eqx_twin():
    missing = [name for name in _public_names(reference) if not hasattr(eqx_impl, name)]
    assert not missing, f"eqx_impl lacks these public reference names: {missing}"


def test_equivalence_every_reference_name_has_a_test():
    tests = [name for path in TESTS.glob("test_equivalence_*.py") for name in _test_functions(path)]
    untested = [
        name
        for name in _public_names(reference)
        if not any(t == f"test_equivalence_{name}" or t.startswith(f"test_equivalence_{name}_") for t in tests)
    ]
    assert not untested, f"No test_equivalence_<name> test for: {untested}"


def test_equivalence_suite_is_exactly_selected_by_k():
    for path in TESTS.glob("test_*.py"):
        names = _test_functions(path)
        if path.name.startswith("test_equivalence_"):
            wrong = [n for n in names if not n.startswith("test_equivalence_")]
            assert not wrong, f"{path.name}: rename to test_equivalence_*: {wrong}"
        else:
            assert "equivalence" not in path.name
            stray = [n for n in names if "equivalence" in n]
            assert not stray, f"{path.name}: move these to a test_equivalence_*.py file: {stray}"
