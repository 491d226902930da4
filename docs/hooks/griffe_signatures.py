"""Griffe extension for the API pages: every class shows the signature a user calls.

- **Constructor signatures.** `eqx.Module`s (and other dataclasses) get their `__init__`
  from their fields at class creation, so a static reading of the source finds no
  `__init__` and the page would show a bare class name. For each class without an
  `__init__` of its own, this extension imports it and builds the signature from
  `inspect.signature` (the same one Python checks calls against): names, kinds, defaults
  as values (`logsnr_min=-10.0`, not the constant's name) and the fields' annotations.
- **No private bases.** "Bases:" lists public classes only: a private base (`_TwoSidedLog`)
  is replaced by its own bases.

Only the rendered documentation changes; the code is read, never modified.
"""

from __future__ import annotations

import importlib
import inspect

import griffe

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _runtime_class(cls: griffe.Class):
    try:
        obj = importlib.import_module(cls.module.path)
        for part in cls.path[len(cls.module.path) + 1 :].split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj if inspect.isclass(obj) else None


def _field_annotation(cls: griffe.Class, name: str):
    """The annotation written on the field, from this class or the nearest base that has it."""
    try:
        owners = [cls, *cls.mro()]
    except Exception:  # a base that griffe cannot resolve (e.g. from another package)
        owners = [cls]
    for owner in owners:
        member = owner.members.get(name)
        if member is not None and not member.is_alias and getattr(member, "annotation", None) is not None:
            return member.annotation
    return None


def _constructor(cls: griffe.Class, runtime) -> griffe.Function | None:
    try:
        signature = inspect.signature(runtime)
    except (TypeError, ValueError):
        return None
    parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
    for p in signature.parameters.values():
        annotation = _field_annotation(cls, p.name)
        if annotation is None and p.annotation is not inspect.Parameter.empty:
            annotation = inspect.formatannotation(p.annotation)
        default = None if p.default is inspect.Parameter.empty else repr(p.default)
        parameters.append(griffe.Parameter(p.name, annotation=annotation, kind=_KINDS[p.kind], default=default))
    return griffe.Function(
        "__init__", lineno=cls.lineno, endlineno=cls.lineno, parameters=griffe.Parameters(*parameters), parent=cls
    )


def _public_bases(cls: griffe.Class) -> list:
    bases = []
    for base in cls.bases:
        name = str(base).rsplit(".", 1)[-1]
        private = cls.module.members.get(name) if name.startswith("_") else None
        if private is not None and private.is_class:
            bases.extend(_public_bases(private))
        elif not name.startswith("_"):
            bases.append(base)
    return bases


class ConstructorSignatures(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for cls in _classes(pkg):
            if "__init__" not in cls.members:
                runtime = _runtime_class(cls)
                init = _constructor(cls, runtime) if runtime is not None else None
                if init is not None:
                    cls.set_member("__init__", init)
        for cls in _classes(pkg):
            cls.bases = _public_bases(cls)


def _classes(obj: griffe.Object):
    for member in obj.members.values():
        if member.is_alias:
            continue
        if member.is_class:
            yield member
            yield from _classes(member)
        elif member.is_module:
            yield from _classes(member)
