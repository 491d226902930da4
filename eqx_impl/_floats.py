"""The conversions every module needs: a JAX array in a floating dtype, and an input's value
where it is known (not traced)."""

import jax
import jax.core  # the Tracer check; `import jax` alone does not declare it
import jax.numpy as jnp
import numpy as np

from eqx_impl._typing import Array


def as_float(x) -> Array:
    """`x` as a JAX array in a floating dtype.

    A floating dtype is kept (float32 stays float32 under `jax.enable_x64`); integers, bools
    and Python numbers get the default float dtype (float32, or float64 under x64).

    **Returns:** the array.
    """
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def concrete(x) -> np.ndarray | None:
    """The value of `x` as a NumPy array, or `None` while `x` is traced (under `jit`, `vmap`,
    `grad`, `eval_shape`): eager input checks run where the value is known.

    **Returns:** the array, or `None`.
    """
    return None if isinstance(x, jax.core.Tracer) else np.asarray(x)
