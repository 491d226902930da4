"""The abstract/final pattern of Equinox and Diffrax in the core modules of `eqx_impl`.

Every class is either abstract (named `Abstract*` / `_Abstract*`) or final (nothing in the
package subclasses it), and no class overrides a concrete method or attribute of a base:
shared behaviour lives once, in an abstract class, and concrete classes only fill in what
is abstract.
"""

import inspect

import equinox as eqx
import pytest

import eqx_impl.analytic
import eqx_impl.importance
import eqx_impl.learned
import eqx_impl.probe
import eqx_impl.proposals
import eqx_impl.schedules
import eqx_impl.targets
import eqx_impl.weightings

MODULES = [
    eqx_impl.schedules,
    eqx_impl.weightings,
    eqx_impl.analytic,
    eqx_impl.learned,
    eqx_impl.importance,
    eqx_impl.proposals,
    eqx_impl.probe,
    eqx_impl.targets,
]
ALLOWED_OVERRIDES: set[tuple[str, str]] = set()  # none: every override is a bug


def _classes():
    return sorted(
        {
            cls
            for module in MODULES
            for cls in vars(module).values()
            if inspect.isclass(cls) and issubclass(cls, eqx.Module) and cls.__module__.startswith("eqx_impl")
        },
        key=lambda cls: cls.__qualname__,
    )


def _is_abstract_name(cls) -> bool:
    return cls.__name__.startswith(("Abstract", "_Abstract"))


def _own_bases(cls):
    return [base for base in cls.__mro__[1:] if base.__module__.startswith("eqx_impl")]


@pytest.mark.parametrize("cls", _classes(), ids=lambda cls: cls.__name__)
def test_classes_are_abstract_or_final(cls):
    subclasses = [sub for sub in _classes() if cls in _own_bases(sub)]
    if subclasses:
        assert _is_abstract_name(cls), (
            f"{cls.__name__} is subclassed by {subclasses}: name it Abstract* or make it final"
        )


@pytest.mark.parametrize("cls", _classes(), ids=lambda cls: cls.__name__)
def test_no_concrete_member_is_overridden(cls):
    overridden = []
    for name in vars(cls):
        if name.startswith("__") or name == "_abc_impl":
            continue
        for base in _own_bases(cls):
            if name in vars(base):
                inherited = vars(base)[name]
                fn = inherited.fget if isinstance(inherited, property) else inherited
                abstract = getattr(fn, "__isabstractmethod__", False)
                if not abstract and (base.__name__, name) not in ALLOWED_OVERRIDES:
                    overridden.append(f"{base.__name__}.{name}")
                break
    assert not overridden, f"{cls.__name__} overrides concrete {overridden}"
