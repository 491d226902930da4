"""Data sets by name: `load("digits", seed=0)`, `load("moons", num_train=5000)`."""

from __future__ import annotations

from collections.abc import Callable

from eqx_impl.data.dataset import Dataset
from eqx_impl.data.digits import digits
from eqx_impl.data.images import cifar10, mnist
from eqx_impl.data.toys import checkerboard, gmm, moons, swiss_roll

_REGISTRY: dict[str, Callable[..., Dataset]] = {
    "checkerboard": checkerboard,
    "cifar10": cifar10,
    "digits": digits,
    "gmm": gmm,
    "mnist": mnist,
    "moons": moons,
    "swiss_roll": swiss_roll,
}


def available() -> tuple[str, ...]:
    """Names accepted by `load`, sorted."""
    return tuple(sorted(_REGISTRY))


def load(name: str, **kwargs) -> Dataset:
    """Build the data set `name` with the keyword arguments of its builder (e.g. `seed`,
    `num_train`, `num_test`, `noise`; `cache_dir`, `base_url`, `checksums` for images).
    Names are case-insensitive and `-` reads as `_` (`"swiss-roll"`, `"CIFAR10"`).

    **Returns:** a `Dataset`.
    """
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else None
    if key not in _REGISTRY:
        raise ValueError(f"Unknown data set {name!r}; available: {', '.join(available())}.")
    builder = _REGISTRY[key]
    try:
        return builder(**kwargs)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        raise ValueError(f"load({key!r}): {err}. See help({builder.__module__}.{key}).") from err
