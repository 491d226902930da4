"""Parameter counting."""

from __future__ import annotations

import equinox as eqx
import jax

__all__ = ["count_params"]


def count_params(model: eqx.Module) -> int:
    """Number of trainable scalars: the total size of the floating-point array leaves.

    **Returns:** a Python `int`.
    """
    return sum(int(leaf.size) for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
