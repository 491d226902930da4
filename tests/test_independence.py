"""`eqx_impl` computes everything itself: no module of it imports `reference` at run time.

The only exception is the training pre-flight, which builds the reference twins of the
objects training will use: that comparison against the float64 reference is a deliberate
guarantee to the user (no training on an objective that disagrees with the reference). The argument checks both
packages share live in `_checks`, which imports neither package nor JAX.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# The pre-flight comparison against the reference (issue 13 keeps it as a user guarantee).
PREFLIGHT = {"eqx_impl/train/preflight.py"}
CHECKS_MAY_IMPORT = {"__future__", "math", "numbers", "operator", "numpy"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute module names imported anywhere in `path` (also inside functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def test_no_eqx_impl_module_imports_reference():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / "eqx_impl").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in PREFLIGHT
        for line, name in _imports(path)
        if _top(name) == "reference"
    ]
    assert not offenders, "eqx_impl must compute everything itself; shared checks go in _checks:\n" + "\n".join(
        offenders
    )


def test_preflight_exemption_is_still_needed():
    """The exemption list names only files that exist and do import the reference."""
    for rel in PREFLIGHT:
        path = ROOT / rel
        assert path.exists(), f"{rel} is gone: remove it from PREFLIGHT"
        assert any(_top(name) == "reference" for _, name in _imports(path)), f"{rel} no longer needs the exemption"


@pytest.mark.parametrize("module", ["eqx_impl", "eqx_impl.data", "eqx_impl.evaluation", "eqx_impl.cli"])
def test_importing_eqx_impl_loads_no_reference_module(module):
    """Also catches indirect imports (through a dependency, `importlib`, ...)."""
    code = f"import sys, {module}\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'reference'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"import {module} loaded {out.stdout.strip()}"


def test_shared_checks_import_only_numpy():
    path = ROOT / "_checks" / "__init__.py"
    extra = sorted({_top(name) for _, name in _imports(path)} - CHECKS_MAY_IMPORT)
    assert not extra, f"_checks must stay plain Python + NumPy, but imports {extra}"
    code = (
        "import sys, _checks\nprint(sorted(m for m in ('jax', 'scipy', 'reference', 'eqx_impl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
