"""The one conversion every module needs: a JAX array in a floating dtype."""

import jax.numpy as jnp

from eqx_impl._typing import Array


def as_float(x) -> Array:
    """`x` as a JAX array in a floating dtype.

    A floating dtype is kept (float32 stays float32 under `jax.enable_x64`); integers, bools
    and Python numbers get the default float dtype (float32, or float64 under x64).

    **Returns:** the array.
    """
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))
