"""SPEC §9: every public reference name has an eqx twin and an equivalence test.

Also keeps `pytest -k equivalence` exact: equivalence tests live only in
`tests/test_equivalence_*.py`, and every test there is named `test_equivalence_*`.
"""

import ast
import inspect
from pathlib import Path

import pytest

import eqx_impl
import reference

TESTS = Path(__file__).parent
# Abstract bases have no behaviour of their own: their subclasses are tested.
EXEMPT = {"AbstractProposal", "AbstractSchedule", "AbstractWeighting"}


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


# --- signatures: same parameter names, order, kinds and defaults on both sides -------------

# The reference's NumPy `Generator` is the eqx side's `jax.random` key, in the same place.
RENAMED = {"rng": "key"}
# eqx-only, keyword-only with a default, so every call written for the reference works:
# `unroll` is `lax.scan` unrolling in the samplers (a Python loop has no such knob).
JAX_ONLY = {"unroll"}
# Classes that public functions return without the packages exporting them.
RETURNED = ["importance.OptimalProposal"]


def _mirrored_callables():
    """`(label, reference callable, eqx callable or None)` for every public callable and method."""
    pairs = [
        (name, getattr(reference, name), getattr(eqx_impl, name, None))
        for name in sorted(vars(reference))
        if not name.startswith("_") and callable(getattr(reference, name))
    ]
    for dotted in RETURNED:
        module, name = dotted.split(".")
        pairs.append((name, getattr(getattr(reference, module), name), getattr(getattr(eqx_impl, module), name)))
    out = []
    for label, ref, eqx in pairs:
        out.append((label, ref, eqx))
        if inspect.isclass(ref) and eqx is not None:
            for method in sorted(dir(ref)):
                if not method.startswith("_") and callable(getattr(ref, method)):
                    out.append((f"{label}.{method}", getattr(ref, method), getattr(eqx, method, None)))
    return out


def _params(fn, rename=None):
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    return [((rename or {}).get(p.name, p.name), p.kind, p.default) for p in params]


MIRRORED = _mirrored_callables()


@pytest.mark.parametrize(("label", "ref", "eqx"), MIRRORED, ids=[label for label, _, _ in MIRRORED])
def test_equivalence_signatures_match(label, ref, eqx):
    assert eqx is not None, f"eqx_impl lacks {label}"
    ref_params = _params(ref, RENAMED)
    eqx_params = _params(eqx)
    extra = [p for p in eqx_params if p[0] in JAX_ONLY]
    for name, kind, default in extra:
        assert kind is inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty, (
            f"{label}: eqx-only parameter {name} must be keyword-only with a default"
        )
    eqx_params = [p for p in eqx_params if p[0] not in JAX_ONLY]
    assert eqx_params == ref_params, (
        f"{label} differs between the packages:\n  reference {inspect.signature(ref)}\n  eqx_impl  {inspect.signature(eqx)}"
    )
