"""Data sets by name: `load("digits", seed=0)`, `load("moons", num_train=5000)`."""

from __future__ import annotations

from collections.abc import Callable

from eqx_impl.data.dataset import Dataset
from eqx_impl.data.digits import digits
from eqx_impl.data.images import cifar10, mnist
from eqx_impl.data.toys import checkerboard, gmm, moons, swiss_roll
from eqx_impl.names import DATASETS, canonical_name

# Keyed by the names of `eqx_impl.names.DATASETS` (tests/test_names.py keeps the two equal).
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
    return tuple(sorted(DATASETS))


def load(name: str, **kwargs) -> Dataset:
    """Build the data set `name` with the keyword arguments of its builder (e.g. `seed`,
    `num_train`, `num_test`, `noise`; `cache_dir`, `base_url`, `checksums` for images).
    Names follow `eqx_impl.names.normalize_name`: case-insensitive, `_` and `-` alike
    (`"swiss-roll"`, `"CIFAR10"`).

    **Returns:** a `Dataset`.
    """
    key = canonical_name(name, DATASETS) if isinstance(name, str) else None
    if key is None:
        raise ValueError(f"Unknown data set {name!r}; available: {', '.join(available())}.")
    builder = _REGISTRY[key]
    try:
        return builder(**kwargs)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        raise ValueError(f"load({key!r}): {err}. See help({builder.__module__}.{key}).") from err
