"""Lazy re-exports for a package `__init__.py` (PEP 562), so that `import eqx_impl.cli` or
`eqx_impl.train.config` does not load JAX.

A package lists its re-exports as ordinary `from <module> import (...)` blocks under
`if typing.TYPE_CHECKING:` (type checkers and readers see them as usual) and ends with

    __getattr__, __dir__, __all__ = lazy_exports(__name__, __file__)

The blocks are read from the file's syntax tree (no module is imported); `pkg.Name` then
imports only `Name`'s module, on first use, and caches the value in the package. A name
that is also its module's name (`ode_likelihood` from `eqx_impl.ode_likelihood`) stays the
exported object when the submodule is imported, as it does with an eager `from ... import`.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from collections.abc import Callable
from pathlib import Path

__all__ = ["lazy_exports"]


def _type_checking_imports(source: str) -> dict[str, tuple[str, str]]:
    """`{exported name: (module, attribute)}` from the `if TYPE_CHECKING:` blocks of `source`."""
    found = {}
    for node in ast.parse(source).body:
        test = getattr(node, "test", None)
        name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
        if not (isinstance(node, ast.If) and name == "TYPE_CHECKING"):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                for alias in stmt.names:
                    found[alias.asname or alias.name] = (stmt.module, alias.name)
    return found


def lazy_exports(package: str, init_file: str) -> tuple[Callable, Callable, list[str]]:
    """The `__getattr__`, `__dir__` and `__all__` of `package` whose `__init__.py` is
    `init_file`. Names that are not re-exported resolve to submodules (`pkg.data`), else
    raise `AttributeError`.

    **Returns:** `(__getattr__, __dir__, __all__)`.
    """
    exports = _type_checking_imports(Path(init_file).read_text(encoding="utf-8"))
    names = sorted(exports)

    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value) -> None:
            # Importing the submodule `package.name` binds `name` to it; keep the export.
            if isinstance(value, types.ModuleType) and exports.get(name) == (value.__name__, name):
                value = getattr(value, name)
            super().__setattr__(name, value)

    sys.modules[package].__class__ = _Package

    def __getattr__(name: str):
        module = sys.modules[package]
        if name in exports:
            source, attribute = exports[name]
            value = getattr(importlib.import_module(source), attribute)
            setattr(module, name, value)
            return value
        if not name.startswith("__"):
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__, names
